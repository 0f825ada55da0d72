/* Deploy files: what inference needs and nothing else (deploy.c).
 *
 * A deploy file is a checkpoint of kind "deploy" (same root attributes,
 * /config and /meta, written atomically by ckpt_save) whose /model holds
 * either every tensor in float32, exactly as a training checkpoint does,
 * or, for an int8 deploy:
 *   /model/<linear>.weight              int8 [in, out]   (the four linear
 *                                       layers of every block)
 *   /model/<linear>.weight_scale        float32 [out]    w ~ scale[n] * q
 *   /model/<linear>.input_scale         float32 scalar   x ~ s * (q - z)
 *   /model/<linear>.input_zero_point    int32 scalar     z
 *   /model/<linear>.input_qrange        int32 [2]        [qmin, qmax]:
 *                                       [-127, 127] symmetric, [0, 255] not
 *   /model/transformer.wte.weight       int8 [vocab, C]  weight-only, one
 *   /model/transformer.wpe.weight       int8 [seq, C]    scale per row:
 *   /model/transformer.w?e.weight_scale float32 [rows]   the embeddings are
 *                                       most of a small model's bytes
 *   everything else (LayerNorms, biases) float32 as in a training file.
 * An int8 deploy with dynamic activations (`--act dynamic`) has no
 * input_scale / input_zero_point / input_qrange datasets and instead
 *   /quant/act_dynamic                  int32 scalar 1: every linear input
 *                                       is quantized per token at run time
 * A codebook deploy (`--codebook 16|256`, weight sharing) keeps float32
 * everywhere but the four linear weights of every block:
 *   /quant/codebook                     int32 [2]: k (16 or 256) and 1 for
 *                                       one codebook per output channel, 0
 *                                       for one per tensor
 *   /model/<linear>.weight              uint8 [in, out] indices (k = 256) or
 *                                       [in, ceil(out / 2)] (k = 16: column
 *                                       2p in the low nibble, 2p+1 high)
 *   /model/<linear>.weight_codebook     float32 [k] or [out, k]
 * and ckpt_read_model decodes them into an ordinary f32 model at load.
 * Every kind carries /tokenizer/path (uint8 bytes of the tokenizer folder the
 * model was trained with; empty when unknown). */
#ifndef CKPT_DEPLOY_H
#define CKPT_DEPLOY_H

#include "ckpt.h"

typedef struct {
    int64_t step, tokens_seen;
    student_config cfg;
    const float *params;          /* f32 block (student_tensor_info layout) */
    const student_act_quant *act; /* NULL: f32 deploy; else (4 * n_layer) input
                                     quantizers in (layer, student_linear) order:
                                     int8 deploy, weights quantized here */
    int act_dynamic;              /* 1 (with act NULL): int8 deploy whose
                                     activations are quantized per token */
    int codebook;                 /* 16 or 256 (with act NULL, act_dynamic 0):
                                     codebook deploy, clustered here; 0 = none */
    int codebook_per_channel;     /* one codebook per output column */
    const char *tokenizer;        /* NULL = "" */
    const char *config_text, *provenance_json; /* as in ckpt_contents */
} ckpt_deploy;

#define CKPT_DEPLOY_ACT_DYNAMIC "/quant/act_dynamic"
#define CKPT_DEPLOY_CODEBOOK "/quant/codebook"

/* Writes a deploy file atomically (ckpt_save). */
rt_status ckpt_deploy_save(const char *path, const ckpt_deploy *d);

/* Range of every int8 scale read (weight, embedding and input scales):
 * beyond it 1/scale or scale * 127 leaves float32's normal range and a
 * kernel computes Inf or NaN. retort writes max|w| / 127 (1 for an
 * all-zero row), far inside it. */
#define CKPT_SCALE_MIN 1e-30f
#define CKPT_SCALE_MAX 1e10f

/* 1 when r is an int8 deploy file (its c_attn weight of block 0 is int8). */
int ckpt_deploy_is_int8(ckpt_reader *r);

/* Reads an int8 deploy file into inference model m (training = 0, f32, of
 * the file's shape) and switches it to int8 (student_int8_set). The
 * parameter block gets every tensor in f32, the linear weights dequantized
 * (int8 x scale), so exports to other formats read it like any model's. */
rt_status ckpt_deploy_read_int8(ckpt_reader *r, student_model *m);

/* 1 when r is a codebook deploy file (it has /quant/codebook). */
int ckpt_deploy_is_codebook(ckpt_reader *r);

/* Reads a codebook deploy file into m (of the file's shape): the linear
 * weights decoded from their indices and codebooks, the rest as stored.
 * RT_ERR_FORMAT naming the file and dataset for a k other than 16 or 256,
 * an index array of the wrong type or shape, or a non-finite centroid. */
rt_status ckpt_deploy_read_codebook(ckpt_reader *r, student_model *m);

/* The tokenizer folder recorded in the file, as a new string (free());
 * "" when the file records none. */
rt_status ckpt_deploy_tokenizer(ckpt_reader *r, char **out);

#endif
