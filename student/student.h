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
    int n_head;     /* attention heads; d_model % n_head == 0 unless d_head is set */
    int d_model;    /* residual width */
    int d_ff;       /* MLP hidden width (4*d_model in GPT-2) */
    int vocab_size; /* from the tokenizer */
    int seq_len;    /* context length = rows of wpe */
    int d_head;     /* per-head width; 0 = d_model / n_head. Set when heads were
                     * removed, so attention width n_head*d_head < d_model */
    int rank[4];    /* per student_linear: 0 = a dense weight; r > 0 = low-rank
                     * factors [in, r] x [r, out] in every block (prune
                     * --method lowrank), 1 <= r <= min(in, out) */
} student_config;

/* The largest shapes retort builds: the [model] keys of an INI file and
 * the /config of every file read are held to the same bounds (docs/CONFIG.md),
 * so a file that lies about its shape is refused before anything is sized
 * from it. Within them every size product fits 64 bits. */
#define STUDENT_MAX_LAYERS 1024
#define STUDENT_MAX_HEADS 1024
#define STUDENT_MAX_D_MODEL 65536
#define STUDENT_MAX_D_FF 1048576
#define STUDENT_MAX_SEQ_LEN 65536
#define STUDENT_MAX_VOCAB 16777216

/* Checks every field is positive, within the maxima above and consistent;
 * the message names the offending field. */
rt_status student_config_validate(const student_config *c);
/* Per-head width hs (d_head, or d_model / n_head when d_head is 0) and the
 * attention width A = n_head * hs: c_attn is [C, 3A], attn.c_proj [A, C]. */
int student_head_dim(const student_config *c);
int student_attn_width(const student_config *c);

/* One parameter tensor of the block. */
typedef struct {
    char name[64];   /* e.g. "transformer.h.0.attn.c_attn.weight" */
    int ndim;        /* 1 or 2 */
    int64_t shape[2];/* as in a Hugging Face GPT-2 state dict */
    size_t offset;   /* in floats from the start of the parameter block */
    size_t numel;
    int decay;       /* 1 if AdamW weight decay applies (matmul weights only) */
} student_tensor;

/* The table (params.c) lists wte, wpe, then the STUDENT_BLOCK_TENSORS
 * tensors of every block in this order, then ln_f.{weight,bias}; each
 * tensor starts on a 16-float boundary. This enum is the only statement of
 * the per-block order: code that needs "tensor k of block l" asks
 * student_block_index. */
typedef enum {
    STUDENT_LN1W,     STUDENT_LN1B,     /* ln_1.{weight,bias}        (C)              */
    STUDENT_QKVW,     STUDENT_QKVB,     /* attn.c_attn.{weight,bias} [C, 3A], (3A)    */
    STUDENT_ATTPROJW, STUDENT_ATTPROJB, /* attn.c_proj.{weight,bias} [A, C], (C)      */
    STUDENT_LN2W,     STUDENT_LN2B,     /* ln_2.{weight,bias}        (C)              */
    STUDENT_FCW,      STUDENT_FCB,      /* mlp.c_fc.{weight,bias}    [C, F], (F)      */
    STUDENT_FCPROJW,  STUDENT_FCPROJB,  /* mlp.c_proj.{weight,bias}  [F, C], (C)      */
    STUDENT_BLOCK_TENSORS,
    /* Second factors of low-rank linears (cfg.rank[k] > 0), which then
     * store W = W_a W_b: the weight slot holds W_a as "<linear>.weight_a"
     * [in, r] and these slots W_b as "<linear>.weight_b" [r, out]. They
     * exist only for factored linears and sit in the table after every
     * block, before ln_f (student_linear_factor), so that a dense model's
     * table is exactly the 12-per-block one. */
    STUDENT_QKVW_B = STUDENT_BLOCK_TENSORS, STUDENT_ATTPROJW_B, STUDENT_FCW_B, STUDENT_FCPROJW_B,
    STUDENT_BLOCK_SLOTS
} student_block_tensor;

/* The linear layers of a block, named by the activation each one reads
 * (A = attention width, student_attn_width). */
typedef enum {
    STUDENT_LIN_QKV,     /* attn.c_attn: reads ln_1(x)       (C), weight [C, 3A] */
    STUDENT_LIN_ATTPROJ, /* attn.c_proj: reads attention out (A), weight [A, C]  */
    STUDENT_LIN_FC,      /* mlp.c_fc:    reads ln_2(x)       (C), weight [C, F]  */
    STUDENT_LIN_FCPROJ,  /* mlp.c_proj:  reads gelu(c_fc)    (F), weight [F, C]  */
    STUDENT_LIN_N
} student_linear;

/* Number of tensors: 2 + STUDENT_BLOCK_TENSORS * n_layer + (number of
 * factored linears) * n_layer + 2. */
int student_tensor_count(const student_config *c);
/* Name, shape and offset of tensor `index`, in O(1). */
void student_tensor_info(const student_config *c, int index, student_tensor *out);
/* Table index of tensor k of block `layer`. */
static inline int student_block_index(int layer, student_block_tensor k) {
    return 2 + layer * STUDENT_BLOCK_TENSORS + (int)k;
}
/* The inverse: for a tensor of a block, its block in *layer (when not
 * NULL) and returns k (STUDENT_QKVW_B.. for second factors); -1 for wte,
 * wpe and ln_f. */
int student_block_slot(const student_config *c, int index, int *layer);
/* Table index of the weight of linear `which` in block `layer` (its bias
 * is the next tensor). */
