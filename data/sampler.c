/* The deterministic batch sampler (design in data.h and docs/ARCHITECTURE.md).
 *
 * Everything a rank reads at a global step is a pure function of (seed,
 * step, rank, R): the epoch's permutation is keyed by (seed, epoch) only,
 * so resuming at any step needs no replay, and since a step's G windows are
 * one contiguous slice of the permutation, cut into R equal parts in rank
 * order, the windows of a step do not depend on R.
 *
 * The permutation is computed on the fly, position by position, instead of
 * being stored (8 bytes per window: 39 MB for a 10 GB shard): a balanced
 * Feistel network over the smallest even number of bits 2h whose 2^(2h)
 * values cover the W windows is a bijection of [0, 2^(2h)); walking the
 * cycle (applying it again while the value is >= W) restricts it to a
 * bijection of [0, W) (Black and Rogaway's cycle walking). 2^(2h) < 4 W, so
 * a position takes fewer than 4 network evaluations on average. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "rt_rand.h"

enum { FEISTEL_ROUNDS = 6 };

struct data_sampler {
    char *name;       /* shard path, for messages */
    int64_t n_tokens; /* tokens in the shard */
    int64_t W, S;     /* windows, steps per epoch */
    int32_t T, G, R, rank, b;
    uint64_t seed;
    int half;                      /* h: bits of each Feistel half */
    int64_t key_epoch;             /* epoch of keys[], -1 until the first step */
    uint64_t keys[FEISTEL_ROUNDS]; /* round keys of epoch key_epoch */
};

/* Round keys of epoch e, from the stream of (seed, e). */
static void epoch_keys(data_sampler *s, int64_t epoch) {
    uint64_t x = s->seed;
    uint64_t key = rt_splitmix64(&x) ^ ((uint64_t)epoch * 0xD1B54A32D192ED03ULL);
    for (int r = 0; r < FEISTEL_ROUNDS; r++) s->keys[r] = rt_splitmix64(&key);
    s->key_epoch = epoch;
}

/* Window at permutation position i (0 <= i < W) of epoch key_epoch. */
static int64_t perm_at(const data_sampler *s, int64_t i) {
    const int h = s->half;
    const uint64_t mask = (UINT64_C(1) << h) - 1;
    uint64_t x = (uint64_t)i;
    do {
        uint64_t l = x >> h, r = x & mask;
        for (int k = 0; k < FEISTEL_ROUNDS; k++) {
            uint64_t f = r ^ s->keys[k];
            const uint64_t t = l ^ (rt_splitmix64(&f) & mask);
            l = r;
            r = t;
        }
        x = (l << h) | r;
    } while (x >= (uint64_t)s->W);
    return (int64_t)x;
}

rt_status data_sampler_create(const char *shard_name, int64_t n_tokens, int32_t seq_len,
                              int32_t global_batch, int32_t n_ranks, int32_t rank, uint64_t seed,
                              data_sampler **out) {
    *out = NULL;
    const char *name = shard_name ? shard_name : "token shard";
    if (seq_len < 1 || global_batch < 1 || n_ranks < 1)
        return rt_fail(RT_ERR_ARGS, "%s: seq_len (%d), batch (%d) and ranks (%d) must be >= 1",
                       name, seq_len, global_batch, n_ranks);
    if (rank < 0 || rank >= n_ranks)
        return rt_fail(RT_ERR_ARGS, "%s: rank %d is outside 0..%d", name, rank, n_ranks - 1);
    if (global_batch % n_ranks != 0)
        return rt_fail(RT_ERR_ARGS, "batch %d does not split evenly over %d data-parallel ranks; "
                       "make batch a multiple of the rank count", global_batch, n_ranks);
    int64_t W = n_tokens > 1 ? (n_tokens - 1) / seq_len : 0;
    int64_t S = W / global_batch;
    if (S == 0)
        return rt_fail(RT_ERR_ARGS, "%s: %lld tokens make %lld windows of seq_len %d, fewer than "
                       "one batch of %d sequences; use more data, a smaller seq_len or a "
                       "smaller batch", name, (long long)n_tokens, (long long)W, seq_len,
                       global_batch);
    data_sampler *s = calloc(1, sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "%s: out of memory for the sampler", name);
    s->name = strdup(name);
    if (!s->name) {
        data_sampler_destroy(s);
        return rt_fail(RT_ERR_NOMEM, "%s: out of memory for the sampler", name);
    }
    s->half = 1; /* W < 2^63 (n_tokens is an int64_t): h <= 32 */
    while (s->half < 32 && (UINT64_C(1) << (2 * s->half)) < (uint64_t)W) s->half++;
    s->n_tokens = n_tokens;
    s->W = W;
    s->S = S;
    s->T = seq_len;
    s->G = global_batch;
    s->R = n_ranks;
    s->rank = rank;
    s->b = global_batch / n_ranks;
    s->seed = seed;
    s->key_epoch = -1;
    *out = s;
    return RT_OK;
}

