/* BPE training: count pre-token words, then learn merges.
 *
 * Words are counted once (distinct word -> count), so the merge loop works
 * on tens of thousands of distinct words instead of the whole corpus. The
 * loop keeps, for every adjacent token pair, its count (weighted by word
 * counts) and the list of words it occurs in, plus a max-heap of
 * (count, pair) with lazy deletion:
 *  - merging (A, B) -> C rewrites only the words on (A, B)'s list; each such
 *    word's old pairs are subtracted and its new pairs added back;
 *  - pairs not involving C can only lose occurrences, so their heap entries
 *    stay upper bounds and are corrected when popped (a popped entry whose
 *    count is stale is re-pushed with the current count);
 *  - pairs involving C are the only ones that gain; they are pushed with
 *    their final counts after the merge, and only their word lists grow.
 * Ties between equal counts go to the smaller (left id, right id), so
 * training is deterministic.
 *
 * Rare corner: different merge paths can spell the same string (e.g. "a"+"bc"
 * and "ab"+"c"). Like Hugging Face's trainer we then reuse the existing id,
 * so vocab.json never holds the same key twice; such a merge adds no token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"

struct data_bpe_trainer {
    data_pretok pt;
    data_strmap words; /* word bytes -> word index */
    int64_t *counts;   /* (words.count) occurrences of each word */
    size_t counts_cap;
};

rt_status data_bpe_trainer_create(data_bpe_trainer **out) {
    *out = NULL;
    rt_status st = RT_OK;
    data_bpe_trainer *b = calloc(1, sizeof *b);
    if (!b) return rt_fail(RT_ERR_NOMEM, "out of memory for a BPE trainer");
    b->counts_cap = 1 << 14;
    b->counts = calloc(b->counts_cap, sizeof *b->counts);
    if (!b->counts) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for a BPE trainer");
        goto cleanup;
    }
    if ((st = data_strmap_init(&b->words, b->counts_cap)) != RT_OK) goto cleanup;
    if ((st = data_pretok_init(&b->pt)) != RT_OK) goto cleanup;
    *out = b;
    b = NULL;
cleanup:
    data_bpe_trainer_destroy(b);
    return st;
}

void data_bpe_trainer_destroy(data_bpe_trainer *b) {
    if (!b) return;
    data_pretok_free(&b->pt);
    data_strmap_free(&b->words);
    free(b->counts);
    free(b);
}

static rt_status count_word(void *ctx, const char *piece, size_t len) {
    data_bpe_trainer *b = ctx;
    int64_t e;
    RT_TRY(data_strmap_insert(&b->words, piece, len, &e, NULL));
    if ((size_t)e >= b->counts_cap) {
        size_t cap = b->counts_cap * 2;
        int64_t *c = realloc(b->counts, cap * sizeof *c);
        if (!c) return rt_fail(RT_ERR_NOMEM, "out of memory counting %zu distinct words", cap);
        memset(c + b->counts_cap, 0, (cap - b->counts_cap) * sizeof *c);
        b->counts = c;
        b->counts_cap = cap;
    }
    b->counts[e]++;
    return RT_OK;
}

rt_status data_bpe_trainer_add(data_bpe_trainer *b, const char *text, size_t n) {
    return data_pretok_run(&b->pt, text, n, count_word, b);
}

/* ---- merge loop state ---- */

typedef struct {
    int32_t left, right;
    int64_t count;      /* occurrences, weighted by word counts */
    int32_t *words;     /* words it was seen in (may be stale or repeated) */
    int32_t n_words, cap_words;
    int32_t touched_at; /* last merge that pushed it */
} tpair;

typedef struct {
    int64_t count;
    int32_t pair;
} heap_ent;

typedef struct {
    /* words: tokens of word w are toks[w_off[w] .. w_off[w] + w_len[w]) */
    int32_t n_words;
    int64_t *w_off;
    int32_t *w_len;
    int64_t *w_count;
    int32_t *w_seen; /* last merge that rewrote the word */
    int32_t *toks;
    /* pairs */
    tpair *pairs;
    int32_t n_pairs, cap_pairs;
    data_u64map pair_index; /* (left, right) -> index into pairs */
    heap_ent *heap;
    size_t n_heap, cap_heap;
    int32_t *touched; /* pairs involving the newest token, pushed after a merge */
    int32_t n_touched, cap_touched;
    /* tokens: entry index of tok_index is the token id */
    data_strmap tok_index;
    int32_t *merges; /* (n_merges, 2) */
    int32_t n_merges, cap_merges;
} train_state;