int student_linear_tensor(const student_config *c, int layer, student_linear which);
/* Table index of the second factor W_b of linear `which` in block
 * `layer`, or -1 when that linear is dense (c->rank[which] == 0). */
int student_linear_factor(const student_config *c, int layer, student_linear which);
/* The linear whose weight tensor `index` is (its block in *layer when not
 * NULL), or -1 when tensor `index` is not a linear weight, i.e. not
 * prunable. Both factors of a low-rank linear are its weights. */
int student_prune_target(const student_config *c, int index, int *layer);
/* "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj". */
const char *student_linear_name(student_linear which);
/* 1 when some linear is low-rank (c->rank[k] > 0). */
int student_is_lowrank(const student_config *c);
/* Rows and columns (in, out) of linear `which`'s dense weight. */
void student_linear_shape(const student_config *c, student_linear which, int64_t *in,
                          int64_t *out);
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

/* student_create's `training`: 0, or STUDENT_TRAIN optionally with
 * STUDENT_RECOMPUTE (activation recomputation, `train.recompute`): the
 * forward keeps the activations of one block only, plus every block's
 * output (student_hidden), and the backward recomputes each block's
 * forward from its input right before the block's backward (the last
 * block's are still there). Same kernels in the same order, so the
 * gradients are bitwise those without it; about one forward more per
 * step for most of the activation memory. */
enum { STUDENT_TRAIN = 1, STUDENT_RECOMPUTE = 2 };

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
/* Bytes of the activation blocks (f32 and bf16), sized at creation by the
 * batch, precision, training and STUDENT_RECOMPUTE (pages are touched by
 * the first forward and backward). */
size_t student_activation_bytes(const student_model *m);
student_precision student_prec(const student_model *m);
int student_max_batch(const student_model *m);
/* Floats in each of the parameter/gradient/moment blocks
 * (== student_block_floats(student_cfg(m))). */
size_t student_block_size(const student_model *m);
/* The parameter block (layout: student_tensor_info). Writable: whoever asks
 * for it may change weights, so the copies the matmuls read (bf16, packed)
 * are refreshed at the next forward. Take the pointer again after a forward
 * before writing through it once more. */
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
/* The same AdamW update on a plain array of n parameters with gradients g
 * and moments m, v (decay applied to all of them): feature projections and
 * other small trainable arrays that live outside the model block. */
void student_adamw_array(float *p, const float *g, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, int64_t step);
/* Learning rate of 1-based `step`: linear warmup over `warmup` steps to lr,
 * then cosine decay to min_ratio*lr at step `total` (and min_ratio*lr after). */
float student_lr_at(int64_t step, float lr, int64_t warmup, int64_t total, float min_ratio);

/* ----------------------------------------------------------- loss kernels
 *
 * Vocabulary-level kernels over n_pos rows of V logits, OpenMP-parallel over
 * positions; the trainer composes them. Sums are returned in double; divide
 * by the number of positions (or pass scale = 1/n) for means.
 *
 * The kernels that need per-row scratch take it from a student_loss_ws,
 * made once for a vocabulary size and the OpenMP threads available then
 * (a model owns one: student_loss_workspace), so they allocate nothing per
 * call and return a status: RT_ERR_ARGS when V exceeds the workspace's,
 * RT_ERR_FORMAT when a soft-label id lies outside [0, V). A workspace
 * serves one kernel call at a time. */
typedef struct student_loss_ws student_loss_ws;
/* RT_ERR_NOMEM when the 9.06 * V bytes per thread cannot be allocated. */
rt_status student_loss_ws_create(int V, student_loss_ws **out);
void student_loss_ws_free(student_loss_ws *ws); /* NULL is a no-op */
/* Grows each thread's scratch by `extra` bytes (kept when already that
 * large): the sampled soft labels need 16 bytes per draw
 * (student_teacher_sample_bytes). Call it once at set-up, not per step. */
rt_status student_loss_ws_reserve(student_loss_ws *ws, size_t extra);
/* The workspace model m made with itself, for rows of its vocabulary. */
student_loss_ws *student_loss_workspace(student_model *m);

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
rt_status student_teacher_topk(student_loss_ws *ws, const float *logits, int n_pos, int V, float T,
                               int k, int32_t *ids, float *logp, float *tail);

/* Sampled soft labels (the `sample` and `topk+sample` schemes, labels.c).
 * Row i of ids/logp (n_pos rows of W = k + n_samples entries) holds first
 * the k exact entries topk_ids/topk_logp as given (k = 0: none), then the
 * distinct tokens of n_samples draws from p = softmax(logits / T)
 * restricted to the tokens outside those k, by count (descending, ties by
 * lower id), with logp = log(m * count / n_samples), m the mass outside the
 * k; the rest of the row is padding: the row's first id with logp = -inf
 * (no mass). The draws of position i are a pure function of seeds[i]
 * (splitmix64). Needs 0 <= k, 1 <= n_samples, k + n_samples <= V. Its
 * scratch comes from ws, which must have been grown once with
 * student_loss_ws_reserve(ws, student_teacher_sample_bytes(n_samples)):
 * RT_ERR_ARGS otherwise (and when V exceeds the workspace's); nothing is
 * allocated per call. */
size_t student_teacher_sample_bytes(int n_samples);
rt_status student_teacher_sample(student_loss_ws *ws, const float *logits, int n_pos, int V, float T, int k,
                                 const int32_t *topk_ids, const float *topk_logp, int n_samples,
                                 const uint64_t *seeds, int32_t *ids, float *logp);

