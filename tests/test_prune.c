/* Tests for pruning: the kernels of student/prune.c, the masks of
 * checkpoints/masks.c and `retort prune` end to end through the binary.
 *
 * What each result is compared against, independently of the code under
 * test:
 *   - counts and kept sets: brute force over the weights (sort-free: every
 *     kept |w| >= every pruned |w| in the same selection group);
 *   - wanda: a hand-built case where the input norms flip magnitude's
 *     choice, laid out so a row/column mix-up picks other weights;
 *   - ffn removal: the smaller model's logits against the ORIGINAL model's
 *     logits with the removed units' c_fc columns, c_fc bias entries and
 *     c_proj rows zeroed in place (same model code, different d_ff), within
 *     1e-5 absolute (float summation order differs with K = d_ff);
 *   - heads: the mask's zero pattern written out from the head layout; the
 *     model with heads removed against the ORIGINAL model with those heads'
 *     q/k/v columns, c_attn bias entries and c_proj rows zeroed, within
 *     1e-5 absolute, and removing none bit-identical;
 *   - masks: bit-exact round trip through a checkpoint file.
 * Models are tiny (d_model 16..32), so the suite takes a few seconds.
 * RT_PRUNE_BENCH=1 also runs the file-size and forward-speed measurement of
 * a 25% ffn-pruned model (shape from RT_PRUNE_BENCH_SHAPE="L,H,C,F,V,T"). */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "ckpt_masks.h"
#include "data.h"
#include "student.h"
#include "test_util.h"

/* ------------------------------------------------------------ helpers */

static char tmpdir[64];

static char *tpath(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) { return rt_splitmix64(&rng_state); }
static float rng_unif(void) { return rt_test_unif(rng_next()); }

static size_t count_zero_u8(const uint8_t *m, size_t n) {
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += m[i] == 0;
    return z;
}

static const student_config TINY = {.n_layer = 2, .n_head = 4, .d_model = 16, .d_ff = 32,
                                     .vocab_size = 61, .seq_len = 8};

/* A model of config c with GPT-2 init plus random biases and LayerNorm
 * weights, so that zeroing a bias or a unit really changes the output. */
static student_model *make_model(const student_config *c, int batch, int training,
                                 uint64_t seed) {
    student_model *m = NULL;
    CU_ASSERT_FATAL(student_create(c, batch, STUDENT_F32, training, &m) == RT_OK);
    student_init_weights(m, seed);
    float *P = student_params(m);
    for (int i = 0; i < student_tensor_count(c); i++) {
        student_tensor t;
        student_tensor_info(c, i, &t);
        if (t.ndim == 1)
            for (size_t k = 0; k < t.numel; k++) P[t.offset + k] += 0.1f * rng_unif();
    }
    return m;
}

static void save_model(const char *path, student_model *m, const char *config_text) {
    ckpt_contents cc = {.kind = "train", .step = 7, .tokens_seen = 1234,
                        .cfg = *student_cfg(m), .params = student_params(m),
                        .config_text = config_text,
                        .provenance_json = "{\"source\":\"test_prune\"}"};
    CU_ASSERT_FATAL(ckpt_save(path, &cc) == RT_OK);
}

static void random_tokens(int32_t *t, size_t n, int V) {
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)(rng_next() % (uint64_t)V);
}

/* Runs the retort binary with `args`; stdout and stderr go to files in
 * tmpdir. Returns the exit code. */
static int run_retort(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", RT_BINARY, args, tpath("stdout"),
             tpath("stderr"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    fclose(f);
    return s;
}

static int stderr_lines(void) {
    char *s = slurp(tpath("stderr"));
    int n = 0;
    for (char *p = s; *p; p++) n += *p == '\n';
    free(s);
    return n;
}

static float *read_params(const char *path, student_config *c, uint8_t **mask) {
    ckpt_reader *r = NULL;
    CU_ASSERT_FATAL(ckpt_open(path, &r) == RT_OK);
    *c = *ckpt_reader_config(r);
    float *p = rt_alloc_aligned(student_block_floats(c) * sizeof *p);
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_FATAL(ckpt_read_params(r, p) == RT_OK);
    if (mask) CU_ASSERT_FATAL(ckpt_masks_read(r, c, mask) == RT_OK);
    ckpt_reader_close(r);
    return p;
}

/* ------------------------------------------------------------ kernels */

static void test_counts(void) {
    const size_t ns[] = {1, 7, 10, 64, 1001};
    const double ss[] = {0.0, 0.1, 0.25, 0.5, 0.7, 0.99};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof ss / sizeof ss[0]; b++) {
            const size_t n = ns[a];
            float *w = malloc(n * sizeof *w);
            uint8_t *m = malloc(n);
            for (size_t i = 0; i < n; i++) w[i] = rng_unif();
            size_t pruned = 0;
            CU_ASSERT(student_prune_magnitude(w, n, ss[b], m, &pruned) == RT_OK);
            const size_t want = (size_t)floor(ss[b] * (double)n + 0.5);
            CU_ASSERT_EQUAL(pruned, want);
            CU_ASSERT_EQUAL(count_zero_u8(m, n), want);
            free(w);
            free(m);
        }
    /* "50% of 7" is 4 (round half up), of 10 is 5. */
    float w7[7] = {1, 2, 3, 4, 5, 6, 7};
    uint8_t m7[7];
    size_t p7 = 0;
    student_prune_magnitude(w7, 7, 0.5, m7, &p7);
    CU_ASSERT_EQUAL(p7, 4);
    CU_ASSERT(!m7[0] && !m7[1] && !m7[2] && !m7[3] && m7[4] && m7[5] && m7[6]);
}