static void train_state_free(train_state *s) {
    free(s->w_off);
    free(s->w_len);
    free(s->w_count);
    free(s->w_seen);
    free(s->toks);
    for (int32_t i = 0; i < s->n_pairs; i++) free(s->pairs[i].words);
    free(s->pairs);
    data_u64map_free(&s->pair_index);
    free(s->heap);
    free(s->touched);
    data_strmap_free(&s->tok_index);
    free(s->merges);
}

/* Grows an array to hold at least `need` elements (doubling). */
static rt_status grow(void **p, int64_t *cap, int64_t need, size_t elem, const char *what) {
    if (need <= *cap) return RT_OK;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return rt_fail(RT_ERR_NOMEM, "out of memory for %lld %s", (long long)c, what);
    *p = q;
    *cap = c;
    return RT_OK;
}

static rt_status grow32(void **p, int32_t *cap, int64_t need, size_t elem, const char *what) {
    if (need > INT32_MAX) return rt_fail(RT_ERR_NOMEM, "too many %s for the BPE trainer", what);
    int64_t c = *cap;
    RT_TRY(grow(p, &c, need, elem, what));
    *cap = (int32_t)c;
    return RT_OK;
}

static int heap_above(const train_state *s, heap_ent a, heap_ent b) {
    if (a.count != b.count) return a.count > b.count;
    const tpair *pa = &s->pairs[a.pair], *pb = &s->pairs[b.pair];
    if (pa->left != pb->left) return pa->left < pb->left;
    return pa->right < pb->right;
}