/* Hidden-state soft labels (the `hidden` scheme, labels.c): the teacher
 * sends its final normalized hidden state per position and the student
 * rebuilds the teacher's logits with the teacher's tied output matrix.
 *
 * student_final_hidden: ln_f of the last block's output of the last
 * forward, (B, T, C) f32 into out, exactly what the model's LM head reads.
 * student_hidden_encode: n rows of C floats to bf16 (bf16 = 1; scale is
 * not written) or to int8 with one scale per row (scale = max|h| / 127,
 * q = round(h / scale), |h - q * scale| <= scale / 2). */
void student_final_hidden(student_model *m, int B, float *out);
void student_hidden_encode(const float *h, int64_t n, int C, int bf16, void *out, float *scale);

/* The student side: holds a copy of the teacher's wte (V, C) and turns n
 * encoded hidden states into the teacher's logits (n, V) with one oneDNN
 * matmul; buffers and the primitive are made on the first call for a row
 * count and reused while it stays the same. */
typedef struct student_hidden_head student_hidden_head;
rt_status student_hidden_head_create(const float *wte, int V, int C, student_hidden_head **out);
void student_hidden_head_free(student_hidden_head *h); /* NULL is a no-op */
rt_status student_hidden_head_logits(student_hidden_head *h, const void *hidden, int bf16,
                                     const float *scale, int n, float *logits);

/* The usual distillation pair in one sweep over the logits: exactly
 * student_loss_ce(..., ce_scale) followed by the KL term below with
 * kd_scale (dlogits WRITTEN with the sum of both gradients), but logits and
 * dlogits cross memory once. The CE sum goes to *ce_sum, the KL sum to
 * *kd_sum if not NULL. A negative target masks the CE term of its position
 * only (so with every target negative this is the KL term alone).
 *
 * The KL term: sum over positions of KL(p_T || q_T) with q =
 * softmax(logits / T), where p is given per position by top-k ids +
 * log-probs (n_pos*k each) and the tail mass, treated as one extra bucket
 * whose student mass is q_tail = 1 - sum of q over the ids. Its gradient
 * is kd_scale/T * (q_j - p~_j) with p~_j = p_j on the ids and
 * tail*q_j/q_tail elsewhere. k == V with tail 0 is exactly the dense KL;
 * then topk_ids may be NULL, meaning 0..V-1 in order (the fast contiguous
 * path, also taken when the ids are given in that order), and tail is not
 * read (may be NULL). An entry with logp = -inf carries no mass (the
 * padding of sampled rows) and may repeat another entry's id. Ids outside
 * [0, V) are RT_ERR_FORMAT (records are validated where they arrive; this
 * keeps a bad one from indexing out of the row). */
rt_status student_loss_distill(student_loss_ws *ws, const float *logits, const int32_t *targets,
                               int n_pos, int V, float T, const int32_t *topk_ids,
                               const float *topk_logp, const float *tail, int k, float *dlogits,
                               float ce_scale, float kd_scale, double *ce_sum, double *kd_sum);

/* Dense variants (teacher log-probs at temperature T given for every token,
 * n_pos*V): reverse KL(q_T || p) and Jensen-Shannon divergence
 * JS = KL(p||m)/2 + KL(q||m)/2, m = (p+q)/2. Both give the sum over
 * positions (reverse KL returns it, JSD, which needs scratch, puts it in
 * *js_sum) and ADD scale * d/dlogits into dlogits when it is not NULL. */
double student_loss_rkl(const float *logits, int n_pos, int V, float T, const float *teacher_logp,
                        float *dlogits, float scale);
rt_status student_loss_jsd(student_loss_ws *ws, const float *logits, int n_pos, int V, float T,
                           const float *teacher_logp, float *dlogits, float scale, double *js_sum);

/* Feature-map loss between student hidden states h (n, Cs) and teacher
 * hidden states t (n, Ct), through the projection y = h W with W (Cs, Ct)
 * when W != NULL (else Cs == Ct and y = h). mse (cosine = 0): mean over
 * n*Ct of (y - t)^2; cosine: mean over the n positions of 1 - cos(y_i, t_i).
 * *loss gets the mean; scale * d(loss)/dh is ADDED into dh and
 * scale * d(loss)/dW into dW (either may be NULL). y and dy are (n, Ct)
 * scratch. RT_ERR_DNNL if oneDNN's sgemm fails. */
rt_status student_feature_loss(const float *h, const float *W, const float *t, int64_t n, int Cs,
                               int Ct, int cosine, float scale, float *dh, float *dW, float *y,
                               float *dy, double *loss);

/* Sum of token log-probabilities of each of n sequences (score.c):
 * logprob[i] = sum over t = 1..lens[i]-1 of log p(seqs[i][t] | seqs[i][<t]),
 * in double (0 for a one-token sequence). Runs full-window forwards of up
 * to student_max_batch rows, so it works for every precision and int8.
 * RT_ERR_ARGS when a length is outside [1, seq_len + 1] or a token is out
 * of range; nothing is written then for the later batches. */
rt_status student_seq_logprob(student_model *m, const int32_t *const *seqs, const int *lens,
                              int n, double *logprob);

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

