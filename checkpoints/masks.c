/* Pruning masks and metadata in checkpoints (layout: ckpt_masks.h).
 *
 * Masks live in the file one dataset per tensor, shaped like the tensor, so
 * h5py shows them next to /model; in memory they are one byte block laid
 * out like the parameter block, so applying them during training is one
 * pass over the block (student_apply_mask) whatever the number of
 * tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_masks.h"

static void mask_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", CKPT_PRUNE_MASK_GROUP, name);
}

rt_status ckpt_masks_read(ckpt_reader *r, const student_config *c, uint8_t **mask_block_out) {
    rt_status st = RT_OK;
    uint8_t *block = NULL;
    const char *path = ckpt_reader_path(r);
    *mask_block_out = NULL;
    if (!ckpt_has(r, CKPT_PRUNE_MASK_GROUP)) return RT_OK;

    const size_t nb = student_block_floats(c);
    block = rt_alloc_aligned(nb);
    if (!block) return rt_fail(RT_ERR_NOMEM, "%s: out of memory for a %zu-byte mask block", path, nb);
    memset(block, 1, nb);
    int found = 0;
    student_tensor t;
    for (int i = 0; i < student_tensor_count(c); i++) {
        student_tensor_info(c, i, &t);
        char p[128];
        mask_path(p, sizeof p, t.name);
        if (!ckpt_has(r, p)) continue;
        ckpt_dtype dt;
        int ndim;
        int64_t shape[CKPT_MAX_DIMS];
        if ((st = ckpt_array_info(r, p, &dt, &ndim, shape)) != RT_OK) goto cleanup;
        /* 1-D tensors are stored with ndim 1; shape[1] of the table is 1 then. */
        if (dt != CKPT_U8 || ndim != t.ndim || shape[0] != t.shape[0] ||
            (t.ndim == 2 && shape[1] != t.shape[1])) {
            st = rt_fail(RT_ERR_FORMAT, "%s: %s is %s with %d dimension(s) [%lld%s%lld], "
                         "expected uint8 shaped like the tensor [%lld%s%lld]", path, p,
                         ckpt_dtype_name(dt), ndim, (long long)shape[0], ndim > 1 ? ", " : "",
                         ndim > 1 ? (long long)shape[1] : 0LL, (long long)t.shape[0],
                         t.ndim > 1 ? ", " : "", t.ndim > 1 ? (long long)t.shape[1] : 0LL);
            goto cleanup;
        }
        uint8_t *dst = block + t.offset;
        if ((st = ckpt_read_array(r, p, CKPT_U8, t.numel, dst)) != RT_OK) goto cleanup;
        for (size_t k = 0; k < t.numel; k++)
            if (dst[k] > 1) {
                st = rt_fail(RT_ERR_FORMAT, "%s: %s holds %u at element %zu; masks are 0 "
                             "(pruned) or 1 (kept)", path, p, dst[k], k);
                goto cleanup;
            }
        found++;
    }
    if (found) {
        *mask_block_out = block;
        block = NULL;
    }
cleanup:
    rt_free_aligned(block);
    return st;
}

rt_status ckpt_prune_meta_read(ckpt_reader *r, ckpt_prune_meta *out, int *found) {
    memset(out, 0, sizeof *out);
    *found = 0;
    if (!ckpt_has(r, "/prune/method")) return RT_OK;
    const char *path = ckpt_reader_path(r);
    ckpt_dtype dt;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    RT_TRY(ckpt_array_info(r, "/prune/method", &dt, &ndim, shape));
    if (dt != CKPT_U8 || ndim != 1 || shape[0] < 1 || shape[0] >= (int64_t)sizeof out->method)
        return rt_fail(RT_ERR_FORMAT, "%s: /prune/method is not 1..%zu uint8 bytes", path,
                       sizeof out->method - 1);
    RT_TRY(ckpt_read_array(r, "/prune/method", CKPT_U8, (size_t)shape[0], out->method));
    out->method[shape[0]] = '\0';
    if (ckpt_has(r, "/prune/sparsity"))
        RT_TRY(ckpt_read_array(r, "/prune/sparsity", CKPT_F64, 1, &out->sparsity));
    if (ckpt_has(r, "/prune/sparsity_achieved"))
        RT_TRY(ckpt_read_array(r, "/prune/sparsity_achieved", CKPT_F64, 1, &out->achieved));
    *found = 1;
    return RT_OK;
}

rt_status ckpt_masks_extras_build(const student_config *c, const uint8_t *mask_block,
                                  const ckpt_prune_meta *meta, ckpt_masks_extras *out) {
    memset(out, 0, sizeof *out);
    const int nt = student_tensor_count(c);
    out->arrays = calloc((size_t)nt + 3, sizeof *out->arrays);
    out->paths_ = calloc((size_t)nt, sizeof *out->paths_);
    if (!out->arrays || !out->paths_)
        return rt_fail(RT_ERR_NOMEM, "checkpoint: out of memory for the pruning masks' table");
    student_tensor t;
    for (int i = 0; mask_block && i < nt; i++) {
        student_tensor_info(c, i, &t);
        /* A mask without a zero carries no information: leave it out, so
         * a dense tensor reads back as dense. */
        if (!memchr(mask_block + t.offset, 0, t.numel)) continue;
        char *p = out->paths_[out->n];
        mask_path(p, sizeof out->paths_[0], t.name);
        ckpt_array *a = &out->arrays[out->n++];
        *a = (ckpt_array){.path = p, .dtype = CKPT_U8, .ndim = t.ndim,
                          .shape = {t.shape[0], t.shape[1]}, .data = mask_block + t.offset};
    }
    if (meta && meta->method[0]) {
        const size_t len = strnlen(meta->method, sizeof meta->method);
        out->method_ = malloc(len);
        if (!out->method_)
            return rt_fail(RT_ERR_NOMEM, "checkpoint: out of memory for the pruning metadata");
        memcpy(out->method_, meta->method, len);
        out->arrays[out->n++] = (ckpt_array){.path = "/prune/method", .dtype = CKPT_U8,
                                             .ndim = 1, .shape = {(int64_t)len},
                                             .data = out->method_};
        out->arrays[out->n++] = (ckpt_array){.path = "/prune/sparsity", .dtype = CKPT_F64,
                                             .ndim = 0, .data = &meta->sparsity};
        out->arrays[out->n++] = (ckpt_array){.path = "/prune/sparsity_achieved",
                                             .dtype = CKPT_F64, .ndim = 0,
                                             .data = &meta->achieved};
    }
    return RT_OK;
}

void ckpt_masks_extras_free(ckpt_masks_extras *e) {
    if (!e) return;
    free(e->arrays);
    free(e->paths_);
    free(e->method_);
    memset(e, 0, sizeof *e);
}
