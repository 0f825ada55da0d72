/* KV-cache inference for generation: one sequence, n new tokens per call.
 *
 * Keys and values of every processed position are cached per layer and
 * head, (L, H, max_len, hs), so a new token costs one row through each
 * matmul plus attention over the cache instead of a forward over the whole
 * prefix. The n new rows go through the same oneDNN matmuls as training
 * (primitives for n = 1 are kept, and those of the last prompt length, so
 * that a repeated prompt length only executes primitives). A prompt into
 * an empty cache attends as the full forward does, in the causal
 * staircase of query blocks (student_att_blocks over its n rows): S = Q
 * K^T over the cached keys, student_attn_softmax, Y = P V, all in oneDNN
 * matmuls. Single tokens, and rows added to a cache that holds some
 * already, go through a hand-written loop over (head, query row): with one
 * query row a GEMM has nothing to block. Only the last row goes through
 * the final LayerNorm and the LM head. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "student_internal.h"

enum { PROMPT_ATT_MAX_FLOATS = 64 << 20 }; /* 256 MiB of prompt score planes */

typedef struct {
    int n; /* rows */
    student_mm qkv, attproj, fc, fcproj;
    student_mm lr_a[STUDENT_LIN_N], lr_b[STUDENT_LIN_N]; /* low-rank linears: x W_a, t W_b + b */
    student_qlin *q8; /* int8 model: the int8 layers (and, for n = 1, the head) */
    /* n > 1, a prompt into an empty cache: the attention of its nb query
     * blocks (f32, on the cache) and their (H, n, n) score planes */
    int att_nb;
    student_mm qk[STUDENT_ATT_BLOCKS], pv[STUDENT_ATT_BLOCKS];
    float *att;
} row_plan;

struct student_kv {
    int max_len, len;
    student_config cfg; /* of the model it was made for */
    student_precision prec;
    float *kc, *vc;  /* (L, H, max_len, hs) cached keys and values */
    float *x;        /* (max_len, C) residual stream of the new rows */
    float *ln;       /* (max_len, C) LayerNorm output (f32 mode) */
    float *qkv;      /* (max_len, 3A), A = attention width */
    float *atty;     /* (max_len, A) */
    float *fch;      /* (max_len, F) */
    float *gelu;     /* (max_len, F) (f32 mode) */
    float *lrt;      /* (max_len, max rank) a low-rank linear's inner rows t = x W_a */
    float *scores;   /* (threads, max_len) attention row scratch */
    uint16_t *ln_bf, *atty_bf, *gelu_bf; /* bf16 mode copies (max_len, C|C|F) */
    int int8;        /* made for an int8 model */
    uint8_t *q8s;    /* int8: (max_len, C + F) quantized activations */
    int n_threads;
    row_plan one;    /* n = 1 */
    row_plan many;   /* the last n > 1 (a prompt), kept for the next of that length */
    student_mm head; /* (1, C) x wte^T */
};

static void row_plan_destroy(row_plan *p) {
    student_mm_destroy(&p->qkv);
    student_mm_destroy(&p->attproj);
    student_mm_destroy(&p->fc);
    student_mm_destroy(&p->fcproj);
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        student_mm_destroy(&p->lr_a[k]);
        student_mm_destroy(&p->lr_b[k]);
    }
    for (int j = 0; j < STUDENT_ATT_BLOCKS; j++) {
        student_mm_destroy(&p->qk[j]);
        student_mm_destroy(&p->pv[j]);
    }
    free(p->att);
    p->att = NULL;
    student_qlin_destroy(p->q8);
    p->q8 = NULL;
    p->n = 0;
    p->att_nb = 0;
}

/* The attention matmuls of a prompt's query block [q0, q1) against the
 * keys [0, q1) of a cache of max_len positions, batched over heads: which
 * 0 is S = Q K^T (Q a head slice of the qkv rows, K^T the layer's cached
 * keys transposed, S the block's rows of the (H, n, n) planes), which 1 is
 * Y = P V (P those rows, V the cached values, Y the heads' slices of the
 * (n, A) attention output). */
