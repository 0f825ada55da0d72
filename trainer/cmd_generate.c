/* `retort generate`: continue a prompt with text sampled from a checkpoint.
 *
 * Decoding uses the KV cache of student/ (student_infer_*): the prompt goes
 * in one step, then one token per step, so a new token costs one row of
 * every matmul instead of a forward over the whole prefix. The cache holds
 * seq_len positions (the learned position embeddings), so generation stops
 * when the context is full: quietly changing the context is not what a
 * user asking for "the model's continuation" expects. --context-shift asks
 * for it: a full cache restarts from the last half of the tokens (prompt
 * tail and text so far) in one prompt step, as often as needed, and
 * stderr says how many times.
 *
 * Sampling is deterministic in --seed: rt_rand.h's xoshiro256** stream
 * seeded through splitmix64 (our own, so the text does not depend on the C
 * library), and top-k ties broken by the lower id. Temperature 0 is greedy argmax, the
 * same rule (ties: lowest id) eval's top-1 uses.
 *
 * Output: the prompt, then the continuation as it is produced. Each step
 * decodes all generated ids and prints the bytes not yet printed, so a
 * character split over several byte-level tokens comes out whole. With
 * --json, one object at the end instead: the ids and the log-probability
 * of each new token (what interop tests compare with other runtimes). */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "cli.h"
#include "cmds.h"
#include "rt_rand.h"
#include "data.h"
#include "student.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- sampling */

typedef struct {
    float z;
    int32_t id;
} scored;

static int by_logit_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t argmax(const float *z, int V) {
    int32_t best = 0;
    for (int j = 1; j < V; j++)
        if (z[j] > z[best]) best = j; /* strict: ties keep the lowest id */
    return best;
}

/* Next token from the logits: greedy at temperature 0, else a draw from
 * softmax(z / temperature) restricted to the k largest logits (k = 0 or
 * k >= V: all). `work` holds V entries. */
static int32_t sample(const float *z, int V, double temperature, int k, rt_xoshiro *rng,
                      scored *work) {
    if (temperature == 0) return argmax(z, V);
    for (int j = 0; j < V; j++) work[j] = (scored){z[j], j};
    if (k <= 0 || k > V) k = V;
    if (k < V) qsort(work, (size_t)V, sizeof *work, by_logit_desc);
    float zmax = work[0].z;
    for (int j = 1; j < k; j++)
        if (work[j].z > zmax) zmax = work[j].z;
    double sum = 0;
    for (int j = 0; j < k; j++) sum += exp(((double)work[j].z - zmax) / temperature);
    const double u = rt_xoshiro_uniform(rng) * sum;
    double acc = 0;
    for (int j = 0; j < k; j++) {
        acc += exp(((double)work[j].z - zmax) / temperature);
        if (u < acc) return work[j].id;
    }
    return work[k - 1].id; /* u within rounding of sum */
}

/* log softmax(z)[id], in double. */
static double log_prob(const float *z, int V, int32_t id) {
    float zmax = z[0];
    for (int j = 1; j < V; j++) zmax = z[j] > zmax ? z[j] : zmax;
    double sum = 0;
    for (int j = 0; j < V; j++) sum += exp((double)z[j] - zmax);
    return (double)z[id] - zmax - log(sum);
}

/* The --json object: ids of the prompt (as fed) and of the new tokens,
 * their log-probabilities and the decoded text. */
static rt_status print_json(const int32_t *ctx, int n_ctx, const data_ids *gen,
                            const double *lp, const char *text) {
    json_t *j = json_object(), *p = json_array(), *g = json_array(), *l = json_array();
    for (int i = 0; i < n_ctx; i++) json_array_append_new(p, json_integer(ctx[i]));
    for (size_t i = 0; i < gen->n; i++) {
        json_array_append_new(g, json_integer(gen->ids[i]));
        json_array_append_new(l, json_real(lp[i]));
    }
    json_object_set_new(j, "prompt_ids", p);
    json_object_set_new(j, "ids", g);
    json_object_set_new(j, "logprobs", l);
    json_t *t = json_string(text ? text : ""); /* NULL for bytes that are not UTF-8 */
    json_object_set_new(j, "text", t ? t : json_null());
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return rt_fail(RT_ERR_NOMEM, "generate: out of memory printing JSON");
    printf("%s\n", s);
    free(s);
    return RT_OK;
}

/* Restarts the cache kv from the last `keep` tokens of the prompt ctx
 * followed by the generated tokens gen (keep <= the cache's positions),
 * leaving the next token's logits in `logits`. */
static rt_status shift_context(student_model *m, student_kv *kv, const int32_t *ctx, int n_ctx,
                               const data_ids *gen, int keep, float *logits) {
    int32_t *w = malloc((size_t)keep * sizeof *w);
    if (!w) return rt_fail(RT_ERR_NOMEM, "generate: out of memory for a %d-token context", keep);
    const size_t from_gen = gen->n < (size_t)keep ? gen->n : (size_t)keep;
    const size_t from_ctx = (size_t)keep - from_gen; /* the rest from the prompt's end */
    RT_ASSERT(from_ctx <= (size_t)n_ctx);
    memcpy(w, ctx + (size_t)n_ctx - from_ctx, from_ctx * sizeof *w);
    memcpy(w + from_ctx, gen->ids + gen->n - from_gen, from_gen * sizeof *w);
    student_infer_reset(kv);
    const rt_status st = student_infer_step(m, kv, w, keep, logits);
    free(w);
    return st;
}

/* -------------------------------------------------------------- command */

