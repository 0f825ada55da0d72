/* The transformer that learns: GPT-2 exactly as Hugging Face's
 * GPT2LMHeadModel defines it, at any size, trained with oneDNN kernels.
 *
 * Memory follows llm.c: all parameters in one 64-byte aligned float block
 * described by a table of named tensors (Hugging Face state-dict names and
 * shapes, Conv1D weights stored [in, out]), gradients in a second block of
 * the same layout, AdamW moments in a third and fourth, activations in a
 * fifth. Gradient sync is one all-reduce over the gradient block and a
 * checkpoint is a walk over the tensor table. */
#ifndef STUDENT_H
#define STUDENT_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

typedef struct {
    int n_layer;    /* transformer blocks */
    int n_head;     /* attention heads; d_model % n_head == 0 */
    int d_model;    /* residual width */
    int d_ff;       /* MLP hidden width (4*d_model in GPT-2) */
    int vocab_size; /* from the tokenizer */
    int seq_len;    /* context length = rows of wpe */
} student_config;

/* Checks every field is positive and consistent; the message names the
 * offending field. */
rt_status student_config_validate(const student_config *c);

/* One parameter tensor of the block. */
typedef struct {
    char name[64];   /* e.g. "transformer.h.0.attn.c_attn.weight" */
    int ndim;        /* 1 or 2 */
    int64_t shape[2];/* as in a Hugging Face GPT-2 state dict */
    size_t offset;   /* in floats from the start of the parameter block */
    size_t numel;
    int decay;       /* 1 if AdamW weight decay applies (matmul weights only) */
} student_tensor;

/* Number of tensors: 2 + 12 * n_layer + 2 (wte, wpe, per block
 * ln_1.{weight,bias} attn.c_attn.{weight,bias} attn.c_proj.{weight,bias}
 * ln_2.{weight,bias} mlp.c_fc.{weight,bias} mlp.c_proj.{weight,bias},
 * ln_f.{weight,bias}); tensors are laid out in that order, each starting on
 * a 16-float boundary. */
int student_tensor_count(const student_config *c);
void student_tensor_info(const student_config *c, int index, student_tensor *out);
/* Index of the tensor named `name`, or -1. */
int student_tensor_find(const student_config *c, const char *name);
/* Floats in the parameter block (including alignment padding). */
size_t student_block_floats(const student_config *c);
/* Trainable parameters (sum of numel, no padding). */
size_t student_param_count(const student_config *c);

/* ------------------------------------------------------------------ model
 *
 * A student_model owns the five blocks (parameters, gradients, AdamW m and v,
 * activations), the oneDNN engine and stream, and every matmul primitive,
 * created once per shape and reused each step. Forward always runs full
 * windows of T = c->seq_len tokens for B <= `batch` rows (the KV-cache
 * inference below handles other lengths). Threads: OpenMP, as many as
 * OMP_NUM_THREADS says (oneDNN uses the same pool). */

typedef enum { STUDENT_F32, STUDENT_BF16 } student_precision;

typedef struct student_model student_model;

/* Allocates and plans a model for micro-batches of up to `batch` rows.
 * training = 0 skips gradients, optimizer state and per-layer backward
 * activations (teacher forward, eval); then student_grads/adam_m/adam_v,
 * student_dlogits and student_hidden_grad return NULL and student_backward
 * fails. Parameters start at zero: call student_init_weights or fill
 * student_params(). bf16: matmuls run in bf16 with f32 accumulation and an
 * f32 master copy of the weights; everything else stays f32. */
rt_status student_create(const student_config *c, int batch, student_precision p, int training,
                         student_model **out);
void student_destroy(student_model *m); /* NULL-safe */

const student_config *student_cfg(const student_model *m);
student_precision student_prec(const student_model *m);
int student_max_batch(const student_model *m);
/* Floats in each of the parameter/gradient/moment blocks
 * (== student_block_floats(student_cfg(m))). */
size_t student_block_size(const student_model *m);
/* The parameter block (layout: student_tensor_info). Writable: whoever asks
 * for it may change weights, so in bf16 mode the bf16 copy is refreshed
 * before the next forward. */
float *student_params(student_model *m);
float *student_grads(student_model *m);  /* same layout; NULL unless training */
float *student_adam_m(student_model *m); /* same layout; NULL unless training */
float *student_adam_v(student_model *m); /* same layout; NULL unless training */

/* GPT-2 initialisation, deterministic in `seed` (independent of thread
 * count): weights and embeddings N(0, 0.02), the two c_proj weights of each
 * block N(0, 0.02/sqrt(2*n_layer)), biases 0, LayerNorm weight 1 bias 0. */
void student_init_weights(student_model *m, uint64_t seed);

/* Forward pass over inputs (B, T) token ids, T = seq_len, 1 <= B <= batch.
 * Fills student_logits (B,T,V) and keeps what backward needs; zeroes the
 * student_hidden_grad buffers. A token id outside [0, vocab) is RT_ERR_ARGS. */
rt_status student_forward(student_model *m, const int32_t *inputs, int B);
float *student_logits(student_model *m);  /* (B, T, V) of the last forward */
/* Residual stream after block `layer` (0 <= layer < n_layer): (B, T, C). */
float *student_hidden(student_model *m, int layer);
/* (B, T, C) gradient that backward adds to the residual gradient after
 * block `layer` (feature-loss injection). Zeroed by student_forward. */
float *student_hidden_grad(student_model *m, int layer);
/* (B, T, V) gradient of the loss wrt the logits; the loss kernels fill it. */
float *student_dlogits(student_model *m);
/* Backpropagates student_dlogits (+ hidden grads) of the last forward, which
 * must have had the same B, ADDING into the gradient block (micro-batch
 * accumulation); call student_zero_grad between optimizer steps. */