/* ---------------------------------------------------------------- pruning
 *
 * Post-training pruning (prune.c): pure functions over float matrices and
 * the parameter block; `retort prune` (trainer/cmd_prune.c) composes them
 * and checkpoints/ckpt_masks.h stores the masks. Prunable tensors are the
 * four matmul weights of every block (attn.c_attn, attn.c_proj, mlp.c_fc,
 * mlp.c_proj); embeddings, LayerNorms and biases are never pruned (heads
 * masking also zeroes the c_attn bias entries of the removed heads).
 * Weights are Conv1D [in, out] row-major, so "per output" means per COLUMN
 * of the stored matrix and "along the input dimension" means down a column.
 * Masks are uint8, 1 = kept. A count to prune is round(sparsity * n). Ties
 * in a score are broken by position (the lower flat index goes first), so
 * results depend neither on the sort nor on the thread count. */

/* Input activations of linear `which` of block `layer` in the last
 * forward: *rows (= B*T of that forward) rows of C floats (F for
 * STUDENT_LIN_FCPROJ), contiguous. Only a training-mode f32 model without
 * STUDENT_RECOMPUTE keeps them for every layer; otherwise, or before the
 * first forward, NULL.
 * Valid until the next forward. Defined in model.c. */
const float *student_linear_input(student_model *m, int layer, student_linear which,
                                  int64_t *rows);

/* acc[j] += sum over rows r of x[r*cols + j]^2, in double (calibration
 * statistics: ||X_j||^2 over many batches). */
void student_colsumsq_add(double *acc, const float *x, int64_t rows, int cols);

/* Unstructured magnitude pruning of n weights: mask = 0 for the
 * round(sparsity*n) smallest |w|, 1 elsewhere. Returns the number pruned.
 * RT_ERR_NOMEM is the only failure (scratch for the sort). */
rt_status student_prune_magnitude(const float *w, size_t n, double sparsity, uint8_t *mask,
                                  size_t *pruned);

/* Wanda (Sun et al. 2023): score_ij = |W_ij| * xnorm[i] for the [in, out]
 * weight W, where xnorm[i] = ||X_i||_2 is the norm of input feature i over
 * the calibration tokens; in every output column j the round(sparsity*in)
 * lowest scores are pruned. */
rt_status student_prune_wanda(const float *w, int64_t in, int64_t out, const float *xnorm,
                              double sparsity, uint8_t *mask, size_t *pruned);

/* N:M semi-structured pruning of the [in, out] weight W: in every column,
 * every group of m consecutive inputs (rows g*m .. g*m+m-1) keeps its n
 * largest |w|. in % m == 0 is the caller's check (a bug otherwise). */
void student_prune_nm(const float *w, int64_t in, int64_t out, int n, int m, uint8_t *mask,
                      size_t *pruned);

/* Gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune"): the
 * masks are recomputed when student_prune_gradual_due(start, end, every,
 * step), i.e. at step = start, start + every, ... and at end, and the
 * sparsity at step is the cubic ramp evaluated at the last such update t:
 *   s(t) = final * (1 - (1 - (t - start) / (end - start))^3),
 * 0 before start, final from end on. Steps count completed optimizer steps;
 * end > start and every >= 1 are the caller's checks. */
int student_prune_gradual_due(int64_t start, int64_t end, int64_t every, int64_t step);
double student_prune_gradual_sparsity(double final, int64_t start, int64_t end, int64_t every,
                                      int64_t step);

/* Magnitude masks of every prunable tensor of a parameter block laid out
 * for c (student_prune_magnitude per tensor at the same sparsity) into
 * mask (student_block_floats(c) bytes; 1 outside the prunable tensors).
 * *pruned of *prunable weights are masked. RT_ERR_NOMEM only. */
rt_status student_prune_magnitude_block(const student_config *c, const float *params,
                                        double sparsity, uint8_t *mask, size_t *pruned,
                                        size_t *prunable);

/* keep[i] = 0 for the k lowest of n scores, 1 for the rest. */
rt_status student_prune_lowest(const double *score, int n, int k, uint8_t *keep);

/* Importance of the H heads of one block (head_dim hs, attention width
 * A = H*hs). Without act_sq: ||[Wq_h Wk_h Wv_h]||_F * ||Wo_h||_F (c_attn
 * columns of head h times its c_proj rows). With act_sq (the A sums of
 * squares of the attention output over calibration tokens, i.e. of
 * c_proj's input): ||Y_h||_2 * ||Wo_h||_F, a bound on what the head adds
 * to the residual. */
void student_head_scores(const float *qkvw, const float *projw, int C, int H, int hs,
                         const double *act_sq, double *score);

/* Masks that zero the heads with keep[h] == 0: their q, k and v columns
 * (h*hs.., A + h*hs.., 2A + h*hs..) of c_attn weight [C, 3A] and of its
 * bias [3A], and their rows h*hs.. of attn.c_proj weight [A, C]. Every
 * entry of the three masks is written. What student_heads_shrink removes
 * computes the same as what these masks zero. */
void student_head_masks(int C, int H, int hs, const uint8_t *keep, uint8_t *qkvw_mask,
                        uint8_t *qkvb_mask, uint8_t *projw_mask);

/* Physically removes attention heads, as Hugging Face's prune_heads does:
 * copies the parameter block src of config c into dst of config c2 (c with
 * n_head = heads kept per layer, the same in every layer, and d_head =
 * student_head_dim(c)), dropping head h of layer l where keep[l*H + h] == 0
 * (H = c->n_head) from the q, k and v columns of c_attn weight and bias and
 * the rows of attn.c_proj weight. Every other tensor is copied unchanged
 * (attn.c_proj's bias is C wide and stays); dst padding is 0. */
