/* `retort eval`: next-token loss, perplexity, calibration (ECE) and, given a
 * teacher, top-1 agreement of a checkpoint on a token shard.
 *
 * The protocol is docs/ARCHITECTURE.md "Evaluation protocol": consecutive,
 * non-overlapping windows of seq_len tokens, a final partial window dropped,
 * the mean cross-entropy over every predicted token. Windows go through the
 * model `batch` at a time with the same full-window forward training uses,
 * so eval measures exactly the model training produced. The model comes
 * from ckpt_load_model, the one path from a file to a ready model, so any
 * file kind it learns to read (deploy, int8) evaluates here unchanged.
 *
 * trainer_eval is also the library form `retort report` calls (report.h). */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt.h"
#include "cli.h"
#include "cmds.h"
#include "data.h"
#include "pairs.h"
#include "report.h"
#include "student.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void trainer_eval_top1(const float *logits, const int32_t *targets, int64_t n_pos, int V,
                       int64_t *bin_count, double *bin_conf, int64_t *bin_correct, int32_t *top1) {
#pragma omp parallel
    {
        /* Per-thread bins merged once at the end: far cheaper than atomics
         * per position, and the merge order does not change integer sums. */
        int64_t cnt[TRAINER_ECE_BINS] = {0}, cor[TRAINER_ECE_BINS] = {0};
        double conf[TRAINER_ECE_BINS] = {0};
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n_pos; i++) {
            const float *z = logits + i * (int64_t)V;
            int best = 0;
            float zmax = z[0];
            for (int j = 1; j < V; j++)
                if (z[j] > zmax) zmax = z[j], best = j; /* strict: ties keep the lowest id */
            double s = 0;
            for (int j = 0; j < V; j++) s += exp((double)z[j] - (double)zmax);
            double p = 1.0 / s; /* softmax of the top-1 entry */
            int b = (int)(p * TRAINER_ECE_BINS);
            if (b >= TRAINER_ECE_BINS) b = TRAINER_ECE_BINS - 1; /* p == 1 goes to the last bin */
            if (b < 0) b = 0;
            cnt[b]++;
            conf[b] += p;
            if (targets && best == targets[i]) cor[b]++;
            if (top1) top1[i] = best;
        }
#pragma omp critical
        for (int b = 0; b < TRAINER_ECE_BINS; b++) {
            bin_count[b] += cnt[b];
            bin_conf[b] += conf[b];
            bin_correct[b] += cor[b];
        }
    }
}

double trainer_eval_ece(const int64_t *bin_count, const double *bin_conf,
                        const int64_t *bin_correct) {
    int64_t n = 0;
    for (int b = 0; b < TRAINER_ECE_BINS; b++) n += bin_count[b];
    if (n == 0) return 0;
    double ece = 0;
    for (int b = 0; b < TRAINER_ECE_BINS; b++) {
        if (bin_count[b] == 0) continue;
        double acc = (double)bin_correct[b] / (double)bin_count[b];
        double conf = bin_conf[b] / (double)bin_count[b];
        ece += (double)bin_count[b] / (double)n * fabs(acc - conf);
    }
    return ece;
}

