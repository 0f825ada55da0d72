/* The transformer that teaches: a frozen model run forward only, turned into
 * what a student learns from, per micro-batch of B rows of T tokens:
 *   - soft labels at temperature T_kd as the top-k token ids of
 *     p = softmax(logits / T_kd), their log-probabilities and the tail mass
 *     left outside them (k = vocab is dense: ids 0..V-1, tail 0);
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

typedef struct {
    student_config model;        /* the teacher's own shape */
    int batch;                   /* most rows per call */
    student_precision precision; /* forward in f32 or bf16 */
    float temperature;           /* > 0 */
    int topk;                    /* 1 .. vocab; vocab = dense */
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

/* Runs the forward over inputs (B, T) and writes, for n = B*T positions:
 * ids (n, k) and logp (n, k) in descending probability, tail (n), and when
 * feat != NULL the feature maps (n_features, n, d_model) in the order of
 * feature_layers. With k = vocab, ids may be NULL (then 0..V-1 is implied).
 * A token id outside the vocabulary is RT_ERR_ARGS. */
rt_status teacher_run(teacher *t, const int32_t *inputs, int B, int32_t *ids, float *logp,
                      float *tail, float *feat);

/* Logits (B, T, V) of the last teacher_run (top-1 agreement, tests). */
const float *teacher_logits(const teacher *t);

#endif
