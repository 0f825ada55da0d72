/* The evaluation protocol (docs/ARCHITECTURE.md "Evaluation protocol"),
 * implemented once in eval.c and used by everything that measures a loss on
 * held-out tokens: `retort eval` (cmd_eval.c prints trainer_eval's result),
 * `retort report` (report.c calls trainer_eval once per model) and the
 * periodic validation inside `retort train` (train.c runs
 * trainer_eval_windows on its own model, windows split over the students).
 * It lives apart from cmds.h because cmds.h holds only command entry points
 * and option tables. */
#ifndef TRAINER_EVAL_H
#define TRAINER_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "rt_status.h"
#include "student.h"

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

/* Evaluates a model file per docs/ARCHITECTURE.md "Evaluation protocol": window i
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

/* Windows of the protocol in the first n_tokens tokens: window i predicts
 * tokens[i*T+1 .. i*T+T] from tokens[i*T .. i*T+T-1], so it needs tokens up
 * to i*T+T; a final partial window is dropped. 0 when n_tokens <= T. */
int64_t trainer_eval_n_windows(int64_t n_tokens, int T);

/* What trainer_eval_windows adds up; zero it before the first call. */
typedef struct {
    double loss_sum; /* cross-entropy summed over the predicted tokens (nats) */
    int64_t tokens;  /* predicted tokens */
    int64_t agree;   /* positions whose model and teacher top-1 agree (with a teacher) */
    int64_t bin_count[TRAINER_ECE_BINS], bin_correct[TRAINER_ECE_BINS]; /* with top1 */
    double bin_conf[TRAINER_ECE_BINS];
} trainer_eval_sums;

/* Runs windows first, first + stride, ... (all < n_windows) of tokens
 * through m, up to `batch` windows per forward pass (batch <= the batch m
 * was created for), and adds their cross-entropy into sums. With top1 also
 * the top-1 confidence bins, and with a teacher (created for >= batch rows,
 * same seq_len and vocab) the top-1 agreement. The tokens come from memory
 * (`tokens`, holding n_windows * T + 1 of them, see trainer_eval_n_windows)
 * or, when tokens is NULL, window by window from the open shard `shard`
 * (data_shard_read_window), so memory does not grow with it. With progress, a
 * line on stderr every 5 s once a pass runs long. Splitting windows over
 * ranks (first = rank, stride = ranks) and summing the sums gives the same
 * loss as one pass over all of them. */
rt_status trainer_eval_windows(student_model *m, student_model *teacher, const int32_t *tokens,
                               data_shard *shard, int64_t n_windows, int64_t first,
                               int64_t stride, int batch, int top1, int progress,
                               trainer_eval_sums *sums);

#endif
