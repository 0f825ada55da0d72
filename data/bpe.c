/* The byte-level BPE tokenizer: construction from a token table plus merges
 * (shared by training and loading), encode and decode.
 *
 * Encoding follows GPT-2's bpe(): within one pre-token, repeatedly merge the
 * adjacent pair of lowest merge rank, all its occurrences left to right,
 * until no adjacent pair is a merge. We do that with a min-heap of
 * (rank, position) over a linked list of the pre-token's tokens, which gives
 * the same result in O(m log m) instead of O(m^2) (pre-tokens can be long:
 * a run of 100k spaces is one pre-token). Results are cached per pre-token
 * since natural text repeats its words. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"

/* Pre-tokens longer than this are encoded but not cached. */
#define CACHE_MAX_PIECE 256
/* The cache is emptied when it holds this many entries or ids. */
#define CACHE_MAX_ENTRIES (1 << 20)
#define CACHE_MAX_IDS (1 << 24)

rt_status data_ids_push(data_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        int32_t *ids = realloc(v->ids, cap * sizeof *ids);
        if (!ids) return rt_fail(RT_ERR_NOMEM, "out of memory growing a token array to %zu ids", cap);
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return RT_OK;
}

void data_ids_free(data_ids *v) {
    if (!v) return;
    free(v->ids);
    memset(v, 0, sizeof *v);
}

/* ---- construction ---- */

void data_tokenizer_destroy(data_tokenizer *t) {
    if (!t) return;
    free(t->tok_bytes);
    free(t->tok_off);
    data_strmap_free(&t->tok_index);
    free(t->merges);
    data_u64map_free(&t->pair_rank);
    data_pretok_free(&t->pt);
    data_strmap_free(&t->cache);
    free(t->cache_start);
    free(t->cache_len);
    data_ids_free(&t->cache_ids);
    free(t->scratch);
    free(t);
}

/* Fills tok_index and byte_id, checking the table is a usable vocabulary. */
static rt_status index_tokens(data_tokenizer *t, const char *what) {
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *tok = data_tokenizer_token(t, id, &len);
        if (len == 0) return rt_fail(RT_ERR_FORMAT, "%s: token id %d is empty", what, id);
        int64_t e;
        int inserted;
        RT_TRY(data_strmap_insert(&t->tok_index, tok, len, &e, &inserted));
        if (!inserted)
            return rt_fail(RT_ERR_FORMAT, "%s: token ids %lld and %d have the same bytes", what,
                           (long long)e, id);
        if (len == 1 && id != t->eot) t->byte_id[(unsigned char)tok[0]] = id;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return rt_fail(RT_ERR_FORMAT,
                           "%s: no token for byte 0x%02x (a byte-level vocabulary needs all 256)",
                           what, b);
    return RT_OK;
}

rt_status data_tokenizer_from_tokens(int32_t n_vocab, const char *bytes, const int64_t *off,
                                     int32_t eot, const char *what, data_tokenizer **out) {
    *out = NULL;
    RT_ASSERT(n_vocab > 0 && eot >= 0 && eot < n_vocab);
    rt_status st = RT_OK;
    data_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return rt_fail(RT_ERR_NOMEM, "out of memory for a tokenizer");
    t->n_vocab = n_vocab;
    t->eot = eot;
    size_t total = (size_t)off[n_vocab];
    t->tok_bytes = malloc(total ? total : 1);
    t->tok_off = malloc(((size_t)n_vocab + 1) * sizeof *t->tok_off);
    t->merges_cap = 1024;
    t->merges = malloc((size_t)t->merges_cap * 3 * sizeof *t->merges);
    t->cache_entries_cap = 4096;
    t->cache_start = malloc(t->cache_entries_cap * sizeof *t->cache_start);
    t->cache_len = malloc(t->cache_entries_cap * sizeof *t->cache_len);
    if (!t->tok_bytes || !t->tok_off || !t->merges || !t->cache_start || !t->cache_len) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for a tokenizer of %d tokens", n_vocab);
        goto cleanup;
    }
    memcpy(t->tok_bytes, bytes, total);
    memcpy(t->tok_off, off, ((size_t)n_vocab + 1) * sizeof *off);
    if ((st = data_strmap_init(&t->tok_index, (size_t)n_vocab)) != RT_OK) goto cleanup;
    if ((st = data_u64map_init(&t->pair_rank, (size_t)n_vocab)) != RT_OK) goto cleanup;
    if ((st = data_strmap_init(&t->cache, t->cache_entries_cap)) != RT_OK) goto cleanup;
    if ((st = data_pretok_init(&t->pt)) != RT_OK) goto cleanup;
    if ((st = index_tokens(t, what)) != RT_OK) goto cleanup;
    *out = t;
    t = NULL;
