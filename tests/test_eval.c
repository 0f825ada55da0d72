/* Tests for `retort eval`, `retort generate` and `retort info` through the
 * built binary, checked against computations made here independently:
 *
 *   - an all-zero model has all-zero logits, so its loss is exactly log(V),
 *     its perplexity V, every top-1 is id 0 with confidence 1/V, and its
 *     ECE is |share of targets equal to 0 - 1/V| (closed forms);
 *   - a random model's loss, ECE and agreement equal a direct loop here of
 *     student_forward (one window per call, so eval's batching is checked
 *     too) + student_loss_ce and a softmax written out below;
 *   - window counting with --max-tokens, the JSON keys, ECE in [0, 1];
 *   - trainer_eval_top1/ece on hand-made logits with a known ECE;
 *   - greedy generation equals argmax over a full student_forward of the
 *     growing context (no KV cache); the same seed gives the same text,
 *     different seeds different text, top-k 1 is greedy.
 *
 * `test_eval --make-fixtures DIR` writes the tiny fixtures (tokenizer,
 * shards, checkpoints) into DIR and exits; tests/cli_eval.sh uses them for
 * the error paths of the command line. */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "eval.h"
#include "student.h"
#include "test_util.h"

/* The model every fixture uses: small enough for milliseconds per forward. */
static const student_config CFG = {
    .n_layer = 2, .n_head = 2, .d_model = 32, .d_ff = 128, .vocab_size = 300, .seq_len = 16};
enum { N_VAL = 16 * 20 + 5 }; /* 20 full windows and a partial one */

static char *g_dir; /* fixtures of this run */

/* ------------------------------------------------------------ fixtures */

/* seed 0: all parameters zero. Else GPT-2 init with the token embedding
 * scaled by wte_scale and the other matmul weights and wpe by mix_scale. */