static void prompt_att_shape(student_mm_shape *s, const student_config *c, int max_len, int n,
                             int which, int q0, int q1) {
    const int64_t H = c->n_head, hs = student_head_dim(c), A = student_attn_width(c),
                  ml = max_len, Tq = q1 - q0, Tk = q1, nn = (int64_t)n * n;
    const int64_t q[3] = {H, Tq, hs}, q_s[3] = {hs, 3 * A, 1};
    const int64_t kt[3] = {H, hs, Tk}, kt_s[3] = {ml * hs, 1, hs};
    const int64_t p[3] = {H, Tq, Tk}, p_s[3] = {nn, n, 1};
    const int64_t v[3] = {H, Tk, hs}, v_s[3] = {ml * hs, hs, 1};
    const int64_t y_s[3] = {hs, A, 1};
    const int64_t *d[3] = {q, kt, p}, *st[3] = {q_s, kt_s, p_s};
    if (which == 1) d[0] = p, st[0] = p_s, d[1] = v, st[1] = v_s, d[2] = q, st[2] = y_s;
    memset(s, 0, sizeof *s);
    s->ndims = 3;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++) s->dims[i][k] = d[i][k], s->strides[i][k] = st[i][k];
    s->dt = dnnl_f32;
}

static rt_status row_plan_create(const student_model *m, int n, int max_len, row_plan *p) {
    rt_status st = RT_OK;
    const int64_t C = m->cfg.d_model, F = m->cfg.d_ff, A = student_attn_width(&m->cfg);
    const dnnl_data_type_t dt = m->prec == STUDENT_BF16 ? dnnl_bf16 : dnnl_f32;
    student_mm_shape s;
    memset(p, 0, sizeof *p);
    p->n = n;
    /* the score planes are n^2 per head: past 256 MiB (a long context) the
     * prompt attends through the per-row loop instead */
    if (n > 1 && (size_t)m->cfg.n_head * (size_t)n * (size_t)n <= PROMPT_ATT_MAX_FLOATS) {
        p->att = malloc((size_t)m->cfg.n_head * (size_t)n * (size_t)n * sizeof *p->att);
        if (!p->att) {
            st = rt_fail(RT_ERR_NOMEM, "student: out of memory for the attention of a %d-token "
                                       "prompt", n);
            goto cleanup;
        }
        p->att_nb = student_att_blocks(n);
        for (int j = 0; j < p->att_nb; j++) {
            int q0, q1;
            student_att_block(n, p->att_nb, j, &q0, &q1);
            prompt_att_shape(&s, &m->cfg, max_len, n, 0, q0, q1);
            if ((st = student_mm_create(&p->qk[j], m->eng, &s)) != RT_OK) goto cleanup;
            prompt_att_shape(&s, &m->cfg, max_len, n, 1, q0, q1);
            if ((st = student_mm_create(&p->pv[j], m->eng, &s)) != RT_OK) goto cleanup;
        }
    }
    if (m->q8) { /* the f32 linear primitives are not needed */
        st = student_qlin_create(m, n, n == 1 ? STUDENT_QLIN_HEAD : 0, &p->q8);
        goto cleanup;
    }
    student_mm_shape_2d(&s, n, C, 3 * A, 0, 0, dt, 1, 0);
    if ((st = student_mm_create(&p->qkv, m->eng, &s)) != RT_OK) goto cleanup;
    student_mm_shape_2d(&s, n, A, C, 0, 0, dt, 1, 1);
    if ((st = student_mm_create(&p->attproj, m->eng, &s)) != RT_OK) goto cleanup;
    student_mm_shape_2d(&s, n, C, F, 0, 0, dt, 1, 0);
    if ((st = student_mm_create(&p->fc, m->eng, &s)) != RT_OK) goto cleanup;
    student_mm_shape_2d(&s, n, F, C, 0, 0, dt, 1, 1);
    if ((st = student_mm_create(&p->fcproj, m->eng, &s)) != RT_OK) goto cleanup;
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        const int64_t r = m->cfg.rank[k];
        int64_t in, out;
        if (r == 0) continue;
        student_linear_shape(&m->cfg, (student_linear)k, &in, &out);
        student_mm_shape_2d(&s, n, in, r, 0, 0, dt, 0, 0);
        if ((st = student_mm_create(&p->lr_a[k], m->eng, &s)) != RT_OK) goto cleanup;
        student_mm_shape_2d(&s, n, r, out, 0, 0, dt, 1,
                            k == STUDENT_LIN_ATTPROJ || k == STUDENT_LIN_FCPROJ);
        if ((st = student_mm_create(&p->lr_b[k], m->eng, &s)) != RT_OK) goto cleanup;
    }
cleanup:
    if (st != RT_OK) row_plan_destroy(p);
    return st;
}

