/* Open-addressing hash maps for the tokenizer and the BPE trainer (see
 * hmap.h). Load factor stays at or below 1/2 so probes stay short. */
#include "hmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t data_hash_u64(uint64_t x) {
    /* splitmix64 finalizer: every input bit affects every output bit. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t data_hash_bytes(const void *p, size_t n) {
    /* FNV-1a over 8-byte words, then a finalizer; keys are short words. */
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    if (n > i) memcpy(&tail, s + i, n - i);
    h = (h ^ tail) * 0x100000001b3ULL;
    return data_hash_u64(h);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- data_u64map ---- */

rt_status data_u64map_init(data_u64map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2);
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->vals = malloc(m->cap * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        data_u64map_free(m);
        return rt_fail(RT_ERR_NOMEM, "out of memory for a hash map of %zu entries", expected);
    }
    memset(m->vals, 0xff, m->cap * sizeof *m->vals); /* all -1 */
    return RT_OK;
}

void data_u64map_free(data_u64map *m) {
    if (!m) return;
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int64_t data_u64map_get(const data_u64map *m, uint64_t key) {
    size_t mask = m->cap - 1;
    for (size_t i = data_hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (m->vals[i] < 0) return -1;
        if (m->keys[i] == key) return m->vals[i];
    }
}

static void u64map_place(uint64_t *keys, int64_t *vals, size_t cap, uint64_t key, int64_t val) {
    size_t mask = cap - 1;
    size_t i = data_hash_u64(key) & mask;
    while (vals[i] >= 0 && keys[i] != key) i = (i + 1) & mask;
    keys[i] = key;
    vals[i] = val;
}

static rt_status u64map_grow(data_u64map *m) {
    size_t cap = m->cap * 2;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int64_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return rt_fail(RT_ERR_NOMEM, "out of memory growing a hash map to %zu slots", cap);
    }
    memset(vals, 0xff, cap * sizeof *vals);
    for (size_t i = 0; i < m->cap; i++)
        if (m->vals[i] >= 0) u64map_place(keys, vals, cap, m->keys[i], m->vals[i]);
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return RT_OK;
}

rt_status data_u64map_put(data_u64map *m, uint64_t key, int64_t val) {
    RT_ASSERT(val >= 0);
    if ((m->count + 1) * 2 > m->cap) RT_TRY(u64map_grow(m));
    size_t mask = m->cap - 1;
    size_t i = data_hash_u64(key) & mask;
    while (m->vals[i] >= 0 && m->keys[i] != key) i = (i + 1) & mask;
    if (m->vals[i] < 0) m->count++;
    m->keys[i] = key;
    m->vals[i] = val;
    return RT_OK;
}

/* ---- data_strmap ---- */

rt_status data_strmap_init(data_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2);
    m->entries_cap = expected < 16 ? 16 : expected;
    m->arena_cap = m->entries_cap * 8;
    m->slots = malloc(m->cap * sizeof *m->slots);
    m->hashes = malloc(m->entries_cap * sizeof *m->hashes);
    m->key_off = malloc((m->entries_cap + 1) * sizeof *m->key_off);
    m->arena = malloc(m->arena_cap);
    if (!m->slots || !m->hashes || !m->key_off || !m->arena) {
        data_strmap_free(m);
        return rt_fail(RT_ERR_NOMEM, "out of memory for a string map of %zu entries", expected);
    }
    data_strmap_clear(m);
    return RT_OK;
}

void data_strmap_free(data_strmap *m) {
    if (!m) return;
    free(m->slots);
    free(m->hashes);
    free(m->key_off);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

void data_strmap_clear(data_strmap *m) {
    memset(m->slots, 0xff, m->cap * sizeof *m->slots);
    m->count = 0;
    m->arena_len = 0;
    m->key_off[0] = 0;
}

const char *data_strmap_key(const data_strmap *m, int64_t idx, size_t *len) {
    RT_ASSERT(idx >= 0 && (size_t)idx < m->count);
    *len = (size_t)(m->key_off[idx + 1] - m->key_off[idx]);
    return m->arena + m->key_off[idx];
}

static int strmap_eq(const data_strmap *m, int64_t idx, const void *key, size_t len) {
    size_t klen;
    const char *k = data_strmap_key(m, idx, &klen);
    return klen == len && memcmp(k, key, len) == 0;
}

static size_t strmap_slot(const data_strmap *m, uint64_t h, const void *key, size_t len) {
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i] >= 0) {
        int64_t e = m->slots[i];
        if (m->hashes[e] == h && strmap_eq(m, e, key, len)) break;
        i = (i + 1) & mask;
    }
    return i;
}

int64_t data_strmap_find(const data_strmap *m, const void *key, size_t len) {
    return m->slots[strmap_slot(m, data_hash_bytes(key, len), key, len)];
}

static rt_status strmap_grow_slots(data_strmap *m) {
    size_t cap = m->cap * 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return rt_fail(RT_ERR_NOMEM, "out of memory growing a string map to %zu slots", cap);
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t e = 0; e < m->count; e++) {
        size_t i = m->hashes[e] & (cap - 1);
        while (slots[i] >= 0) i = (i + 1) & (cap - 1);
        slots[i] = (int64_t)e;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return RT_OK;
}

static rt_status strmap_reserve(data_strmap *m, size_t len) {
    if (m->count + 1 > m->entries_cap) {
        size_t ec = m->entries_cap * 2;
        uint64_t *h = realloc(m->hashes, ec * sizeof *h);
        if (!h) return rt_fail(RT_ERR_NOMEM, "out of memory growing a string map");
        m->hashes = h;
        int64_t *o = realloc(m->key_off, (ec + 1) * sizeof *o);
        if (!o) return rt_fail(RT_ERR_NOMEM, "out of memory growing a string map");
        m->key_off = o;
        m->entries_cap = ec;
    }
    if (m->arena_len + len > m->arena_cap) {
        size_t ac = m->arena_cap * 2;
        while (ac < m->arena_len + len) ac *= 2;
        char *a = realloc(m->arena, ac);
        if (!a) return rt_fail(RT_ERR_NOMEM, "out of memory growing a string map's keys");
        m->arena = a;
        m->arena_cap = ac;
    }
    return RT_OK;
}

rt_status data_strmap_insert(data_strmap *m, const void *key, size_t len, int64_t *idx,
                             int *inserted) {
    uint64_t h = data_hash_bytes(key, len);
    size_t i = strmap_slot(m, h, key, len);
    if (m->slots[i] >= 0) {
        *idx = m->slots[i];
        if (inserted) *inserted = 0;
        return RT_OK;
    }
    RT_TRY(strmap_reserve(m, len));
    if ((m->count + 1) * 2 > m->cap) {
        RT_TRY(strmap_grow_slots(m));
        i = strmap_slot(m, h, key, len);
    }
    int64_t e = (int64_t)m->count++;
    if (len) memcpy(m->arena + m->arena_len, key, len);
    m->arena_len += len;
    m->hashes[e] = h;
    m->key_off[e + 1] = (int64_t)m->arena_len;
    m->slots[i] = e;
    *idx = e;
    if (inserted) *inserted = 1;
    return RT_OK;
}