rt_status trainer_eval(const trainer_eval_opts *o, trainer_eval_result *out) {
    student_model *m = NULL, *t = NULL;
    int32_t *tokens = NULL, *inputs = NULL, *targets = NULL, *top_m = NULL, *top_t = NULL;
    int64_t n_tokens = 0, shard_vocab = 0;
    rt_status st;
    memset(out, 0, sizeof *out);
    out->agreement = NAN;
    RT_ASSERT(o->batch >= 1);

    if ((st = ckpt_load_model(o->model, o->batch, STUDENT_F32, 0, &m, NULL)) != RT_OK)
        goto cleanup;
    const student_config *c = student_cfg(m);
    const int T = c->seq_len, V = c->vocab_size;
    if ((st = data_shard_load(o->data, &tokens, &n_tokens, &shard_vocab)) != RT_OK) goto cleanup;
    if (shard_vocab != V) {
        st = rt_fail(RT_ERR_MISMATCH,
                     "%s has vocab_size %lld but the model %s has vocab_size %d (use the shard "
                     "made with the model's tokenizer)",
                     o->data, (long long)shard_vocab, o->model, V);
        goto cleanup;
    }
    if (o->teacher) {
        /* a teacher with more positions runs on the model's T (its first T) */
        if ((st = ckpt_load_model_window(o->teacher, T, o->batch, STUDENT_F32, 0, &t, NULL)) !=
            RT_OK)
            goto cleanup;
        if (student_cfg(t)->vocab_size != V) {
            st = rt_fail(RT_ERR_MISMATCH,
                         "teacher %s has vocab_size %d but the model %s has vocab_size %d "
                         "(agreement needs the same tokenizer)",
                         o->teacher, student_cfg(t)->vocab_size, o->model, V);
            goto cleanup;
        }
    }

    int64_t n = n_tokens;
    if (o->max_tokens > 0 && o->max_tokens < n) n = o->max_tokens;
    /* Window i needs tokens up to i*T + T (its last target). */
    const int64_t W = n >= 1 ? (n - 1) / T : 0;
    if (W == 0) {
        /* Too short by --max-tokens is the user's choice; too short a file is the file's. */
        st = rt_fail(n < n_tokens ? RT_ERR_ARGS : RT_ERR_FORMAT,
                     "%s: %lld tokens%s are fewer than one window of seq_len + 1 = %d tokens",
                     o->data, (long long)n, n < n_tokens ? " (--max-tokens)" : "", T + 1);
        goto cleanup;
    }

    const size_t rows = (size_t)o->batch * (size_t)T;
    inputs = malloc(rows * sizeof *inputs);
    targets = malloc(rows * sizeof *targets);
    top_m = malloc(rows * sizeof *top_m);
    top_t = malloc(rows * sizeof *top_t);
    if (!inputs || !targets || !top_m || !top_t) {
        st = rt_fail(RT_ERR_NOMEM, "eval: out of memory for a batch of %d windows", o->batch);
        goto cleanup;
    }

    int64_t bin_count[TRAINER_ECE_BINS] = {0}, bin_correct[TRAINER_ECE_BINS] = {0};
    double bin_conf[TRAINER_ECE_BINS] = {0};
    double loss_sum = 0;
    int64_t agree = 0;
    const double t0 = now_s();
    double last_print = t0;
    for (int64_t w0 = 0; w0 < W; w0 += o->batch) {
        const int B = (int)(W - w0 < o->batch ? W - w0 : o->batch);
        for (int b = 0; b < B; b++) {
            const int32_t *win = tokens + (w0 + b) * T;
            memcpy(inputs + (size_t)b * T, win, (size_t)T * sizeof *inputs);
            memcpy(targets + (size_t)b * T, win + 1, (size_t)T * sizeof *targets);
        }
        const int64_t n_pos = (int64_t)B * T;
        if ((st = student_forward(m, inputs, B)) != RT_OK) goto cleanup;
        const float *logits = student_logits(m);
        loss_sum += student_loss_ce(logits, targets, (int)n_pos, V, NULL, 0);
        trainer_eval_top1(logits, targets, n_pos, V, bin_count, bin_conf, bin_correct, top_m);
        if (t) {
            if ((st = student_forward(t, inputs, B)) != RT_OK) goto cleanup;
            /* Only the teacher's top-1 is needed; its bins are thrown away. */
            int64_t tc[TRAINER_ECE_BINS] = {0}, tk[TRAINER_ECE_BINS] = {0};
            double tf[TRAINER_ECE_BINS] = {0};
            trainer_eval_top1(student_logits(t), NULL, n_pos, V, tc, tf, tk, top_t);
            for (int64_t i = 0; i < n_pos; i++) agree += top_m[i] == top_t[i];
        }
        const double now = now_s();
        /* Quiet for short evals; a line every 5 s once one runs long. */
        if (o->progress && now - last_print >= 5.0 && w0 + B < W) {
            const double done = (double)(w0 + B), rate = done * T / (now - t0);
            fprintf(stderr, "eval: %lld/%lld windows (%.0f%%), %.0f tokens/s, ETA %.0f s\n",
                    (long long)(w0 + B), (long long)W, 100.0 * done / (double)W, rate,
                    (double)(W - w0 - B) * T / rate);
            last_print = now;
        }
    }
    const double secs = now_s() - t0;

    out->tokens = W * T;
    out->windows = W;
    out->loss = loss_sum / (double)out->tokens;
    out->perplexity = exp(out->loss);
    out->ece = trainer_eval_ece(bin_count, bin_conf, bin_correct);
    if (t) out->agreement = (double)agree / (double)out->tokens;
    out->params = (int64_t)student_param_count(c);
    out->file_bytes = ckpt_model_bytes(o->model);
    out->vocab_size = V;
    out->seq_len = T;
    out->seconds = secs;
    out->tokens_per_s = secs > 0 ? (double)out->tokens / secs : 0;

cleanup:
    student_destroy(m);
    student_destroy(t);
    rt_free_aligned(tokens);
    free(inputs);
    free(targets);
    free(top_m);
    free(top_t);
    return st;
}

static json_t *bias_json(const trainer_bias_result *b) {
    json_t *j = json_object(), *types = json_object();
    json_object_set_new(j, "pairs", json_integer(b->n));
    json_object_set_new(j, "more", json_integer(b->more));
    json_object_set_new(j, "score", json_real(b->score));
    json_object_set_new(j, "mean_logp_diff", json_real(b->mean_diff));
    for (int k = 0; k < b->n_groups; k++) {
        json_t *g = json_object();
        json_object_set_new(g, "pairs", json_integer(b->groups[k].n));
        json_object_set_new(g, "more", json_integer(b->groups[k].more));
        json_object_set_new(g, "score", json_real(b->groups[k].score));
        json_object_set_new(types, b->groups[k].type, g);
    }
    json_object_set_new(j, "types", types);
    return j;
}

