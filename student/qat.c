/* Quantization-aware training: fake quantization of the four linear layers
 * of every block, range observers for their inputs, and the
 * straight-through estimator (see the QAT section of student.h for the
 * scheme and why the LM head stays f32 and scales are not learned).
 *
 * Forward (hooks in model.c): student_qat_forward_begin refreshes a copy
 * of the linear weights quantize-dequantized per output channel, which the
 * forward and the input-gradient matmuls of backward use in place of the
 * weights (so weight gradients flow straight through: no weight is ever
 * clipped). Each linear input is observed while calibrating and then
 * quantize-dequantized in place; the buffers it lives in (ln_1 and ln_2
 * outputs, attention output, GELU output) are read again only by the
 * weight-gradient matmul, which must see the quantized values anyway.
 * An in-range mask per element, kept for backward, zeroes the gradient
 * where the value was clipped.
 *
 * The arithmetic (x * (1/s), round half to even, + zero point, clamp) is
 * the one the int8 kernels of quant.c use, so a QAT model and its int8
 * deploy file quantize every activation to the same integer. */
#include <math.h>
#include <stdlib.h>

#include "student_internal.h"

enum { ST_SEEN, ST_ASYM, ST_CALIB, ST_FREEZE, ST_HDR };

struct student_qat {
    student_qat_config cfg;
    int n;          /* 4 * n_layer linear layers */
    float *state;   /* (ST_HDR + 2n) see student_qat_state */
    float *wq;      /* fake-quantized linear weights, packed per layer at woff */
    size_t *woff;   /* (n) */
    uint8_t *mask;  /* training: per layer (3*M*C + M*F), M = max_B*T; one
                     * shared layer under recomputation (m->lmul = 0) */
    size_t mask_layer, mc; /* floats per layer of mask; M*max(C, A) */
    int observe_next; /* student_qat_observe_next: the next forward may observe */
    int observing;  /* this forward updates the ranges */
    int pending;    /* forwards observed since the last student_qat_step_end */
};

size_t student_qat_state_size(const student_config *c) { return ST_HDR + 8 * (size_t)c->n_layer; }

int student_qat_enabled(const student_model *m) { return m->qat != NULL; }

void student_qat_disable(student_model *m) {
    struct student_qat *q = m->qat;
    if (!q) return;
    free(q->state);
    rt_free_aligned(q->wq);
    free(q->woff);
    rt_free_aligned(q->mask);
    free(q);
    m->qat = NULL;
}

static int calibrating(const struct student_qat *q) {
    return !q->state[ST_FREEZE] || q->state[ST_SEEN] < q->state[ST_CALIB];
}

/* Some forward has set the ranges (a step counted, or one in progress). */
static int has_ranges(const struct student_qat *q) {
    return q->state[ST_SEEN] >= 1.0f || q->pending > 0;
}

void student_qat_observe_next(student_model *m) {
    if (m->qat) m->qat->observe_next = 1;
}

void student_qat_step_end(student_model *m) {
    struct student_qat *q = m->qat;
    if (!q || q->pending == 0) return;
    q->state[ST_SEEN] += 1.0f;
    q->pending = 0;
}

int student_qat_calibrating(const student_model *m) { return m->qat && calibrating(m->qat); }

/* w (K, N) quantize-dequantized per column into out. */
static void fq_weight(float *out, const float *w, int64_t K, int64_t N) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float mx = 0.0f;
        for (int64_t k = 0; k < K; k++) mx = fabsf(w[k * N + n]) > mx ? fabsf(w[k * N + n]) : mx;
        const float s = mx > 0.0f ? mx / 127.0f : 1.0f, inv = 1.0f / s;
        for (int64_t k = 0; k < K; k++) {
            float v = student_qround(w[k * N + n] * inv);
            v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
            out[k * N + n] = s * v;
        }
    }
}

static void refresh_weights(student_model *m) {
    struct student_qat *q = m->qat;
    for (int i = 0; i < q->n; i++) {
        const student_tensor *t = &m->tensors[student_linear_tensor(&m->cfg, i / 4, i % 4)];
        fq_weight(q->wq + q->woff[i], m->params + t->offset, t->shape[0], t->shape[1]);
    }
}

