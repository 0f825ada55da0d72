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

#endif
