/* Teacher forward: student/'s model in inference mode, then the soft labels
 * of the temperature-scaled softmax in the configured scheme and copies of
 * the requested hidden states. See teacher.h. */
#include "teacher.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "rt_rand.h"

struct teacher {
    teacher_config cfg;
    student_model *model;
    /* topk+sample: the exact part, (batch*T, topk) ids and logp and
     * (batch*T) tail; sampled schemes: (batch*T) position seeds */
    int32_t *tk_ids;
    float *tk_logp, *tk_tail;
    uint64_t *seeds;
    float *hidden; /* hidden: (batch*T, d_model) final normalized states */
    teacher_stats stats;
};

int teacher_label_width(const teacher_config *c) {
    const int V = c->model.vocab_size;
    switch (c->labels) {
    case TEACHER_LABELS_SAMPLE: return c->samples;
    case TEACHER_LABELS_TOPK_SAMPLE: return c->topk + c->samples;
    case TEACHER_LABELS_HIDDEN: return 0;
    case TEACHER_LABELS_TOPK: break;
    }
    return c->topk < V ? c->topk : V;
}

uint64_t teacher_window_seed(uint64_t seed, int64_t step, int64_t start) {
    /* a constant tag keeps these streams apart from the other users of
     * train.seed (initialization, the sampler's permutations) */
    return rt_seed_derive(rt_seed_derive(seed ^ 0x50F71ABE15ull, (uint64_t)step),
                          (uint64_t)start);
}

static rt_status teacher_config_check(const teacher_config *c) {
    RT_TRY(student_config_validate(&c->model));
    const int V = c->model.vocab_size;
    if (c->batch < 1) return rt_fail(RT_ERR_ARGS, "teacher: batch must be >= 1 (got %d)", c->batch);
    if (!(c->temperature > 0.0f))
        return rt_fail(RT_ERR_ARGS, "teacher: temperature must be > 0 (got %g)",
                       (double)c->temperature);
    if (c->labels != TEACHER_LABELS_TOPK && c->labels != TEACHER_LABELS_SAMPLE &&
        c->labels != TEACHER_LABELS_TOPK_SAMPLE && c->labels != TEACHER_LABELS_HIDDEN)
        return rt_fail(RT_ERR_ARGS, "teacher: unknown label scheme %d", (int)c->labels);
    const int uses_topk = c->labels == TEACHER_LABELS_TOPK || c->labels == TEACHER_LABELS_TOPK_SAMPLE;
    const int samples = c->labels == TEACHER_LABELS_SAMPLE || c->labels == TEACHER_LABELS_TOPK_SAMPLE;
    if (uses_topk && (c->topk < 1 || c->topk > V))
        return rt_fail(RT_ERR_ARGS, "teacher: topk must be in [1, %d] (got %d)", V, c->topk);
    if (samples) {
        const int k = c->labels == TEACHER_LABELS_SAMPLE ? 0 : c->topk;
        if (c->samples < 1 || (int64_t)k + c->samples >= V)
            return rt_fail(RT_ERR_ARGS,
                           "teacher: %d samples%s per position must be in [1, %d] for a "
                           "vocabulary of %d (for all %d probabilities use the topk scheme "
                           "with topk = %d)",
                           c->samples, k ? " beside the top-k" : "", V - 1 - k, V, V, V);
    }
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
    /* sampled schemes: per-position seeds; topk+sample: its exact part */
    const size_t n_pos = (size_t)tc.batch * tc.model.seq_len;
    int ok = 1;
    const int sampled = tc.labels == TEACHER_LABELS_SAMPLE || tc.labels == TEACHER_LABELS_TOPK_SAMPLE;
    if (sampled) ok &= (t->seeds = malloc(n_pos * sizeof *t->seeds)) != NULL;
    if (tc.labels == TEACHER_LABELS_HIDDEN)
        ok &= (t->hidden = rt_alloc_aligned(n_pos * (size_t)tc.model.d_model * sizeof(float))) != NULL;
    if (tc.labels == TEACHER_LABELS_TOPK_SAMPLE) {
        ok &= (t->tk_ids = malloc(n_pos * (size_t)tc.topk * sizeof *t->tk_ids)) != NULL;
        ok &= (t->tk_logp = malloc(n_pos * (size_t)tc.topk * sizeof *t->tk_logp)) != NULL;
        ok &= (t->tk_tail = malloc(n_pos * sizeof *t->tk_tail)) != NULL;
    }
    if (!ok) {
        teacher_destroy(t);
        return rt_fail(RT_ERR_NOMEM, "teacher: out of memory for the label scratch of %d rows",
                       tc.batch);
    }
    /* the draws' scratch lives in the model's loss workspace, grown once */
    if (sampled) {
        rt_status rs = student_loss_ws_reserve(student_loss_workspace(model),
                                               student_teacher_sample_bytes(tc.samples));
        if (rs != RT_OK) {
            teacher_destroy(t);
            return rs;
        }
    }
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
    free(t->tk_ids);
    free(t->tk_logp);
    free(t->tk_tail);
    free(t->seeds);
    rt_free_aligned(t->hidden);
    free(t);
}