rt_status student_qat_enable(student_model *m, const student_qat_config *cfg) {
    if (m->prec != STUDENT_F32)
        return rt_fail(RT_ERR_UNSUPPORTED, "student_qat_enable: QAT runs on f32 models only "
                                           "(set [train] precision = f32 for QAT)");
    if (m->q8)
        return rt_fail(RT_ERR_UNSUPPORTED, "student_qat_enable: the model already runs int8");
    if (!cfg->observe_only && student_is_lowrank(&m->cfg))
        return rt_fail(RT_ERR_UNSUPPORTED, "student_qat_enable: QAT of a low-rank model is not "
                       "supported (train the factors in f32, then export --int8)");
    if (cfg->calib_steps < 1 || !(cfg->ema >= 0.0f && cfg->ema < 1.0f))
        return rt_fail(RT_ERR_ARGS, "student_qat_enable: calib_steps must be >= 1 (got %d) and "
                       "ema in [0, 1) (got %g)", cfg->calib_steps, (double)cfg->ema);
    student_qat_disable(m);
    const student_config *c = &m->cfg;
    struct student_qat *q = calloc(1, sizeof *q);
    if (!q) return rt_fail(RT_ERR_NOMEM, "student: out of memory for QAT state");
    m->qat = q;
    q->cfg = *cfg;
    q->n = 4 * c->n_layer;
    q->state = calloc(student_qat_state_size(c), sizeof(float));
    q->woff = calloc((size_t)q->n, sizeof *q->woff);
    if (!q->state || !q->woff) goto nomem;
    q->state[ST_ASYM] = cfg->asymmetric ? 1.0f : 0.0f;
    q->state[ST_CALIB] = (float)cfg->calib_steps;
    q->state[ST_FREEZE] = cfg->freeze ? 1.0f : 0.0f;
    if (!cfg->observe_only) {
        size_t tot = 0;
        for (int i = 0; i < q->n; i++) {
            q->woff[i] = tot;
            tot += (m->tensors[student_linear_tensor(&m->cfg, i / 4, i % 4)].numel + 15) / 16 * 16;
        }
        q->wq = rt_alloc_aligned(tot * sizeof(float));
        if (!q->wq) goto nomem;
        refresh_weights(m);
        if (m->training) {
            const size_t M = (size_t)m->max_B * c->seq_len;
            /* one slot per linear input: C wide, or A for attn.c_proj */
            const size_t w = (size_t)(c->d_model > student_attn_width(c) ? c->d_model
                                                                           : student_attn_width(c));
            q->mc = M * w;
            q->mask_layer = 3 * q->mc + M * (size_t)c->d_ff;
            q->mask = rt_alloc_aligned(q->mask_layer * (size_t)(m->lmul ? c->n_layer : 1));
            if (!q->mask) goto nomem;
        }
    }
    return RT_OK;
nomem:
    student_qat_disable(m);
    return rt_fail(RT_ERR_NOMEM, "student: out of memory for QAT state");
}

const float *student_qat_state(const student_model *m, size_t *n) {
    *n = 0;
    if (!m->qat) return NULL;
    *n = student_qat_state_size(&m->cfg);
    return m->qat->state;
}

rt_status student_qat_set_state(student_model *m, const float *state, size_t n) {
    if (!m->qat)
        return rt_fail(RT_ERR_ARGS, "student_qat_set_state: enable QAT before restoring its state");
    const size_t want = student_qat_state_size(&m->cfg);
    if (n != want)
        return rt_fail(RT_ERR_MISMATCH, "QAT state has %zu values, this model (%d layers) needs "
                       "%zu", n, m->cfg.n_layer, want);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(state[i]))
            return rt_fail(RT_ERR_FORMAT, "QAT state value %zu is not finite", i);
    memcpy(m->qat->state, state, n * sizeof(float));
    m->qat->pending = 0;
    m->qat->cfg.asymmetric = state[ST_ASYM] != 0.0f;
    return RT_OK;
}

static student_act_quant quantizer(const struct student_qat *q, int i) {
    const float *r = q->state + ST_HDR + 2 * i;
    return student_act_quant_from_range(r[0], r[1], q->state[ST_ASYM] != 0.0f);
}