rt_status student_backward(student_model *m, int B);
void student_zero_grad(student_model *m);

/* Kernel-level profile: reset (and switch on or off) the per-kernel-class
 * time accounting of forward, backward and the optimizer; read it back as
 * up to n (name, seconds) pairs, returning how many were written. Off by
 * default; on, it costs two clock reads per kernel. */
void student_profile_reset(student_model *m, int enable);
int student_profile_get(const student_model *m, const char **names, double *seconds, int n);

/* ------------------------------------------------------------- optimizer */

/* One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p, bias
 * corrected moments, eps added to sqrt(v_hat)). Decay applies only to
 * tensors with decay = 1 (matmul weights), see optim.c for why. step is
 * 1-based. In bf16 mode also refreshes the bf16 weight copy. */
void student_adamw_step(student_model *m, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t step);
double student_grad_norm(student_model *m); /* L2 norm over every gradient */
void student_grad_scale(student_model *m, float s); /* grads *= s (clipping) */
/* Learning rate of 1-based `step`: linear warmup over `warmup` steps to lr,
 * then cosine decay to 0.1*lr at step `total` (and 0.1*lr after). */
float student_lr_at(int64_t step, float lr, int warmup, int64_t total);

/* ----------------------------------------------------------- loss kernels
 *
 * Vocabulary-level kernels over n_pos rows of V logits, OpenMP-parallel over
 * positions; the trainer composes them. Sums are returned in double; divide
 * by the number of positions (or pass scale = 1/n) for means. */

/* Sum over positions of -log softmax(logits)[target]. If dlogits != NULL,
 * WRITES dlogits = scale * (softmax - onehot(target)). A negative target
 * masks its position (no loss, zero gradient row); target >= V is a bug. */
double student_loss_ce(const float *logits, const int32_t *targets, int n_pos, int V,
                       float *dlogits, float scale);

/* Teacher side of distillation: p = softmax(logits / T) per position, its k
 * largest entries as ids (descending by probability, ties by lower id) and
 * log-probabilities, and tail = probability mass outside them (>= 0).
 * k == V is the dense case: ids are 0..V-1 in order (ids may then be NULL:
 * nothing is written) and tail = 0. */
void student_teacher_topk(const float *logits, int n_pos, int V, float T, int k, int32_t *ids,
                          float *logp, float *tail);

/* Sum over positions of KL(p_T || q_T) with q = softmax(logits / T), where p
 * is given per position by top-k ids + log-probs (n_pos*k each) and the tail
 * mass, treated as one extra bucket whose student mass is q_tail = 1 - sum of
 * q over the ids. If dlogits != NULL, ADDS scale * dKL/dlogits, i.e.
 * scale/T * (q_j - p~_j) with p~_j = p_j on the ids and tail*q_j/q_tail
 * elsewhere. k == V with tail 0 is exactly the dense KL; then topk_ids may
 * be NULL, meaning 0..V-1 in order (the fast contiguous path, also taken
 * when the ids are given in that order), and tail is not read (may be NULL).
 * Ids outside [0, V) are a bug (records are validated where they arrive). */
double student_loss_kd(const float *logits, int n_pos, int V, float T, const int32_t *topk_ids,
                       const float *topk_logp, const float *tail, int k, float *dlogits,
                       float scale);

/* The usual distillation pair in one sweep over the logits: exactly
 * student_loss_ce(..., ce_scale) followed by student_loss_kd(..., kd_scale)
 * (dlogits WRITTEN with the sum of both gradients), but logits and dlogits
 * cross memory once. Returns the CE sum; the KL sum goes to *kd_sum if not
 * NULL. A negative target masks the CE term of its position only. */
double student_loss_distill(const float *logits, const int32_t *targets, int n_pos, int V,
                            float T, const int32_t *topk_ids, const float *topk_logp,
                            const float *tail, int k, float *dlogits, float ce_scale,
                            float kd_scale, double *kd_sum);

/* Dense variants (teacher log-probs at temperature T given for every token,
 * n_pos*V): reverse KL(q_T || p) and Jensen-Shannon divergence
 * JS = KL(p||m)/2 + KL(q||m)/2, m = (p+q)/2. Both return the sum over
 * positions and ADD scale * d/dlogits into dlogits when it is not NULL. */
double student_loss_rkl(const float *logits, int n_pos, int V, float T, const float *teacher_logp,
                        float *dlogits, float scale);
double student_loss_jsd(const float *logits, int n_pos, int V, float T, const float *teacher_logp,
                        float *dlogits, float scale);

/* ------------------------------------------------- KV-cache inference
 *
 * Incremental decoding of one sequence: the first call takes the prompt,
 * later calls one (or a few) new tokens each; keys and values of earlier
 * positions are cached, so a new token costs one row of every matmul plus
 * attention over the cache. Uses the model's parameters (and precision) as
 * they are at each call; the model's training buffers are not touched.
 * A bf16 model runs the matmuls in bf16 and the attention over the cache
 * in f32, so its logits match its full forward to bf16 precision only. */
typedef struct student_kv student_kv;

/* A cache for up to max_len positions (1 <= max_len <= seq_len, the number
 * of learned positions). */
rt_status student_infer_create(const student_model *m, int max_len, student_kv **out);
void student_infer_destroy(student_kv *kv); /* NULL-safe */
void student_infer_reset(student_kv *kv);   /* forget the sequence */
int student_infer_len(const student_kv *kv); /* positions cached so far */
/* Appends n tokens at positions len..len+n-1 and writes the logits (V) of
 * the last one. RT_ERR_ARGS if a token is out of range or the cache would
 * exceed max_len (then nothing is appended). */
rt_status student_infer_step(student_model *m, student_kv *kv, const int32_t *tokens, int n,
                             float *logits_last);

#endif