const teacher_config *teacher_cfg(const teacher *t) { return &t->cfg; }
teacher_stats teacher_get_stats(const teacher *t) { return t->stats; }
void teacher_stats_reset(teacher *t) { memset(&t->stats, 0, sizeof t->stats); }
float *teacher_params(teacher *t) { return student_params(t->model); }

rt_status teacher_run(teacher *t, const int32_t *inputs, int B, uint64_t seed, int64_t step,
                      const int64_t *starts, const teacher_out *out) {
    const teacher_config *c = &t->cfg;
    if (B < 1 || B > c->batch)
        return rt_fail(RT_ERR_ARGS, "teacher: %d rows asked, planned for 1..%d", B, c->batch);
    const int sampled = c->labels == TEACHER_LABELS_SAMPLE || c->labels == TEACHER_LABELS_TOPK_SAMPLE;
    if (sampled && !starts)
        return rt_fail(RT_ERR_ARGS, "teacher: sampled soft labels need the rows' window starts");
    const double w0 = omp_get_wtime(), c0 = student_cpu_seconds();
    RT_TRY(student_forward(t->model, inputs, B));
    const double w1 = omp_get_wtime(), c1 = student_cpu_seconds();
    const int T = c->model.seq_len, V = c->model.vocab_size, C = c->model.d_model;
    const int n_pos = B * T;
    const float *z = student_logits(t->model);
    student_loss_ws *ws = student_loss_workspace(t->model);
    if (c->labels == TEACHER_LABELS_TOPK) {
        RT_TRY(student_teacher_topk(ws, z, n_pos, V, c->temperature, teacher_label_width(c),
                                    out->ids, out->logp, out->tail));
    } else if (c->labels == TEACHER_LABELS_HIDDEN) {
        student_final_hidden(t->model, B, t->hidden);
        student_hidden_encode(t->hidden, n_pos, C, c->hidden_bf16, out->hstate, out->hscale);
    } else {
        for (int r = 0; r < B; r++) {
            const uint64_t row = teacher_window_seed(seed, step, starts[r]);
            for (int i = 0; i < T; i++) t->seeds[(size_t)r * T + i] = rt_seed_derive(row, (uint64_t)i);
        }
        const int k = c->labels == TEACHER_LABELS_TOPK_SAMPLE ? c->topk : 0;
        if (k)
            RT_TRY(student_teacher_topk(ws, z, n_pos, V, c->temperature, k, t->tk_ids,
                                        t->tk_logp, t->tk_tail));
        RT_TRY(student_teacher_sample(ws, z, n_pos, V, c->temperature, k, t->tk_ids, t->tk_logp,
                                      c->samples, t->seeds, out->ids, out->logp));
        memset(out->tail, 0, (size_t)n_pos * sizeof *out->tail);
    }
    if (out->feat) {
        for (int i = 0; i < c->n_features; i++)
            memcpy(out->feat + (size_t)i * n_pos * C, student_hidden(t->model, c->feature_layers[i]),
                   (size_t)n_pos * C * sizeof(float));
    }
    teacher_stats *ts = &t->stats;
    ts->runs++;
    ts->tokens += n_pos;
    ts->forward_s += w1 - w0;
    ts->forward_cpu_s += c1 - c0;
    ts->labels_s += omp_get_wtime() - w1;
    ts->labels_cpu_s += student_cpu_seconds() - c1;
    return RT_OK;
}
