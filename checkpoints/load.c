/* Building a ready model from a checkpoint file: the one place every
 * command that needs weights (eval, generate, the teacher, prune, export,
 * train.init) goes through, so that all of them validate the same way.
 * Training checkpoints and f32 deploy files read /model into the block,
 * codebook deploy files decode their linear weights into it;
 * int8 deploy files (ckpt_deploy.h) build an inference-only model whose
 * linear layers run int8 (student_int8_set). A Hugging Face folder
 * (ckpt_hf.h) reads like an f32 deploy file. */
#include <sys/stat.h>

#include "ckpt_deploy.h"
#include "ckpt_hf.h"
#include "ckpt_internal.h"

rt_status ckpt_load_model(const char *path, int batch, student_precision p, int training,
                          student_model **model_out, ckpt_reader **reader_out) {
    return ckpt_load_model_window(path, 0, batch, p, training, model_out, reader_out);
}

/* The weights of r into m, whose config is r's or the same with fewer
 * positions. */
static rt_status read_window(ckpt_reader *r, student_model *m) {
    if (ckpt_deploy_is_int8(r)) return ckpt_deploy_read_int8(r, m);
    if (ckpt_deploy_is_codebook(r)) return ckpt_deploy_read_codebook(r, m);
    return ckpt_read_params_for(r, student_cfg(m), student_params(m));
}

rt_status ckpt_load_model_window(const char *path, int seq_len, int batch, student_precision p,
                                 int training, student_model **model_out,
                                 ckpt_reader **reader_out) {
    *model_out = NULL;
    if (reader_out) *reader_out = NULL;
    ckpt_reader *r = NULL;
    student_model *m = NULL;
    rt_status st = ckpt_open(path, &r);
    if (st != RT_OK) goto cleanup;
    if ((st = ckpt_check_model(r)) != RT_OK) goto cleanup; /* before sizing anything by it */
    if (ckpt_deploy_is_int8(r)) {
        if (training) {
            st = rt_fail(RT_ERR_ARGS, "%s: is an int8 deploy file, which is inference-only; "
                         "train from the training checkpoint it was exported from", path);
            goto cleanup;
        }
        /* int8 layers run beside f32 kernels (and a bf16 head), whatever p asks */
        p = STUDENT_F32;
    }
    student_config c = *ckpt_reader_config(r);
    if (seq_len > c.seq_len) {
        st = rt_fail(RT_ERR_MISMATCH, "%s: seq_len is %d positions, fewer than the %d needed",
                     path, c.seq_len, seq_len);
        goto cleanup;
    }
    if (seq_len > 0) c.seq_len = seq_len;
    st = student_create(&c, batch, p, training, &m);
    if (st != RT_OK) goto cleanup;
    st = read_window(r, m);
    if (st != RT_OK) goto cleanup;
    *model_out = m;
    m = NULL;
    if (reader_out) {
        *reader_out = r;
        r = NULL;
    }
cleanup:
    student_destroy(m);
    ckpt_reader_close(r);
    return st;
}

rt_status ckpt_read_model(ckpt_reader *r, student_model *m) {
    RT_TRY(ckpt_check_config(r, student_cfg(m), "the model being loaded"));
    return read_window(r, m);
}

int64_t ckpt_model_bytes(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) return (int64_t)sb.st_size;
    ckpt_hf *h = NULL;
    student_config c;
    if (ckpt_hf_open(path, &h, &c) != RT_OK) return -1;
    const int64_t bytes = (int64_t)ckpt_hf_bytes(h);
    ckpt_hf_close(h);
    return bytes;
}

rt_status ckpt_export_params(const student_config *c0, const float *params0, student_config *c,
                             float **padded) {
    *c = *c0;
    *padded = NULL;
    /* low-rank factors multiplied back first: these formats have dense
     * weights only (the size gain stays in retort's own files) */
    float *merged = NULL;
    student_config cm = *c0;
    if (student_is_lowrank(c0)) {
        student_lowrank_merge(c0, params0, &cm, NULL);
        if (!(merged = rt_alloc_aligned(student_block_floats(&cm) * sizeof *merged)))
            return rt_fail(RT_ERR_NOMEM, "export: out of memory multiplying the low-rank factors");
        student_lowrank_merge(c0, params0, &cm, merged);
        params0 = merged;
        c0 = &cm;
        *c = cm;
    }
    if (c0->d_head == 0 || c0->d_head * c0->n_head == c0->d_model) {
        c->d_head = 0;
        *padded = merged;
        return RT_OK;
    }
    if (c0->d_model % c0->d_head != 0) {
        rt_free_aligned(merged);
        return rt_fail(RT_ERR_UNSUPPORTED, "export: the head width %d does not divide d_model %d, "
                       "so the removed heads cannot be added back as zeros", c0->d_head,
                       c0->d_model);
    }
    student_heads_pad(c0, params0, c, NULL);
    if (!(*padded = rt_alloc_aligned(student_block_floats(c) * sizeof **padded))) {
        rt_free_aligned(merged);
        return rt_fail(RT_ERR_NOMEM, "export: out of memory padding the heads");
    }
    student_heads_pad(c0, params0, c, *padded);
    rt_free_aligned(merged);
    return RT_OK;
}