cleanup:
    data_tokenizer_destroy(t);
    return st;
}

rt_status data_tokenizer_add_merge(data_tokenizer *t, int32_t left, int32_t right,
                                   int32_t *result) {
    if (left < 0 || left >= t->n_vocab || right < 0 || right >= t->n_vocab)
        return rt_fail(RT_ERR_FORMAT, "merge of an id outside the vocabulary");
    if (left == t->eot || right == t->eot)
        return rt_fail(RT_ERR_FORMAT, "merge involving %s", DATA_EOT_TEXT);
    uint64_t key = data_pair_key(left, right);
    if (data_u64map_get(&t->pair_rank, key) >= 0) return rt_fail(RT_ERR_FORMAT, "duplicate merge");
    size_t ll, rl;
    const char *l = data_tokenizer_token(t, left, &ll);
    const char *r = data_tokenizer_token(t, right, &rl);
    char stackbuf[256];
    char *joined = ll + rl <= sizeof stackbuf ? stackbuf : malloc(ll + rl);
    if (!joined) return rt_fail(RT_ERR_NOMEM, "out of memory joining a merge");
    memcpy(joined, l, ll);
    memcpy(joined + ll, r, rl);
    int64_t id = data_strmap_find(&t->tok_index, joined, ll + rl);
    if (joined != stackbuf) free(joined);
    if (id < 0 || id == t->eot)
        return rt_fail(RT_ERR_FORMAT, "merge result is not a token of the vocabulary");
    if (t->n_merges == t->merges_cap) {
        int32_t cap = t->merges_cap * 2;
        int32_t *m = realloc(t->merges, (size_t)cap * 3 * sizeof *m);
        if (!m) return rt_fail(RT_ERR_NOMEM, "out of memory for %d merges", cap);
        t->merges = m;
        t->merges_cap = cap;
    }
    int32_t *m = t->merges + (size_t)t->n_merges * 3;
    m[0] = left;
    m[1] = right;
    m[2] = (int32_t)id;
    RT_TRY(data_u64map_put(&t->pair_rank, key, t->n_merges));
    t->n_merges++;
    *result = (int32_t)id;
    return RT_OK;
}

/* ---- accessors ---- */

int32_t data_tokenizer_vocab_size(const data_tokenizer *t) { return t->n_vocab; }
int32_t data_tokenizer_eot(const data_tokenizer *t) { return t->eot; }
int32_t data_tokenizer_n_merges(const data_tokenizer *t) { return t->n_merges; }

void data_tokenizer_merge(const data_tokenizer *t, int32_t rank, int32_t *left, int32_t *right,
                          int32_t *result) {
    RT_ASSERT(rank >= 0 && rank < t->n_merges);
    const int32_t *m = t->merges + (size_t)rank * 3;
    *left = m[0];
    *right = m[1];
    *result = m[2];
}

const char *data_tokenizer_token(const data_tokenizer *t, int32_t id, size_t *len) {
    RT_ASSERT(id >= 0 && id < t->n_vocab);
    *len = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
    return t->tok_bytes + t->tok_off[id];
}

/* ---- encode ---- */

typedef struct {
    int32_t rank, pos;
} merge_cand;