static rt_status save_model(const char *path, const student_config *c, uint64_t seed,
                            float wte_scale, float mix_scale) {
    student_model *m = NULL;
    rt_status st = student_create(c, 1, STUDENT_F32, 0, &m);
    if (st != RT_OK) return st;
    if (seed) {
        student_init_weights(m, seed);
        /* GPT-2's N(0, 0.02) gives nearly uniform predictions; larger
         * weights spread the logits so that top-1 choices have clear
         * margins and the ECE bins are not all one, and larger attention
         * and MLP weights make the prediction depend on the whole context,
         * not only on the last token (tied embeddings otherwise make a
         * random model repeat its input). */
        for (int i = 0; i < student_tensor_count(c); i++) {
            student_tensor t;
            student_tensor_info(c, i, &t);
            if (!t.decay && strstr(t.name, ".wte.") == NULL && strstr(t.name, ".wpe.") == NULL)
                continue;
            float *w = student_params(m) + t.offset;
            const float k = strstr(t.name, ".wte.") ? wte_scale : mix_scale;
            for (size_t j = 0; j < t.numel; j++) w[j] *= k;
        }
    }
    ckpt_contents cc = {.kind = "train", .cfg = *c, .params = student_params(m)};
    st = ckpt_save(path, &cc);
    student_destroy(m);
    return st;
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static const char *CORPUS =
    "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. "
    "the early bird catches the worm. all that glitters is not gold. "
    "where there is smoke there is fire. the pen is mightier than the sword. ";

static rt_status make_fixtures(const char *dir) {
    char p[4096];
    rt_status st;
    /* Tokenizer: 256 bytes + 43 merges + <|endoftext|> = 300. */
    size_t one = strlen(CORPUS), n = 20 * one;
    char *text = malloc(n + 1);
    for (int i = 0; i < 20; i++) memcpy(text + (size_t)i * one, CORPUS, one);
    text[n] = '\0';
    data_tokenizer *tok = NULL;
    st = data_tokenizer_train(text, n, CFG.vocab_size, 0, &tok);
    free(text);
    if (st != RT_OK) return st;
    if (data_tokenizer_vocab_size(tok) != CFG.vocab_size) {
        data_tokenizer_destroy(tok);
        return rt_fail(RT_ERR_INTERNAL, "fixture tokenizer has %d tokens, wanted %d",
                       (int)data_tokenizer_vocab_size(tok), CFG.vocab_size);
    }
    snprintf(p, sizeof p, "%s/tok", dir);
    mkdir(p, 0755);
    st = data_tokenizer_save(tok, p);
    data_tokenizer_destroy(tok);
    if (st != RT_OK) return st;

    /* Validation tokens: a quarter 0, so the zero model's accuracy (its
     * top-1 is always id 0) is far from 1/V; a quarter repeating the token
     * before, which the sharp model (tied embeddings, so it predicts its
     * input) gets right, so its accuracy per ECE bin is neither 0 nor 1
     * and the ECE depends on the bin edges; the rest random. */
    int32_t val[N_VAL];
    uint64_t s = 42;
    for (int i = 0; i < N_VAL; i++) {
        const uint64_t kind = lcg(&s) % 4;
        val[i] = kind == 0               ? 0
                 : kind == 1 && i > 0    ? val[i - 1]
                                         : (int32_t)(lcg(&s) % (uint64_t)CFG.vocab_size);
    }
    snprintf(p, sizeof p, "%s/val.h5", dir);
    if ((st = data_shard_write(p, val, N_VAL, CFG.vocab_size, "test")) != RT_OK) return st;
    snprintf(p, sizeof p, "%s/v400.h5", dir); /* same tokens, another vocabulary */
    if ((st = data_shard_write(p, val, N_VAL, 400, "test")) != RT_OK) return st;

    snprintf(p, sizeof p, "%s/model.h5", dir);
    if ((st = save_model(p, &CFG, 7, 5.0f, 10.0f)) != RT_OK) return st;
    /* Confident predictions spread over many ECE bins (the model above keeps
     * nearly all of them in the first bin, where bin edges do not matter). */
    snprintf(p, sizeof p, "%s/sharp.h5", dir);
    if ((st = save_model(p, &CFG, 7, 12.0f, 1.0f)) != RT_OK) return st;
    snprintf(p, sizeof p, "%s/zero.h5", dir);
    if ((st = save_model(p, &CFG, 0, 1, 1)) != RT_OK) return st;
    student_config small = CFG; /* a teacher of another shape, same vocab and seq_len */
    small.n_layer = 1, small.d_model = 16, small.d_ff = 64;
    snprintf(p, sizeof p, "%s/small.h5", dir);
    if ((st = save_model(p, &small, 11, 5.0f, 10.0f)) != RT_OK) return st;
    student_config seq8 = CFG;
    seq8.seq_len = 8;
    snprintf(p, sizeof p, "%s/seq8.h5", dir);
    if ((st = save_model(p, &seq8, 13, 1, 1)) != RT_OK) return st;
    student_config v400 = CFG;
    v400.vocab_size = 400;
    snprintf(p, sizeof p, "%s/v400model.h5", dir);
    return save_model(p, &v400, 17, 1, 1);
}

static char *fx(const char *name) {
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

/* ------------------------------------------------------- running retort */

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    size_t got = fread(b, 1, (size_t)len, f);
    b[got] = '\0';
    fclose(f);
    return b;
}

/* Runs `retort ARGS` (a shell fragment) with stdout and stderr captured;
 * returns the exit code. */
static int run(const char *args, char **out, char **err) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s >%s/stdout 2>%s/stderr", RT_BINARY, args, g_dir, g_dir);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
    char p[4096];
    snprintf(p, sizeof p, "%s/stdout", g_dir);
    if (out) *out = read_all(p);
    snprintf(p, sizeof p, "%s/stderr", g_dir);
    if (err) *err = read_all(p);
    return rc;
}

