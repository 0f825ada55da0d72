/* Hugging Face GPT-2 folders in and out (hf.c).
 *
 * In: a folder holding config.json, model.safetensors (or a sharded
 * model.safetensors.index.json + the shards it names), vocab.json and
 * merges.txt is a model like any checkpoint: ckpt_open recognises it and
 * ckpt_load_model builds it. What real hub folders contain is handled:
 * tensor names with or without the `transformer.` prefix, the attn.bias /
 * attn.masked_bias buffers of older checkpoints (ignored), F32/F16/BF16
 * tensors, `n_inner: null`; an lm_head.weight must equal wte (tied head).
 * Anything retort's GPT-2 does not compute (another activation,
 * scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, a layer_norm
 * epsilon other than 1e-5, an untied head) is refused naming the key.
 *
 * Out: the folder transformers.GPT2LMHeadModel.from_pretrained and
 * AutoTokenizer.from_pretrained load (ckpt_hf_write). */
#ifndef CKPT_HF_H
#define CKPT_HF_H

#include <stdio.h>

#include "ckpt.h"
#include "ckpt_st.h"
#include "student.h"

/* Bounds on config.json values, checked before anything is sized from
 * them (a real GPT-2 XL is 48 layers, 25 heads, 1600 wide, 50257 tokens,
 * 1024 positions). n_positions is retort's own context limit: above it the
 * error names the key (student_config_validate would name model.seq_len). */
#define CKPT_HF_MAX_LAYERS 1024
#define CKPT_HF_MAX_HEADS 1024
#define CKPT_HF_MAX_WIDTH 65536
#define CKPT_HF_MAX_FF (4 * 65536)
#define CKPT_HF_MAX_VOCAB (1 << 22)
#define CKPT_HF_MAX_POSITIONS STUDENT_MAX_SEQ_LEN
/* Largest config.json / index file read. */
#define CKPT_HF_MAX_JSON (16u << 20)

typedef struct ckpt_hf ckpt_hf;

/* 1 when `dir` is a folder holding config.json. */
int ckpt_hf_is_folder(const char *dir);

/* Reads and checks config.json, the tokenizer files' presence and every
 * safetensors header, and maps each tensor of the model's table to its
 * file, checking its shape against config.json. *cfg gets the model shape
 * (seq_len = n_positions). Errors name the file and what is wrong. */
rt_status ckpt_hf_open(const char *dir, ckpt_hf **out, student_config *cfg);
void ckpt_hf_close(ckpt_hf *h); /* NULL-safe */

/* Reads the weights into `block`, laid out for config mc: the folder's
 * config, or the same with a smaller seq_len (the first seq_len rows of
 * wpe are read). A present lm_head.weight is compared with wte. */
rt_status ckpt_hf_read_params(ckpt_hf *h, const student_config *mc, float *block);

/* CRC-32C identifying the folder's model: config.json, then every weight
 * file in the order ckpt_hf_open found them (provenance of a teacher). */
rt_status ckpt_hf_crc32c(const char *dir, uint32_t *crc);

/* config.json plus every weight file, in bytes. */
uint64_t ckpt_hf_bytes(const ckpt_hf *h);

/* The folder's part of ckpt_summarize: path, kind "hf", file bytes and the
 * hf_* fields of *s. */
rt_status ckpt_hf_summarize(const ckpt_hf *h, ckpt_summary *s);

/* Writes a Hugging Face folder to `dir` (created when missing): config.json,
 * generation_config.json, model.safetensors (`dtype`), and the tokenizer:
 * vocab.json + merges.txt copied from tokenizer_dir, tokenizer_config.json,
 * special_tokens_map.json; bos/eos = eot. The attention must be d_model
 * wide: pad removed heads first (ckpt_export_params). */
rt_status ckpt_hf_write(const char *dir, const student_config *c, const float *params,
                        ckpt_st_dtype dtype, const char *tokenizer_dir, int eot);

#endif
