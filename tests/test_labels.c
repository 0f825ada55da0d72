/* Hidden-state soft labels (distill.labels = hidden), end to end below the
 * trainer: the teacher's encoding (student_hidden_encode), the record that
 * carries it (comm/record.c, format version 2) and the student's rebuild of
 * the teacher's logits (student_hidden_head_logits), against
 *   - a PyTorch fixture (tests/fixtures/gen_hidden_fixture.py): int8 codes
 *     and scales exactly, rebuilt logits and log-probabilities at T within
 *     stated tolerances, int8 and bf16;
 *   - the closed-form bound of int8 quantization on a real teacher forward:
 *     every rebuilt logit within (s/2) sum_c |wte[v][c]| of the teacher's
 *     own logit (s the position's scale), plus float rounding;
 *   - refusals: a record of another hidden width or encoding than the
 *     receiver expects, a forged row count (refused before anything is
 *     sized from it), non-finite states or scales. */
#define _GNU_SOURCE /* nftw in test_util.h */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "student.h"
#include "teacher.h"
#include "test_util.h"

/* ------------------------------------------------------------ fixture */

static struct {
    int N, C, V;
    float T;
    char name[32][32], dtype[32][4];
    size_t count[32], offset[32];
    int n;
    unsigned char *blob;
    size_t size;
} fx;

static int fx_load(void) {
    char path[1024], line[256];
    snprintf(path, sizeof path, "%s/hidden_fixture.txt", RT_FIXTURES_DIR);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f) && fx.n < 32) {
        if (sscanf(line, "hidden %d %d %d %f", &fx.N, &fx.C, &fx.V, &fx.T) == 4) continue;
        if (sscanf(line, "%31s %3s %zu %zu", fx.name[fx.n], fx.dtype[fx.n], &fx.count[fx.n],
                   &fx.offset[fx.n]) == 4)
            fx.n++;
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/hidden_fixture.bin", RT_FIXTURES_DIR);
    f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    fx.size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    fx.blob = malloc(fx.size);
    const size_t got = fx.blob ? fread(fx.blob, 1, fx.size, f) : 0;
    fclose(f);
    return got == fx.size && fx.N > 0 ? 0 : -1;
}

/* The array `name` of `count` entries; aborts when the fixture and this
 * file are out of sync (a bug, not a test failure). */
static const void *fx_get(const char *name, const char *dtype, size_t count) {
    for (int i = 0; i < fx.n; i++)
        if (strcmp(fx.name[i], name) == 0) {
            const size_t es = strcmp(dtype, "f64") == 0 ? 8 : 4;
            if (strcmp(fx.dtype[i], dtype) != 0 || fx.count[i] != count ||
                fx.offset[i] + count * es > fx.size)
                break;
            return fx.blob + fx.offset[i];
        }
    fprintf(stderr, "hidden_fixture lacks %s (%s x %zu): regenerate it\n", name, dtype, count);
    abort();
}