/* `retort eval ARGS --json` parsed; NULL (and the stderr shown) on failure. */
static json_t *eval_json(const char *args) {
    char cmd[8192], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "eval %s --json", args);
    int rc = run(cmd, &out, &err);
    json_t *j = NULL;
    if (rc == 0) {
        json_error_t e;
        j = json_loads(out, 0, &e);
        if (!json_is_object(j)) printf("\n  not one JSON object: %s\n", out);
    } else {
        printf("\n  eval %s: exit %d: %s\n", args, rc, err);
    }
    free(out);
    free(err);
    return j;
}

static double jnum(const json_t *j, const char *key) {
    const json_t *v = json_object_get(j, key);
    CU_ASSERT_PTR_NOT_NULL(v);
    return v ? json_number_value(v) : NAN;
}

/* --------------------------------------------- independent computations */

typedef struct {
    double loss, ece, agreement;
    int64_t windows;
    int bins_used; /* ECE bins holding at least one position */
} reference;

/* Independent double-precision softmax top-1 of one row. */
static int row_top1(const float *z, int V, double *conf) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (z[j] > z[best]) best = j;
    double s = 0;
    for (int j = 0; j < V; j++) s += exp((double)z[j] - z[best]);
    *conf = 1 / s;
    return best;
}

/* The evaluation protocol written out directly: one window per forward, the
 * first n tokens of val.h5, teacher optional. */
static void reference_eval(const char *model, const char *teacher, int64_t n, reference *r) {
    student_model *m = NULL, *t = NULL;
    int32_t *tok = NULL;
    int64_t n_tok = 0;
    CU_ASSERT_EQUAL_FATAL(ckpt_load_model(model, 1, STUDENT_F32, 0, &m, NULL), RT_OK);
    if (teacher) CU_ASSERT_EQUAL_FATAL(ckpt_load_model(teacher, 1, STUDENT_F32, 0, &t, NULL), RT_OK);
    CU_ASSERT_EQUAL_FATAL(data_shard_load(fx("val.h5"), &tok, &n_tok, NULL), RT_OK);
    if (n <= 0 || n > n_tok) n = n_tok;
    const int T = CFG.seq_len, V = CFG.vocab_size;
    double loss = 0, cnt[15] = {0}, conf[15] = {0}, cor[15] = {0}, agree = 0, npos = 0;
    int64_t w = 0;
    for (; (w + 1) * T + 1 <= n; w++) {
        CU_ASSERT_EQUAL_FATAL(student_forward(m, tok + w * T, 1), RT_OK);
        const float *z = student_logits(m);
        loss += student_loss_ce(z, tok + w * T + 1, T, V, NULL, 0);
        int top_m[64];
        for (int i = 0; i < T; i++) {
            double p;
            top_m[i] = row_top1(z + (size_t)i * V, V, &p);
            int b = p >= 1 ? 14 : (int)floor(p * 15);
            cnt[b]++, conf[b] += p, cor[b] += top_m[i] == tok[w * T + 1 + i];
            npos++;
        }
        if (t) {
            CU_ASSERT_EQUAL_FATAL(student_forward(t, tok + w * T, 1), RT_OK);
            for (int i = 0; i < T; i++) {
                double p;
                agree += row_top1(student_logits(t) + (size_t)i * V, V, &p) == top_m[i];
            }
        }
    }
    r->windows = w;
    r->loss = loss / npos;
    r->ece = 0;
    r->bins_used = 0;
    for (int b = 0; b < 15; b++)
        if (cnt[b] > 0) {
            r->ece += cnt[b] / npos * fabs(cor[b] / cnt[b] - conf[b] / cnt[b]);
            r->bins_used++;
        }
    r->agreement = t ? agree / npos : NAN;
    student_destroy(m);
    student_destroy(t);
    rt_free_aligned(tok);
}

/* ------------------------------------------------------------------ eval */