void student_heads_shrink(const student_config *c, const float *src, const uint8_t *keep,
                          const student_config *c2, float *dst);

/* The inverse for export to formats without a head width of their own
 * (Hugging Face, GGUF): c2 = c with n_head = d_model / d_head (d_head 0),
 * and, when dst != NULL, dst (student_block_floats(c2)) = src with the
 * missing heads added back as zeros after the kept ones. A zero head has
 * zero values and c_proj rows, so it adds exactly 0: the padded model
 * computes the same function. d_model % d_head == 0 is the caller's check. */
void student_heads_pad(const student_config *c, const float *src, student_config *c2,
                       float *dst);

/* Importance of the F hidden units of one MLP: without act_sq,
 * ||c_fc[:, u]||_2 * ||c_proj[u, :]||_2; with act_sq (the F sums of
 * squares of gelu(c_fc) over calibration tokens, i.e. of c_proj's input),
 * ||a_u||_2 * ||c_proj[u, :]||_2, what the unit can add to the residual. */
void student_ffn_scores(const float *fcw, const float *projw, int C, int F, const double *act_sq,
                        double *score);

/* Physically removes MLP hidden units: copies the parameter block src of
 * config c into dst of config c2 (c with d_ff = number of kept units per
 * layer, the same in every layer), dropping unit u of layer l where
 * keep[l*F + u] == 0 from mlp.c_fc weight columns and bias and mlp.c_proj
 * weight rows. Every other tensor is copied unchanged; dst padding is 0. */
void student_ffn_shrink(const student_config *c, const float *src, const uint8_t *keep,
                        const student_config *c2, float *dst);

/* params[i] = 0 where mask[i] == 0 (n entries; OpenMP). Keeps pruned
 * weights at zero during recovery training: run it on the parameter block
 * after every optimizer step (and on the gradient block before clipping,
 * so pruned weights do not count in the gradient norm). */
void student_apply_mask(float *params, const uint8_t *mask, size_t n);

/* Number of exact zeros among n floats. */
size_t student_count_zeros(const float *x, size_t n);

/* ------------------------------------------------- pruning procedures
 *
 * prune_run.c: what `retort prune` does with the kernels above, for the
 * methods that mask or remove (lowrank is student_lowrank_*). */
typedef enum {
    STUDENT_PRUNE_MAGNITUDE, STUDENT_PRUNE_WANDA, STUDENT_PRUNE_NM, STUDENT_PRUNE_HEADS,
    STUDENT_PRUNE_FFN
} student_prune_method;

typedef struct {
    student_prune_method method;
    const char *name; /* as the user wrote it ("--method 2:4", "prune.nm"), for messages */
    double sparsity;  /* magnitude, wanda: the share of each tensor (or output) to mask */
    int nm_n, nm_m;   /* N:M */
    int remove;       /* heads, ffn: units to remove per layer (fewer than there are) */
} student_prune_spec;

/* Calibration statistics: per (layer, linear) the sums of squares of each
 * input feature of the linear over the calibration tokens, in a block of
 * student_prune_stats_size(c) doubles; student_prune_stats_at is the
 * slot of one linear (in features). */
size_t student_prune_stats_size(const student_config *c);
const double *student_prune_stats_at(const student_config *c, const double *acc, int layer,
                                     student_linear which);
/* acc = those statistics over n_windows windows of seq_len tokens, run
 * student_max_batch(m) rows at a time with m's current weights; m must be
 * a training-mode f32 model (student_linear_input). */
rt_status student_prune_calibrate(student_model *m, const int32_t *tokens, int n_windows,
                                  double *acc);

/* What a pruning run produced. */
typedef struct {
    student_config cfg; /* the shape to write: smaller n_head (d_head set) or d_ff */
    uint8_t *mask;      /* masking methods: (student_block_floats bytes) 1 = kept, already
                           applied to the model's weights, which are the result */
    float *params;      /* heads, ffn: the block of cfg with the units removed */
    uint8_t *heads_kept;/* heads: (n_layer, n_head before) 1 = kept */
    int32_t *ffn_kept;  /* ffn: (n_layer, d_ff after) original indices of the kept units */
} student_prune_result;
void student_prune_result_free(student_prune_result *r); /* NULL-safe; zeroes r */

/* Prunes the dense model m as s says. calib (n_windows windows of
 * seq_len tokens; NULL: none) with acc (student_prune_stats_size doubles)
 * feeds wanda (required: block by block, each block calibrated on the
 * already-pruned blocks before it) and ranks heads and ffn units by their
 * activations (else by weights alone); m must then be a training-mode f32
 * model. old_mask (may be NULL): masks already in the file, kept. */
rt_status student_prune_run(student_model *m, const student_prune_spec *s, const int32_t *calib,
                            int n_windows, double *acc, const uint8_t *old_mask,
                            student_prune_result *r);

/* The statistics (as student_prune_calibrate's) of the last forward of
 * m alone (its rows); RT_ERR_ARGS unless m is a training-mode f32 model
 * that ran a forward. Gradual wanda's per-step statistics. */
rt_status student_prune_stats_last(student_model *m, double *acc);
/* Masks of every prunable tensor of a parameter block laid out for c into
 * mask (student_block_floats(c) bytes; 1 outside them) by s: magnitude at
 * s->sparsity per tensor, wanda at s->sparsity per output with the input
 * norms sqrt(acc), or N:M with s->nm_n of s->nm_m (N = M masks nothing); *pruned of *prunable
 * weights are masked. RT_ERR_ARGS naming the tensor for inputs not a
 * multiple of M; RT_ERR_NOMEM. */