static void test_magnitude_keeps_largest(void) {
    enum { N = 4096 };
    float *w = malloc(N * sizeof *w);
    uint8_t *m = malloc(N);
    for (int i = 0; i < N; i++) w[i] = rng_unif();
    w[10] = w[20] = w[30] = 0.0f; /* exact ties go by position */
    size_t pruned = 0;
    CU_ASSERT(student_prune_magnitude(w, N, 0.3, m, &pruned) == RT_OK);
    float max_pruned = 0.0f, min_kept = INFINITY;
    for (int i = 0; i < N; i++) {
        if (m[i]) min_kept = fminf(min_kept, fabsf(w[i]));
        else max_pruned = fmaxf(max_pruned, fabsf(w[i]));
    }
    printf("\n    magnitude: max pruned |w| %.6f < min kept |w| %.6f ", max_pruned, min_kept);
    CU_ASSERT(max_pruned <= min_kept);
    CU_ASSERT(!m[10] && !m[20] && !m[30]);
    /* Ties: of four equal weights, the first two in memory go. */
    float t[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    uint8_t tm[4];
    student_prune_magnitude(t, 4, 0.5, tm, &pruned);
    CU_ASSERT(!tm[0] && !tm[1] && tm[2] && tm[3]);
    free(w);
    free(m);
}

static void test_wanda_flip(void) {
    /* W is stored [in = 4, out = 2] (Conv1D): column j holds output j.
     * Column 0 = (1.0, 0.5, 2.0, 0.2), column 1 = (3.0, 0.01, 0.02, 4.0),
     * xnorm = (0.1, 10, 1, 1).
     *   magnitude per column would prune rows {3, 1} of column 0 and
     *   rows {1, 2} of column 1;
     *   wanda scores column 0 (0.1, 5, 2, 0.2) -> prune rows {0, 3};
     *   column 1 (0.3, 0.1, 0.02, 4) -> prune rows {1, 2}.
     * A version that sorted rows of the stored matrix (mixing outputs)
     * would prune 1 of the 2 entries of each stored row instead. */
    const float w[8] = {1.0f, 3.0f, 0.5f, 0.01f, 2.0f, 0.02f, 0.2f, 4.0f};
    const float xnorm[4] = {0.1f, 10.0f, 1.0f, 1.0f};
    uint8_t m[8];
    size_t pruned = 0;
    CU_ASSERT(student_prune_wanda(w, 4, 2, xnorm, 0.5, m, &pruned) == RT_OK);
    CU_ASSERT_EQUAL(pruned, 4);
    const uint8_t want[8] = {0, 1, 1, 0, 1, 0, 0, 1};
    CU_ASSERT(memcmp(m, want, 8) == 0);
    /* and magnitude per column really differs on column 0 */
    const float ones[4] = {1, 1, 1, 1};
    uint8_t mm[8];
    student_prune_wanda(w, 4, 2, ones, 0.5, mm, &pruned);
    const uint8_t want_mag[8] = {1, 1, 0, 0, 1, 0, 0, 1};
    CU_ASSERT(memcmp(mm, want_mag, 8) == 0);

    /* Larger random case: exactly round(s*in) per column, and within each
     * column every kept score >= every pruned score. */
    enum { IN = 48, OUT = 20 };
    float W[IN * OUT], xn[IN];
    uint8_t M[IN * OUT];
    for (int i = 0; i < IN * OUT; i++) W[i] = rng_unif();
    for (int i = 0; i < IN; i++) xn[i] = 0.01f + fabsf(rng_unif()) * (i % 5 == 0 ? 50.0f : 1.0f);
    CU_ASSERT(student_prune_wanda(W, IN, OUT, xn, 0.4, M, &pruned) == RT_OK);
    const int k = (int)floor(0.4 * IN + 0.5);
    CU_ASSERT_EQUAL(pruned, (size_t)k * OUT);
    for (int j = 0; j < OUT; j++) {
        int z = 0;
        float maxp = 0.0f, mink = INFINITY;
        for (int i = 0; i < IN; i++) {
            const float s = fabsf(W[i * OUT + j]) * xn[i];
            if (M[i * OUT + j]) mink = fminf(mink, s);
            else z++, maxp = fmaxf(maxp, s);
        }
        CU_ASSERT_EQUAL(z, k);
        CU_ASSERT(maxp <= mink);
    }
}

static void test_nm(void) {
    const int pat[][2] = {{2, 4}, {1, 4}, {3, 8}, {4, 8}};
    enum { IN = 32, OUT = 12 };
    float W[IN * OUT];
    uint8_t M[IN * OUT];
    for (int i = 0; i < IN * OUT; i++) W[i] = rng_unif();
    W[0 * OUT + 3] = W[1 * OUT + 3] = W[2 * OUT + 3] = W[3 * OUT + 3] = 0.25f; /* a tied group */
    for (size_t p = 0; p < sizeof pat / sizeof pat[0]; p++) {
        const int n = pat[p][0], m = pat[p][1];
        size_t pruned = 0;
        student_prune_nm(W, IN, OUT, n, m, M, &pruned);
        CU_ASSERT_EQUAL(pruned, (size_t)(IN / m) * (m - n) * OUT);
        CU_ASSERT_EQUAL(count_zero_u8(M, IN * OUT), pruned);
        int bad = 0;
        for (int j = 0; j < OUT; j++)
            for (int g = 0; g < IN; g += m) {
                int kept = 0;
                float mink = INFINITY, maxp = 0.0f;
                for (int t = 0; t < m; t++) {
                    const float a = fabsf(W[(g + t) * OUT + j]);
                    if (M[(g + t) * OUT + j]) kept++, mink = fminf(mink, a);
                    else maxp = fmaxf(maxp, a);
                }
                bad += kept != n || maxp > mink;
            }
        CU_ASSERT_EQUAL(bad, 0);
    }
    /* the tied group of column 3 under 2:4 prunes its first two rows */
    size_t pr;
    student_prune_nm(W, IN, OUT, 2, 4, M, &pr);
    CU_ASSERT(!M[0 * OUT + 3] && !M[1 * OUT + 3] && M[2 * OUT + 3] && M[3 * OUT + 3]);
}

static void test_heads_mask(void) {
    enum { C = 16, H = 4, HS = 4 };
    const uint8_t keep[H] = {1, 0, 1, 0};
    uint8_t qw[C * 3 * C], qb[3 * C], pw[C * C];
    student_head_masks(C, H, HS, keep, qw, qb, pw);
    int bad = 0;
    for (int j = 0; j < 3 * C; j++) {
        const int head = (j % C) / HS; /* q, k, v blocks of C columns each */
        bad += qb[j] != keep[head];
        for (int r = 0; r < C; r++) bad += qw[r * 3 * C + j] != keep[head];
    }
    for (int r = 0; r < C; r++)
        for (int c = 0; c < C; c++) bad += pw[r * C + c] != keep[r / HS];
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(count_zero_u8(qw, sizeof qw), (size_t)C * 3 * 2 * HS);
    CU_ASSERT_EQUAL(count_zero_u8(pw, sizeof pw), (size_t)2 * HS * C);

    /* scores: a head whose c_proj rows are zero scores 0 and goes first */
    const student_config c = {1, H, C, 32, 50, 8, 0, {0}};
    student_model *m = make_model(&c, 1, 0, 3);
    float *P = student_params(m);
    student_tensor tq, tp;
    student_tensor_info(&c, student_linear_tensor(&c, 0, STUDENT_LIN_QKV), &tq);
    student_tensor_info(&c, student_linear_tensor(&c, 0, STUDENT_LIN_ATTPROJ), &tp);
    memset(P + tp.offset + 2 * HS * C, 0, HS * C * sizeof(float));
    double score[H];
    uint8_t kh[H];
    student_head_scores(P + tq.offset, P + tp.offset, C, H, HS, NULL, score);
    CU_ASSERT_EQUAL(score[2], 0.0);
    CU_ASSERT(student_prune_lowest(score, H, 1, kh) == RT_OK);
    CU_ASSERT(kh[0] && kh[1] && !kh[2] && kh[3]);
    student_destroy(m);
}

/* The smaller model's logits equal the original's with the removed units
 * zeroed in place. */
static double ffn_compare(const student_config *c, const float *orig, const uint8_t *keep,
                          const student_config *c2, const float *small) {
    student_model *a = NULL, *b = NULL;
    enum { B = 2 };
    CU_ASSERT_FATAL(student_create(c, B, STUDENT_F32, 0, &a) == RT_OK);
    CU_ASSERT_FATAL(student_create(c2, B, STUDENT_F32, 0, &b) == RT_OK);
    float *pa = student_params(a);
    memcpy(pa, orig, student_block_floats(c) * sizeof *pa);
    memcpy(student_params(b), small, student_block_floats(c2) * sizeof(float));
    const int C = c->d_model, F = c->d_ff;
    for (int l = 0; l < c->n_layer; l++) {
        student_tensor tf, tb, tp;
        student_tensor_info(c, student_linear_tensor(c, l, STUDENT_LIN_FC), &tf);
        student_tensor_info(c, student_linear_tensor(c, l, STUDENT_LIN_FC) + 1, &tb);
        student_tensor_info(c, student_linear_tensor(c, l, STUDENT_LIN_FCPROJ), &tp);
        for (int u = 0; u < F; u++) {
            if (keep[l * F + u]) continue;
            for (int r = 0; r < C; r++) pa[tf.offset + (size_t)r * F + u] = 0.0f;
            pa[tb.offset + u] = 0.0f;
            for (int k = 0; k < C; k++) pa[tp.offset + (size_t)u * C + k] = 0.0f;
        }
    }
    int32_t tok[B * 64];
    random_tokens(tok, (size_t)B * c->seq_len, c->vocab_size);
    CU_ASSERT_FATAL(student_forward(a, tok, B) == RT_OK);
    CU_ASSERT_FATAL(student_forward(b, tok, B) == RT_OK);
    const float *la = student_logits(a), *lb = student_logits(b);
    double maxd = 0.0, maxv = 0.0;
    for (size_t i = 0; i < (size_t)B * c->seq_len * c->vocab_size; i++) {
        maxd = fmax(maxd, fabs((double)la[i] - lb[i]));
        maxv = fmax(maxv, fabs((double)la[i]));
    }
    printf("\n    ffn: max |logit diff| %.3g (max |logit| %.3g, tolerance 1e-5) ", maxd, maxv);
    student_destroy(a);
    student_destroy(b);
    return maxd;
}

static void test_ffn_shrink(void) {
    const student_config c = TINY;
    student_model *m = make_model(&c, 1, 0, 11);
    const float *P = student_params(m);
    const int F = c.d_ff, k = 8;
    uint8_t *keep = malloc((size_t)c.n_layer * F);
    double score[64];
    for (int l = 0; l < c.n_layer; l++) {
        student_tensor tf, tp;
        student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_FC), &tf);
        student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_FCPROJ), &tp);
        student_ffn_scores(P + tf.offset, P + tp.offset, c.d_model, F, NULL, score);
        CU_ASSERT(student_prune_lowest(score, F, k, keep + l * F) == RT_OK);
        CU_ASSERT_EQUAL(count_zero_u8(keep + l * F, F), (size_t)k);
    }
    student_config c2 = c;
    c2.d_ff = F - k;
    float *small = rt_alloc_aligned(student_block_floats(&c2) * sizeof *small);
    student_ffn_shrink(&c, P, keep, &c2, small);
    CU_ASSERT(ffn_compare(&c, P, keep, &c2, small) < 1e-5);
    /* and removing different units does change the logits (the check
     * above can fail) */
    uint8_t *other = malloc((size_t)c.n_layer * F);
    for (int l = 0; l < c.n_layer; l++) /* the first F - k units instead */
        for (int u = 0; u < F; u++) other[l * F + u] = u < F - k;
    float *small2 = rt_alloc_aligned(student_block_floats(&c2) * sizeof *small2);
    student_ffn_shrink(&c, P, other, &c2, small2);
    CU_ASSERT(ffn_compare(&c, P, keep, &c2, small2) > 1e-3);
    free(keep);
    free(other);
    rt_free_aligned(small);
    rt_free_aligned(small2);
    student_destroy(m);
}