static void test_zero_model_closed_form(void) {
    char args[8192];
    snprintf(args, sizeof args, "--model %s --data %s", fx("zero.h5"), fx("val.h5"));
    json_t *j = eval_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const double V = CFG.vocab_size;
    const int64_t W = (N_VAL - 1) / CFG.seq_len;
    /* Targets are tokens 1 .. W*T; top-1 of all-zero logits is id 0. */
    int32_t *tok = NULL;
    int64_t n = 0;
    CU_ASSERT_EQUAL_FATAL(data_shard_load(fx("val.h5"), &tok, &n, NULL), RT_OK);
    int64_t zeros = 0;
    for (int64_t i = 1; i <= W * CFG.seq_len; i++) zeros += tok[i] == 0;
    rt_free_aligned(tok);
    const double acc = (double)zeros / (double)(W * CFG.seq_len);
    const double ece = fabs(acc - 1 / V);
    printf("\n  zero model: loss %.9f (log V %.9f), ppl %.6f, ece %.9f (closed form %.9f)\n",
           jnum(j, "loss"), log(V), jnum(j, "perplexity"), jnum(j, "ece"), ece);
    CU_ASSERT(fabs(jnum(j, "loss") - log(V)) < 1e-6);
    CU_ASSERT(fabs(jnum(j, "perplexity") - V) < 1e-3);
    CU_ASSERT(fabs(jnum(j, "ece") - ece) < 1e-9);
    CU_ASSERT(acc > 0.1); /* the closed form is not the trivial 1/V case */
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "windows")), W);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "tokens")), W * CFG.seq_len);
    json_decref(j);
}

static void test_matches_direct_loop(void) {
    reference r;
    reference_eval(fx("model.h5"), fx("small.h5"), 0, &r);
    const char *batches[] = {"1", "3", "8", "64"};
    for (int k = 0; k < 4; k++) {
        char args[8192];
        snprintf(args, sizeof args, "--model %s --data %s --teacher %s --batch %s", fx("model.h5"),
                 fx("val.h5"), fx("small.h5"), batches[k]);
        json_t *j = eval_json(args);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        const double dl = fabs(jnum(j, "loss") - r.loss), de = fabs(jnum(j, "ece") - r.ece);
        const double da = fabs(jnum(j, "agreement") - r.agreement);
        printf("\n  batch %s: loss %.9f vs %.9f (|d| %.2e), ece %.6f vs %.6f (|d| %.2e), "
               "agreement %.6f vs %.6f", batches[k], jnum(j, "loss"), r.loss, dl, jnum(j, "ece"),
               r.ece, de, jnum(j, "agreement"), r.agreement);
        CU_ASSERT(dl < 1e-5 * r.loss);
        CU_ASSERT(de < 1e-6);
        CU_ASSERT(da < 1e-12);
        CU_ASSERT(fabs(jnum(j, "perplexity") - exp(jnum(j, "loss"))) < 1e-9 * jnum(j, "perplexity"));
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "windows")), r.windows);
        json_decref(j);
    }
    printf("\n");
    /* A trained-looking model is not the uniform one, and its predictions
     * are not all in one bin: the comparison above means something. */
    CU_ASSERT(fabs(r.loss - log(CFG.vocab_size)) > 0.1);
    CU_ASSERT(r.agreement > 0 && r.agreement < 1);
}

/* ECE where bin edges matter: the sharp model's confidences fill many of
 * the 15 bins, so 10 bins (or any other edges) would give another value. */
static void test_ece_many_bins(void) {
    reference r;
    reference_eval(fx("sharp.h5"), NULL, 0, &r);
    char args[8192];
    snprintf(args, sizeof args, "--model %s --data %s", fx("sharp.h5"), fx("val.h5"));
    json_t *j = eval_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    printf("\n  sharp model: ece %.9f vs %.9f, %d bins used, loss %.6f vs %.6f\n",
           jnum(j, "ece"), r.ece, r.bins_used, jnum(j, "loss"), r.loss);
    CU_ASSERT(r.bins_used >= 8);
    CU_ASSERT(fabs(jnum(j, "ece") - r.ece) < 1e-6);
    CU_ASSERT(fabs(jnum(j, "loss") - r.loss) < 1e-5 * r.loss);
    CU_ASSERT(jnum(j, "ece") > 0 && jnum(j, "ece") <= 1);
    json_decref(j);
}