/* int8 and bf16: the encoding and the rebuilt logits and log-probs. */
static void test_hidden_vs_torch(void) {
    const int N = fx.N, C = fx.C, V = fx.V;
    const float *h = fx_get("hid_h", "f32", (size_t)N * C);
    const float *wte = fx_get("hid_wte", "f32", (size_t)V * C);
    const float *s_ref = fx_get("hid_scale", "f32", (size_t)N);
    const float *q_ref = fx_get("hid_q", "f32", (size_t)N * C);
    student_hidden_head *head = NULL;
    CU_ASSERT_EQUAL_FATAL(student_hidden_head_create(wte, V, C, &head), RT_OK);
    student_loss_ws *ws = NULL;
    CU_ASSERT_EQUAL_FATAL(student_loss_ws_create(V, &ws), RT_OK);
    int8_t *q = malloc((size_t)N * C);
    uint16_t *hb = malloc((size_t)N * C * sizeof *hb);
    float *s = malloc((size_t)N * sizeof *s), *z = malloc((size_t)N * V * sizeof *z);
    float *lp = malloc((size_t)N * V * sizeof *lp), *tail = malloc((size_t)N * sizeof *tail);

    /* the codes and scales are float32 arithmetic on both sides: exact */
    student_hidden_encode(h, N, C, 0, q, s);
    int code_diff = 0;
    for (int i = 0; i < N; i++) code_diff += s[i] != s_ref[i];
    for (size_t j = 0; j < (size_t)N * C; j++) code_diff += (float)q[j] != q_ref[j];
    printf("\n    int8 codes and scales vs torch: %d differ (tol 0)", code_diff);
    CU_ASSERT_EQUAL(code_diff, 0);
    student_hidden_encode(h, N, C, 1, hb, NULL);

    for (int bf = 0; bf < 2; bf++) {
        const double *zr = fx_get(bf ? "hid_logits_bf16" : "hid_logits_int8", "f64", (size_t)N * V);
        const double *lr = fx_get(bf ? "hid_logp_bf16" : "hid_logp_int8", "f64", (size_t)N * V);
        CU_ASSERT_EQUAL_FATAL(student_hidden_head_logits(head, bf ? (const void *)hb : q, bf,
                                                         bf ? NULL : s, N, z),
                              RT_OK);
        /* f32 sums of C = 24 products: relative 1e-5 of the row's largest
         * logit */
        double worst_z = 0.0, worst_lp = 0.0;
        int bad = 0;
        for (int i = 0; i < N; i++) {
            double mx = 0.0;
            for (int v = 0; v < V; v++) mx = fmax(mx, fabs(zr[(size_t)i * V + v]));
            for (int v = 0; v < V; v++) {
                const double d = fabs(z[(size_t)i * V + v] - zr[(size_t)i * V + v]);
                worst_z = fmax(worst_z, d / (1e-5 * mx + 1e-6));
                bad += d > 1e-5 * mx + 1e-6;
            }
        }
        CU_ASSERT_EQUAL_FATAL(student_teacher_topk(ws, z, N, V, fx.T, V, NULL, lp, tail), RT_OK);
        for (size_t j = 0; j < (size_t)N * V; j++) {
            const double d = fabs(lp[j] - lr[j]);
            worst_lp = fmax(worst_lp, d / (1e-5 * (1.0 + fabs(lr[j]))));
            bad += d > 1e-5 * (1.0 + fabs(lr[j]));
        }
        printf("\n    %s: rebuilt logits vs torch: max |diff| / (1e-5 max|z| + 1e-6) %.3f; log-probs "
               "at T=%g: max |diff| / (1e-5 (1 + |lp|)) %.3f; %d entries beyond",
               bf ? "bf16" : "int8", worst_z, (double)fx.T, worst_lp, bad);
        CU_ASSERT_EQUAL(bad, 0);
    }
    /* the zero row (scale 0) rebuilds to zero logits, not NaN */
    CU_ASSERT_EQUAL(s[N - 1], 0.0f);
    student_hidden_head_logits(head, q, 0, s, N, z);
    for (int v = 0; v < V; v++) CU_ASSERT_EQUAL(z[(size_t)(N - 1) * V + v], 0.0f);
    student_hidden_head_free(head);
    student_hidden_head_free(NULL);
    student_loss_ws_free(ws);
    free(q), free(hb), free(s), free(z), free(lp), free(tail);
}

/* A real teacher forward (random GPT-2 init, f32): the int8 hidden states
 * it sends rebuild its own logits within the closed-form bound. */
