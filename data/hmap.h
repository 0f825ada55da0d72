/* Internal hash maps of data/ (not part of the public API in data.h).
 *
 * Two open-addressing tables with linear probing, because the tokenizer and
 * the BPE trainer look things up millions of times and C has no map:
 *   data_u64map:  uint64 key -> int64 value (value >= 0), used for token
 *                 pairs packed as (left << 32 | right).
 *   data_strmap:  byte string -> dense index 0..count-1, insertion ordered;
 *                 the caller keeps per-entry data in arrays indexed by it.
 *                 Keys are copied into the map's own arena. */
#ifndef DATA_HMAP_H
#define DATA_HMAP_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

typedef struct {
    uint64_t *keys; /* (cap) */
    int64_t *vals;  /* (cap), -1 marks an empty slot */
    size_t cap;     /* power of two */
    size_t count;
} data_u64map;

rt_status data_u64map_init(data_u64map *m, size_t expected);
void data_u64map_free(data_u64map *m);
/* Value stored for key, or -1. */
int64_t data_u64map_get(const data_u64map *m, uint64_t key);
/* Inserts or overwrites; val must be >= 0. */
rt_status data_u64map_put(data_u64map *m, uint64_t key, int64_t val);

typedef struct {
    int64_t *slots;    /* (cap) entry index or -1 */
    uint64_t *hashes;  /* (count) hash of each entry, so growth never rehashes bytes */
    int64_t *key_off;  /* (count + 1) offsets of the keys in arena */
    char *arena;       /* all keys back to back */
    size_t cap, count, entries_cap, arena_len, arena_cap;
} data_strmap;

rt_status data_strmap_init(data_strmap *m, size_t expected);
void data_strmap_free(data_strmap *m);
/* Forgets every entry but keeps the memory. */
void data_strmap_clear(data_strmap *m);
/* Entry index of key, or -1. */
int64_t data_strmap_find(const data_strmap *m, const void *key, size_t len);
/* Entry index of key, inserting it if absent (*inserted says which). */
rt_status data_strmap_insert(data_strmap *m, const void *key, size_t len, int64_t *idx,
                             int *inserted);
/* The key bytes of entry idx (not NUL-terminated) and their length. */
const char *data_strmap_key(const data_strmap *m, int64_t idx, size_t *len);

/* 64-bit hashes shared with other files of data/. */
uint64_t data_hash_bytes(const void *p, size_t n);
uint64_t data_hash_u64(uint64_t x);

#endif