rt_status student_prune_block_masks(const student_config *c, const float *params,
                                    const student_prune_spec *s, const double *acc,
                                    uint8_t *mask, size_t *pruned, size_t *prunable);

/* Per tensor of the model before pruning (config c; c2 and the block
 * `final` after): shape as written, parameters before and after, exact
 * zeros after; and the totals over prunable weights and all parameters,
 * where "gone" counts removed and zeroed entries. */
typedef struct {
    int layer;    /* block, -1 for wte, wpe, ln_f */
    int prunable; /* a linear weight */
    int ndim;
    int64_t shape[2];
    size_t before, after, zeros;
} student_prune_tensor_stat;
typedef struct {
    size_t prunable_before, prunable_gone, all_before, all_gone;
    double sparsity; /* prunable_gone / prunable_before */
} student_prune_totals;
void student_prune_stats(const student_config *c, const student_config *c2, const float *final,
                         student_prune_tensor_stat *ts, student_prune_totals *tot);

/* ------------------------------------------------ low-rank factorization
 *
 * lowrank.c: a truncated SVD of every chosen [in, out] linear weight W
 * gives W_a [in, r] and W_b [r, out] with W_a W_b the best rank-r
 * approximation of W in the Frobenius norm (Eckart-Young); a model whose
 * cfg.rank[k] = r > 0 stores and trains those factors (params.c) and runs
 * the linear as two matmuls. No LAPACK: the smaller Gram matrix in double
 * and cyclic Jacobi rotations. */

/* The min(in, out) singular values of the [in, out] weight w, descending. */
rt_status student_svd_values(const float *w, int64_t in, int64_t out, double *sv);
/* The rank-r truncation of w as balanced factors a = U_r S_r^(1/2) [in, r]
 * and b = S_r^(1/2) V_r^T [r, out] (1 <= r <= min(in, out)); every
 * singular value into sv (min(in, out), descending) when not NULL. The
 * error ||w - a b||_F is the norm of the dropped singular values. */
rt_status student_lowrank_factor(const float *w, int64_t in, int64_t out, int r, float *a,
                                 float *b, double *sv);
/* The smallest r whose first r singular values (descending) hold `energy`
 * (in (0, 1]) of the sum of squares of all n. */
int student_lowrank_energy_rank(const double *sv, int64_t n, double energy);

/* How `retort prune --method lowrank` picks ranks: exactly one of rank (an
 * absolute r), rank_ratio (r = round(ratio * min(in, out)), ratio in (0,
 * 1]), energy (the smallest r with which every layer keeps that share of
 * its weight's squared Frobenius norm) or param_ratio (the largest r whose
 * factors hold at most that share of the dense weight's parameters, r =
 * floor(p in out / (in + out)), at least 1; p in (0, 1]) is set; linears
 * is a bit set over student_linear of the linears to factor. */
typedef struct {
    int rank;
    double rank_ratio, energy, param_ratio;
    unsigned linears;
} student_lowrank_opts;

/* Per (layer, linear) of a factorization: the rank, the share of the
 * squared Frobenius norm kept and the relative error ||W - W_a W_b|| /
 * ||W||; rank 0 for a linear left dense. */
typedef struct {
    int rank;
    double energy, rel_error;
} student_lowrank_stat;

/* c2 = c with the ranks o asks for; wanted[k] the rank asked for linear k
 * (0: not chosen). A rank whose factors would not be smaller than the
 * dense weight (r (in + out) >= in out) leaves that linear dense in c2.
 * RT_ERR_ARGS naming the option for a rank above min(in, out), a ratio or
 * energy outside (0, 1], or not exactly one of the four;
 * RT_ERR_UNSUPPORTED when c is low-rank already. */
rt_status student_lowrank_choose(const student_config *c, const float *params,
                                 const student_lowrank_opts *o, const double *act_sq,
                                 student_config *c2, int wanted[STUDENT_LIN_N]);
/* dst (student_block_floats(c2)) = the dense block src of c with every
 * linear k with c2->rank[k] > 0 factored at that rank, everything else
 * copied. stats (n_layer * STUDENT_LIN_N, may be NULL) receives each
 * factorization's figures. act_sq (calibration statistics in the layout of
 * student_prune_calibrate, or NULL) makes it activation-weighted, in the
 * spirit of ASVD: with s_i the RMS of input feature i, the truncation is
 * that of diag(s) W, W_a = diag(1/s) (diag(s) W)_a, which minimizes the
 * expected output error E||x (W - W_a W_b)||^2 when the input features are
 * uncorrelated; the energy (choose, and the figures) is then that of
 * diag(s) W. */
rt_status student_lowrank_apply(const student_config *c, const float *src,
                                const student_config *c2, const double *act_sq, float *dst,
                                student_lowrank_stat *stats);
/* The inverse for export to formats with dense weights only (Hugging
 * Face, GGUF): c2 = c with every rank 0 and, when dst != NULL, dst
 * (student_block_floats(c2)) = src with every factored W = W_a W_b
 * multiplied back (in double). */
void student_lowrank_merge(const student_config *c, const float *src, student_config *c2,
                           float *dst);