static void test_linear_input(void) {
    /* ln_1 of block 0 with LayerNorm weight 1, bias 0 (GPT-2 init) is
     * (e - mean) / sqrt(var + 1e-5) of the embedding e = wte[tok] + wpe[t],
     * computed here in double from the parameters. */
    const student_config c = TINY;
    student_model *m = NULL;
    CU_ASSERT_FATAL(student_create(&c, 3, STUDENT_F32, 1, &m) == RT_OK);
    student_init_weights(m, 5);
    int32_t tok[3 * 8];
    random_tokens(tok, 24, c.vocab_size);
    int64_t rows = -1;
    CU_ASSERT(student_linear_input(m, 0, STUDENT_LIN_QKV, &rows) == NULL); /* no forward yet */
    CU_ASSERT_FATAL(student_forward(m, tok, 2) == RT_OK);
    const float *x = student_linear_input(m, 0, STUDENT_LIN_QKV, &rows);
    CU_ASSERT_FATAL(x != NULL);
    CU_ASSERT_EQUAL(rows, 2 * 8);
    const float *P = student_params(m);
    const int C = c.d_model;
    student_tensor wte, wpe;
    student_tensor_info(&c, 0, &wte);
    student_tensor_info(&c, 1, &wpe);
    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        double e[64], mu = 0, var = 0;
        for (int j = 0; j < C; j++) {
            e[j] = (double)P[wte.offset + (size_t)tok[r] * C + j] +
                   (double)P[wpe.offset + (size_t)(r % c.seq_len) * C + j];
            mu += e[j] / C;
        }
        for (int j = 0; j < C; j++) var += (e[j] - mu) * (e[j] - mu) / C;
        for (int j = 0; j < C; j++)
            worst = fmax(worst, fabs((e[j] - mu) / sqrt(var + 1e-5) - x[r * C + j]));
    }
    printf("\n    linear_input: max |ln_1 - reference| %.3g (tolerance 1e-4) ", worst);
    CU_ASSERT(worst < 1e-4);
    /* c_proj input of the MLP is gelu(c_fc(x)): F wide and >= -0.17 */
    const float *g = student_linear_input(m, 1, STUDENT_LIN_FCPROJ, &rows);
    CU_ASSERT_FATAL(g != NULL);
    float gmin = 0.0f;
    for (int64_t i = 0; i < rows * c.d_ff; i++) gmin = fminf(gmin, g[i]);
    CU_ASSERT(gmin > -0.171f);
    student_destroy(m);
    /* inference mode keeps no per-layer copies */
    CU_ASSERT_FATAL(student_create(&c, 1, STUDENT_F32, 0, &m) == RT_OK);
    CU_ASSERT_FATAL(student_forward(m, tok, 1) == RT_OK);
    CU_ASSERT(student_linear_input(m, 0, STUDENT_LIN_FC, &rows) == NULL);
    student_destroy(m);
}

/* -------------------------------------------------------------- masks */