void data_sampler_destroy(data_sampler *s) {
    if (!s) return;
    free(s->name);
    free(s);
}

int64_t data_sampler_steps_per_epoch(const data_sampler *s) { return s->S; }
int64_t data_sampler_n_windows(const data_sampler *s) { return s->W; }
int32_t data_sampler_rows(const data_sampler *s) { return s->b; }

/* Copies `count` window starts at permutation position (step % S) * G + first. */
static rt_status step_windows(data_sampler *s, int64_t step, int64_t first, int64_t count,
                              int64_t *starts) {
    if (step < 0) return rt_fail(RT_ERR_ARGS, "%s: negative step %lld", s->name, (long long)step);
    int64_t epoch = step / s->S;
    if (epoch != s->key_epoch) epoch_keys(s, epoch);
    const int64_t at = (step % s->S) * s->G + first;
    for (int64_t i = 0; i < count; i++) starts[i] = perm_at(s, at + i) * s->T;
    return RT_OK;
}

rt_status data_sampler_windows(data_sampler *s, int64_t step, int64_t *starts) {
    return step_windows(s, step, (int64_t)s->rank * s->b, s->b, starts);
}

rt_status data_sampler_global_windows(data_sampler *s, int64_t step, int64_t *starts) {
    return step_windows(s, step, 0, s->G, starts);
}

/* This rank's rows at `step`, copied from tokens (in memory) or, when
 * tokens is NULL, read window by window from the shard sh. */
static rt_status sampler_rows(data_sampler *s, const int32_t *tokens, data_shard *sh,
                              int64_t step, int32_t *inputs, int32_t *targets) {
    int64_t stack_starts[64];
    int64_t *starts = s->b <= 64 ? stack_starts : malloc((size_t)s->b * sizeof *starts);
    if (!starts) return rt_fail(RT_ERR_NOMEM, "%s: out of memory for %d rows", s->name, s->b);
    rt_status st = data_sampler_windows(s, step, starts);
    for (int32_t i = 0; st == RT_OK && i < s->b; i++) {
        int32_t *in = inputs + (size_t)i * s->T, *tg = targets + (size_t)i * s->T;
        if (sh) {
            st = data_shard_read_window(sh, starts[i], s->T, in, tg);
        } else {
            /* start + T < n_tokens because W = (n - 1) / T. */
            memcpy(in, tokens + starts[i], (size_t)s->T * sizeof *in);
            memcpy(tg, tokens + starts[i] + 1, (size_t)s->T * sizeof *tg);
        }
    }
    if (starts != stack_starts) free(starts);
    return st;
}

rt_status data_sampler_fill(data_sampler *s, const int32_t *tokens, int64_t step,
                            int32_t *inputs, int32_t *targets) {
    return sampler_rows(s, tokens, NULL, step, inputs, targets);
}

rt_status data_sampler_read(data_sampler *s, data_shard *sh, int64_t step, int32_t *inputs,
                            int32_t *targets) {
    if (data_shard_n_tokens(sh) != s->n_tokens)
        return rt_fail(RT_ERR_MISMATCH, "%s holds %lld tokens; the sampler of %s was made for "
                       "%lld", data_shard_path(sh), (long long)data_shard_n_tokens(sh), s->name,
                       (long long)s->n_tokens);
    return sampler_rows(s, NULL, sh, step, inputs, targets);
}