void student_infer_destroy(student_kv *kv) {
    if (!kv) return;
    row_plan_destroy(&kv->one);
    row_plan_destroy(&kv->many);
    student_mm_destroy(&kv->head);
    free(kv->kc);
    free(kv->vc);
    free(kv->x);
    free(kv->ln);
    free(kv->qkv);
    free(kv->atty);
    free(kv->fch);
    free(kv->gelu);
    free(kv->lrt);
    free(kv->scores);
    free(kv->ln_bf);
    free(kv->atty_bf);
    free(kv->gelu_bf);
    free(kv->q8s);
    free(kv);
}

rt_status student_infer_create(const student_model *m, int max_len, student_kv **out) {
    rt_status st = RT_OK;
    const student_config *c = &m->cfg;
    *out = NULL;
    if (max_len < 1 || max_len > c->seq_len)
        return rt_fail(RT_ERR_ARGS,
                       "student_infer_create: max_len %d outside [1, %d] (the model has %d "
                       "learned positions)",
                       max_len, c->seq_len, c->seq_len);
    student_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return rt_fail(RT_ERR_NOMEM, "student: out of memory for a KV cache");
    const size_t L = (size_t)c->n_layer, C = (size_t)c->d_model, F = (size_t)c->d_ff,
                 n = (size_t)max_len, A = (size_t)student_attn_width(c);
    const int bf = m->prec == STUDENT_BF16;
    kv->max_len = max_len;
    kv->cfg = *c;
    kv->prec = m->prec;
    kv->int8 = m->q8 != NULL;
    kv->n_threads = omp_get_max_threads();
    kv->kc = malloc(L * n * A * sizeof(float));
    kv->vc = malloc(L * n * A * sizeof(float));
    kv->x = malloc(n * C * sizeof(float));
    kv->qkv = malloc(n * 3 * A * sizeof(float));
    kv->atty = malloc(n * A * sizeof(float));
    kv->fch = malloc(n * F * sizeof(float));
    kv->scores = malloc((size_t)kv->n_threads * n * sizeof(float));
    int ok = kv->kc && kv->vc && kv->x && kv->qkv && kv->atty && kv->fch && kv->scores;
    size_t rmax = 0; /* low-rank linears (f32 models only) */
    for (int k = 0; k < STUDENT_LIN_N; k++)
        rmax = (size_t)c->rank[k] > rmax ? (size_t)c->rank[k] : rmax;
    if (rmax) {
        kv->lrt = malloc(n * rmax * sizeof(float));
        ok = ok && kv->lrt;
    }
    if (bf) {
        kv->ln_bf = malloc(n * C * sizeof(uint16_t));
        kv->atty_bf = malloc(n * A * sizeof(uint16_t));
        kv->gelu_bf = malloc(n * F * sizeof(uint16_t));
        ok = ok && kv->ln_bf && kv->atty_bf && kv->gelu_bf;
    } else {
        kv->ln = malloc(n * C * sizeof(float));
        kv->gelu = malloc(n * F * sizeof(float));
        ok = ok && kv->ln && kv->gelu;
    }
    if (kv->int8) {
        kv->q8s = malloc(n * (F + (A > C ? A : C))); /* as quant.c's scratch */
        ok = ok && kv->q8s;
    }
    if (!ok) {
        st = rt_fail(RT_ERR_NOMEM, "student: out of memory for a KV cache of %d positions",
                     max_len);
        goto cleanup;
    }
    if ((st = row_plan_create(m, 1, max_len, &kv->one)) != RT_OK) goto cleanup;
    if (!kv->int8) {
        student_mm_shape s;
        student_mm_shape_2d(&s, 1, c->d_model, c->vocab_size, 0, 1,
                            bf ? dnnl_bf16 : dnnl_f32, 0, 0);
        if ((st = student_mm_create(&kv->head, m->eng, &s)) != RT_OK) goto cleanup;
    }
cleanup:
    if (st != RT_OK) {
        student_infer_destroy(kv);
        return st;
    }
    *out = kv;
    return RT_OK;
}

void student_infer_reset(student_kv *kv) { kv->len = 0; }
int student_infer_len(const student_kv *kv) { return kv->len; }

/* Causal attention of n new query rows (positions len..len+n-1) over the
 * cache of layer l, which already holds their keys and values. */
