/* GGUF export (gguf.c): one file llama.cpp, Ollama and LM Studio load.
 *
 * GGUF v3, little-endian: "GGUF", version 3, tensor count, key/value count;
 * the key/values; per tensor its name, dimensions (ggml order: ne[0] is the
 * contiguous one), ggml type and data offset; then, aligned to 32 bytes,
 * the tensor data. Written as llama.cpp's GPT-2 loader reads it:
 *   general.architecture = gpt2, gpt2.{context_length, embedding_length,
 *   feed_forward_length, block_count, attention.head_count,
 *   attention.layer_norm_epsilon};
 *   the tokenizer embedded: tokenizer.ggml.model = gpt2,
 *   tokenizer.ggml.pre = gpt-2 (llama.cpp pre-tokenizes differently
 *   without it), tokens (vocab.json's strings by id), token_type (1, and 3
 *   for <|endoftext|>), merges ("left right" by rank), bos/eos = the
 *   end-of-text id, no BOS added;
 *   tensors token_embd, position_embd, blk.N.{attn_norm, attn_qkv,
 *   attn_output, ffn_norm, ffn_up, ffn_down}.{weight,bias}, output_norm;
 *   no output.weight: llama.cpp ties the head to token_embd.
 * Linear weights are stored [out, in] (Hugging Face's Conv1D [in, out]
 * transposed), embeddings as they are; 1-D tensors are always F32, 2-D
 * ones F32, F16 or Q8_0 (blocks of 32 along ne[0] with one f16 scale,
 * round(x / (max|x| / 127)); a tensor whose ne[0] is not a multiple of 32
 * is written F16 instead, and the writer says so). */
#ifndef CKPT_GGUF_H
#define CKPT_GGUF_H

#include "data.h"
#include "student.h"

typedef enum { CKPT_GGUF_F32, CKPT_GGUF_F16, CKPT_GGUF_Q8_0 } ckpt_gguf_type;

/* Writes `path` atomically from a model of config c (d_head unset: pad
 * removed heads first, ckpt_export_params) with tokenizer `tok`, whose
 * vocabulary must be c->vocab_size tokens. `name` goes to general.name. */
rt_status ckpt_gguf_write(const char *path, const student_config *c, const float *params,
                          ckpt_gguf_type type, const data_tokenizer *tok, const char *name);

#endif