static rt_status heap_push(train_state *s, int64_t count, int32_t pair) {
    if (s->n_heap == s->cap_heap) {
        int64_t cap = (int64_t)s->cap_heap;
        RT_TRY(grow((void **)&s->heap, &cap, cap + 1, sizeof *s->heap, "heap entries"));
        s->cap_heap = (size_t)cap;
    }
    heap_ent e = {count, pair};
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_above(s, e, s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
    return RT_OK;
}

static heap_ent heap_pop(train_state *s) {
    heap_ent top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_above(s, s->heap[c + 1], s->heap[c])) c++;
        if (!heap_above(s, s->heap[c], last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* Adds delta (weighted occurrences) to pair (l, r), creating it if needed;
 * with track, records that word w holds it. */
static rt_status pair_add(train_state *s, int32_t l, int32_t r, int64_t delta, int32_t w,
                          int track, int32_t *out_idx) {
    uint64_t key = data_pair_key(l, r);
    int64_t idx = data_u64map_get(&s->pair_index, key);
    if (idx < 0) {
        RT_ASSERT(delta > 0); /* a pair is removed only from words that hold it */
        RT_TRY(grow32((void **)&s->pairs, &s->cap_pairs, (int64_t)s->n_pairs + 1, sizeof *s->pairs,
                      "token pairs"));
        idx = s->n_pairs++;
        s->pairs[idx] = (tpair){.left = l, .right = r, .touched_at = -1};
        RT_TRY(data_u64map_put(&s->pair_index, key, idx));
    }
    tpair *p = &s->pairs[idx];
    p->count += delta;
    RT_ASSERT(p->count >= 0);
    if (track && (p->n_words == 0 || p->words[p->n_words - 1] != w)) {
        RT_TRY(grow32((void **)&p->words, &p->cap_words, (int64_t)p->n_words + 1, sizeof *p->words,
                      "word references"));
        p->words[p->n_words++] = w;
    }
    if (out_idx) *out_idx = (int32_t)idx;
    return RT_OK;
}

/* Copies the counted words into the state and builds the initial pairs. */
static rt_status load_words(train_state *s, const data_bpe_trainer *b) {
    size_t n = b->words.count;
    if (n > INT32_MAX) return rt_fail(RT_ERR_NOMEM, "too many distinct words (%zu)", n);
    s->n_words = (int32_t)n;
    size_t total = b->words.arena_len;
    s->w_off = malloc((n + 1) * sizeof *s->w_off);
    s->w_len = malloc((n + 1) * sizeof *s->w_len);
    s->w_count = malloc((n + 1) * sizeof *s->w_count);
    s->w_seen = malloc((n + 1) * sizeof *s->w_seen);
    s->toks = malloc((total + 1) * sizeof *s->toks);
    if (!s->w_off || !s->w_len || !s->w_count || !s->w_seen || !s->toks)
        return rt_fail(RT_ERR_NOMEM, "out of memory for %zu words (%zu bytes)", n, total);
    for (size_t w = 0; w < n; w++) {
        size_t len;
        const char *bytes = data_strmap_key(&b->words, (int64_t)w, &len);
        s->w_off[w] = b->words.key_off[w];
        s->w_len[w] = (int32_t)len;
        s->w_count[w] = b->counts[w];
        s->w_seen[w] = -1;
        int32_t *t = s->toks + s->w_off[w];
        for (size_t i = 0; i < len; i++) t[i] = (unsigned char)bytes[i];
        for (size_t i = 0; i + 1 < len; i++)
            RT_TRY(pair_add(s, t[i], t[i + 1], s->w_count[w], (int32_t)w, 1, NULL));
    }
    for (int32_t i = 0; i < s->n_pairs; i++) RT_TRY(heap_push(s, s->pairs[i].count, i));
    return RT_OK;
}

/* Rewrites word w with merge (a, b) -> c, updating pair counts. */
static rt_status word_merge(train_state *s, int32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t *t = s->toks + s->w_off[w];
    int32_t len = s->w_len[w];
    int64_t wc = s->w_count[w];
    for (int32_t i = 0; i + 1 < len; i++) RT_TRY(pair_add(s, t[i], t[i + 1], -wc, w, 0, NULL));
    int32_t j = 0;
    for (int32_t i = 0; i < len;) {
        if (i + 1 < len && t[i] == a && t[i + 1] == b) {
            t[j++] = c;
            i += 2;
        } else {
            t[j++] = t[i++];
        }
    }
    s->w_len[w] = j;
    for (int32_t i = 0; i + 1 < j; i++) {
        int fresh = t[i] == c || t[i + 1] == c;
        int32_t idx;
        RT_TRY(pair_add(s, t[i], t[i + 1], wc, w, fresh, &idx));
        if (fresh && s->pairs[idx].touched_at != s->n_merges) {
            s->pairs[idx].touched_at = s->n_merges;
            RT_TRY(grow32((void **)&s->touched, &s->cap_touched, (int64_t)s->n_touched + 1,
                          sizeof *s->touched, "touched pairs"));
            s->touched[s->n_touched++] = idx;
        }
    }
    return RT_OK;
}

/* The id of the concatenation of tokens a and b, adding it if new. */
static rt_status token_for_merge(train_state *s, int32_t a, int32_t b, int32_t *c) {
    size_t la, lb;
    const char *ta = data_strmap_key(&s->tok_index, a, &la);
    const char *tb = data_strmap_key(&s->tok_index, b, &lb);
    char *joined = malloc(la + lb);
    if (!joined) return rt_fail(RT_ERR_NOMEM, "out of memory for a token of %zu bytes", la + lb);
    memcpy(joined, ta, la);
    memcpy(joined + la, tb, lb);
    int64_t id;
    rt_status st = data_strmap_insert(&s->tok_index, joined, la + lb, &id, NULL);
    free(joined);
    *c = (int32_t)id;
    return st;
}

/* Applies the merge of pair index pi to every word holding it. */
static rt_status apply_merge(train_state *s, int32_t pi) {
    int32_t a = s->pairs[pi].left, b = s->pairs[pi].right, c = -1;
    RT_TRY(token_for_merge(s, a, b, &c));
    RT_TRY(grow32((void **)&s->merges, &s->cap_merges, 2 * ((int64_t)s->n_merges + 1),
                  sizeof *s->merges, "merges"));
    s->merges[2 * s->n_merges] = a;
    s->merges[2 * s->n_merges + 1] = b;
    /* (a, b)'s list never grows during its own merge: c differs from a and b. */
    int32_t *words = s->pairs[pi].words, n_words = s->pairs[pi].n_words;
    s->n_touched = 0;
    for (int32_t k = 0; k < n_words; k++) {
        int32_t w = words[k];
        if (s->w_seen[w] == s->n_merges) continue;
        s->w_seen[w] = s->n_merges;
        RT_TRY(word_merge(s, w, a, b, c));
    }
    RT_ASSERT(s->pairs[pi].count == 0);
    free(s->pairs[pi].words);
    s->pairs[pi].words = NULL;
    s->pairs[pi].n_words = s->pairs[pi].cap_words = 0;
    for (int32_t k = 0; k < s->n_touched; k++) {
        int32_t idx = s->touched[k];
        if (s->pairs[idx].count > 0) RT_TRY(heap_push(s, s->pairs[idx].count, idx));
    }
    s->n_merges++;
    return RT_OK;
}

/* Pops the most frequent live pair (-1 when none is left). */
static rt_status best_pair(train_state *s, int32_t *out) {
    *out = -1;
    while (s->n_heap > 0) {
        heap_ent e = heap_pop(s);
        int64_t now = s->pairs[e.pair].count;
        if (now == e.count && now > 0) {
            *out = e.pair;
            return RT_OK;
        }
        if (now > 0) RT_TRY(heap_push(s, now, e.pair));
    }
    return RT_OK;
}

static rt_status learn_merges(train_state *s, int64_t target_tokens, int verbose) {
    int64_t goal = target_tokens - 256, next_report = goal / 10;
    while ((int64_t)s->tok_index.count < target_tokens) {
        int32_t pi;
        RT_TRY(best_pair(s, &pi));
        if (pi < 0) break;
        RT_TRY(apply_merge(s, pi));
        int64_t done = (int64_t)s->tok_index.count - 256;
        if (verbose && done >= next_report && done < goal) {
            fprintf(stderr, "bpe: merges %lld/%lld\n", (long long)done, (long long)goal);
            next_report += goal / 10 > 0 ? goal / 10 : 1;
        }
    }
    if (verbose)
        fprintf(stderr, "bpe: merges %lld/%lld%s\n", (long long)s->tok_index.count - 256,
                (long long)goal,
                (int64_t)s->tok_index.count < target_tokens ? " (no pairs left in the corpus)" : "");
    return RT_OK;
}

/* Turns the learned table into a tokenizer: ids 0..255 bytes, then the new
 * tokens in order of creation, then <|endoftext|>. */
static rt_status build_tokenizer(train_state *s, data_tokenizer **out) {
    *out = NULL;
    rt_status st = RT_OK;
    data_tokenizer *t = NULL;
    int32_t n_tok = (int32_t)s->tok_index.count;
    size_t eot_len = strlen(DATA_EOT_TEXT);
    size_t total = s->tok_index.arena_len + eot_len;
    char *bytes = malloc(total);
    int64_t *off = malloc(((size_t)n_tok + 2) * sizeof *off);
    if (!bytes || !off) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for a vocabulary of %d tokens", n_tok + 1);
        goto cleanup;
    }
    memcpy(bytes, s->tok_index.arena, s->tok_index.arena_len);
    memcpy(bytes + s->tok_index.arena_len, DATA_EOT_TEXT, eot_len);
    memcpy(off, s->tok_index.key_off, ((size_t)n_tok + 1) * sizeof *off);
    off[n_tok + 1] = (int64_t)total;
    st = data_tokenizer_from_tokens(n_tok + 1, bytes, off, n_tok, "trained vocabulary", &t);
    if (st != RT_OK) goto cleanup;
    for (int32_t m = 0; m < s->n_merges; m++) {
        int32_t result;
        st = data_tokenizer_add_merge(t, s->merges[2 * m], s->merges[2 * m + 1], &result);
        if (st != RT_OK) goto cleanup;
    }
    *out = t;
    t = NULL;
cleanup:
    data_tokenizer_destroy(t);
    free(bytes);
    free(off);
    return st;
}

rt_status data_bpe_trainer_finish(data_bpe_trainer *b, int64_t vocab_size, int verbose,
                                  data_tokenizer **out) {
    *out = NULL;
    if (vocab_size < DATA_MIN_VOCAB)
        return rt_fail(RT_ERR_ARGS,
                       "vocab size %lld is below the minimum %d (256 byte tokens + %s)",
                       (long long)vocab_size, DATA_MIN_VOCAB, DATA_EOT_TEXT);
    if (vocab_size > INT32_MAX)
        return rt_fail(RT_ERR_ARGS, "vocab size %lld is above the maximum %d",
                       (long long)vocab_size, INT32_MAX);
    train_state s;
    memset(&s, 0, sizeof s);
    rt_status st = data_u64map_init(&s.pair_index, 1 << 16);
    if (st == RT_OK) st = data_strmap_init(&s.tok_index, (size_t)vocab_size);
    for (int i = 0; st == RT_OK && i < 256; i++) {
        char byte = (char)i;
        int64_t id;
        st = data_strmap_insert(&s.tok_index, &byte, 1, &id, NULL);
    }
    if (st == RT_OK) st = load_words(&s, b);
    if (st == RT_OK) st = learn_merges(&s, vocab_size - 1, verbose);
    if (st == RT_OK) st = build_tokenizer(&s, out);
    train_state_free(&s);
    return st;
}

rt_status data_tokenizer_train(const char *text, size_t n, int64_t vocab_size, int verbose,
                               data_tokenizer **out) {
    *out = NULL;
    data_bpe_trainer *b = NULL;
    RT_TRY(data_bpe_trainer_create(&b));
    rt_status st = data_bpe_trainer_add(b, text, n);
    if (st == RT_OK) st = data_bpe_trainer_finish(b, vocab_size, verbose, out);
    data_bpe_trainer_destroy(b);
    return st;
}