static void test_masks_roundtrip(void) {
    const student_config c = TINY;
    const size_t nb = student_block_floats(&c);
    uint8_t *mask = rt_alloc_aligned(nb);
    memset(mask, 1, nb);
    /* random zeros in the targets; one target left dense on purpose */
    for (int i = 0; i < student_tensor_count(&c); i++) {
        int l = -1;
        const int w = student_prune_target(&c, i, &l);
        if (w < 0 || (l == 1 && w == STUDENT_LIN_FC)) continue;
        student_tensor t;
        student_tensor_info(&c, i, &t);
        for (size_t k = 0; k < t.numel; k++) mask[t.offset + k] = (rng_next() & 3) != 0;
    }
    student_model *m = make_model(&c, 1, 0, 2);
    ckpt_prune_meta meta = {.sparsity = 0.25, .achieved = 0.2498};
    snprintf(meta.method, sizeof meta.method, "magnitude");
    ckpt_masks_extras mx;
    CU_ASSERT_FATAL(ckpt_masks_extras_build(&c, mask, &meta, &mx) == RT_OK);
    CU_ASSERT_EQUAL(mx.n, 4 * c.n_layer - 1 + 3);
    ckpt_contents cc = {.kind = "train", .cfg = c, .params = student_params(m),
                        .extras = mx.arrays, .n_extras = mx.n};
    const char *path = tpath("masks.h5");
    CU_ASSERT_FATAL(ckpt_save(path, &cc) == RT_OK);
    ckpt_masks_extras_free(&mx);

    ckpt_reader *r = NULL;
    CU_ASSERT_FATAL(ckpt_open(path, &r) == RT_OK);
    uint8_t *back = NULL;
    CU_ASSERT_FATAL(ckpt_masks_read(r, &c, &back) == RT_OK);
    CU_ASSERT_FATAL(back != NULL);
    int diff = 0;
    for (int i = 0; i < student_tensor_count(&c); i++) {
        student_tensor t;
        student_tensor_info(&c, i, &t);
        diff += memcmp(back + t.offset, mask + t.offset, t.numel) != 0;
    }
    CU_ASSERT_EQUAL(diff, 0);
    ckpt_prune_meta mb;
    int found = 0;
    CU_ASSERT(ckpt_prune_meta_read(r, &mb, &found) == RT_OK);
    CU_ASSERT(found && strcmp(mb.method, "magnitude") == 0 && mb.sparsity == 0.25 &&
              mb.achieved == 0.2498);
    ckpt_reader_close(r);
    rt_free_aligned(back);

    /* applying the block zeroes exactly the masked entries */
    float *P = student_params(m);
    student_apply_mask(P, mask, nb);
    size_t bad = 0;
    for (size_t i = 0; i < nb; i++) bad += !mask[i] && P[i] != 0.0f;
    CU_ASSERT_EQUAL(bad, 0);

    /* a file without masks reads as NULL */
    const char *plain = tpath("plain.h5");
    save_model(plain, m, NULL);
    CU_ASSERT_FATAL(ckpt_open(plain, &r) == RT_OK);
    back = (uint8_t *)1;
    CU_ASSERT(ckpt_masks_read(r, &c, &back) == RT_OK);
    CU_ASSERT(back == NULL);
    CU_ASSERT(ckpt_prune_meta_read(r, &mb, &found) == RT_OK && !found);
    ckpt_reader_close(r);
    student_destroy(m);
    rt_free_aligned(mask);
}

/* -------------------------------------------------------- the command */

static const char *INI = "[model]\nn_layer = 2\nn_head = 4\nd_model = 16\nd_ff = 32\n"
                         "seq_len = 8\n\n[train]\nlr = 0.001\n";

/* Writes the tiny model and a calibration shard once. */
static void fixtures(void) {
    static int done;
    if (done) return;
    student_model *m = make_model(&TINY, 1, 0, 42);
    save_model(tpath("in.h5"), m, INI);
    student_destroy(m);
    enum { N = 4000 };
    int32_t *tok = malloc(N * sizeof *tok);
    random_tokens(tok, N, TINY.vocab_size);
    CU_ASSERT_FATAL(data_shard_write(tpath("calib.h5"), tok, N, TINY.vocab_size, "test") ==
                    RT_OK);
    free(tok);
    done = 1;
}

static json_t *run_json(const char *args) {
    char a[2048];
    snprintf(a, sizeof a, "%s --json", args);
    const int rc = run_retort(a);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) {
        char *e = slurp(tpath("stderr"));
        printf("\n    retort %s failed: %s", args, e);
        free(e);
        return NULL;
    }
    char *s = slurp(tpath("stdout"));
    json_error_t err;
    json_t *j = json_loads(s, 0, &err);
    CU_ASSERT(j != NULL);
    free(s);
    return j;
}

/* Every non-prunable tensor (except those `allow` names) is bit-identical
 * to the input's. */
static int untouched(const student_config *c, const float *a, const float *b, int allow_qkvb) {
    int bad = 0;
    for (int i = 0; i < student_tensor_count(c); i++) {
        if (student_prune_target(c, i, NULL) >= 0) continue;
        student_tensor t;
        student_tensor_info(c, i, &t);
        if (allow_qkvb && strstr(t.name, "c_attn.bias")) continue;
        bad += memcmp(a + t.offset, b + t.offset, t.numel * sizeof(float)) != 0;
    }
    return bad;
}

