/* Pruning masks and metadata in checkpoints, under /prune:
 *   /prune/mask/<tensor name>   uint8, shaped like the tensor, 1 = kept
 *   /prune/method               uint8 bytes of the method's name ("magnitude",
 *                               "wanda", "2:4", "heads", "ffn"; no NUL)
 *   /prune/sparsity             float64 scalar, the target sparsity asked for
 *   /prune/sparsity_achieved    float64 scalar, over prunable weights (ffn:
 *                               the fraction of MLP units removed)
 * `retort prune` writes them; recovery training reads the masks into a
 * block laid out like the parameter block (student_tensor_info offsets,
 * one byte per float), keeps pruned weights at zero with
 * student_apply_mask, and saves the masks again with every checkpoint.
 * A tensor without a mask dataset is dense (all 1); masks are written only
 * for tensors that have a pruned entry.
 *
 * Recovery training (what trainer/train.c does):
 *   load:  ckpt_masks_read(r, cfg, &mask); ckpt_prune_meta_read(r, &meta, &found);
 *          if (mask) student_apply_mask(student_params(m), mask, student_block_size(m));
 *   step:  after the gradient all-reduce, before the norm and clipping:
 *            student_apply_mask(student_grads(m), mask, n);
 *          after student_adamw_step:
 *            student_apply_mask(student_params(m), mask, n);
 *   save:  ckpt_masks_extras_build(cfg, mask, &meta, &mx); append mx.arrays[0 .. mx.n)
 *          to ckpt_contents.extras; ckpt_save...; ckpt_masks_extras_free(&mx).
 * An ffn-pruned file has no masks (the units are gone), only the metadata
 * and /prune/ffn_kept (n_layer, d_ff) int32, the original index of every
 * kept unit; heads-pruned files add /prune/heads_kept (n_layer, n_head)
 * uint8. */
#ifndef CKPT_MASKS_H
#define CKPT_MASKS_H

#include <stdint.h>

#include "ckpt.h"

#define CKPT_PRUNE_MASK_GROUP "/prune/mask"

typedef struct {
    char method[32];  /* "" when the file records none */
    double sparsity;  /* target */
    double achieved;  /* measured */
} ckpt_prune_meta;

/* Reads every /prune/mask/<name> of the file into a new block of
 * student_block_floats(c) bytes (free with rt_free_aligned), 1 wherever
 * no mask says otherwise (tensors without a mask, padding). *mask_block_out
 * is NULL, and RT_OK returned, when the file has no mask at all. c is the
 * model's config (call ckpt_check_config first when it comes from
 * elsewhere). RT_ERR_FORMAT naming the file and dataset for a mask of the
 * wrong type or shape or holding values other than 0 and 1. */
rt_status ckpt_masks_read(ckpt_reader *r, const student_config *c, uint8_t **mask_block_out);

/* Reads /prune/method and the sparsities into *out (zeroed first); *found
 * is 0 when the file records no pruning (then RT_OK and out is empty). */
rt_status ckpt_prune_meta_read(ckpt_reader *r, ckpt_prune_meta *out, int *found);

/* The extras that store a mask block (and, when meta != NULL, the
 * metadata) in a checkpoint: append arrays[0 .. n) to ckpt_contents.extras.
 * The arrays point into mask_block and *meta, which must outlive the
 * ckpt_save; paths are owned by the struct. */
typedef struct {
    ckpt_array *arrays;
    int n;
    char (*paths_)[96]; /* private: storage of the array paths */
    uint8_t *method_;   /* private: copy of meta->method */
} ckpt_masks_extras;

/* Fills *out (zeroed first; free with ckpt_masks_extras_free, also after a
 * failure). mask_block may be NULL (metadata only, e.g. after ffn removal).
 * RT_ERR_NOMEM is the only failure. */
rt_status ckpt_masks_extras_build(const student_config *c, const uint8_t *mask_block,
                                  const ckpt_prune_meta *meta, ckpt_masks_extras *out);
void ckpt_masks_extras_free(ckpt_masks_extras *e); /* NULL-safe; zeroes *e */

#endif
