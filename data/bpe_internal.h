/* Internal interfaces shared by the tokenizer files of data/ (bpe_*.c):
 * the compiled pre-tokenizer, GPT-2's byte <-> unicode alphabet, and the
 * tokenizer's construction steps used by training and loading. */
#ifndef DATA_BPE_INTERNAL_H
#define DATA_BPE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "data.h"
#include "hmap.h"

/* A compiled GPT-2 pattern with its own match data and JIT stack; owned by
 * one tokenizer or trainer (so no global state). */
typedef struct {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
} data_pretok;

rt_status data_pretok_init(data_pretok *p);
void data_pretok_free(data_pretok *p);
rt_status data_pretok_run(data_pretok *p, const char *text, size_t n, data_piece_fn fn,
                          void *ctx);

/* GPT-2's bytes_to_unicode(): byte b is written as code point
 * data_byte_to_cp(b) in vocab.json and merges.txt. */
uint32_t data_byte_to_cp(unsigned char b);
/* Inverse of data_bytes_to_alpha: decodes a NUL-terminated alphabet string
 * into dst (room for strlen(s) bytes). Returns the byte count, or -1 if s
 * holds a character outside the alphabet or invalid UTF-8. */
int64_t data_alpha_to_bytes(const char *s, char *dst);

struct data_tokenizer {
    int32_t n_vocab;
    int32_t eot;
    int32_t byte_id[256];   /* id of each single-byte token */
    char *tok_bytes;        /* bytes of every token, id order */
    int64_t *tok_off;       /* (n_vocab + 1) offsets into tok_bytes */
    data_strmap tok_index;  /* token bytes -> id (entry index == id) */
    int32_t n_merges, merges_cap;
    int32_t *merges;        /* (n_merges, 3): left, right, result by rank */
    data_u64map pair_rank;  /* (left << 32 | right) -> rank */
    data_pretok pt;
    /* encode cache: pre-token bytes -> ids */
    data_strmap cache;
    int64_t *cache_start;   /* (cache entries) offset into cache_ids */
    int32_t *cache_len;     /* (cache entries) */
    size_t cache_entries_cap;
    data_ids cache_ids;
    /* encode scratch for one pre-token */
    void *scratch;
    size_t scratch_cap;
};

/* Creates a tokenizer with n_vocab tokens whose bytes are
 * bytes[off[i] .. off[i+1]) and no merges. Token `eot` is <|endoftext|>.
 * Every other token string must be distinct and the 256 single bytes must
 * all be present; `what` names the source (a file) in error messages. */
rt_status data_tokenizer_from_tokens(int32_t n_vocab, const char *bytes, const int64_t *off,
                                     int32_t eot, const char *what, data_tokenizer **out);
/* Appends the merge (left, right) as the next rank; *result is the id whose
 * bytes are their concatenation. RT_ERR_FORMAT (generic message; callers
 * name their file) when there is no such token, when an id is the eot or
 * out of range, or when the pair is already a merge. */
rt_status data_tokenizer_add_merge(data_tokenizer *t, int32_t left, int32_t right,
                                   int32_t *result);

static inline uint64_t data_pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

#endif
