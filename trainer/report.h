/* Evaluation as a library, and `retort report` built on it.
 *
 * trainer_eval is what `retort eval` runs (cmd_eval.c): report.c calls it
 * once per model so that every number in a report comes from a real
 * evaluation, never from a hand-entered value. It lives here rather than in
 * cmds.h because cmds.h holds only command entry points and option tables. */
#ifndef TRAINER_REPORT_H
#define TRAINER_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "rt_status.h"

/* Equal-width confidence bins of the expected calibration error. */
#define TRAINER_ECE_BINS 15

typedef struct {
    const char *model;   /* checkpoint or deploy file (anything ckpt_load_model reads) */
    const char *data;    /* token shard; its vocab_size must equal the model's */
    const char *teacher; /* NULL, or a checkpoint of the same vocab and seq_len */
    int64_t max_tokens;  /* use only the first N tokens of the shard; 0 = all */
    int batch;           /* windows per forward pass (>= 1) */
    int progress;        /* progress lines on stderr when the eval runs long */
} trainer_eval_opts;

typedef struct {
    double loss;       /* mean cross-entropy (nats) over every predicted token */
    double perplexity; /* exp(loss) */
    double ece;        /* expected calibration error of the top-1 prediction, in [0, 1] */
    double agreement;  /* share of positions where model and teacher top-1 agree; NAN without a teacher */
    int64_t tokens;    /* predicted tokens = windows * seq_len */
    int64_t windows;
    int64_t params;     /* trainable parameters of the model */
    int64_t file_bytes; /* size of the model file on disk */
    int vocab_size, seq_len;
    double seconds;      /* wall time of the forward passes and losses (loading excluded) */
    double tokens_per_s; /* tokens / seconds */
} trainer_eval_result;

/* Evaluates per docs/ARCHITECTURE.md "Evaluation protocol": window i
 * predicts tokens[i*T+1 .. i*T+T] from tokens[i*T .. i*T+T-1], a final
 * partial window is dropped. Errors (one line naming the file): missing or
 * bad files, a vocabulary mismatch between shard and model (or teacher and
 * model), a teacher of another seq_len, and a shard too short for one
 * window. */
rt_status trainer_eval(const trainer_eval_opts *o, trainer_eval_result *out);

/* Top-1 statistics of n_pos rows of V logits, added into the accumulators:
 * per confidence bin (TRAINER_ECE_BINS equal-width bins of the top-1 softmax
 * probability, bin 14 closed at 1) the count, the summed confidence and the
 * count of rows whose top-1 (ties: lowest id) equals the target. top1 (may
 * be NULL) receives each row's top-1 id. */
void trainer_eval_top1(const float *logits, const int32_t *targets, int64_t n_pos, int V,
                       int64_t *bin_count, double *bin_conf, int64_t *bin_correct, int32_t *top1);
/* ECE = sum_b (n_b / N) * |accuracy_b - confidence_b| of the accumulators above. */
double trainer_eval_ece(const int64_t *bin_count, const double *bin_conf,
                        const int64_t *bin_correct);

#endif
