/* The transformer that teaches: a frozen model run forward only, turned into
 * what a student learns from, per micro-batch of B rows of T tokens:
 *   - soft labels of p = softmax(logits / T_kd) in one of the label schemes:
 *     topk: the top-k token ids, their log-probabilities and the tail mass
 *       left outside them (k = vocab is dense: ids 0..V-1, tail 0);
 *     sample: the distinct tokens of `samples` draws from p with their
 *       counts, as log-probabilities of the empirical distribution (an
 *       unbiased estimate of p), tail 0;
 *     topk+sample: the exact top-k, then `samples` draws from the tail
 *       carrying the tail's mass, tail 0 (student_teacher_sample);
 *     hidden: no label entries, but the final normalized hidden state per
 *       position (int8 with a per-position scale, or bf16), from which a
 *       student holding the teacher's output matrix rebuilds all logits
 *       (student_hidden_encode, student_hidden_head_logits);
 *   - optionally the residual stream after some of its blocks (feature maps).
 *
 * The teacher reuses student/'s model and kernels with training = 0 (no
 * gradients, no optimizer state), so it holds one block of parameters and
 * the forward activations of `batch` rows. It knows nothing of MPI or of
 * files: trainer/ loads the model (ckpt_load_model_window) and moves the
 * outputs over comm/. */
#ifndef TEACHER_H
#define TEACHER_H

#include <stdint.h>

#include "rt_status.h"
#include "student.h"

#define TEACHER_MAX_FEATURES 64

typedef struct teacher teacher;

/* Soft-label schemes; the order is that of the distill.labels choices. */
typedef enum {
    TEACHER_LABELS_TOPK = 0,
    TEACHER_LABELS_SAMPLE = 1,
    TEACHER_LABELS_TOPK_SAMPLE = 2,
    TEACHER_LABELS_HIDDEN = 3,
} teacher_labels;

typedef struct {
    student_config model;        /* the teacher's own shape */
    int batch;                   /* most rows per call */
    student_precision precision; /* forward in f32 or bf16 */
    float temperature;           /* > 0 */
    teacher_labels labels;       /* label scheme */
    int topk;                    /* 1 .. vocab; vocab = dense (topk, topk+sample) */
    int samples;                 /* draws per position (sample, topk+sample) */
    int hidden_bf16;             /* hidden: 1 = bf16 states, 0 = int8 + scales */
    int n_features;              /* teacher layers whose hidden states are sent */
    int feature_layers[TEACHER_MAX_FEATURES]; /* each in [0, n_layer) */
} teacher_config;

/* Validates the configuration (the message names the bad field) and plans
 * the forward. Parameters start at zero: fill teacher_params(). */
rt_status teacher_create(const teacher_config *c, teacher **out);
/* The same around a model already loaded (ckpt_load_model_window: any
 * checkpoint, deploy file, int8 deploy file or Hugging Face folder);
 * c->model and c->precision are taken from it. The teacher owns `model`
 * from this call on, also when it fails (then it is destroyed). */
rt_status teacher_create_with(const teacher_config *c, student_model *model, teacher **out);
void teacher_destroy(teacher *t); /* NULL-safe */

const teacher_config *teacher_cfg(const teacher *t);
/* The parameter block (layout student_tensor_info of c->model); writable. */
float *teacher_params(teacher *t);

/* Entries per position of the scheme: topk for topk (capped at vocab),
 * samples for sample, topk + samples for topk+sample, 0 for hidden. */
int teacher_label_width(const teacher_config *c);

/* The sampling seed of a window: every position of the window starting at
 * token `start` of the shard, at global training step `step`, draws from a
 * stream derived from it. A function of the run's seed and the batch's
 * identity only, so online labels, a resume and a label cache agree. */
uint64_t teacher_window_seed(uint64_t seed, int64_t step, int64_t start);

/* Where teacher_run writes, for n = B*T positions and W =
 * teacher_label_width entries per position; NULL where the scheme or the
 * features do not use it. */
typedef struct {
    int32_t *ids;  /* (n, W); with dense topk it may be NULL (0..V-1 implied) */
    float *logp;   /* (n, W) */
    float *tail;   /* (n) */
    void *hstate;  /* hidden: (n, d_model) int8 or bf16 */
    float *hscale; /* hidden, int8: (n) */
    float *feat;   /* (n_features, n, d_model) in the order of feature_layers */
} teacher_out;

/* Where a teacher's time went, summed over its teacher_run calls since
 * teacher_create or teacher_stats_reset: the forward (student_forward),
 * then the rest of the call, which builds what a record carries (labels of
 * the scheme, hidden-state encoding, feature-map copies). Wall-clock
 * seconds, and process CPU seconds of all threads (student_cpu_seconds),
 * which time slices lost to other processes do not move. The one home of
 * the teacher's timing split: `retort train` prints it under
 * RETORT_TEACHER_STATS and `retort bench teacher` reports it. */
typedef struct {
    int64_t runs, tokens; /* teacher_run calls that succeeded, their B*T positions */
    double forward_s, labels_s;
    double forward_cpu_s, labels_cpu_s;
} teacher_stats;

teacher_stats teacher_get_stats(const teacher *t);
void teacher_stats_reset(teacher *t);

/* Runs the forward over inputs (B, T) and writes the labels of the scheme
 * into out: top-k in descending probability, sampled rows as
 * student_teacher_sample says, hidden states as student_hidden_encode
 * says, and the feature maps when out->feat is set. The rows are the
 * windows starting at starts (B) of global step `step` of a run seeded with
 * `seed`: the sampled schemes draw position i of row r from
 * rt_seed_derive(teacher_window_seed(seed, step, starts[r]), i). A token
 * id outside the vocabulary is RT_ERR_ARGS. */
rt_status teacher_run(teacher *t, const int32_t *inputs, int B, uint64_t seed, int64_t step,
                      const int64_t *starts, const teacher_out *out);

#endif