static void test_hidden_bound_on_teacher(void) {
    const student_config mc = {.n_layer = 2, .n_head = 2, .d_model = 48, .d_ff = 96,
                               .vocab_size = 200, .seq_len = 16};
    const int B = 3, T = mc.seq_len, C = mc.d_model, V = mc.vocab_size, n = B * T;
    /* the teacher's model, and a twin with the same weights whose own
     * forward gives the logits the teacher computed */
    student_model *m = NULL, *twin = NULL;
    CU_ASSERT_EQUAL_FATAL(student_create(&mc, B, STUDENT_F32, 0, &m), RT_OK);
    CU_ASSERT_EQUAL_FATAL(student_create(&mc, B, STUDENT_F32, 0, &twin), RT_OK);
    student_tensor wt;
    student_tensor_info(&mc, 0, &wt);
    student_model *both[2] = {m, twin};
    for (int i = 0; i < 2; i++) {
        student_init_weights(both[i], 11);
        /* GPT-2's init gives near-uniform logits; wider ones make the test bite */
        float *P = student_params(both[i]);
        for (size_t j = 0; j < wt.numel; j++) P[wt.offset + j] *= 40.0f;
    }
    teacher_config tc = {.batch = B, .temperature = 2.0f, .labels = TEACHER_LABELS_HIDDEN};
    teacher *t = NULL;
    CU_ASSERT_EQUAL_FATAL(teacher_create_with(&tc, m, &t), RT_OK);
    CU_ASSERT_EQUAL(teacher_label_width(teacher_cfg(t)), 0);
    int32_t *in = malloc((size_t)n * sizeof *in);
    for (int i = 0; i < n; i++) in[i] = (i * 37 + 5) % V;
    int8_t *q = malloc((size_t)n * C);
    float *s = malloc((size_t)n * sizeof *s), *z = malloc((size_t)n * V * sizeof *z);
    const teacher_out out = {.hstate = q, .hscale = s};
    CU_ASSERT_EQUAL_FATAL(teacher_run(t, in, B, 1, 0, NULL, &out), RT_OK);
    CU_ASSERT_EQUAL_FATAL(student_forward(twin, in, B), RT_OK);
    const float *wte = teacher_params(t) + wt.offset, *zt = student_logits(twin);
    student_hidden_head *head = NULL;
    CU_ASSERT_EQUAL_FATAL(student_hidden_head_create(wte, V, C, &head), RT_OK);
    CU_ASSERT_EQUAL_FATAL(student_hidden_head_logits(head, q, 0, s, n, z), RT_OK);
    double worst = 0.0, max_err = 0.0, kl_max = 0.0;
    int bad = 0, agree = 0;
    for (int i = 0; i < n; i++) {
        const float *a = zt + (size_t)i * V, *b = z + (size_t)i * V;
        double ma = -INFINITY, mb = -INFINITY, sa = 0.0, sb = 0.0;
        int ia = 0, ib = 0;
        for (int v = 0; v < V; v++) {
            double wabs = 0.0;
            for (int c = 0; c < C; c++) wabs += fabs(wte[(size_t)v * C + c]);
            /* the bound, plus f32 rounding of two C-term sums */
            const double bound = 0.5 * s[i] * wabs * (1.0 + 1e-5) + 1e-5 * (1.0 + fabs(a[v]));
            const double e = fabs((double)a[v] - b[v]);
            bad += e > bound;
            worst = fmax(worst, e / bound);
            max_err = fmax(max_err, e);
            if (a[v] > ma) ma = a[v], ia = v;
            if (b[v] > mb) mb = b[v], ib = v;
        }
        agree += ia == ib;
        for (int v = 0; v < V; v++) sa += exp((a[v] - ma) / 2.0), sb += exp((b[v] - mb) / 2.0);
        double kl = 0.0;
        for (int v = 0; v < V; v++) {
            const double la = (a[v] - ma) / 2.0 - log(sa), lb = (b[v] - mb) / 2.0 - log(sb);
            kl += exp(la) * (la - lb);
        }
        kl_max = fmax(kl_max, kl);
    }
    printf("\n    teacher forward, int8 hidden states: max |logit error| %.3e, max error / bound "
           "%.3f, %d beyond (tol 0); KL at T=2 max %.2e; argmax agreement %d/%d",
           max_err, worst, bad, kl_max, agree, n);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(max_err > 0.0); /* quantization does change the logits */
    student_hidden_head_free(head);
    teacher_destroy(t);
    student_destroy(twin);
    free(in), free(q), free(s), free(z);
}

/* ------------------------------------------------------------ records */

static void fill_hidden(comm_record *r, int seed) {
    const size_t n_pos = (size_t)r->b * r->T, n = n_pos * (size_t)r->hidden_width;
    for (int i = 0; i < r->b; i++) r->starts[i] = 100 * i + seed;
    if (r->hidden == COMM_HIDDEN_INT8) {
        int8_t *q = r->hstate;
        for (size_t j = 0; j < n; j++) q[j] = (int8_t)((j * 31 + (size_t)seed) % 255 - 127);
        for (size_t i = 0; i < n_pos; i++) r->hscale[i] = 0.01f * (float)(i + 1);
    } else {
        uint16_t *x = r->hstate;
        for (size_t j = 0; j < n; j++) x[j] = (uint16_t)(0x3f00 + (j * 7 + (size_t)seed) % 200);
    }
    r->step = 3;
    r->student = 0;
    r->temperature = 2.0f;
}