/* ------------------------------------------------------------------- QAT
 *
 * Quantization-aware training (qat.c): while enabled, every forward of the
 * four linear layers of each block (student_linear) computes
 *     y = fq_a(x) fq_w(W) + b
 * with fq_w: int8 symmetric per output channel (scale = max|W| over the
 * input dimension / 127, recomputed from the current weights every
 * forward) and fq_a: int8 per tensor, symmetric (q in [-127, 127]) or
 * asymmetric (q in [0, 255] with a zero point), from a range observed over
 * the training forwards of the first calib_steps steps (running min/max,
 * or an EMA of the per-forward range) and then frozen. Only forwards that
 * the caller marks with student_qat_observe_next are observed (training
 * micro-batches), so evaluation and generation never move the ranges that
 * the int8 export will use; a step counts once student_qat_step_end ends
 * it, however many micro-batches it had. The tied LM head and the embeddings
 * stay f32 (the head shares wte with the embedding lookup; an int8 deploy
 * runs it in bf16 and stores wte as weight-only int8 per row, which costs
 * far less accuracy than per-tensor activations would; see quant.c).
 * Backward is the straight-through estimator with clipping: the gradient
 * passes unchanged where round(x/s)+z fell inside [qmin, qmax] and is zero
 * where the activation was clipped; weights are never clipped (the
 * largest maps to exactly 127), so their gradient passes unchanged and the
 * scale is treated as a constant. Scales are not learned (no LSQ): a
 * frozen calibrated range is what the int8 deploy uses, so training sees
 * exactly the arithmetic inference will do. f32 models only. */
typedef struct {
    int calib_steps;  /* steps whose training forwards are observed, >= 1 */
    int asymmetric;   /* 0: int8 symmetric activations; 1: uint8 with a zero point */
    int freeze;       /* 1: ranges frozen after calib_steps steps; 0: keep
                         tracking them (EMA, momentum `ema` or 0.01) forever */
    float ema;        /* 0: running min/max during calibration; in (0, 1): EMA
                         momentum of the per-forward min/max */
    int observe_only; /* 1: no fake quantization, only record ranges
                         (post-training calibration for an int8 export) */
} student_qat_config;

/* Enables QAT (or, with observe_only, range recording) on m, observers
 * fresh. RT_ERR_UNSUPPORTED for a bf16 or int8 model, RT_ERR_ARGS for a bad
 * config. Allocates the fake-quantized weight copy and, when training,
 * the clip masks; enabling again resets the observers. */
rt_status student_qat_enable(student_model *m, const student_qat_config *cfg);
void student_qat_disable(student_model *m); /* frees it all; no-op when off */
int student_qat_enabled(const student_model *m);
/* 1 while activation ranges are still being calibrated. */
int student_qat_calibrating(const student_model *m);
/* The next student_forward observes activation ranges (if calibration is
 * not over); every other forward leaves them alone. Call it before each
 * training micro-batch's forward. No-op when QAT is off. */
void student_qat_observe_next(student_model *m);
/* Ends a training step: if any of its forwards was observed, one more
 * calibration step is counted. No-op when QAT is off. */
void student_qat_step_end(student_model *m);

/* Observer state as floats, for checkpoints (/qat/state): n =
 * student_qat_state_size(cfg) = 4 + 2 * 4 * n_layer: steps observed,
 * asymmetric, calib_steps, freeze, then (min, max) per linear input in
 * (layer, student_linear) order. The pointer is the model's, valid until
 * the next forward or disable; NULL when QAT is off. */
size_t student_qat_state_size(const student_config *c);
const float *student_qat_state(const student_model *m, size_t *n);
/* Restores a state saved by student_qat_state (QAT must be enabled; the
 * stored asymmetric/calib_steps/freeze override the enable-time ones).
 * RT_ERR_MISMATCH when n does not fit this model. */
rt_status student_qat_set_state(student_model *m, const float *state, size_t n);

/* ------------------------------------------------------- int8 inference
 *
 * An inference model (training = 0) can run the four linear layers of
 * every block as int8 x int8 -> f32 oneDNN matmuls (quant.c): activations
 * quantized per tensor with stored scales to u8, weights s8 per output
 * channel, output scales and a zero-point-compensated bias applied by
 * oneDNN, in both student_forward and the KV-cache path. In student_forward
 * the attention matmuls (QK^T, PV) then run in bf16 on per-head blocks and
 * the LM head in bf16 (f32 accumulation); the KV-cache path attends in f32.
 * Such a model is inference-only. */

/* x ~ scale * (q - zero) with q in [qmin, qmax]: [-127, 127] (zero 0) for
 * symmetric int8, [0, 255] for asymmetric uint8. */
typedef struct {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
} student_act_quant;

/* The quantizer of a range [lo, hi] (widened to include 0): symmetric
 * scale = max(|lo|, |hi|) / 127, or asymmetric scale = (hi - lo) / 255 and
 * zero = round(-lo / scale). A zero-width range gets scale 1. */
student_act_quant student_act_quant_from_range(float lo, float hi, int asymmetric);
/* The activation quantizers QAT or calibration give now, (n_layer, 4). */
rt_status student_qat_act_params(const student_model *m, student_act_quant *aq);

/* Per-output-channel symmetric int8 of a (K, N) row-major [in, out] weight:
 * scale[n] = max_k |w[k][n]| / 127 (1 for an all-zero column) and q =
 * round(w / scale). */
void student_quantize_weight(const float *w, int64_t K, int64_t N, int8_t *q, float *scale);
/* The same per row of an (R, C) matrix (scale[r] over row r): embeddings. */
void student_quantize_rows(const float *w, int64_t R, int64_t C, int8_t *q, float *scale);