static void test_cmd_unstructured(void) {
    fixtures();
    student_config c, c2;
    float *in = read_params(tpath("in.h5"), &c, NULL);
    const char *methods[] = {"magnitude", "2:4", "wanda"};
    for (int k = 0; k < 3; k++) {
        char args[1024];
        snprintf(args, sizeof args, "prune --model %s --method %s --sparsity 0.3 --out %s%s%s",
                 tpath("in.h5"), methods[k], tpath("out.h5"), k == 2 ? " --calib " : "",
                 k == 2 ? tpath("calib.h5") : "");
        json_t *j = run_json(args);
        if (!j) continue;
        uint8_t *mask = NULL;
        float *out = read_params(tpath("out.h5"), &c2, &mask);
        CU_ASSERT_FATAL(mask != NULL);
        CU_ASSERT(memcmp(&c, &c2, sizeof c) == 0);
        CU_ASSERT_EQUAL(untouched(&c, in, out, 0), 0);
        /* exact counts per tensor, from the file */
        size_t pr = 0, tot = 0;
        int bad = 0;
        for (int l = 0; l < c.n_layer; l++)
            for (int w = 0; w < STUDENT_LIN_N; w++) {
                student_tensor t;
                student_tensor_info(&c, student_linear_tensor(&c, l, (student_linear)w), &t);
                const size_t z = count_zero_u8(mask + t.offset, t.numel);
                const int64_t rows = t.shape[0], cols = t.shape[1];
                size_t want = k == 0   ? (size_t)floor(0.3 * t.numel + 0.5)
                              : k == 1 ? t.numel / 2
                                       : (size_t)floor(0.3 * rows + 0.5) * (size_t)cols;
                bad += z != want;
                for (size_t e = 0; e < t.numel; e++) {
                    bad += !mask[t.offset + e] && out[t.offset + e] != 0.0f;
                    bad += mask[t.offset + e] && out[t.offset + e] != in[t.offset + e];
                }
                if (k == 1) /* 2:4: two of every four consecutive inputs, every output */
                    for (int64_t jj = 0; jj < cols; jj++)
                        for (int64_t g = 0; g < rows; g += 4) {
                            int kept = 0;
                            for (int64_t i = g; i < g + 4; i++) kept += mask[t.offset + i * cols + jj];
                            bad += kept != 2;
                        }
                if (k == 2) /* wanda: the count holds in every output column */
                    for (int64_t jj = 0; jj < cols; jj++) {
                        size_t zc = 0;
                        for (int64_t i = 0; i < rows; i++) zc += !mask[t.offset + i * cols + jj];
                        bad += zc != (size_t)floor(0.3 * rows + 0.5);
                    }
                pr += z, tot += t.numel;
            }
        CU_ASSERT_EQUAL(bad, 0);
        json_t *jp = json_object_get(j, "prunable");
        CU_ASSERT_EQUAL((size_t)json_integer_value(json_object_get(jp, "pruned")), pr);
        CU_ASSERT_EQUAL((size_t)json_integer_value(json_object_get(jp, "params")), tot);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "params_after")),
                        (json_int_t)student_param_count(&c));
        CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "layers")), (size_t)c.n_layer);
        /* the output loads through the one path every command uses */
        student_model *m = NULL;
        ckpt_reader *r = NULL;
        CU_ASSERT(ckpt_load_model(tpath("out.h5"), 1, STUDENT_F32, 0, &m, &r) == RT_OK);
        if (r) {
            CU_ASSERT_STRING_EQUAL(ckpt_reader_kind(r), "train");
            CU_ASSERT_EQUAL(ckpt_reader_step(r), 7);
            CU_ASSERT(!ckpt_has(r, "/optimizer"));
            char *cfg = NULL;
            CU_ASSERT(ckpt_read_string_attr(r, "/meta", "config", &cfg) == RT_OK);
            CU_ASSERT(cfg && strcmp(cfg, INI) == 0);
            free(cfg);
        }
        ckpt_reader_close(r);
        student_destroy(m);
        json_decref(j);
        free(out);
        rt_free_aligned(mask);
    }
    /* the text report runs too and names the total */
    char args[1024];
    snprintf(args, sizeof args, "prune --model %s --method magnitude --out %s", tpath("in.h5"),
             tpath("out.h5"));
    CU_ASSERT_EQUAL(run_retort(args), 0);
    char *s = slurp(tpath("stdout"));
    CU_ASSERT(strstr(s, "prunable weights") != NULL && strstr(s, "(layer)") != NULL);
    free(s);
    rt_free_aligned(in);
}

static void test_cmd_ffn(void) {
    fixtures();
    for (int calib = 0; calib < 2; calib++) {
        char args[1024];
        snprintf(args, sizeof args, "prune --model %s --method ffn --sparsity 0.25 --out %s%s%s",
                 tpath("in.h5"), tpath("ffn.h5"), calib ? " --calib " : "",
                 calib ? tpath("calib.h5") : "");
        json_t *j = run_json(args);
        if (!j) continue;
        student_config c, c2;
        float *in = read_params(tpath("in.h5"), &c, NULL);
        uint8_t *mask = NULL;
        float *out = read_params(tpath("ffn.h5"), &c2, &mask);
        CU_ASSERT(mask == NULL);
        CU_ASSERT_EQUAL(c2.d_ff, 24);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "d_ff_after")), 24);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "params_after")),
                        (json_int_t)student_param_count(&c2));
        /* which units survived, from the file */
        ckpt_reader *r = NULL;
        CU_ASSERT_FATAL(ckpt_open(tpath("ffn.h5"), &r) == RT_OK);
        int32_t kept[2 * 24];
        CU_ASSERT_FATAL(ckpt_read_array(r, "/prune/ffn_kept", CKPT_I32, 48, kept) == RT_OK);
        char *cfg = NULL;
        CU_ASSERT(ckpt_read_string_attr(r, "/meta", "config", &cfg) == RT_OK);
        CU_ASSERT(cfg && strstr(cfg, "d_ff = 24\n") && !strstr(cfg, "d_ff = 32"));
        free(cfg);
        ckpt_reader_close(r);
        uint8_t keep[2 * 32] = {0};
        for (int l = 0; l < 2; l++)
            for (int u = 0; u < 24; u++) keep[l * 32 + kept[l * 24 + u]] = 1;
        CU_ASSERT(ffn_compare(&c, in, keep, &c2, out) < 1e-5);
        /* and it loads and runs as a model of the new shape */
        student_model *m = NULL;
        CU_ASSERT(ckpt_load_model(tpath("ffn.h5"), 1, STUDENT_F32, 0, &m, NULL) == RT_OK);
        if (m) CU_ASSERT_EQUAL(student_cfg(m)->d_ff, 24);
        student_destroy(m);
        json_decref(j);
        rt_free_aligned(in);
        rt_free_aligned(out);
    }
}

/* Logits (B, T, V) of config c with parameter block p on fixed tokens;
 * the caller frees them. */