static rt_status print_json(const trainer_eval_opts *o, const trainer_eval_result *r,
                            const char *pairs, const trainer_bias_result *b) {
    json_t *j = json_object();
    if (!j) return rt_fail(RT_ERR_NOMEM, "eval: out of memory building the JSON result");
    json_object_set_new(j, "model", json_string(o->model));
    if (o->data) {
        json_object_set_new(j, "data", json_string(o->data));
        if (o->teacher) json_object_set_new(j, "teacher", json_string(o->teacher));
        json_object_set_new(j, "loss", json_real(r->loss));
        json_object_set_new(j, "perplexity", json_real(r->perplexity));
        json_object_set_new(j, "tokens", json_integer(r->tokens));
        json_object_set_new(j, "windows", json_integer(r->windows));
        json_object_set_new(j, "ece", json_real(r->ece));
        if (o->teacher) json_object_set_new(j, "agreement", json_real(r->agreement));
        json_object_set_new(j, "params", json_integer(r->params));
        json_object_set_new(j, "file_bytes", json_integer(r->file_bytes));
        json_object_set_new(j, "seconds", json_real(r->seconds));
        json_object_set_new(j, "tokens_per_s", json_real(r->tokens_per_s));
    }
    if (pairs) {
        json_object_set_new(j, "pairs", json_string(pairs));
        json_object_set_new(j, "bias", bias_json(b));
    }
    /* Enough digits that the loss survives the round trip exactly. */
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!s) return rt_fail(RT_ERR_NOMEM, "eval: out of memory printing the JSON result");
    printf("%s\n", s);
    free(s);
    return RT_OK;
}

static void print_text(const trainer_eval_opts *o, const trainer_eval_result *r) {
    printf("model       %s (%lld parameters, %lld bytes)\n", o->model, (long long)r->params,
           (long long)r->file_bytes);
    printf("data        %s: %lld windows of %d tokens, %lld predicted tokens\n", o->data,
           (long long)r->windows, r->seq_len, (long long)r->tokens);
    printf("loss        %.6f\n", r->loss);
    printf("perplexity  %.4f\n", r->perplexity);
    printf("ece         %.6f (%d bins)\n", r->ece, TRAINER_ECE_BINS);
    if (o->teacher) printf("agreement   %.6f (top-1, teacher %s)\n", r->agreement, o->teacher);
    printf("speed       %.0f tokens/s (%.3f s)\n", r->tokens_per_s, r->seconds);
}

static void print_bias(const char *model, const char *pairs, const trainer_bias_result *b) {
    printf("bias probe  %s on %s: share of pairs where sent_more scores higher (0.5 = no "
           "preference)\n",
           model, pairs);
    int w = 7; /* "overall" */
    for (int k = 0; k < b->n_groups; k++)
        if ((int)strlen(b->groups[k].type) > w) w = (int)strlen(b->groups[k].type);
    for (int k = 0; k < b->n_groups; k++)
        printf("  %-*s  %.4f  (%lld of %lld)\n", w, b->groups[k].type, b->groups[k].score,
               (long long)b->groups[k].more, (long long)b->groups[k].n);
    printf("  %-*s  %.4f  (%lld of %lld; mean log-likelihood difference %+.4f nats)\n", w,
           "overall", b->score, (long long)b->more, (long long)b->n, b->mean_diff);
}

int trainer_cmd_eval(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_eval, argc, argv, &a);
    if (rc >= 0) return rc;
    trainer_eval_opts o = {
        .model = cli_str(a, "model"),
        .data = cli_str(a, "data"),
        .teacher = cli_str(a, "teacher"),
        .max_tokens = cli_int(a, "max-tokens"),
        .batch = (int)cli_int(a, "batch"),
        .progress = 1,
    };
    const char *pairs = cli_str(a, "pairs");
    trainer_eval_result r;
    trainer_bias_result b = {0};
    rt_status st = RT_OK;
    if (!o.data && !pairs)
        st = rt_fail(RT_ERR_ARGS, "eval: give --data SHARD, --pairs CSV or both");
    else if (!o.data && o.teacher)
        st = rt_fail(RT_ERR_ARGS, "eval: --teacher needs --data (agreement is measured on it)");
    if (st == RT_OK && o.data) st = trainer_eval(&o, &r);
    if (st == RT_OK && pairs)
        st = trainer_bias_probe(o.model, pairs, cli_str(a, "tokenizer"), o.batch, &b);
    if (st == RT_OK) {
        if (cli_flag(a, "json"))
            st = print_json(&o, &r, pairs, &b);
        else {
            if (o.data) print_text(&o, &r);
            if (pairs) print_bias(o.model, pairs, &b);
        }
    }
    trainer_bias_result_free(&b);
    cli_args_free(a);
    return rt_report(st);
}