static void attend(student_kv *kv, const student_config *c, int l, int n) {
    const int H = c->n_head, hs = student_head_dim(c), A = H * hs, len = kv->len, ml = kv->max_len;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int h = 0; h < H; h++)
        for (int i = 0; i < n; i++) {
            float *sc = kv->scores + (size_t)omp_get_thread_num() * ml;
            const float *q = kv->qkv + (size_t)i * 3 * A + h * hs;
            const float *kb = kv->kc + ((size_t)l * H + h) * ml * hs;
            const float *vb = kv->vc + ((size_t)l * H + h) * ml * hs;
            const int np = len + i + 1; /* visible positions */
            float mx = -INFINITY;
            for (int j = 0; j < np; j++) {
                const float *kr = kb + (size_t)j * hs;
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int e = 0; e < hs; e++) d += q[e] * kr[e];
                sc[j] = d * scale;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < np; j++) {
                sc[j] = student_expf(sc[j] - mx);
                sum += sc[j];
            }
            float *y = kv->atty + (size_t)i * A + h * hs;
            for (int e = 0; e < hs; e++) y[e] = 0.0f;
            for (int j = 0; j < np; j++) {
                const float p = sc[j] / sum, *vr = vb + (size_t)j * hs;
#pragma omp simd
                for (int e = 0; e < hs; e++) y[e] += p * vr[e];
            }
        }
}

/* Causal attention of a prompt, the n rows of an empty cache, over layer
 * l's cached keys and values, in the plan's query blocks. */
static rt_status attend_prompt(student_model *m, student_kv *kv, row_plan *pl, int l, int n) {
    const student_config *c = &m->cfg;
    const size_t A = (size_t)student_attn_width(c), H = (size_t)c->n_head,
                 layer = (size_t)l * H * (size_t)kv->max_len * (size_t)student_head_dim(c);
    const float scale = 1.0f / sqrtf((float)student_head_dim(c));
    for (int j = 0; j < pl->att_nb; j++) {
        int q0, q1;
        student_att_block(n, pl->att_nb, j, &q0, &q1);
        RT_TRY(student_mm_run(&pl->qk[j], m->strm, kv->qkv + (size_t)q0 * 3 * A, kv->kc + layer,
                              NULL, pl->att + (size_t)q0 * n));
        student_attn_softmax(pl->att, NULL, (int64_t)H, n, q0, q1, pl->att_nb, scale, 1);
        RT_TRY(student_mm_run(&pl->pv[j], m->strm, pl->att + (size_t)q0 * n, kv->vc + layer, NULL,
                              kv->atty + (size_t)q0 * A));
    }
    return RT_OK;
}