/* Rewrites the checksum of a version 2 record after a deliberate edit:
 * FNV-1a over header bytes [0, 64) and [72, 80), then the payload. */
static void reseal_v2(unsigned char *w, size_t n) {
    uint64_t sum = comm_fnv1a64(COMM_FNV1A64_INIT, w, 64);
    sum = comm_fnv1a64(sum, w + 72, 8);
    sum = comm_fnv1a64(sum, w + COMM_RECORD_HEADER_BYTES_HIDDEN, n - COMM_RECORD_HEADER_BYTES_HIDDEN);
    memcpy(w + 64, &sum, 8);
}

static int has_error(const char *s) { return strstr(rt_last_error(), s) != NULL; }

static void test_hidden_records(void) {
    comm_codec *c = NULL;
    CU_ASSERT_EQUAL_FATAL(comm_codec_create(3, &c), RT_OK);
    comm_record a, b;
    comm_record_init(&a);
    comm_record_init(&b);
    for (int hidden = COMM_HIDDEN_INT8; hidden <= COMM_HIDDEN_BF16; hidden++) {
        const comm_record_shape shape = {.b = 2, .T = 5, .vocab = 64, .hidden = hidden,
                                         .hidden_width = 24};
        CU_ASSERT_EQUAL_FATAL(comm_record_reserve_shape(&a, &shape), RT_OK);
        CU_ASSERT_PTR_NULL(a.tail);
        CU_ASSERT_EQUAL(a.hscale != NULL, hidden == COMM_HIDDEN_INT8);
        fill_hidden(&a, hidden);
        const void *wire = NULL;
        size_t n = 0;
        CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &a, &wire, &n), RT_OK);
        CU_ASSERT_EQUAL(((const unsigned char *)wire)[4], COMM_RECORD_VERSION_HIDDEN);
        /* round trip, with the matching expectation */
        CU_ASSERT_EQUAL_FATAL(comm_codec_decode(c, wire, n, &shape, &b), RT_OK);
        const size_t hb = (size_t)10 * 24 * (hidden == COMM_HIDDEN_BF16 ? 2 : 1);
        CU_ASSERT(b.hidden == hidden && b.hidden_width == 24 && b.k == 0);
        CU_ASSERT(memcmp(a.hstate, b.hstate, hb) == 0);
        CU_ASSERT(hidden == COMM_HIDDEN_BF16 || memcmp(a.hscale, b.hscale, 10 * 4) == 0);
        CU_ASSERT_EQUAL(comm_record_raw_bytes(&b), (size_t)COMM_RECORD_HEADER_BYTES_HIDDEN + 16 +
                                                       hb + (hidden == COMM_HIDDEN_INT8 ? 40 : 0));
        /* a run that expects another width or encoding refuses it, naming it */
        comm_record_shape other = shape;
        other.hidden_width = 32;
        CU_ASSERT_EQUAL(comm_codec_decode(c, wire, n, &other, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error("hidden_width=24, the receiver expects") &&
                  has_error("hidden_width=32"));
        printf("\n    %s", rt_last_error());
        other = shape;
        other.hidden = hidden == COMM_HIDDEN_INT8 ? COMM_HIDDEN_BF16 : COMM_HIDDEN_INT8;
        CU_ASSERT_EQUAL(comm_codec_decode(c, wire, n, &other, &b), RT_ERR_FORMAT);
        char want_msg[64];
        snprintf(want_msg, sizeof want_msg, "feat_width=0 hidden=%d hidden_width=24 (", other.hidden);
        CU_ASSERT(has_error(want_msg));
        /* a label record where hidden states are expected */
        other = (comm_record_shape){.b = 2, .T = 5, .k = 4, .vocab = 64};
        comm_record l;
        comm_record_init(&l);
        CU_ASSERT_EQUAL_FATAL(comm_record_reserve_shape(&l, &other), RT_OK);
        memset(l.ids, 0, 2 * 5 * 4 * sizeof *l.ids);
        memset(l.logprobs, 0, 2 * 5 * 4 * sizeof *l.logprobs);
        memset(l.tail, 0, 2 * 5 * sizeof *l.tail);
        l.starts[0] = l.starts[1] = 0;
        l.temperature = 2.0f;
        const void *lw = NULL;
        size_t ln = 0;
        CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &l, &lw, &ln), RT_OK);
        CU_ASSERT_EQUAL(((const unsigned char *)lw)[4], COMM_RECORD_VERSION);
        CU_ASSERT_EQUAL(comm_codec_decode(c, lw, ln, &shape, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error("k=4 vocab=64 n_feat=0 feat_width=0 hidden=0 hidden_width=0, the "
                            "receiver expects b=2 T=5 k=0"));
        comm_record_free(&l);
        CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &a, &wire, &n), RT_OK);

        /* a forged row count behind a valid checksum: refused by the
         * payload size it implies, and with that forged to agree, by the
         * receiver's shape, before anything is sized from it */
        unsigned char *w = malloc(n);
        memcpy(w, wire, n);
        const int32_t huge = 1 << 20;
        memcpy(w + 20, &huge, 4);
        reseal_v2(w, n);
        CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &shape, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error("does not match its shape"));
        /* 8 bytes of start, then per position a scale (int8) and the states */
        const uint64_t raw = (uint64_t)huge * (8 + 5 * (hidden == COMM_HIDDEN_INT8 ? 4 + 24 : 48));
        memcpy(w + 48, &raw, 8);
        reseal_v2(w, n);
        CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &shape, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error("has shape b=1048576 T=5") && has_error("the receiver expects b=2"));
        /* a hidden width beyond any model's */
        memcpy(w, wire, n);
        const int32_t wide = COMM_MAX_HIDDEN_WIDTH + 1;
        memcpy(w + 76, &wide, 4);
        reseal_v2(w, n);
        CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &shape, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error("hidden_width"));
        /* version 2 without hidden states */
        memcpy(w, wire, n);
        memset(w + 72, 0, 4);
        reseal_v2(w, n);
        CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &shape, &b), RT_ERR_FORMAT);
        /* a flipped byte anywhere, the new header words included */
        int missed = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(w, wire, n);
            w[i] ^= (unsigned char)(1u << (i % 8));
            missed += comm_codec_decode(c, w, n, &shape, &b) != RT_ERR_FORMAT;
        }
        CU_ASSERT_EQUAL(missed, 0);
        free(w);

        /* non-finite states or scales, encoded by a broken teacher */
        if (hidden == COMM_HIDDEN_INT8) a.hscale[7] = NAN;
        else ((uint16_t *)a.hstate)[13] = 0x7f80; /* +inf */
        CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &a, &wire, &n), RT_OK);
        CU_ASSERT_EQUAL(comm_codec_decode(c, wire, n, &shape, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error(hidden == COMM_HIDDEN_INT8 ? "scale" : "not finite"));
        printf("\n    %s", rt_last_error());
    }
    /* shapes reserve refuses */
    const comm_record_shape bad[] = {
        {.b = 1, .T = 4, .k = 2, .vocab = 8, .hidden = COMM_HIDDEN_INT8, .hidden_width = 4},
        {.b = 1, .T = 4, .k = 0, .vocab = 8, .hidden = COMM_HIDDEN_INT8, .hidden_width = 0},
        {.b = 1, .T = 4, .k = 0, .vocab = 8, .hidden = 7, .hidden_width = 4},
        {.b = 1, .T = 4, .k = 2, .vocab = 8, .hidden = COMM_HIDDEN_NONE, .hidden_width = 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(comm_record_reserve_shape(&a, &bad[i]), RT_ERR_ARGS);
    comm_record_free(&a);
    comm_record_free(&b);
    comm_codec_destroy(c);
}

int main(void) {
    if (fx_load() != 0) {
        fprintf(stderr, "test_labels: cannot load %s/hidden_fixture.{txt,bin} (run "
                        "tests/fixtures/gen_hidden_fixture.py)\n", RT_FIXTURES_DIR);
        return 1;
    }
    const rt_test_case cases[] = {
        {"hidden states: int8 and bf16 rebuild vs torch", test_hidden_vs_torch},
        {"hidden states: int8 error bound on a teacher forward", test_hidden_bound_on_teacher},
        {"hidden-state records: round trip and refusals", test_hidden_records},
    };
    if (!rt_test_suite("labels", NULL, NULL, cases, sizeof cases / sizeof cases[0],
                       "RT_TEST_ONLY"))
        return 1;
    const int rc = rt_test_finish();
    free(fx.blob);
    return rc;
}
