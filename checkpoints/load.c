/* Building a ready model from a checkpoint file: the one place every
 * command that needs weights (eval, generate, the teacher, prune, export,
 * train.init) goes through, so that all of them validate the same way.
 * Training checkpoints and f32 deploy files read /model into the block;
 * int8 deploy files (ckpt_deploy.h) build an inference-only model whose
 * linear layers run int8 (student_int8_set). */
#include "ckpt_deploy.h"

rt_status ckpt_load_model(const char *path, int batch, student_precision p, int training,
                          student_model **model_out, ckpt_reader **reader_out) {
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
    st = student_create(ckpt_reader_config(r), batch, p, training, &m);
    if (st != RT_OK) goto cleanup;
    st = ckpt_read_model(r, m);
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
    if (ckpt_deploy_is_int8(r)) return ckpt_deploy_read_int8(r, m);
    return ckpt_read_params(r, student_params(m));
}
