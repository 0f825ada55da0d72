/* Teacher forward: student/'s model in inference mode, then the top-k soft
 * labels of the temperature-scaled softmax and copies of the requested
 * hidden states. See teacher.h. */
#include "teacher.h"

#include <stdlib.h>
#include <string.h>

struct teacher {
    teacher_config cfg;
    student_model *model;
};

static rt_status teacher_config_check(const teacher_config *c) {
    RT_TRY(student_config_validate(&c->model));
    if (c->batch < 1) return rt_fail(RT_ERR_ARGS, "teacher: batch must be >= 1 (got %d)", c->batch);
    if (!(c->temperature > 0.0f))
        return rt_fail(RT_ERR_ARGS, "teacher: temperature must be > 0 (got %g)",
                       (double)c->temperature);
    if (c->topk < 1 || c->topk > c->model.vocab_size)
        return rt_fail(RT_ERR_ARGS, "teacher: topk must be in [1, %d] (got %d)",
                       c->model.vocab_size, c->topk);
    if (c->n_features < 0 || c->n_features > TEACHER_MAX_FEATURES)
        return rt_fail(RT_ERR_ARGS, "teacher: %d feature layers (at most %d)", c->n_features,
                       TEACHER_MAX_FEATURES);
    for (int i = 0; i < c->n_features; i++)
        if (c->feature_layers[i] < 0 || c->feature_layers[i] >= c->model.n_layer)
            return rt_fail(RT_ERR_ARGS,
                           "teacher: feature layer %d is out of range (the teacher has %d "
                           "layers, numbered from 0)",
                           c->feature_layers[i], c->model.n_layer);
    return RT_OK;
}

rt_status teacher_create_with(const teacher_config *c, student_model *model, teacher **out) {
    *out = NULL;
    teacher_config tc = *c;
    tc.model = *student_cfg(model);
    tc.precision = student_prec(model);
    if (tc.batch > student_max_batch(model)) tc.batch = student_max_batch(model);
    rt_status st = teacher_config_check(&tc);
    teacher *t = st == RT_OK ? calloc(1, sizeof *t) : NULL;
    if (st == RT_OK && !t) st = rt_fail(RT_ERR_NOMEM, "teacher: out of memory");
    if (st != RT_OK) {
        student_destroy(model);
        return st;
    }
    t->cfg = tc;
    t->model = model;
    *out = t;
    return RT_OK;
}

rt_status teacher_create(const teacher_config *c, teacher **out) {
    *out = NULL;
    RT_TRY(teacher_config_check(c));
    student_model *m = NULL;
    RT_TRY(student_create(&c->model, c->batch, c->precision, 0, &m));
    return teacher_create_with(c, m, out);
}

void teacher_destroy(teacher *t) {
    if (!t) return;
    student_destroy(t->model);
    free(t);
}

const teacher_config *teacher_cfg(const teacher *t) { return &t->cfg; }
float *teacher_params(teacher *t) { return student_params(t->model); }
const float *teacher_logits(const teacher *t) {
    return student_logits((student_model *)t->model);
}

rt_status teacher_run(teacher *t, const int32_t *inputs, int B, int32_t *ids, float *logp,
                      float *tail, float *feat) {
    const teacher_config *c = &t->cfg;
    if (B < 1 || B > c->batch)
        return rt_fail(RT_ERR_ARGS, "teacher: %d rows asked, planned for 1..%d", B, c->batch);
    RT_TRY(student_forward(t->model, inputs, B));
    const int T = c->model.seq_len, V = c->model.vocab_size, C = c->model.d_model;
    const int n_pos = B * T;
    RT_TRY(student_teacher_topk(student_loss_workspace(t->model), student_logits(t->model), n_pos,
                                V, c->temperature, c->topk, ids, logp, tail));
    if (feat) {
        for (int i = 0; i < c->n_features; i++)
            memcpy(feat + (size_t)i * n_pos * C, student_hidden(t->model, c->feature_layers[i]),
                   (size_t)n_pos * C * sizeof(float));
    }
    return RT_OK;
}