int trainer_cmd_generate(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_generate, argc, argv, &a);
    if (rc >= 0) return rc;
    const char *model_path = cli_str(a, "model"), *prompt = cli_str(a, "prompt");
    const char *tok_dir = cli_str(a, "tokenizer");
    const int64_t max_new = cli_int(a, "max-new-tokens");
    const double temperature = cli_real(a, "temperature");
    const int top_k = (int)cli_int(a, "top-k"), json = cli_flag(a, "json"),
              shift = cli_flag(a, "context-shift");
    rt_xoshiro rng;
    uint64_t seed = (uint64_t)cli_int(a, "seed");
    rt_xoshiro_seed(&rng, &seed);

    student_model *m = NULL;
    student_kv *kv = NULL;
    data_tokenizer *tok = NULL;
    data_ids ids = {0}, gen = {0};
    float *logits = NULL;
    double *lp = NULL;
    scored *work = NULL;
    char *text = NULL;
    size_t printed = 0;
    rt_status st;

    if ((st = ckpt_load_model(model_path, 1, STUDENT_F32, 0, &m, NULL)) != RT_OK) goto cleanup;
    if ((st = data_tokenizer_load(tok_dir, &tok)) != RT_OK) goto cleanup;
    const student_config *c = student_cfg(m);
    const int V = c->vocab_size, max_len = c->seq_len;
    if (data_tokenizer_vocab_size(tok) != V) {
        st = rt_fail(RT_ERR_MISMATCH,
                     "the tokenizer in %s has %d tokens but the model %s has vocab_size %d "
                     "(pass the --tokenizer the model was trained with)",
                     tok_dir, (int)data_tokenizer_vocab_size(tok), model_path, V);
        goto cleanup;
    }
    const int32_t eot = data_tokenizer_eot(tok);
    if ((st = data_tokenizer_encode(tok, prompt, strlen(prompt), &ids)) != RT_OK) goto cleanup;
    /* An empty prompt starts from <|endoftext|>, the document boundary the
     * model saw before every training document. */
    if (ids.n == 0 && (st = data_ids_push(&ids, eot)) != RT_OK) goto cleanup;
    const int32_t *ctx = ids.ids;
    int n_ctx = (int)ids.n;
    if (ids.n > (size_t)max_len) {
        fprintf(stderr, "generate: the prompt is %zu tokens; keeping its last %d (the model's "
                        "context, seq_len)\n", ids.n, max_len);
        ctx = ids.ids + (ids.n - (size_t)max_len);
        n_ctx = max_len;
    }
    logits = malloc((size_t)V * sizeof *logits);
    work = malloc((size_t)V * sizeof *work);
    lp = malloc((size_t)max_new * sizeof *lp);
    if (!logits || !work || !lp) {
        st = rt_fail(RT_ERR_NOMEM, "generate: out of memory for %d logits", V);
        goto cleanup;
    }
    if ((st = student_infer_create(m, max_len, &kv)) != RT_OK) goto cleanup;

    if (!json) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    const double t0 = now_s();
    if ((st = student_infer_step(m, kv, ctx, n_ctx, logits)) != RT_OK) goto cleanup;
    const double t1 = now_s();
    const char *why = "max-new-tokens";
    int shifts = 0;
    const int keep = max_len / 2 > 0 ? max_len / 2 : 1; /* tokens kept by a context shift */
    for (int64_t i = 0; i < max_new; i++) {
        const int32_t next = sample(logits, V, temperature, top_k, &rng, work);
        if (next == eot) {
            why = "<|endoftext|>";
            break;
        }
        lp[gen.n] = log_prob(logits, V, next);
        if ((st = data_ids_push(&gen, next)) != RT_OK) goto cleanup;
        size_t len = 0;
        free(text);
        text = NULL;
        if ((st = data_tokenizer_decode(tok, gen.ids, gen.n, &text, &len)) != RT_OK)
            goto cleanup;
        if (!json) {
            fwrite(text + printed, 1, len - printed, stdout);
            fflush(stdout);
        }
        printed = len;
        if (i + 1 == max_new) break;
        /* The token just sampled needs one more cache row to be fed back;
         * a full cache shifts: it restarts from the last `keep` tokens of
         * the prompt and the text so far (one prompt forward). */
        if (student_infer_len(kv) >= max_len) {
            if (!shift) {
                why = "context full";
                break;
            }
            if ((st = shift_context(m, kv, ctx, n_ctx, &gen, keep, logits)) != RT_OK)
                goto cleanup;
            shifts++;
            continue;
        }
        if ((st = student_infer_step(m, kv, &next, 1, logits)) != RT_OK) goto cleanup;
    }
    const double t2 = now_s();
    if (json && (st = print_json(ctx, n_ctx, &gen, lp, text)) != RT_OK) goto cleanup;
    if (!json && isatty(STDOUT_FILENO)) putchar('\n'); /* end the text before stderr lines */
    fflush(stdout);
    if (strcmp(why, "context full") == 0)
        fprintf(stderr,
                "generate: the context is full (seq_len %d tokens); stopping "
                "(--context-shift goes on from its last half)\n",
                max_len);
    if (shifts)
        fprintf(stderr,
                "generate: the context (seq_len %d tokens) filled %d time%s; each time "
                "generation went on from the last %d tokens\n",
                max_len, shifts, shifts == 1 ? "" : "s", keep);
    fprintf(stderr,
            "generate: %d prompt tokens (%.3f s), %zu new tokens, %.1f tokens/s, stopped at %s\n",
            n_ctx, t1 - t0, gen.n, t2 > t1 ? (double)gen.n / (t2 - t1) : 0.0, why);

cleanup:
    student_infer_destroy(kv);
    student_destroy(m);
    data_tokenizer_destroy(tok);
    data_ids_free(&ids);
    data_ids_free(&gen);
    free(logits);
    free(lp);
    free(work);
    free(text);
    cli_args_free(a);
    return rt_report(st);
}