static int cand_less(merge_cand a, merge_cand b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void cand_push(merge_cand *h, size_t *n, merge_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static merge_cand cand_pop(merge_cand *h, size_t *n) {
    merge_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(h[c + 1], h[c])) c++;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static int32_t pair_rank(const data_tokenizer *t, int32_t l, int32_t r) {
    return (int32_t)data_u64map_get(&t->pair_rank, data_pair_key(l, r));
}

/* Scratch for a pre-token of m bytes: ids, next, prev and the heap. The heap
 * starts with at most m - 1 candidates and each merge pops one and pushes at
 * most two, over at most m - 1 merges, so it never holds more than 2m. */
static rt_status scratch_reserve(data_tokenizer *t, size_t m) {
    if (m > INT32_MAX)
        return rt_fail(RT_ERR_ARGS, "a pre-token of %zu bytes is too long to encode", m);
    size_t need = m * 3 * sizeof(int32_t) + m * 2 * sizeof(merge_cand);
    if (need <= t->scratch_cap) return RT_OK;
    void *s = realloc(t->scratch, need);
    if (!s) return rt_fail(RT_ERR_NOMEM, "out of memory encoding a pre-token of %zu bytes", m);
    t->scratch = s;
    t->scratch_cap = need;
    return RT_OK;
}

/* BPE of one pre-token; appends its ids to out. */
static rt_status bpe_piece(data_tokenizer *t, const char *piece, size_t m, data_ids *out) {
    RT_TRY(scratch_reserve(t, m));
    int32_t *ids = t->scratch, *next = ids + m, *prev = next + m;
    merge_cand *heap = (merge_cand *)(prev + m);
    size_t nh = 0;
    for (size_t i = 0; i < m; i++) {
        ids[i] = t->byte_id[(unsigned char)piece[i]];
        next[i] = (int32_t)i + 1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        int32_t r = pair_rank(t, ids[i], ids[i + 1]);
        if (r >= 0) cand_push(heap, &nh, (merge_cand){r, (int32_t)i});
    }
    while (nh > 0) {
        merge_cand c = cand_pop(heap, &nh);
        int32_t p = c.pos, q = next[p];
        /* Stale candidates: p was absorbed, or its pair changed since. */
        if (ids[p] < 0 || (size_t)q >= m || pair_rank(t, ids[p], ids[q]) != c.rank) continue;
        ids[p] = t->merges[(size_t)c.rank * 3 + 2];
        ids[q] = -1;
        next[p] = next[q];
        if ((size_t)next[q] < m) prev[next[q]] = p;
        if (prev[p] >= 0) {
            int32_t r = pair_rank(t, ids[prev[p]], ids[p]);
            if (r >= 0) cand_push(heap, &nh, (merge_cand){r, prev[p]});
        }
        if ((size_t)next[p] < m) {
            int32_t r = pair_rank(t, ids[p], ids[next[p]]);
            if (r >= 0) cand_push(heap, &nh, (merge_cand){r, p});
        }
    }
    for (int32_t i = 0; (size_t)i < m; i = next[i]) RT_TRY(data_ids_push(out, ids[i]));
    return RT_OK;
}

static void cache_reset(data_tokenizer *t) {
    data_strmap_clear(&t->cache);
    t->cache_ids.n = 0;
}

static rt_status cache_store(data_tokenizer *t, const char *piece, size_t len,
                             const int32_t *ids, size_t n) {
    if (t->cache.count >= CACHE_MAX_ENTRIES || t->cache_ids.n + n > CACHE_MAX_IDS) cache_reset(t);
    int64_t e;
    RT_TRY(data_strmap_insert(&t->cache, piece, len, &e, NULL));
    if ((size_t)e >= t->cache_entries_cap) {
        size_t cap = t->cache_entries_cap * 2;
        int64_t *s = realloc(t->cache_start, cap * sizeof *s);
        if (!s) return rt_fail(RT_ERR_NOMEM, "out of memory growing the encode cache");
        t->cache_start = s;
        int32_t *l = realloc(t->cache_len, cap * sizeof *l);
        if (!l) return rt_fail(RT_ERR_NOMEM, "out of memory growing the encode cache");
        t->cache_len = l;
        t->cache_entries_cap = cap;
    }
    t->cache_start[e] = (int64_t)t->cache_ids.n;
    t->cache_len[e] = (int32_t)n;
    for (size_t i = 0; i < n; i++) RT_TRY(data_ids_push(&t->cache_ids, ids[i]));
    return RT_OK;
}

typedef struct {
    data_tokenizer *t;
    data_ids *out;
} encode_ctx;

static rt_status encode_piece(void *vctx, const char *piece, size_t len) {
    encode_ctx *c = vctx;
    data_tokenizer *t = c->t;
    if (len <= CACHE_MAX_PIECE) {
        int64_t e = data_strmap_find(&t->cache, piece, len);
        if (e >= 0) {
            for (int32_t i = 0; i < t->cache_len[e]; i++)
                RT_TRY(data_ids_push(c->out, t->cache_ids.ids[t->cache_start[e] + i]));
            return RT_OK;
        }
    }
    size_t first = c->out->n;
    RT_TRY(bpe_piece(t, piece, len, c->out));
    if (len <= CACHE_MAX_PIECE)
        RT_TRY(cache_store(t, piece, len, c->out->ids + first, c->out->n - first));
    return RT_OK;
}

rt_status data_tokenizer_encode(data_tokenizer *t, const char *text, size_t n, data_ids *out) {
    encode_ctx c = {t, out};
    return data_pretok_run(&t->pt, text, n, encode_piece, &c);
}

/* ---- decode ---- */

rt_status data_tokenizer_decode(const data_tokenizer *t, const int32_t *ids, size_t n,
                                char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return rt_fail(RT_ERR_ARGS, "decode: id %d at position %zu is outside the vocabulary "
                                        "of %d tokens", ids[i], i, t->n_vocab);
        total += (size_t)(t->tok_off[ids[i] + 1] - t->tok_off[ids[i]]);
    }
    char *buf = malloc(total + 1);
    if (!buf) return rt_fail(RT_ERR_NOMEM, "out of memory decoding %zu bytes", total);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *tok = data_tokenizer_token(t, ids[i], &len);
        memcpy(buf + w, tok, len);
        w += len;
    }
    buf[w] = '\0';
    *out = buf;
    *out_len = w;
    return RT_OK;
}