rt_status student_qat_act_params(const student_model *m, student_act_quant *aq) {
    if (!m->qat)
        return rt_fail(RT_ERR_ARGS, "student_qat_act_params: QAT / calibration is not enabled");
    if (!has_ranges(m->qat))
        return rt_fail(RT_ERR_ARGS, "student_qat_act_params: no forward has been observed yet");
    for (int i = 0; i < m->qat->n; i++) aq[i] = quantizer(m->qat, i);
    return RT_OK;
}

void student_qat_forward_begin(student_model *m) {
    struct student_qat *q = m->qat;
    q->observing = q->observe_next && calibrating(q);
    q->observe_next = 0;
    if (q->wq) refresh_weights(m);
}

void student_qat_forward_end(student_model *m) {
    if (m->qat->observing) m->qat->pending++;
    m->qat->observing = 0;
}

const float *student_qat_weight(const student_model *m, int l, int k) {
    const struct student_qat *q = m->qat;
    return q->wq ? q->wq + q->woff[l * 4 + k] : NULL;
}

static uint8_t *mask_of(const student_model *m, int l, int k) {
    const struct student_qat *q = m->qat;
    if (!q->mask) return NULL;
    return q->mask + (size_t)(l * m->lmul) * q->mask_layer + (size_t)k * q->mc;
}

/* Quantize-dequantize x in place; mask[i] = 1 where round(x/s)+z was in
 * [qmin, qmax] (PyTorch's fake_quantize mask), when mask != NULL. */
static void fq_act(float *x, size_t n, student_act_quant a, uint8_t *mask) {
    const float inv = 1.0f / a.scale, s = a.scale, z = (float)a.zero, lo = (float)a.qmin,
                hi = (float)a.qmax;
    if (mask) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) {
            float v = x[i] * inv;
            v = v < -2097152.0f ? -2097152.0f : (v > 2097152.0f ? 2097152.0f : v);
            v = student_qround(v) + z;
            mask[i] = (uint8_t)(v >= lo && v <= hi);
            v = v < lo ? lo : (v > hi ? hi : v);
            x[i] = s * (v - z);
        }
    } else {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) {
            float v = x[i] * inv;
            v = v < -2097152.0f ? -2097152.0f : (v > 2097152.0f ? 2097152.0f : v);
            v = student_qround(v) + z;
            v = v < lo ? lo : (v > hi ? hi : v);
            x[i] = s * (v - z);
        }
    }
}

void student_qat_act(student_model *m, int l, int k, float *x, size_t n) {
    struct student_qat *q = m->qat;
    const int i = l * 4 + k;
    if (q->observing) {
        float lo = INFINITY, hi = -INFINITY;
#pragma omp parallel for simd reduction(min : lo) reduction(max : hi) schedule(static)
        for (size_t j = 0; j < n; j++) {
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        float *r = q->state + ST_HDR + 2 * i;
        const int calib = q->state[ST_SEEN] < q->state[ST_CALIB];
        float e = q->cfg.ema;
        if (!calib && e == 0.0f) e = 0.01f; /* tracking past calibration (freeze = 0) */
        if (!has_ranges(q)) {
            r[0] = lo, r[1] = hi;
        } else if (e == 0.0f) {
            r[0] = lo < r[0] ? lo : r[0];
            r[1] = hi > r[1] ? hi : r[1];
        } else {
            r[0] += e * (lo - r[0]);
            r[1] += e * (hi - r[1]);
        }
    }
    /* observe_only, or a forward before any observed one: no range yet
     * (an observing forward has just set this one) */
    if (!q->wq || !(q->observing || has_ranges(q))) return;
    fq_act(x, n, quantizer(q, i), m->training ? mask_of(m, l, k) : NULL);
}

void student_qat_act_apply(const student_model *m, int l, int k, float *x, size_t n) {
    const struct student_qat *q = m->qat;
    if (!q->wq || !has_ranges(q)) return;
    fq_act(x, n, quantizer(q, l * 4 + k), NULL);
}

void student_qat_act_grad(const student_model *m, int l, int k, float *dx, size_t n) {
    const uint8_t *mk = mask_of(m, l, k);
    if (!mk) return;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = mk[i] ? dx[i] : 0.0f;
}
