/* libFuzzer harness: checkpoint and deploy files (checkpoints/read.c,
 * info.c, load.c). The input is an HDF5 file image, held in memory; every
 * reader of a checkpoint runs on it: open (root attributes, /config),
 * info, the dataset walk, --verify, the model shape check, reading the
 * weights and the optimizer, and building the model. Each must return a
 * status (never crash, never allocate what the file merely claims) and
 * leave no HDF5 object open. */
#include "fuzz_util.h"

#include <hdf5.h>

#include "ckpt.h"
#include "ckpt_deploy.h"
#include "student.h"

/* Largest model the harness builds (floats): bigger ones are legitimate
 * files too, but the input is at most a few hundred KB, and a model that
 * passes ckpt_check_model stores every weight, so this only skips the
 * activation-heavy shapes (long seq_len x big vocab) that are real
 * requests rather than bugs. */
enum { FUZZ_MAX_FLOATS = 1 << 22 };

static rt_status count_one(ckpt_reader *r, const char *dpath, void *ctx) {
    (void)r, (void)dpath;
    ++*(long *)ctx;
    return RT_OK;
}

static void exercise_reader(const char *path) {
    ckpt_reader *r = NULL;
    if (ckpt_open(path, &r) != RT_OK) return;
    long n = 0;
    (void)ckpt_walk_datasets(r, count_one, &n);
    (void)ckpt_verify(r);
    char *text = NULL;
    if (ckpt_read_string_attr(r, "/meta", "config", &text) == RT_OK) free(text);
    text = NULL;
    if (ckpt_deploy_tokenizer(r, &text) == RT_OK) free(text);
    const student_config *c = ckpt_reader_config(r);
    if (ckpt_check_model(r) == RT_OK && !ckpt_deploy_is_int8(r)) {
        size_t nf = student_block_floats(c);
        if (nf <= FUZZ_MAX_FLOATS) {
            float *blk = rt_alloc_aligned(nf * sizeof(float));
            float *m = rt_alloc_aligned(nf * sizeof(float));
            float *v = rt_alloc_aligned(nf * sizeof(float));
            if (blk && m && v) {
                int64_t step;
                (void)ckpt_read_params(r, blk);
                (void)ckpt_read_optimizer(r, m, v, &step);
            }
            rt_free_aligned(blk), rt_free_aligned(m), rt_free_aligned(v);
        }
    }
    ckpt_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(0, data, size);
    ckpt_summary sm;
    (void)ckpt_summarize(path, &sm);
    ckpt_summary_free(&sm);
    exercise_reader(path);
    ckpt_reader *r = NULL;
    if (ckpt_open(path, &r) == RT_OK) {
        const student_config *c = ckpt_reader_config(r);
        const size_t acts = (size_t)c->seq_len * (size_t)c->vocab_size +
                            (size_t)c->n_layer * c->seq_len * (c->d_ff + 4 * c->d_model) +
                            (size_t)c->n_layer * c->n_head * c->seq_len * c->seq_len;
        const int small = student_block_floats(c) <= FUZZ_MAX_FLOATS && acts <= FUZZ_MAX_FLOATS;
        ckpt_reader_close(r);
        student_model *m = NULL;
        if (small && ckpt_load_model(path, 1, STUDENT_F32, 0, &m, NULL) == RT_OK) student_destroy(m);
    }
    /* every error path closes what it opened (issue 16 item 10) */
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        fprintf(stderr, "fuzz_ckpt: %zd HDF5 objects left open after one input\n", open_ids);
        abort();
    }
    return 0;
}