static void test_max_tokens_windows(void) {
    const int T = CFG.seq_len;
    struct {
        int64_t max_tokens, windows;
    } cases[] = {{5 * T + 1, 5}, {5 * T, 4}, {5 * T + 2, 5}, {T + 1, 1}, {0, (N_VAL - 1) / T},
                 {1000000, (N_VAL - 1) / T}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char args[8192];
        snprintf(args, sizeof args, "--model %s --data %s --max-tokens %lld", fx("model.h5"),
                 fx("val.h5"), (long long)cases[k].max_tokens);
        json_t *j = eval_json(args);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "windows")), cases[k].windows);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "tokens")), cases[k].windows * T);
        reference r;
        reference_eval(fx("model.h5"), NULL, cases[k].max_tokens, &r);
        CU_ASSERT_EQUAL(r.windows, cases[k].windows);
        CU_ASSERT(fabs(jnum(j, "loss") - r.loss) < 1e-5 * r.loss);
        json_decref(j);
    }
    /* Fewer tokens than one window + 1 is an error naming the shard. */
    char args[8192], *err = NULL;
    snprintf(args, sizeof args, "eval --model %s --data %s --max-tokens %d", fx("model.h5"),
             fx("val.h5"), T);
    CU_ASSERT_NOT_EQUAL(run(args, NULL, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "val.h5"));
    free(err);
}