static float *logits_of(const student_config *c, const float *p, const int32_t *tok, int B) {
    student_model *m = NULL;
    CU_ASSERT_FATAL(student_create(c, B, STUDENT_F32, 0, &m) == RT_OK);
    memcpy(student_params(m), p, student_block_floats(c) * sizeof *p);
    CU_ASSERT_FATAL(student_forward(m, tok, B) == RT_OK);
    const size_t n = (size_t)B * c->seq_len * c->vocab_size;
    float *out = malloc(n * sizeof *out);
    CU_ASSERT_FATAL(out != NULL);
    memcpy(out, student_logits(m), n * sizeof *out);
    student_destroy(m);
    return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

/* The original parameters with the heads keep[] drops zeroed in place:
 * their q/k/v columns, c_attn bias entries and c_proj rows. */
static float *heads_masked(const student_config *c, const float *p, const uint8_t *keep) {
    const size_t nb = student_block_floats(c);
    float *q = rt_alloc_aligned(nb * sizeof *q);
    uint8_t *mask = malloc(nb);
    CU_ASSERT_FATAL(q && mask);
    memcpy(q, p, nb * sizeof *q);
    memset(mask, 1, nb);
    const int C = c->d_model, H = c->n_head;
    for (int l = 0; l < c->n_layer; l++) {
        student_tensor tq, tb, tp;
        student_tensor_info(c, student_linear_tensor(c, l, STUDENT_LIN_QKV), &tq);
        student_tensor_info(c, student_linear_tensor(c, l, STUDENT_LIN_QKV) + 1, &tb);
        student_tensor_info(c, student_linear_tensor(c, l, STUDENT_LIN_ATTPROJ), &tp);
        student_head_masks(C, H, student_head_dim(c), keep + (size_t)l * H, mask + tq.offset,
                           mask + tb.offset, mask + tp.offset);
    }
    student_apply_mask(q, mask, nb);
    free(mask);
    return q;
}

/* Removing heads computes what zeroing them computes (within 1e-5: the
 * matmuls sum over fewer terms); removing other heads does not; removing
 * none is bit-identical. */
static void test_heads_shrink(void) {
    enum { B = 2 };
    student_model *m = make_model(&TINY, 1, 0, 11);
    const float *P = student_params(m);
    const int L = TINY.n_layer, H = TINY.n_head;
    int32_t tok[B * 8];
    random_tokens(tok, B * 8, TINY.vocab_size);
    const size_t nl = (size_t)B * TINY.seq_len * TINY.vocab_size;
    const uint8_t keep[2 * 4] = {1, 0, 0, 1, 0, 1, 1, 0}, other[2 * 4] = {0, 1, 1, 0, 1, 0, 0, 1};
    student_config c2 = TINY;
    c2.n_head = 2, c2.d_head = student_head_dim(&TINY);
    CU_ASSERT_EQUAL(student_attn_width(&c2), 8);
    float *small = rt_alloc_aligned(student_block_floats(&c2) * sizeof *small);
    float *small2 = rt_alloc_aligned(student_block_floats(&c2) * sizeof *small2);
    student_heads_shrink(&TINY, P, keep, &c2, small);
    student_heads_shrink(&TINY, P, other, &c2, small2);
    float *ref_p = heads_masked(&TINY, P, keep);
    float *ref = logits_of(&TINY, ref_p, tok, B), *got = logits_of(&c2, small, tok, B);
    float *ctl = logits_of(&c2, small2, tok, B);
    const double d = max_abs_diff(ref, got, nl), dc = max_abs_diff(ref, ctl, nl);
    printf("\n    heads removed vs masked: max |diff| %.3g (tol 1e-5); other heads: %.3g ", d, dc);
    CU_ASSERT(d < 1e-5);
    CU_ASSERT(dc > 1e-3);
    /* the smaller tensors hold exactly the kept columns and rows */
    student_tensor t;
    student_tensor_info(&c2, student_linear_tensor(&c2, 0, STUDENT_LIN_QKV), &t);
    CU_ASSERT(t.shape[0] == 16 && t.shape[1] == 24);
    student_tensor_info(&c2, student_linear_tensor(&c2, 0, STUDENT_LIN_ATTPROJ), &t);
    CU_ASSERT(t.shape[0] == 8 && t.shape[1] == 16);

    /* removing no head: the same block, bit-identical logits */
    uint8_t all[2 * 4];
    memset(all, 1, sizeof all);
    float *same = rt_alloc_aligned(student_block_floats(&TINY) * sizeof *same);
    student_heads_shrink(&TINY, P, all, &TINY, same);
    float *orig = logits_of(&TINY, P, tok, B), *zero = logits_of(&TINY, same, tok, B);
    CU_ASSERT(memcmp(orig, zero, nl * sizeof *orig) == 0);
    /* an explicit d_head equal to d_model / n_head is the same model */
    student_config c3 = TINY;
    c3.d_head = 4;
    float *expl = logits_of(&c3, P, tok, B);
    CU_ASSERT(memcmp(orig, expl, nl * sizeof *orig) == 0);
    (void)L, (void)H;
    free(ref), free(got), free(ctl), free(orig), free(zero), free(expl);
    rt_free_aligned(ref_p), rt_free_aligned(small), rt_free_aligned(small2), rt_free_aligned(same);
    student_destroy(m);
}

static void test_cmd_heads(void) {
    fixtures();
    char args[1024];
    snprintf(args, sizeof args, "prune --model %s --method heads --sparsity 0.5 --out %s",
             tpath("in.h5"), tpath("heads.h5"));
    json_t *j = run_json(args);
    if (!j) return;
    student_config c, c2;
    float *in = read_params(tpath("in.h5"), &c, NULL);
    uint8_t *mask = NULL;
    float *out = read_params(tpath("heads.h5"), &c2, &mask);
    CU_ASSERT(mask == NULL); /* removed, not masked */
    CU_ASSERT_EQUAL(c2.n_head, 2);
    CU_ASSERT_EQUAL(c2.d_head, 4);
    CU_ASSERT_EQUAL(student_attn_width(&c2), 8);
    CU_ASSERT(c2.d_model == c.d_model && c2.d_ff == c.d_ff && c2.n_layer == c.n_layer);
    ckpt_reader *r = NULL;
    CU_ASSERT_FATAL(ckpt_open(tpath("heads.h5"), &r) == RT_OK);
    uint8_t hk[2 * 4];
    CU_ASSERT_FATAL(ckpt_read_array(r, "/prune/heads_kept", CKPT_U8, 8, hk) == RT_OK);
    ckpt_reader_close(r);
    int bad = 0;
    for (int l = 0; l < 2; l++) bad += count_zero_u8(hk + l * 4, 4) != 2;
    CU_ASSERT_EQUAL(bad, 0);
    /* the file's weights are the original's kept heads, all else untouched */
    float *want = rt_alloc_aligned(student_block_floats(&c2) * sizeof *want);
    student_heads_shrink(&c, in, hk, &c2, want);
    CU_ASSERT(memcmp(want, out, student_block_floats(&c2) * sizeof *out) == 0);
    for (int l = 0; l < 2; l++) {
        student_tensor tf, tf2;
        student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_FC), &tf);
        student_tensor_info(&c2, student_linear_tensor(&c2, l, STUDENT_LIN_FC), &tf2);
        CU_ASSERT(memcmp(out + tf2.offset, in + tf.offset, tf.numel * sizeof(float)) == 0);
    }
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "structured")), "removed");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "n_head_after")), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "params_after")),
                    (json_int_t)student_param_count(&c2));
    json_decref(j);

    /* it loads and trains: backward runs, a few AdamW steps lower the loss */
    student_model *m = NULL;
    CU_ASSERT_FATAL(ckpt_load_model(tpath("heads.h5"), 2, STUDENT_F32, 1, &m, NULL) == RT_OK);
    CU_ASSERT_EQUAL(student_cfg(m)->n_head, 2);
    enum { B = 2, T = 8 };
    int32_t tok[B * (T + 1)], x[B * T], y[B * T];
    random_tokens(tok, sizeof tok / sizeof tok[0], c.vocab_size);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) x[b * T + t] = tok[b * (T + 1) + t], y[b * T + t] = tok[b * (T + 1) + t + 1];
    double first = 0.0, last = 0.0;
    for (int step = 1; step <= 8; step++) {
        CU_ASSERT_FATAL(student_forward(m, x, B) == RT_OK);
        const double loss = student_loss_ce(student_logits(m), y, B * T, c.vocab_size,
                                            student_dlogits(m), 1.0f / (B * T)) / (B * T);
        if (step == 1) first = loss;
        last = loss;
        student_zero_grad(m);
        CU_ASSERT_FATAL(student_backward(m, B) == RT_OK);
        student_adamw_step(m, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, step);
    }
    printf("\n    pruned model trains: loss %.4f -> %.4f ", first, last);
    CU_ASSERT(last < first - 0.05);
    student_destroy(m);

    /* exports as f32 and int8 deploy files that eval reads */
    const char *fmt[2] = {"", " --int8 --calib %s"};
    for (int k = 0; k < 2; k++) {
        char extra[512], dep[64];
        snprintf(extra, sizeof extra, fmt[k], tpath("calib.h5"));
        snprintf(dep, sizeof dep, "heads.%s.h5", k ? "int8" : "f32");
        snprintf(args, sizeof args, "export --model %s --format deploy%s --out %s",
                 tpath("heads.h5"), extra, tpath(dep));
        CU_ASSERT_EQUAL(run_retort(args), 0);
        snprintf(args, sizeof args, "eval --model %s --data %s --json", tpath(dep),
                 tpath("calib.h5"));
        CU_ASSERT_EQUAL(run_retort(args), 0);
        char *so = slurp(tpath("stdout"));
        json_error_t err;
        json_t *e = json_loads(so, 0, &err);
        CU_ASSERT(e != NULL);
        if (!e) printf("\n    eval of %s: %s", dep, so);
        json_decref(e);
        free(so);
        student_model *d = NULL;
        CU_ASSERT(ckpt_load_model(tpath(dep), 1, STUDENT_F32, 0, &d, NULL) == RT_OK);
        if (d) CU_ASSERT(student_attn_width(student_cfg(d)) == 8);
        student_destroy(d);
    }

    /* retort info shows the smaller shape */
    snprintf(args, sizeof args, "info %s", tpath("heads.f32.h5"));
    CU_ASSERT_EQUAL(run_retort(args), 0);
    char *info = slurp(tpath("stdout"));
    CU_ASSERT(strstr(info, "n_head=2 d_model=16") != NULL);
    CU_ASSERT(strstr(info, "d_head=4 width=8") != NULL);
    free(info);
    snprintf(args, sizeof args, "info %s --json", tpath("heads.h5"));
    CU_ASSERT_EQUAL(run_retort(args), 0);
    info = slurp(tpath("stdout"));
    json_error_t err;
    json_t *ji = json_loads(info, 0, &err);
    json_t *jm = ji ? json_object_get(ji, "model") : NULL;
    CU_ASSERT(jm && json_integer_value(json_object_get(jm, "n_head")) == 2 &&
              json_integer_value(json_object_get(jm, "d_head")) == 4);
    json_decref(ji);
    free(info);

    /* --sparsity 0 removes nothing: bit-identical logits, no d_head written */
    snprintf(args, sizeof args, "prune --model %s --method heads --sparsity 0 --out %s",
             tpath("in.h5"), tpath("heads0.h5"));
    j = run_json(args);
    json_decref(j);
    student_config c0;
    float *p0 = read_params(tpath("heads0.h5"), &c0, NULL);
    CU_ASSERT(c0.n_head == 4 && c0.d_head == 0);
    int32_t t2[2 * 8];
    random_tokens(t2, 16, c.vocab_size);
    float *la = logits_of(&c, in, t2, 2), *lb = logits_of(&c0, p0, t2, 2);
    CU_ASSERT(memcmp(la, lb, (size_t)2 * 8 * c.vocab_size * sizeof *la) == 0);
    free(la), free(lb);
    rt_free_aligned(p0);
    rt_free_aligned(want);
    rt_free_aligned(in);
    rt_free_aligned(out);
    rt_free_aligned(mask);
}

