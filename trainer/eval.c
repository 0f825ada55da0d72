/* The evaluation protocol, once (eval.h): consecutive, non-overlapping
 * windows of seq_len tokens, a final partial window dropped, the mean
 * cross-entropy over every predicted token, plus top-1 calibration (ECE)
 * and, given a teacher, top-1 agreement.
 *
 * trainer_eval_windows is the loop over windows that every caller shares:
 * trainer_eval (the file-to-result form behind `retort eval` and `retort
 * report`) runs all windows on one process; training (train.c) runs each
 * student's share and all-reduces the sums. Windows go through the model
 * `batch` at a time with the same full-window forward training uses, so an
 * evaluation measures exactly the model training produced. trainer_eval
 * loads through ckpt_load_model, the one path from a file to a ready model,
 * so any file kind it learns to read (deploy, int8) evaluates here
 * unchanged, and reads the shard window by window (hyperslabs), so its
 * memory does not grow with the shard. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "data.h"
#include "eval.h"
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

int64_t trainer_eval_n_windows(int64_t n_tokens, int T) {
    return n_tokens >= 1 ? (n_tokens - 1) / T : 0;
}

rt_status trainer_eval_windows(student_model *m, student_model *teacher, const int32_t *tokens,
                               data_shard *shard, int64_t n_windows, int64_t first,
                               int64_t stride, int batch, int top1, int progress,
                               trainer_eval_sums *sums) {
    const student_config *c = student_cfg(m);
    const int T = c->seq_len, V = c->vocab_size;
    RT_ASSERT(batch >= 1 && stride >= 1 && first >= 0 && (tokens != NULL) != (shard != NULL));
    const size_t rows = (size_t)batch * (size_t)T;
    int32_t *inputs = malloc(rows * sizeof *inputs), *targets = malloc(rows * sizeof *targets);
    int32_t *top_m = top1 ? malloc(rows * sizeof *top_m) : NULL;
    int32_t *top_t = top1 && teacher ? malloc(rows * sizeof *top_t) : NULL;
    rt_status st = RT_OK;
    if (!inputs || !targets || (top1 && !top_m) || (top1 && teacher && !top_t)) {
        st = rt_fail(RT_ERR_NOMEM, "eval: out of memory for a batch of %d windows", batch);
        goto cleanup;
    }
    const int64_t mine = first < n_windows ? (n_windows - first + stride - 1) / stride : 0;
    const double t0 = now_s();
    double last_print = t0;
    for (int64_t k0 = 0; k0 < mine; k0 += batch) {
        const int B = (int)(mine - k0 < batch ? mine - k0 : batch);
        for (int b = 0; b < B; b++) {
            const int64_t start = (first + (k0 + b) * stride) * T;
            int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
            if (shard) {
                if ((st = data_shard_read_window(shard, start, T, in, tg)) != RT_OK) goto cleanup;
            } else {
                memcpy(in, tokens + start, (size_t)T * sizeof *inputs);
                memcpy(tg, tokens + start + 1, (size_t)T * sizeof *targets);
            }
        }
        const int64_t n_pos = (int64_t)B * T;
        if ((st = student_forward(m, inputs, B)) != RT_OK) goto cleanup;
        const float *logits = student_logits(m);
        sums->loss_sum += student_loss_ce(logits, targets, (int)n_pos, V, NULL, 0);
        sums->tokens += n_pos;
        if (top1) {
            trainer_eval_top1(logits, targets, n_pos, V, sums->bin_count, sums->bin_conf,
                              sums->bin_correct, top_m);
            if (teacher) {
                if ((st = student_forward(teacher, inputs, B)) != RT_OK) goto cleanup;
                /* Only the teacher's top-1 is needed; its bins are thrown away. */
                int64_t tc[TRAINER_ECE_BINS] = {0}, tk[TRAINER_ECE_BINS] = {0};
                double tf[TRAINER_ECE_BINS] = {0};
                trainer_eval_top1(student_logits(teacher), NULL, n_pos, V, tc, tf, tk, top_t);
                for (int64_t i = 0; i < n_pos; i++) sums->agree += top_m[i] == top_t[i];
            }
        }
        const double now = now_s();
        /* Quiet for short evals; a line every 5 s once one runs long. */
        if (progress && now - last_print >= 5.0 && k0 + B < mine) {
            const double done = (double)(k0 + B), rate = done * T / (now - t0);
            fprintf(stderr, "eval: %lld/%lld windows (%.0f%%), %.0f tokens/s, ETA %.0f s\n",
                    (long long)(k0 + B), (long long)mine, 100.0 * done / (double)mine, rate,
                    (double)(mine - k0 - B) * T / rate);
            last_print = now;
        }
    }
cleanup:
    free(inputs);
    free(targets);
    free(top_m);
    free(top_t);
    return st;
}

rt_status trainer_eval(const trainer_eval_opts *o, trainer_eval_result *out) {
    student_model *m = NULL, *t = NULL;
    data_shard *sh = NULL;
    int64_t n_tokens = 0, shard_vocab = 0;
    rt_status st;
    memset(out, 0, sizeof *out);
    out->agreement = NAN;
    RT_ASSERT(o->batch >= 1);

    if ((st = ckpt_load_model(o->model, o->batch, STUDENT_F32, 0, &m, NULL)) != RT_OK)
        goto cleanup;
    const student_config *c = student_cfg(m);
    const int T = c->seq_len, V = c->vocab_size;
    /* windows are read as they are evaluated: memory does not grow with the shard */
    if ((st = data_shard_open(o->data, &sh)) != RT_OK) goto cleanup;
    n_tokens = data_shard_n_tokens(sh);
    shard_vocab = data_shard_vocab_size(sh);
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
    const int64_t W = trainer_eval_n_windows(n, T);
    if (W == 0) {
        /* Too short by --max-tokens is the user's choice; too short a file is the file's. */
        st = rt_fail(n < n_tokens ? RT_ERR_ARGS : RT_ERR_FORMAT,
                     "%s: %lld tokens%s are fewer than one window of seq_len + 1 = %d tokens",
                     o->data, (long long)n, n < n_tokens ? " (--max-tokens)" : "", T + 1);
        goto cleanup;
    }

    trainer_eval_sums sums = {0};
    const double t0 = now_s();
    if ((st = trainer_eval_windows(m, t, NULL, sh, W, 0, 1, o->batch, 1, o->progress, &sums)) !=
        RT_OK)
        goto cleanup;
    const double secs = now_s() - t0;

    out->tokens = sums.tokens;
    out->windows = W;
    out->loss = sums.loss_sum / (double)out->tokens;
    if (!isfinite(out->loss)) { /* never "loss nan" with exit 0 (issue 16 item 12) */
        st = rt_fail(RT_ERR_FORMAT, "%s: gives a non-finite loss (%g) on %s: its weights or "
                     "scales overflow float32", o->model, out->loss, o->data);
        goto cleanup;
    }
    out->perplexity = exp(out->loss);
    out->ece = trainer_eval_ece(sums.bin_count, sums.bin_conf, sums.bin_correct);
    if (t) out->agreement = (double)sums.agree / (double)out->tokens;
    out->params = (int64_t)student_param_count(c);
    out->file_bytes = ckpt_model_bytes(o->model);
    out->vocab_size = V;
    out->seq_len = T;
    out->seconds = secs;
    out->tokens_per_s = secs > 0 ? (double)out->tokens / secs : 0;

cleanup:
    student_destroy(m);
    student_destroy(t);
    data_shard_close(sh);
    return st;
}