/* Dynamic (per-token) activation quantization of R rows of K floats:
 * scale[r] = max_k |x[r][k]| / 127 (1 for an all-zero row) and
 * q = round(x / scale) + 128 in [1, 255] (symmetric int8 shifted to u8, the
 * int8 matmuls' input type). */
void student_quantize_act_rows(const float *x, int64_t R, int64_t K, uint8_t *q, float *scale);

/* Weight sharing (codebook.c; Deep Compression, Han et al. 2016): 1-D
 * k-means of n finite values into k in [1, 256] centroids (Lloyd's
 * algorithm from the linear initialization: evenly spaced between min and
 * max), run until the partition stops changing. On return centroids (k) are
 * ascending, each is the mean of its members (an empty cluster keeps its
 * initial value), and idx[i] is the nearest centroid of x[i] (halfway
 * between two: the lower). When x holds at most k distinct values, they
 * are the centroids (ascending, the rest repeating the largest) and every
 * idx[i] points at x[i]'s own value: an exact codebook stays exact. RT_ERR_ARGS naming the index of a non-finite
 * value; RT_ERR_NOMEM. */
rt_status student_kmeans_1d(const float *x, size_t n, int k, float *centroids, uint8_t *idx);

/* The codebook of an [in, out] weight: per tensor (centroids (k), one
 * k-means over all in * out values) or, with per_channel, per output
 * column (centroids (out, k), k-means over each column). idx is (in, out)
 * like w; the decoded weight is centroids[(per_channel ? j * k : 0) +
 * idx[i * out + j]]. */
rt_status student_codebook_weight(const float *w, int64_t in, int64_t out, int k, int per_channel,
                                  float *centroids, uint8_t *idx);

/* Fine-tuning with shared weights (Deep Compression's retraining): the
 * members of a cluster, here the weights of one linear tensor that hold
 * the same value (a model decoded from `export --codebook`), get the sum
 * of their gradients, the centroid's gradient, so that AdamW moves them
 * identically (same gradient, same moments, same decay) and the tensor
 * stays a codebook of at most as many values. create: the clusters of
 * params (laid out for c), by exact value per linear weight tensor (both
 * factors of a low-rank one); RT_ERR_ARGS naming a tensor with more than
 * 65536 distinct values. grads: the gradient block, in place. */
typedef struct student_shared student_shared;
rt_status student_shared_create(const student_config *c, const float *params,
                                student_shared **out);
int student_shared_max_values(const student_shared *s); /* the most values of one tensor */
void student_shared_grads(student_shared *s, float *grads);
void student_shared_free(student_shared *s); /* NULL-safe */

/* Switches inference model m to int8 linear layers. w8[l*4+k] is the
 * (in, out) int8 weight of linear k of block l, wscale[l*4+k] its (out)
 * scales, aq[l*4+k] the quantizer of its input; aq == NULL quantizes every
 * input per token at run time instead (student_quantize_act_rows: no
 * calibration, one scale per row of every linear layer's input). A
 * low-rank model's arrays have 8 * n_layer entries: w8[l*4+k] is then its
 * first factor W_a (in, r) and w8[4*n_layer + l*4+k] its second W_b (r,
 * out) (NULL for a dense linear); it runs x W_a with the linear's input
 * quantizer, then t = x W_a quantized per row at run time (its range was
 * never calibrated) times W_b, then bias, GELU or residual. Call after the parameter
 * block holds everything else (embeddings, LayerNorms, biases): the f32
 * copies of the linear weights are overwritten with the dequantized ones
 * and the head's bf16 copy of wte is made here. Copies what it needs.
 * RT_ERR_ARGS for a training or bf16 model or a bad quantizer. */
rt_status student_int8_set(student_model *m, const int8_t *const *w8, const float *const *wscale,
                           const student_act_quant *aq);
int student_int8_enabled(const student_model *m);
int student_int8_dynamic(const student_model *m); /* 1: aq was NULL */

/* ------------------------------------------------------- matmul peak */

/* Element types of the peak measurement: f32, bf16 (f32 accumulation) and
 * u8 x s8 (s32 accumulation, f32 output) as the int8 deploy layers run. */
typedef enum { STUDENT_PEAK_F32, STUDENT_PEAK_BF16, STUDENT_PEAK_U8S8, STUDENT_PEAK_KINDS } student_peak_kind;
const char *student_peak_name(student_peak_kind kind); /* "f32", "bf16", "u8s8" */
/* Times one (M x K) x (K x N) oneDNN matmul of `kind` on the OpenMP threads
 * in use, weights pre-packed in oneDNN's preferred layout, one untimed run
 * then `reps` timed ones; *gops = 2*M*K*N / best time in GFLOP/s (GOP/s
 * for u8s8), *best_ms (may be NULL) that time. *cpu_gops (may be NULL):
 * the same over the best run's process CPU time divided by the thread
 * count, which time slices lost to other processes do not change (on a
 * shared machine the figure to compare CPU-time throughputs with; run
 * with OMP_WAIT_POLICY=passive so that waiting threads burn no CPU time).
 * Allocates about 4*(M*K + 2*K*N + M*N) bytes for the call. */
rt_status student_matmul_peak(student_peak_kind kind, int64_t M, int64_t K, int64_t N, int reps,
                              double *gops, double *best_ms, double *cpu_gops);
/* Process CPU time (user + system, all threads) in seconds. */
double student_cpu_seconds(void);

#endif