static void test_cmd_errors(void) {
    fixtures();
    struct {
        const char *args;
        int code; /* -1: any non-zero */
        const char *text;
    } cases[] = {
        {"prune --model %s/missing.h5 --method magnitude --out %s/e.h5", 1, "missing.h5"},
        {"prune --model %s/in.h5 --method wanda --out %s/e.h5", 2, "--calib"},
        {"prune --model %s/in.h5 --method lottery --out %s/e.h5", 2, "lottery"},
        {"prune --model %s/in.h5 --method magnitude --sparsity 1.5 --out %s/e.h5", 2,
         "--sparsity"},
        {"prune --model %s/in.h5 --method magnitude --sparsity -0.1 --out %s/e.h5", 2,
         "--sparsity"},
        {"prune --model %s/in.h5 --method 3:5 --out %s/e.h5", 2, "not a multiple"},
        {"prune --model %s/calib.h5 --method magnitude --out %s/e.h5", 1, "calib.h5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024];
        snprintf(args, sizeof args, cases[i].args, tmpdir, tmpdir);
        const int rc = run_retort(args);
        char *e = slurp(tpath("stderr"));
        const int lines = stderr_lines();
        if (rc != cases[i].code || lines != 1 || !strstr(e, cases[i].text))
            printf("\n    case %zu: exit %d (want %d), %d stderr lines: %s", i, rc,
                   cases[i].code, lines, e);
        CU_ASSERT_EQUAL(rc, cases[i].code);
        CU_ASSERT_EQUAL(lines, 1);
        CU_ASSERT(strstr(e, cases[i].text) != NULL);
        CU_ASSERT(access(tpath("e.h5"), F_OK) != 0);
        free(e);
    }
}

/* ------------------------------------------------------------- bench */

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best forward time of each of two checkpoints, timed alternately so that
 * load from other processes on a shared machine hits both alike: wall
 * seconds into ta/tb and process CPU seconds into ca/cb (what the forward
 * costs even when the machine is busy and the process waits for a core). */
static void time_forwards(const char *pa, const char *pb, int B, int reps, double *ta,
                          double *tb, double *ca, double *cb) {
    student_model *m[2] = {NULL, NULL};
    CU_ASSERT_FATAL(ckpt_load_model(pa, B, STUDENT_F32, 0, &m[0], NULL) == RT_OK);
    CU_ASSERT_FATAL(ckpt_load_model(pb, B, STUDENT_F32, 0, &m[1], NULL) == RT_OK);
    const student_config *c = student_cfg(m[0]);
    int32_t *tok = malloc((size_t)B * c->seq_len * sizeof *tok);
    random_tokens(tok, (size_t)B * c->seq_len, c->vocab_size);
    double best[2] = {INFINITY, INFINITY}, cbest[2] = {INFINITY, INFINITY};
    for (int r = -2; r < reps; r++) /* two warm-up rounds: plans, page faults */
        for (int k = 0; k < 2; k++) {
            const double t0 = omp_get_wtime(), c0 = cpu_seconds();
            CU_ASSERT(student_forward(m[k], tok, B) == RT_OK);
            if (r >= 0) best[k] = fmin(best[k], omp_get_wtime() - t0);
            if (r >= 0) cbest[k] = fmin(cbest[k], cpu_seconds() - c0);
        }
    *ta = best[0], *tb = best[1], *ca = cbest[0], *cb = cbest[1];
    free(tok);
    student_destroy(m[0]);
    student_destroy(m[1]);
}

static void test_bench(void) {
    student_config c = {4, 4, 256, 1024, 8192, 256, 0, {0}};
    const char *shape = getenv("RT_PRUNE_BENCH_SHAPE");
    if (shape)
        sscanf(shape, "%d,%d,%d,%d,%d,%d", &c.n_layer, &c.n_head, &c.d_model, &c.d_ff,
               &c.vocab_size, &c.seq_len);
    const char *model = getenv("RT_PRUNE_BENCH_MODEL"); /* a trained checkpoint, if any */
    char in[512];
    if (model) {
        snprintf(in, sizeof in, "%s", model);
    } else {
        student_model *m = make_model(&c, 1, 0, 1);
        snprintf(in, sizeof in, "%s", tpath("bench_in.h5"));
        save_model(in, m, NULL);
        student_destroy(m);
    }
    char args[1024];
    snprintf(args, sizeof args, "prune --model %s --method ffn --sparsity 0.25 --out %s", in,
             tpath("bench_ffn.h5"));
    CU_ASSERT_FATAL(run_retort(args) == 0);
    struct stat sa, sb;
    stat(in, &sa);
    stat(tpath("bench_ffn.h5"), &sb);
    const int B = 4, reps = 30;
    double ta, tb, ca, cb;
    time_forwards(in, tpath("bench_ffn.h5"), B, reps, &ta, &tb, &ca, &cb);
    printf("\n    bench (%s, %d threads, forward B=%d, best of %d): wall original %.2f ms, "
           "ffn-25%% %.2f ms, ratio %.3fx; CPU original %.2f ms, ffn-25%% %.2f ms, ratio "
           "%.3fx; file %lld -> %lld bytes (%.3f)\n",
           model ? model : "random GPT-2 init", omp_get_max_threads(), B, reps, ta * 1e3,
           tb * 1e3, ta / tb, ca * 1e3, cb * 1e3, ca / cb, (long long)sa.st_size,
           (long long)sb.st_size, (double)sb.st_size / (double)sa.st_size);
}

/* --------------------------------------------------------------- main */

/* The cubic schedule of Zhu & Gupta against values worked out by hand:
 * final 0.5, start 10, end 40, every 10 updates at 10, 20, 30, 40 with
 * 0.5 * (1 - (1 - k/3)^3) = 0, 19/54, 13/27, 1/2; between updates the last
 * value holds; before start 0, after end the final value. every = 7 does
 * not divide 30: updates at 10, 17, 24, 31, 38 and 40. */
static void test_gradual_schedule(void) {
    const struct {
        int64_t step;
        double s;
        int due;
    } want[] = {{0, 0.0, 0},          {9, 0.0, 0},          {10, 0.0, 1},
                {11, 0.0, 0},         {19, 0.0, 0},         {20, 19.0 / 54.0, 1},
                {29, 19.0 / 54.0, 0}, {30, 13.0 / 27.0, 1}, {39, 13.0 / 27.0, 0},
                {40, 0.5, 1},         {41, 0.5, 0},         {1000, 0.5, 0}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const double s = student_prune_gradual_sparsity(0.5, 10, 40, 10, want[i].step);
        CU_ASSERT(fabs(s - want[i].s) <= 1e-14);
        CU_ASSERT_EQUAL(student_prune_gradual_due(10, 40, 10, want[i].step), want[i].due);
    }
    int due[64] = {0};
    for (int64_t t = 0; t < 64; t++) due[t] = student_prune_gradual_due(10, 40, 7, t);
    for (int64_t t = 0; t < 64; t++)
        CU_ASSERT_EQUAL(due[t], t == 10 || t == 17 || t == 24 || t == 31 || t == 38 || t == 40);
    /* at 31: r = 1 - 21/30 = 0.3, s = 0.8 * (1 - 0.027) */
    CU_ASSERT(fabs(student_prune_gradual_sparsity(0.8, 10, 40, 7, 33) - 0.8 * 0.973) <= 1e-12);
    /* monotone non-decreasing, so magnitude masks only grow */
    double prev = 0.0;
    for (int64_t t = 0; t < 64; t++) {
        const double s = student_prune_gradual_sparsity(0.9, 3, 50, 4, t);
        CU_ASSERT(s >= prev && s <= 0.9);
        prev = s;
    }
}

/* Block magnitude masks: exactly round(s * numel) of every prunable
 * tensor, nothing elsewhere, and the same mask student_prune_magnitude
 * gives for that tensor alone. */
static void test_magnitude_block(void) {
    student_model *m = make_model(&TINY, 1, 0, 5);
    const size_t n = student_block_size(m);
    uint8_t *mask = malloc(n), *one = malloc(n);
    size_t pruned = 0, prunable = 0, want_p = 0, want_n = 0;
    CU_ASSERT_FATAL(student_prune_magnitude_block(&TINY, student_params(m), 0.3, mask, &pruned,
                                                  &prunable) == RT_OK);
    size_t outside = 0;
    int same = 1;
    for (int i = 0; i < student_tensor_count(&TINY); i++) {
        student_tensor t;
        student_tensor_info(&TINY, i, &t);
        if (student_prune_target(&TINY, i, NULL) < 0) {
            outside += count_zero_u8(mask + t.offset, t.numel);
            continue;
        }
        size_t k = 0;
        CU_ASSERT(student_prune_magnitude(student_params(m) + t.offset, t.numel, 0.3, one, &k) ==
                  RT_OK);
        same &= memcmp(one, mask + t.offset, t.numel) == 0;
        CU_ASSERT_EQUAL(count_zero_u8(mask + t.offset, t.numel),
                        (size_t)floor(0.3 * (double)t.numel + 0.5));
        want_p += k;
        want_n += t.numel;
    }
    CU_ASSERT(same);
    CU_ASSERT_EQUAL(outside, 0);
    CU_ASSERT_EQUAL(count_zero_u8(mask, n), pruned);
    CU_ASSERT(pruned == want_p && prunable == want_n && prunable > 0);
    free(mask);
    free(one);
    student_destroy(m);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rt_test_prune_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    static const rt_test_case tests[] = {
        {"counts", test_counts},
        {"magnitude_keeps_largest", test_magnitude_keeps_largest},
        {"wanda_flip", test_wanda_flip},
        {"nm", test_nm},
        {"heads_mask", test_heads_mask},
        {"heads_shrink", test_heads_shrink},
        {"ffn_shrink", test_ffn_shrink},
        {"linear_input", test_linear_input},
        {"masks_roundtrip", test_masks_roundtrip},
        {"gradual_schedule", test_gradual_schedule},
        {"magnitude_block", test_magnitude_block},
        {"cmd_unstructured", test_cmd_unstructured},
        {"cmd_ffn", test_cmd_ffn},
        {"cmd_heads", test_cmd_heads},
        {"cmd_errors", test_cmd_errors},
    };
    CU_pSuite s = rt_test_suite("prune", NULL, NULL, tests, sizeof tests / sizeof tests[0], "RT_PRUNE_ONLY");
    if (!s) return 1;
    const char *b = getenv("RT_PRUNE_BENCH");
    if (b && b[0] == '1' && !CU_add_test(s, "bench", test_bench)) return 1;
    const int rc = rt_test_finish();
    rt_test_rm_rf(tmpdir);
    return rc;
}