static void test_json_keys(void) {
    static const char *const base[] = {"model", "data", "loss", "perplexity", "tokens",
                                       "windows", "ece", "params", "file_bytes", "seconds",
                                       "tokens_per_s"};
    const int nb = (int)(sizeof base / sizeof base[0]);
    char args[8192];
    for (int with_teacher = 0; with_teacher < 2; with_teacher++) {
        snprintf(args, sizeof args, "--model %s --data %s%s%s", fx("model.h5"), fx("val.h5"),
                 with_teacher ? " --teacher " : "", with_teacher ? fx("model.h5") : "");
        json_t *j = eval_json(args);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        for (int i = 0; i < nb; i++) {
            if (!json_object_get(j, base[i])) printf("\n  missing key %s", base[i]);
            CU_ASSERT_PTR_NOT_NULL(json_object_get(j, base[i]));
        }
        /* Exactly these keys: agreement and teacher only with --teacher. */
        CU_ASSERT_EQUAL(json_object_size(j), (size_t)(nb + 2 * with_teacher));
        CU_ASSERT_EQUAL(json_object_get(j, "agreement") != NULL, with_teacher);
        if (with_teacher) CU_ASSERT_EQUAL(jnum(j, "agreement"), 1.0); /* teacher = the model */
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "model")), fx("model.h5"));
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "params")),
                        (json_int_t)student_param_count(&CFG));
        struct stat sb;
        CU_ASSERT_EQUAL_FATAL(stat(fx("model.h5"), &sb), 0);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "file_bytes")), sb.st_size);
        const double ece = jnum(j, "ece");
        CU_ASSERT(ece >= 0 && ece <= 1);
        CU_ASSERT(jnum(j, "seconds") >= 0 && jnum(j, "tokens_per_s") > 0);
        json_decref(j);
    }
    /* Text output: labelled lines, nothing on stderr for a short eval. */
    char *out = NULL, *err = NULL;
    snprintf(args, sizeof args, "eval --model %s --data %s", fx("model.h5"), fx("val.h5"));
    CU_ASSERT_EQUAL(run(args, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "perplexity"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ece"));
    CU_ASSERT_STRING_EQUAL(err, "");
    free(out);
    free(err);
}

/* Hand-made logits with a known ECE, including confidence exactly 1 (the
 * last bin is closed) and a tie (lowest id wins). */
static void test_ece_closed_form(void) {
    const float l3 = logf(3.0f);
    const float z[] = {
        0, l3,    /* p(1) = 0.75, top-1 = 1, target 1: right, bin 11 */
        l3, 0,    /* p(0) = 0.75, top-1 = 0, target 1: wrong, bin 11 */
        0, 500,   /* p(1) = 1, top-1 = 1, target 1: right, bin 14 */
        2, 2,     /* tie: p = 0.5, top-1 = 0, target 0: right, bin 7 */
    };
    const int32_t tg[] = {1, 1, 1, 0};
    int64_t cnt[TRAINER_ECE_BINS] = {0}, cor[TRAINER_ECE_BINS] = {0};
    double conf[TRAINER_ECE_BINS] = {0};
    int32_t top1[4];
    trainer_eval_top1(z, tg, 4, 2, cnt, conf, cor, top1);
    CU_ASSERT(top1[0] == 1 && top1[1] == 0 && top1[2] == 1 && top1[3] == 0);
    CU_ASSERT(cnt[11] == 2 && cor[11] == 1 && cnt[14] == 1 && cor[14] == 1 && cnt[7] == 1);
    /* bin 11: |0.5 - 0.75| * 2/4; bin 14: |1 - 1| ; bin 7: |1 - 0.5| * 1/4 */
    const double want = 0.25 * 0.5 + 0.5 * 0.25;
    const double got = trainer_eval_ece(cnt, conf, cor);
    printf("\n  ece %.12f, closed form %.12f\n", got, want);
    CU_ASSERT(fabs(got - want) < 1e-7);
}

/* -------------------------------------------------------------- generate */

/* Greedy decoding by full forwards of the growing context (no KV cache):
 * returns the decoded continuation; *margin gets the smallest gap between
 * the best and second-best logit seen (how close a float rounding could
 * come to flipping a choice). */
static char *reference_greedy(const char *prompt, int max_new, double *margin) {
    student_model *m = NULL;
    data_tokenizer *tok = NULL;
    data_ids ctx = {0}, gen = {0};
    CU_ASSERT_EQUAL_FATAL(ckpt_load_model(fx("model.h5"), 1, STUDENT_F32, 0, &m, NULL), RT_OK);
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_load(fx("tok"), &tok), RT_OK);
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_encode(tok, prompt, strlen(prompt), &ctx), RT_OK);
    const int T = CFG.seq_len, V = CFG.vocab_size;
    *margin = INFINITY;
    while ((int)ctx.n <= T && (int)gen.n < max_new) {
        int32_t in[64] = {0}; /* padded after the context: causal attention ignores it */
        memcpy(in, ctx.ids, ctx.n * sizeof *in);
        CU_ASSERT_EQUAL_FATAL(student_forward(m, in, 1), RT_OK);
        const float *z = student_logits(m) + (ctx.n - 1) * (size_t)V;
        int best = 0, second = -1;
        for (int j = 1; j < V; j++)
            if (z[j] > z[best]) best = j;
        for (int j = 0; j < V; j++)
            if (j != best && (second < 0 || z[j] > z[second])) second = j;
        if (z[best] - z[second] < *margin) *margin = z[best] - z[second];
        if (best == data_tokenizer_eot(tok)) break;
        data_ids_push(&ctx, best);
        data_ids_push(&gen, best);
    }
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_decode(tok, gen.ids, gen.n, &text, &len), RT_OK);
    data_ids_free(&ctx);
    data_ids_free(&gen);
    data_tokenizer_destroy(tok);
    student_destroy(m);
    return text;
}

/* Text for a log line: sampled bytes are often not printable UTF-8. */
static const char *esc(const char *s) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    size_t o = 0;
    for (; *s && o + 5 < sizeof buf[0]; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 32 && c < 127 && c != '\\')
            b[o++] = (char)c;
        else
            o += (size_t)snprintf(b + o, 5, "\\x%02x", c);
    }
    b[o] = '\0';
    return b;
}

static char *generate(const char *prompt, const char *extra, char **err_out) {
    char args[8192], *out = NULL, *err = NULL;
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt '%s' %s",
             fx("model.h5"), fx("tok"), prompt, extra);
    int rc = run(args, &out, &err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) printf("\n  %s: exit %d: %s\n", args, rc, err);
    if (err_out)
        *err_out = err;
    else
        free(err);
    return out;
}

