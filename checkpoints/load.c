/* Building a ready model from a checkpoint file: the one place every
 * command that needs weights (eval, generate, the teacher, prune, export,
 * train.init) goes through, so that all of them validate the same way. */
#include "ckpt.h"

rt_status ckpt_load_model(const char *path, int batch, student_precision p, int training,
                          student_model **model_out, ckpt_reader **reader_out) {
    *model_out = NULL;
    if (reader_out) *reader_out = NULL;
    ckpt_reader *r = NULL;
    student_model *m = NULL;
    rt_status st = ckpt_open(path, &r);
    if (st != RT_OK) goto cleanup;
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
    return ckpt_read_params(r, student_params(m));
}