rt_status student_infer_step(student_model *m, student_kv *kv, const int32_t *tokens, int n,
                             float *logits_last) {
    rt_status st = RT_OK;
    const student_config *c = &m->cfg;
    const int L = c->n_layer, C = c->d_model, F = c->d_ff, V = c->vocab_size, H = c->n_head;
    const int hs = student_head_dim(c), A = H * hs, bf = m->prec == STUDENT_BF16;
    row_plan *pl = &kv->one;
    if (kv->prec != m->prec || kv->int8 != (m->q8 != NULL) || memcmp(&kv->cfg, c, sizeof *c) != 0)
        return rt_fail(RT_ERR_MISMATCH, "student_infer_step: the cache was created for a model "
                                        "of another shape, precision or int8 mode");
    if (n < 1 || kv->len + n > kv->max_len)
        return rt_fail(RT_ERR_ARGS,
                       "student_infer_step: %d new tokens after %d cached exceed the cache's "
                       "%d positions; reset the cache or start from a shorter context",
                       n, kv->len, kv->max_len);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return rt_fail(RT_ERR_ARGS,
                           "student_infer_step: token id %d is outside the vocabulary [0, %d)",
                           tokens[i], V);
    if (n > 1) {
        /* a prompt: its primitives stay for the next prompt of this length
         * (bench and eval repeat one), so the loop only executes */
        if (kv->many.n != n) {
            row_plan_destroy(&kv->many);
            if ((st = row_plan_create(m, n, kv->max_len, &kv->many)) != RT_OK) return st;
        }
        pl = &kv->many;
    }
    student_sync_bf16(m);
    const float *P = m->params;
    const void *Wb = bf ? (const void *)m->params_bf : (const void *)m->params;
#define W(off) (bf ? (const void *)((const uint16_t *)Wb + (off)) : (const void *)(P + (off)))
    /* linear k of block l: int8, or the f32/bf16 primitive `mm` (with the
     * fake-quantized weights and activations under QAT) */
#define LIN(mm, k, x, y)                                                                     \
    do {                                                                                     \
        const int ti_ = student_linear_tensor(&m->cfg, l, (k));                                          \
        if (m->q8) {                                                                         \
            st = student_qlin_run(m, pl->q8, l, (k), (const float *)(x), kv->q8s, NULL, (y));      \
        } else {                                                                             \
            const float *wq_ = m->qat ? student_qat_weight(m, l, (k)) : NULL;                \
            if (wq_) student_qat_act_apply(m, l, (k), (float *)(x), (size_t)n * (size_t)m->tensors[ti_].shape[0]); \
            if (m->cfg.rank[(k)] > 0) { /* low-rank: t = x W_a, y (+)= t W_b + b */         \
                const int tb_ = student_linear_factor(&m->cfg, l, (k));                      \
                st = student_mm_run(&pl->lr_a[(k)], m->strm, (x), W(m->offset[ti_]), NULL,   \
                                    kv->lrt);                                                \
                if (st == RT_OK)                                                             \
                    st = student_mm_run(&pl->lr_b[(k)], m->strm, kv->lrt, W(m->offset[tb_]), \
                                        P + m->offset[ti_ + 1], (y));                        \
            } else {                                                                         \
                st = student_mm_run(&pl->mm, m->strm, (x),                                   \
                                    wq_ ? (const void *)wq_ : W(m->offset[ti_]),             \
                                    P + m->offset[ti_ + 1], (y));                            \
            }                                                                                \
        }                                                                                    \
        if (st != RT_OK) goto cleanup;                                                       \
    } while (0)
    const int nt = m->n_tensors, ml = kv->max_len;

    for (int i = 0; i < n; i++) {
        const float *we = P + m->offset[0] + (size_t)tokens[i] * C;
        const float *pe = P + m->offset[1] + (size_t)(kv->len + i) * C;
        for (int e = 0; e < C; e++) kv->x[(size_t)i * C + e] = we[e] + pe[e];
    }
    for (int l = 0; l < L; l++) {
        student_layernorm_fwd(kv->ln, kv->ln_bf, NULL, NULL, kv->x, P + student_off(m, l, STUDENT_LN1W),
                              P + student_off(m, l, STUDENT_LN1B), n, C);
        LIN(qkv, STUDENT_LIN_QKV, bf ? (const void *)kv->ln_bf : kv->ln, kv->qkv);
        /* append the new keys and values to the cache, per head */
        for (int i = 0; i < n; i++)
            for (int h = 0; h < H; h++) {
                const size_t dst = (((size_t)l * H + h) * ml + kv->len + i) * hs;
                memcpy(kv->kc + dst, kv->qkv + (size_t)i * 3 * A + A + h * hs, hs * sizeof(float));
                memcpy(kv->vc + dst, kv->qkv + (size_t)i * 3 * A + 2 * A + h * hs,
                       hs * sizeof(float));
            }
        if (pl->att_nb && kv->len == 0) {
            if ((st = attend_prompt(m, kv, pl, l, n)) != RT_OK) goto cleanup;
        } else {
            attend(kv, c, l, n);
        }
        if (bf) student_to_bf16(kv->atty_bf, kv->atty, (size_t)n * A);
        LIN(attproj, STUDENT_LIN_ATTPROJ, bf ? (const void *)kv->atty_bf : kv->atty, kv->x);
        student_layernorm_fwd(kv->ln, kv->ln_bf, NULL, NULL, kv->x, P + student_off(m, l, STUDENT_LN2W),
                              P + student_off(m, l, STUDENT_LN2B), n, C);
        if (m->q8) { /* c_fc, GELU, re-quantization and c_proj in two primitives */
            if ((st = student_qlin_mlp(m, pl->q8, l, kv->ln, kv->q8s, NULL, kv->x)) != RT_OK)
                goto cleanup;
            continue;
        }
        LIN(fc, STUDENT_LIN_FC, bf ? (const void *)kv->ln_bf : kv->ln, kv->fch);
        student_gelu_fwd(kv->gelu, kv->gelu_bf, kv->fch, (size_t)n * F);
        LIN(fcproj, STUDENT_LIN_FCPROJ, bf ? (const void *)kv->gelu_bf : kv->gelu, kv->x);
    }
    /* final LayerNorm and LM head on the last row only */
    {
        const float *xl = kv->x + (size_t)(n - 1) * C;
        student_layernorm_fwd(kv->ln, kv->ln_bf, NULL, NULL, xl, P + m->offset[nt - 2],
                              P + m->offset[nt - 1], 1, C);
        if (kv->int8)
            st = student_qlin_head(m, kv->one.q8, kv->ln, kv->q8s, logits_last);
        else
            st = student_mm_run(&kv->head, m->strm, bf ? (const void *)kv->ln_bf : kv->ln, W(0),
                                NULL, logits_last);
        if (st != RT_OK) goto cleanup;
        STUDENT_DNNL_CHECK(dnnl_stream_wait(m->strm));
    }
#undef LIN
#undef W
    kv->len += n;
cleanup:
    return st;
}