static void test_generate_greedy(void) {
    const char *prompts[] = {"the quick brown", "where there is", "a"};
    const int max_new[] = {32, 5, 40};
    for (int k = 0; k < 3; k++) {
        double margin;
        char *ref = reference_greedy(prompts[k], max_new[k], &margin);
        char extra[64], *err = NULL;
        snprintf(extra, sizeof extra, "--temperature 0 --max-new-tokens %d", max_new[k]);
        char *out = generate(prompts[k], extra, &err);
        size_t pl = strlen(prompts[k]);
        CU_ASSERT_NSTRING_EQUAL(out, prompts[k], pl); /* the prompt is echoed */
        const char *cont = strlen(out) >= pl ? out + pl : "";
        printf("\n  '%s' -> '%s' (reference '%s', min top-2 margin %.3g)", prompts[k], esc(cont),
               esc(ref), margin);
        CU_ASSERT_STRING_EQUAL(cont, ref);
        CU_ASSERT(strlen(ref) > 0);
        CU_ASSERT(margin > 1e-4); /* else a rounding difference could flip a token */
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "prompt tokens"));
        /* max-new-tokens 32 and 40 exceed what 16 positions leave. */
        if (max_new[k] > CFG.seq_len) CU_ASSERT_PTR_NOT_NULL(strstr(err, "context is full"));
        char *again = generate(prompts[k], extra, NULL);
        CU_ASSERT_STRING_EQUAL(again, out);
        free(again);
        /* top-k 1 at any temperature is greedy too. */
        char *k1 = generate(prompts[k], "--temperature 1.5 --top-k 1 --seed 9 --max-new-tokens 40",
                            NULL);
        if (max_new[k] > CFG.seq_len) CU_ASSERT_STRING_EQUAL(k1, out); /* both stop at the context */
        free(k1);
        free(out);
        free(err);
        free(ref);
    }
    printf("\n");
}

static void test_generate_seeds(void) {
    const char *opts = "--temperature 1 --top-k 50 --max-new-tokens 10";
    char extra[256];
    snprintf(extra, sizeof extra, "%s --seed 5", opts);
    char *a = generate("the", extra, NULL), *b = generate("the", extra, NULL);
    CU_ASSERT_STRING_EQUAL(a, b);
    int differs = 0;
    for (int s = 6; s < 10; s++) {
        snprintf(extra, sizeof extra, "%s --seed %d", opts, s);
        char *c = generate("the", extra, NULL);
        differs += strcmp(a, c) != 0;
        free(c);
    }
    printf("\n  seed 5: '%s'; %d of 4 other seeds differ\n", esc(a), differs);
    CU_ASSERT(differs > 0); /* the seed does steer sampling */
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ main */

static int suite_init(void) {
    if (!(g_dir = rt_test_mkdtemp("eval"))) return 1;
    if (make_fixtures(g_dir) != RT_OK) {
        fprintf(stderr, "fixtures: %s\n", rt_last_error());
        return 1;
    }
    return 0;
}

static int suite_clean(void) {
    if (g_dir && !getenv("RT_KEEP")) rt_test_rm_rf(g_dir);
    free(g_dir);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--make-fixtures") == 0) {
        if (make_fixtures(argv[2]) != RT_OK) {
            fprintf(stderr, "test_eval: %s\n", rt_last_error());
            return 1;
        }
        return 0;
    }
    static const rt_test_case tests[] = {
        {"ece_closed_form", test_ece_closed_form},
        {"zero_model_closed_form", test_zero_model_closed_form},
        {"matches_direct_loop", test_matches_direct_loop},
        {"ece_many_bins", test_ece_many_bins},
        {"max_tokens_windows", test_max_tokens_windows},
        {"json_keys", test_json_keys},
        {"generate_greedy", test_generate_greedy},
        {"generate_seeds", test_generate_seeds},
    };
    CU_pSuite s = rt_test_suite("eval", suite_init, suite_clean, tests, sizeof tests / sizeof tests[0], NULL);
    if (!s) return 1;
    const int rc = rt_test_finish();
    return rc;
}
