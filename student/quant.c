/* int8 inference: the quantizers shared with QAT and export, and the int8
 * linear layers of a model loaded from an int8 deploy file.
 *
 * A linear layer y = x W + b with W quantized per output channel (w ~
 * sw[n] * w8) and x per tensor (x ~ sa * (q - z)) is computed as
 *     y[n] = sa * sw[n] * (sum_k q[k] w8[k][n] - z * colsum_n(w8)) + b[n]
 * by one oneDNN u8 x s8 -> f32 matmul: activations go in as u8 (the
 * symmetric int8 range [-127, 127] shifted by 128, so one kernel serves
 * both schemes), the per-channel factor sa*sw[n] is the output scale, and
 * the zero-point term is folded into the bias, which oneDNN 2.6 adds
 * BEFORE the output scale (dst = oscale * (acc + bias), checked against a
 * direct computation when this was written): bias' = b / oscale - z *
 * colsum. Weights are handed to oneDNN in the layout it asks for
 * (format_tag_any, reordered once per layout and shared by every
 * primitive that wants that layout), so decode (M = 1) and prompt
 * primitives reuse the same packed copy when oneDNN agrees on it.
 *
 * One primitive per layer and M, because oneDNN 2.6 runs int8 matmuls on
 * its AMX / VNNI brgemm kernels only when the output scales are known at
 * creation; runtime scales (DNNL_RUNTIME_F32_VAL) drop to gemm:jit, which
 * is several times slower on this hardware.
 *
 * The LM head (tied to wte) runs int8 too: wte quantized per row (per
 * output column of the head, the per-row int8 an int8 deploy file stores
 * it in), its input (the final LayerNorm's output) quantized dynamically
 * with ONE symmetric scale per call (student_int8_head_rows rows, never
 * across two sequences, so a row's logits do not depend on the rest of
 * the batch). The call's scale is a runtime scalar multiplied in by a
 * binary post-op; the per-vocab weight scales are the output scales fixed
 * at creation, and the u8 shift is the bias -128 * rowsum(w8). That keeps
 * the head on the VNNI brgemm kernel: per-row (per-token) input scales
 * would need a per-row output scale or a per-row binary post-op, and
 * oneDNN 2.6 runs both on slow reference paths (a standalone loop at
 * 256x768x50257 did not finish in a minute). At GPT-2-small's shape the
 * int8 head takes about half the CPU time of the bf16 one it replaced
 * (standalone loop, 1,024 rows, 2 threads: 100 vs 195 ms CPU).
 *
 * Around the linear layers, an int8 forward keeps to few passes: c_attn
 * writes bf16 (the attention batches run in bf16, on dense per-head planes
 * split out of its output), c_fc's primitive ends in GELU and c_proj's
 * input quantizer (u8 out, no f32 hidden layer), the c_projs add the
 * residual in their epilogue, and the head runs on a packed int8 copy of
 * wte in blocks of rows. Measured with `retort bench infer --profile` and
 * tests/bench/bench_infer.sh.
 *
 * Dynamic activations (student_int8_set with aq == NULL, `retort export
 * --int8 --act dynamic`): every row (token) of a linear layer's input gets
 * its own symmetric scale s_r = max|x_r| / 127 at run time
 * (student_quantize_act_rows), so no calibration data is needed and an
 * outlier token costs only its own row's resolution. oneDNN 2.6 has no
 * per-row output scale, so the matmul writes raw int32 sums and one pass
 * applies y[r][n] = s_r * sw[n] * (acc - 128 * colsum_n) + b[n] (then GELU,
 * the residual or the bf16 conversion the static path fuses into its
 * primitives). */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "student_internal.h"

#define MAX_PACKS 8 /* weight layouts kept per weight matrix (one per M oneDNN differs on) */

typedef struct {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem; /* owns the packed weights */
} qpack;

/* Packed copies of one weight matrix, one per layout asked for. */
typedef struct {
    qpack p[MAX_PACKS];
    int n;
} qpacks;

/* One linear layer of one block, quantized. */
typedef struct {
    int64_t K, N;
    int8_t *w8;            /* (K, N) row-major, plain */
    float *oscale;         /* (N) sa * sw[n] */
    float *bias;           /* (N) b / oscale - z * colsum */
    float inv_sa;          /* 1 / sa */
    float zp, lo, hi;      /* in the u8 domain */
    float *sw;             /* dynamic: (N) weight scales */
    float *b;              /* dynamic: (N) the f32 bias */
    int32_t *cs128;        /* dynamic: (N) 128 * colsum(w8): the u8 shift's share of acc */
    qpacks packs;
} qlayer;

/* The LM head: wte (V, C) quantized per row, i.e. the weights (C, V) of
 * logits = x wte^T quantized per output column. */
typedef struct {
    int8_t *w8;  /* (V, C) row-major = (C, V) in oneDNN's ba layout */
    float *sw;   /* (V) row scales: the head's output scales */
    float *bias; /* (V) -128 * rowsum(w8): the u8 shift of the input, before the scales */
    qpacks packs;
} qhead;

struct student_int8 {
    int n;            /* 4 * n_layer */
    int dynamic;      /* per-token activation scales at run time */
    qlayer *lay;      /* (n) the linears; of a low-rank one, its first factor x W_a */
    qlayer *lay2;     /* (n) of a low-rank linear its second factor t W_b (K = 0 when dense) */
    qhead head;       /* the LM head */
    uint8_t *scratch; /* (max_B*T*(C+F)) quantized activations of a forward */
    uint16_t *qkv_bf; /* (max_B*T*3A) c_attn's output of a forward */
    uint16_t *heads_bf; /* (3, max_B, H, T, hs) the same per head: the attention operands */
    uint16_t *att_bf; /* (max_B*H*T*T) softmax probabilities, the P V operand */
};

struct student_qlin {
    int64_t M;
    int n;
    int flags;              /* STUDENT_QLIN_* */
    dnnl_primitive_t *prim; /* (n) c_fc's carry GELU and c_proj's input quantizer */
    dnnl_primitive_t *prim2; /* (n) second factors of low-rank linears: u8 t x s8 W_b -> s32 */
    dnnl_memory_t *wei2;     /* (n) borrowed from lay2's packs */
    dnnl_memory_t src2[STUDENT_LIN_N], dst2[STUDENT_LIN_N];
    float *t;                /* low-rank: (M, max rank) the inner rows t = x W_a */
    uint8_t *tq;             /* low-rank: (M, max rank) t quantized per row */
    dnnl_memory_t *bias;    /* (n) views of qlayer.bias */
    dnnl_memory_t *wei;     /* (n) borrowed from the layer's packs */
    dnnl_memory_t src[STUDENT_LIN_N], dst[STUDENT_LIN_N];
    dnnl_memory_t res[STUDENT_LIN_N]; /* STUDENT_QLIN_RESID: the c_proj residual inputs */
    /* the head over blocks of student_int8_head_rows() rows of a
     * sequence, then the sequence's rest: (rows, C) u8 x packed int8 wte^T
     * -> (rows, V) f32, times the block's input scale head_s */
    dnnl_primitive_t head[2];
    dnnl_memory_t head_src[2], head_wei[2], head_dst[2]; /* head_wei borrowed from head.packs */
    dnnl_memory_t head_bias, head_scale; /* views of qhead.bias and of head_s */
    float head_s;
    /* dynamic mode: the int32 sums (M, max N), the row scales (M) and c_fc's
     * f32 output (M, F) */
    int32_t *acc;
    float *rs, *h;
};

/* ---------------------------------------------------------- quantizers */

student_act_quant student_act_quant_from_range(float lo, float hi, int asymmetric) {
    student_act_quant q;
    lo = lo < 0.0f ? lo : 0.0f;
    hi = hi > 0.0f ? hi : 0.0f;
    if (!isfinite(lo) || !isfinite(hi)) lo = hi = 0.0f;
    if (asymmetric) {
        q.qmin = 0, q.qmax = 255;
        q.scale = (hi - lo) / 255.0f;
        if (!(q.scale > FLT_MIN)) q.scale = 1.0f;
        float z = student_qround(-lo / q.scale);
        q.zero = (int32_t)(z < 0.0f ? 0.0f : (z > 255.0f ? 255.0f : z));
    } else {
        q.qmin = -127, q.qmax = 127, q.zero = 0;
        const float a = -lo > hi ? -lo : hi;
        q.scale = a / 127.0f;
        if (!(q.scale > FLT_MIN)) q.scale = 1.0f;
    }
    return q;
}

static float clamp_round(float v, float lo, float hi) {
    v = v < -2097152.0f ? -2097152.0f : (v > 2097152.0f ? 2097152.0f : v);
    v = student_qround(v);
    return v < lo ? lo : (v > hi ? hi : v);
}

/* x * (1/s) rather than x / s: the arithmetic of QAT's fake quantization
 * (qat.c), so that both give the same integers. */
void student_quantize_weight(const float *w, int64_t K, int64_t N, int8_t *q, float *scale) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float mx = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            const float a = fabsf(w[k * N + n]);
            mx = a > mx ? a : mx;
        }
        scale[n] = mx > 0.0f ? mx / 127.0f : 1.0f;
    }
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++)
            q[k * N + n] = (int8_t)clamp_round(w[k * N + n] * (1.0f / scale[n]), -127.0f, 127.0f);
}

void student_quantize_act_rows(const float *x, int64_t R, int64_t K, uint8_t *q, float *scale) {
#pragma omp parallel for schedule(static) if (R * K >= 65536)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * K;
        uint8_t *qr = q + r * K;
        float mx = 0.0f;
        /* omp simd: gcc vectorizes neither loop without it (1.5 ns per
         * value, the LM head's whole input in one row of a block) */
#pragma omp simd reduction(max : mx)
        for (int64_t k = 0; k < K; k++) mx = fabsf(xr[k]) > mx ? fabsf(xr[k]) : mx;
        const float s = mx > FLT_MIN ? mx / 127.0f : 1.0f;
        const float inv = 1.0f / s;
        scale[r] = s;
#pragma omp simd
        for (int64_t k = 0; k < K; k++)
            qr[k] = (uint8_t)(int32_t)(clamp_round(xr[k] * inv, -127.0f, 127.0f) + 128.0f);
    }
}

void student_quantize_rows(const float *w, int64_t R, int64_t C, int8_t *q, float *scale) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *x = w + r * C;
        float mx = 0.0f;
        for (int64_t c = 0; c < C; c++) mx = fabsf(x[c]) > mx ? fabsf(x[c]) : mx;
        const float s = mx > 0.0f ? mx / 127.0f : 1.0f;
        scale[r] = s;
        for (int64_t c = 0; c < C; c++)
            q[r * C + c] = (int8_t)clamp_round(x[c] * (1.0f / s), -127.0f, 127.0f);
    }
}

/* ------------------------------------------------------------ the state */

static void free_packs(qpacks *p) {
    for (int i = 0; i < p->n; i++) dnnl_memory_destroy(p->p[i].mem);
    p->n = 0;
}

static void free_layer(qlayer *q) {
    free_packs(&q->packs);
    free(q->w8);
    free(q->oscale);
    free(q->bias);
    free(q->sw);
    free(q->b);
    free(q->cs128);
}

void student_int8_free(student_model *m) {
    struct student_int8 *s = m->q8;
    if (!s) return;
    /* plans hold primitives borrowing the packs: drop them first */
    if (m->plans)
        for (int b = 0; b <= m->max_B; b++)
            if (m->plans[b]) {
                student_qlin_destroy(m->plans[b]->q8);
                m->plans[b]->q8 = NULL;
            }
    for (int i = 0; s->lay && i < s->n; i++) free_layer(&s->lay[i]);
    for (int i = 0; s->lay2 && i < s->n; i++) free_layer(&s->lay2[i]);
    free(s->lay);
    free(s->lay2);
    free_packs(&s->head.packs);
    free(s->head.w8);
    free(s->head.sw);
    free(s->head.bias);
    rt_free_aligned(s->scratch);
    rt_free_aligned(s->qkv_bf);
    rt_free_aligned(s->heads_bf);
    rt_free_aligned(s->att_bf);
    free(s);
    m->q8 = NULL;
}

int student_int8_enabled(const student_model *m) { return m->q8 != NULL; }
int student_int8_dynamic(const student_model *m) { return m->q8 && m->q8->dynamic; }
uint8_t *student_int8_scratch(const student_model *m) { return m->q8 ? m->q8->scratch : NULL; }
uint16_t *student_int8_qkv_bf(const student_model *m) { return m->q8 ? m->q8->qkv_bf : NULL; }
uint16_t *student_int8_heads_bf(const student_model *m) { return m->q8 ? m->q8->heads_bf : NULL; }
uint16_t *student_int8_att_bf(const student_model *m) { return m->q8 ? m->q8->att_bf : NULL; }

void student_int8_split_heads(uint16_t *heads, const uint16_t *qkv, int B, int T, int H, int hs) {
    const int64_t A = (int64_t)H * hs; /* attention width */
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const uint16_t *src = qkv + ((int64_t)b * T + t) * 3 * A;
            for (int w = 0; w < 3; w++)
                for (int h = 0; h < H; h++)
                    memcpy(heads + (((int64_t)w * B + b) * H + h) * T * hs + (int64_t)t * hs,
                           src + w * A + (int64_t)h * hs, (size_t)hs * sizeof(uint16_t));
        }
}

/* One int8 matmul layer of the weight tensor t (K, N): the int8 weight w8
 * with per-column scales sw, the input quantizer a, the bias b (NULL: none),
 * the dynamic epilogue's fields when `dynamic`; wf (the f32 copy in the
 * parameter block) gets the dequantized weight the layer computes with. */
static rt_status qlayer_init(qlayer *q, const int8_t *w8, const float *sw,
                             const student_act_quant *a, const float *b, int dynamic, float *wf,
                             const student_tensor *t) {
    const float off = a->qmin < 0 ? 128.0f : 0.0f;
    q->K = t->shape[0], q->N = t->shape[1];
    q->w8 = malloc((size_t)(q->K * q->N));
    q->oscale = malloc((size_t)q->N * sizeof(float));
    q->bias = malloc((size_t)q->N * sizeof(float));
    if (!q->w8 || !q->oscale || !q->bias) goto nomem;
    memcpy(q->w8, w8, (size_t)(q->K * q->N));
    q->inv_sa = 1.0f / a->scale;
    q->zp = (float)a->zero + off, q->lo = (float)a->qmin + off, q->hi = (float)a->qmax + off;
    if (dynamic) {
        q->sw = malloc((size_t)q->N * sizeof(float));
        q->b = calloc((size_t)q->N, sizeof(float));
        q->cs128 = malloc((size_t)q->N * sizeof(int32_t));
        if (!q->sw || !q->b || !q->cs128) goto nomem;
        memcpy(q->sw, sw, (size_t)q->N * sizeof(float));
        if (b) memcpy(q->b, b, (size_t)q->N * sizeof(float));
    }
    for (int64_t j = 0; j < q->N; j++) {
        int64_t cs = 0;
        for (int64_t i = 0; i < q->K; i++) cs += q->w8[i * q->N + j];
        q->oscale[j] = a->scale * sw[j];
        q->bias[j] = (b ? b[j] : 0.0f) / q->oscale[j] - q->zp * (float)cs;
        if (dynamic) q->cs128[j] = (int32_t)(128 * cs);
    }
    for (int64_t i = 0; i < q->K; i++)
        for (int64_t j = 0; j < q->N; j++) wf[i * q->N + j] = sw[j] * (float)q->w8[i * q->N + j];
    return RT_OK;
nomem:
    return rt_fail(RT_ERR_NOMEM, "student: out of memory for the int8 weights");
}

/* The head from wte (V, C), which gets the dequantized rows the head
 * computes with (as qlayer_init does for the linears; for an int8 deploy
 * file, whose wte is stored so, the same values). */
static void head_init(qhead *h, float *wte, int64_t V, int64_t C) {
    student_quantize_rows(wte, V, C, h->w8, h->sw);
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < V; v++) {
        int64_t rs = 0;
        for (int64_t c = 0; c < C; c++) {
            rs += h->w8[v * C + c];
            wte[v * C + c] = h->sw[v] * (float)h->w8[v * C + c];
        }
        /* exact in f32 while 128 * 127 * C < 2^24 (C <= 1,032), to 2^-24 beyond */
        h->bias[v] = -128.0f * (float)rs;
    }
}

rt_status student_int8_set(student_model *m, const int8_t *const *w8, const float *const *wscale,
                           const student_act_quant *aq) {
    const student_config *c = &m->cfg;
    const int L = c->n_layer, n = 4 * L;
    const int64_t C = c->d_model, F = c->d_ff, A = student_attn_width(c);
    if (m->training)
        return rt_fail(RT_ERR_ARGS, "student_int8_set: an int8 model is inference-only (the "
                                    "model was created with training = 1)");
    if (m->prec != STUDENT_F32)
        return rt_fail(RT_ERR_ARGS, "student_int8_set: int8 layers need an f32 model");
    if (m->qat)
        return rt_fail(RT_ERR_ARGS, "student_int8_set: disable QAT before switching to int8");
    for (int i = 0; aq && i < n; i++) {
        const student_act_quant *a = &aq[i];
        const int off = a->qmin < 0 ? 128 : 0;
        if (!(a->scale > 0.0f) || !isfinite(a->scale) || a->qmin >= a->qmax ||
            a->qmin + off < 0 || a->qmax + off > 255 || a->zero < a->qmin || a->zero > a->qmax)
            return rt_fail(RT_ERR_ARGS,
                           "student_int8_set: block %d linear %d has a bad activation quantizer "
                           "(scale %g, zero %d, range [%d, %d])",
                           i / 4, i % 4, (double)a->scale, a->zero, a->qmin, a->qmax);
    }
    student_int8_free(m);
    struct student_int8 *s = calloc(1, sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "student: out of memory for int8 state");
    rt_status st = RT_OK;
    const size_t rows = (size_t)m->max_B * c->seq_len;
    s->n = n;
    s->dynamic = aq == NULL;
    s->lay = calloc((size_t)n, sizeof *s->lay);
    s->lay2 = calloc((size_t)n, sizeof *s->lay2);
    s->head.w8 = malloc((size_t)c->vocab_size * (size_t)C);
    s->head.sw = malloc((size_t)c->vocab_size * sizeof(float));
    s->head.bias = malloc((size_t)c->vocab_size * sizeof(float));
    /* c_fc's input and output, or attn.c_proj's input (A wide); the head's input */
    s->scratch = rt_alloc_aligned(rows * (size_t)(F + (A > C ? A : C)));
    s->qkv_bf = rt_alloc_aligned(rows * 3 * (size_t)A * sizeof(uint16_t));
    s->heads_bf = rt_alloc_aligned(rows * 3 * (size_t)A * sizeof(uint16_t));
    s->att_bf = rt_alloc_aligned(rows * (size_t)c->n_head * (size_t)c->seq_len * sizeof(uint16_t));
    if (!s->lay || !s->lay2 || !s->head.w8 || !s->head.sw || !s->head.bias || !s->scratch ||
        !s->qkv_bf || !s->heads_bf || !s->att_bf)
        goto nomem;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 4; k++) {
            const int i = l * 4 + k, ti = student_linear_tensor(&m->cfg, l, k);
            const float *b = m->params + m->tensors[ti + 1].offset; /* bias follows weight */
            /* dynamic: the symmetric range shifted to u8, as quantize_act_rows does;
             * only the shift (zp) matters, the scale comes per row */
            const student_act_quant dyn = {1.0f, 0, -127, 127};
            const student_act_quant *a = aq ? &aq[i] : &dyn;
            if (m->cfg.rank[k] == 0) {
                if ((st = qlayer_init(&s->lay[i], w8[i], wscale[i], a, b, s->dynamic,
                                      m->params + m->tensors[ti].offset, &m->tensors[ti])) != RT_OK)
                    goto fail;
                RT_ASSERT(m->tensors[ti + 1].numel == (size_t)s->lay[i].N);
                continue;
            }
            /* low-rank: x W_a with the linear's input quantizer and no bias
             * (in dynamic form when the model is dynamic), then t W_b on t
             * quantized per row at run time, always dynamic (t's range was
             * never calibrated), with the bias */
            const int tb = student_linear_factor(&m->cfg, l, k);
            RT_ASSERT(w8[n + i] && wscale[n + i]);
            if ((st = qlayer_init(&s->lay[i], w8[i], wscale[i], a, NULL, s->dynamic,
                                  m->params + m->tensors[ti].offset, &m->tensors[ti])) != RT_OK ||
                (st = qlayer_init(&s->lay2[i], w8[n + i], wscale[n + i], &dyn, b, 1,
                                  m->params + m->tensors[tb].offset, &m->tensors[tb])) != RT_OK)
                goto fail;
        }
    head_init(&s->head, m->params + m->offset[0], c->vocab_size, C);
    m->q8 = s;
    m->bf_stale = 1;
    return RT_OK;
nomem:
    st = rt_fail(RT_ERR_NOMEM, "student: out of memory for the int8 weights");
fail:
    m->q8 = s;
    student_int8_free(m);
    return st;
}

/* ------------------------------------------------------------ primitives */

/* The copy of the weights `data` (laid out as pmd) in layout md, packed
 * on first use and kept in p. */
static rt_status get_pack(const student_model *m, qpacks *p, const dnnl_memory_desc_t *pmd,
                          void *data, const dnnl_memory_desc_t *md, dnnl_memory_t *out) {
    rt_status st = RT_OK;
    dnnl_memory_t plain = NULL, packed = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t rp = NULL;
    for (int i = 0; i < p->n; i++)
        if (dnnl_memory_desc_equal(&p->p[i].md, md)) {
            *out = p->p[i].mem;
            return RT_OK;
        }
    if (p->n == MAX_PACKS)
        return rt_fail(RT_ERR_INTERNAL, "student: more than %d int8 weight layouts asked for",
                       MAX_PACKS);
    STUDENT_DNNL_CHECK(dnnl_memory_create(&plain, pmd, m->eng, data));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&packed, md, m->eng, DNNL_MEMORY_ALLOCATE));
    STUDENT_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, pmd, m->eng, md, m->eng, NULL));
    STUDENT_DNNL_CHECK(dnnl_primitive_create(&rp, rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, packed}};
    STUDENT_DNNL_CHECK(dnnl_primitive_execute(rp, m->strm, 2, args));
    STUDENT_DNNL_CHECK(dnnl_stream_wait(m->strm));
    p->p[p->n].md = *md;
    p->p[p->n].mem = packed;
    p->n++;
    *out = packed;
    packed = NULL;
cleanup:
    if (rp) dnnl_primitive_destroy(rp);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (plain) dnnl_memory_destroy(plain);
    if (packed) dnnl_memory_destroy(packed);
    return st;
}

void student_qlin_destroy(student_qlin *q) {
    if (!q) return;
    for (int i = 0; i < q->n; i++) {
        if (q->prim && q->prim[i]) dnnl_primitive_destroy(q->prim[i]);
        if (q->prim2 && q->prim2[i]) dnnl_primitive_destroy(q->prim2[i]);
        if (q->bias && q->bias[i]) dnnl_memory_destroy(q->bias[i]);
    }
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        if (q->src[k]) dnnl_memory_destroy(q->src[k]);
        if (q->dst[k]) dnnl_memory_destroy(q->dst[k]);
        if (q->res[k]) dnnl_memory_destroy(q->res[k]);
        if (q->src2[k]) dnnl_memory_destroy(q->src2[k]);
        if (q->dst2[k]) dnnl_memory_destroy(q->dst2[k]);
    }
    for (int j = 0; j < 2; j++) {
        if (q->head[j]) dnnl_primitive_destroy(q->head[j]);
        if (q->head_src[j]) dnnl_memory_destroy(q->head_src[j]);
        if (q->head_dst[j]) dnnl_memory_destroy(q->head_dst[j]);
    }
    if (q->head_bias) dnnl_memory_destroy(q->head_bias);
    if (q->head_scale) dnnl_memory_destroy(q->head_scale);
    free(q->prim);
    free(q->prim2);
    free(q->wei2);
    free(q->t);
    free(q->tq);
    free(q->bias);
    free(q->wei);
    free(q->acc);
    free(q->rs);
    free(q->h);
    free(q);
}

/* Rows per LM head call, and so per input scale. The head has the
 * smallest K of the model's matmuls and the widest f32 output, so it is
 * bound by writing logits; oneDNN's brgemm walks a whole (M, 64) column
 * strip before the next, and on a 4096-wide output 64-row blocks ran it
 * 10-35% faster than one call over 512 rows (bf16, OMP_NUM_THREADS=1,
 * 512x128x4096: 1.0-1.4 ms vs 1.5-1.7 ms, measured with a standalone
 * oneDNN loop when this was written). A head whose weights outgrow the
 * caches streams them once per call instead: at GPT-2's 50,257 x 768
 * 256-row calls took 16% less CPU time than 64-row ones in bf16 (1,024
 * rows: 83 vs 99 ms per thread, 2 threads), and in int8 128-row calls
 * 25% more than 256-row ones, 512 and 1,024 no less (standalone loop). */
int64_t student_int8_head_rows(const student_model *m) {
    const size_t wte = (size_t)m->cfg.vocab_size * (size_t)m->cfg.d_model;
    return wte > ((size_t)8 << 20) ? 256 : 64;
}

/* The int8 LM head primitive j for `rows` rows: weights in the layout
 * oneDNN picks (format_tag_any), packed once from head.w8, so that no run
 * reorders them; dst = head_s * sw[v] * (acc + bias[v]). */
static rt_status head_create(const student_model *m, student_qlin *q, int j, int64_t rows) {
    rt_status st = RT_OK;
    struct student_int8 *s = m->q8;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const int64_t C = m->cfg.d_model, V = m->cfg.vocab_size;
    dnnl_memory_desc_t smd, wmd, bmd, dmd, pmd, scmd;
    const dnnl_dims_t sd = {rows, C}, wd = {C, V}, bd = {1, V}, dd = {rows, V}, scd = {1, 1};
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_u8, dnnl_ab));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_s8, dnnl_format_tag_any));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&pmd, 2, wd, dnnl_s8, dnnl_ba));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&scmd, 2, scd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t desc;
    STUDENT_DNNL_CHECK(dnnl_matmul_desc_init(&desc, &smd, &wmd, &bmd, &dmd));
    STUDENT_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    STUDENT_DNNL_CHECK(dnnl_primitive_attr_set_output_scales(attr, V, 1 << 1, s->head.sw));
    STUDENT_DNNL_CHECK(dnnl_post_ops_create(&po));
    STUDENT_DNNL_CHECK(dnnl_post_ops_append_binary(po, dnnl_binary_mul, &scmd));
    STUDENT_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
    STUDENT_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, m->eng, NULL));
    st = get_pack(m, &s->head.packs, &pmd, s->head.w8,
                  dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &q->head_wei[j]);
    if (st != RT_OK) goto cleanup;
    STUDENT_DNNL_CHECK(dnnl_primitive_create(&q->head[j], pd));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&q->head_src[j], &smd, m->eng, DNNL_MEMORY_NONE));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&q->head_dst[j], &dmd, m->eng, DNNL_MEMORY_NONE));
    if (!q->head_bias)
        STUDENT_DNNL_CHECK(dnnl_memory_create(&q->head_bias, &bmd, m->eng, s->head.bias));
    if (!q->head_scale)
        STUDENT_DNNL_CHECK(dnnl_memory_create(&q->head_scale, &scmd, m->eng, &q->head_s));
cleanup:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Rows of one sequence in a head call of M rows: a forward's (M = B*T)
 * or the one row of a generation step. */
static int64_t head_seq_rows(const student_model *m, int64_t M) {
    return M < m->cfg.seq_len ? M : m->cfg.seq_len;
}

rt_status student_qlin_create(const student_model *m, int64_t M, int flags, student_qlin **out) {
    rt_status st = RT_OK;
    struct student_int8 *s = m->q8;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    *out = NULL;
    RT_ASSERT(s != NULL);
    student_qlin *q = calloc(1, sizeof *q);
    if (!q) return rt_fail(RT_ERR_NOMEM, "student: out of memory for int8 primitives");
    q->M = M, q->n = s->n, q->flags = flags;
    q->prim = calloc((size_t)s->n, sizeof *q->prim);
    q->prim2 = calloc((size_t)s->n, sizeof *q->prim2);
    q->wei2 = calloc((size_t)s->n, sizeof *q->wei2);
    q->bias = calloc((size_t)s->n, sizeof *q->bias);
    q->wei = calloc((size_t)s->n, sizeof *q->wei);
    if (!q->prim || !q->prim2 || !q->wei2 || !q->bias || !q->wei) {
        st = rt_fail(RT_ERR_NOMEM, "student: out of memory for int8 primitives");
        goto cleanup;
    }
    const student_config *c = &m->cfg;
    int64_t rmax = 0; /* low-rank linears: the widest inner activation */
    for (int k = 0; k < STUDENT_LIN_N; k++) rmax = c->rank[k] > rmax ? c->rank[k] : rmax;
    if (s->dynamic || rmax) {
        /* int32 sums of any layer: its output width, or a first factor's r */
        int64_t maxn = 3 * (int64_t)student_attn_width(c);
        maxn = c->d_ff > maxn ? c->d_ff : maxn;
        maxn = c->d_model > maxn ? c->d_model : maxn;
        q->acc = malloc((size_t)(M * maxn) * sizeof *q->acc);
        q->rs = malloc((size_t)M * sizeof *q->rs);
        q->h = malloc((size_t)(M * c->d_ff) * sizeof *q->h);
        if (!q->acc || !q->rs || !q->h) {
            st = rt_fail(RT_ERR_NOMEM, "student: out of memory for dynamic int8 scratch");
            goto cleanup;
        }
    }
    if (rmax) {
        q->t = malloc((size_t)(M * rmax) * sizeof *q->t);
        q->tq = malloc((size_t)(M * rmax));
        if (!q->t || !q->tq) {
            st = rt_fail(RT_ERR_NOMEM, "student: out of memory for low-rank int8 scratch");
            goto cleanup;
        }
    }
    for (int i = 0; i < s->n; i++) {
        qlayer *ql = &s->lay[i];
        const int k = i % 4, lowrank = c->rank[k] > 0;
        /* a low-rank linear's first factor writes f32 t (s32 when dynamic):
         * no residual, GELU or bf16 in its epilogue, they come after W_b */
        const int acc = (k == STUDENT_LIN_ATTPROJ || k == STUDENT_LIN_FCPROJ) && !lowrank;
        /* c_fc ends in GELU and c_proj's input quantizer: u8 out */
        const int fused = k == STUDENT_LIN_FC && !lowrank;
        const dnnl_data_type_t ddt =
            s->dynamic ? dnnl_s32
            : fused    ? dnnl_u8
                       : (k == STUDENT_LIN_QKV && !lowrank && (flags & STUDENT_QLIN_QKV_BF16)
                              ? dnnl_bf16
                              : dnnl_f32);
        dnnl_memory_desc_t smd, wmd, bmd, dmd, pmd;
        const dnnl_dims_t sd = {M, ql->K}, wd = {ql->K, ql->N}, bd = {1, ql->N},
                          dd = {M, ql->N};
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_u8, dnnl_ab));
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_s8, dnnl_format_tag_any));
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&pmd, 2, wd, dnnl_s8, dnnl_ab));
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab));
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, ddt, dnnl_ab));
        dnnl_matmul_desc_t desc;
        STUDENT_DNNL_CHECK(
            dnnl_matmul_desc_init(&desc, &smd, &wmd, s->dynamic ? NULL : &bmd, &dmd));
        STUDENT_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
        if (!s->dynamic)
            STUDENT_DNNL_CHECK(
                dnnl_primitive_attr_set_output_scales(attr, ql->N, 1 << 1, ql->oscale));
        if (s->dynamic) {
            /* raw int32 sums: scales, bias, GELU and residual in dyn_epilogue */
        } else if (acc) {
            /* dst = residual + x W + b: onto dst itself (sum), or from a
             * residual tensor read in the epilogue, which saves copying it
             * into dst first */
            STUDENT_DNNL_CHECK(dnnl_post_ops_create(&po));
            if (flags & STUDENT_QLIN_RESID)
                STUDENT_DNNL_CHECK(dnnl_post_ops_append_binary(po, dnnl_binary_add, &dmd));
            else
                STUDENT_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
            STUDENT_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        } else if (fused) {
            /* q = clamp(x / sa + zp, lo, hi), rounded to nearest even by the
             * conversion to u8: quantize_u8's integers, as round(v) + zp =
             * round(v + zp) and rounding commutes with clamping to integer
             * bounds (up to a tie lost in the rounding of v + zp, and
             * oneDNN's GELU differing from kernels.c's by an ulp: test_quant
             * sees no input a quantum off). */
            const qlayer *nx = &s->lay[i + 1];
            STUDENT_DNNL_CHECK(dnnl_post_ops_create(&po));
            STUDENT_DNNL_CHECK(
                dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_tanh, 0.0f, 0.0f));
            STUDENT_DNNL_CHECK(
                dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, nx->inv_sa, nx->zp));
            STUDENT_DNNL_CHECK(
                dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, nx->lo, nx->hi));
            STUDENT_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        }
        STUDENT_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, m->eng, NULL));
        st = get_pack(m, &ql->packs, &pmd, ql->w8,
                      dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &q->wei[i]);
        if (st != RT_OK) goto cleanup;
        STUDENT_DNNL_CHECK(dnnl_primitive_create(&q->prim[i], pd));
        STUDENT_DNNL_CHECK(dnnl_memory_create(&q->bias[i], &bmd, m->eng, ql->bias));
        if (i < STUDENT_LIN_N) {
            STUDENT_DNNL_CHECK(dnnl_memory_create(&q->src[k], &smd, m->eng, DNNL_MEMORY_NONE));
            STUDENT_DNNL_CHECK(dnnl_memory_create(&q->dst[k], &dmd, m->eng, DNNL_MEMORY_NONE));
            if (acc && (flags & STUDENT_QLIN_RESID) && !s->dynamic)
                STUDENT_DNNL_CHECK(
                    dnnl_memory_create(&q->res[k], &dmd, m->eng, DNNL_MEMORY_NONE));
        }
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        if (lowrank) { /* t (u8, per-row scales) x W_b -> int32 sums */
            const qlayer *q2 = &s->lay2[i];
            const dnnl_dims_t sd2 = {M, q2->K}, wd2 = {q2->K, q2->N}, dd2 = {M, q2->N};
            STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&smd, 2, sd2, dnnl_u8, dnnl_ab));
            STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd2, dnnl_s8, dnnl_format_tag_any));
            STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&pmd, 2, wd2, dnnl_s8, dnnl_ab));
            STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&dmd, 2, dd2, dnnl_s32, dnnl_ab));
            STUDENT_DNNL_CHECK(dnnl_matmul_desc_init(&desc, &smd, &wmd, NULL, &dmd));
            STUDENT_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, m->eng, NULL));
            st = get_pack(m, &s->lay2[i].packs, &pmd, s->lay2[i].w8,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &q->wei2[i]);
            if (st != RT_OK) goto cleanup;
            STUDENT_DNNL_CHECK(dnnl_primitive_create(&q->prim2[i], pd));
            if (i < STUDENT_LIN_N) {
                STUDENT_DNNL_CHECK(dnnl_memory_create(&q->src2[k], &smd, m->eng, DNNL_MEMORY_NONE));
                STUDENT_DNNL_CHECK(dnnl_memory_create(&q->dst2[k], &dmd, m->eng, DNNL_MEMORY_NONE));
            }
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
        if (po) dnnl_post_ops_destroy(po);
        po = NULL;
        dnnl_primitive_attr_destroy(attr);
        attr = NULL;
    }
    if (flags & STUDENT_QLIN_HEAD) {
        const int64_t hr = student_int8_head_rows(m), seq = head_seq_rows(m, M);
        RT_ASSERT(M % seq == 0);
        if (seq >= hr) st = head_create(m, q, 0, hr);
        if (st == RT_OK && seq % hr) st = head_create(m, q, 1, seq % hr);
    }
cleanup:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != RT_OK) {
        student_qlin_destroy(q);
        return st;
    }
    *out = q;
    return RT_OK;
}

/* x (n floats) -> u8 with 1/sa, the zero point and range of layer q. */
static void quantize_u8(uint8_t *dst, const float *x, size_t n, const qlayer *q) {
    const float inv = q->inv_sa, zp = q->zp, lo = q->lo, hi = q->hi;
    /* through int32: gcc vectorizes float -> int32 -> uint8, not a direct
     * float -> uint8 conversion (which runs scalar, slower than the matmul) */
    /* a decode row is a few hundred bytes: waking threads costs more */
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t c = 0; c < n; c += 4096) {
        const size_t e = c + 4096 < n ? c + 4096 : n;
#pragma omp simd
        for (size_t i = c; i < e; i++) {
            float v = x[i] * inv;
            v = v < -2097152.0f ? -2097152.0f : (v > 2097152.0f ? 2097152.0f : v);
            v = student_qround(v) + zp;
            v = v < lo ? lo : (v > hi ? hi : v);
            dst[i] = (uint8_t)(int32_t)v;
        }
    }
}

/* Runs layer i (k = i % 4) on u8 input src into dst (res: the residual
 * tensor of a c_proj under STUDENT_QLIN_RESID). */
static rt_status qexec(const student_model *m, student_qlin *q, int i, const uint8_t *src,
                       const float *res, void *dst) {
    rt_status st = RT_OK;
    const int k = i % 4;
    RT_ASSERT((res != NULL) == (q->res[k] != NULL));
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->src[k], (void *)src));
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->dst[k], dst));
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, q->src[k]},
                               {DNNL_ARG_WEIGHTS, q->wei[i]},
                               {DNNL_ARG_DST, q->dst[k]},
                               {DNNL_ARG_BIAS, q->bias[i]},
                               {0, NULL}};
    int nargs = m->q8->dynamic ? 3 : 4; /* the dynamic primitives have no bias */
    if (res) {
        STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->res[k], (void *)res));
        args[nargs].arg = DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1;
        args[nargs++].memory = q->res[k];
    }
    STUDENT_DNNL_CHECK(dnnl_primitive_execute(q->prim[i], m->strm, nargs, args));
cleanup:
    return st;
}

/* Dynamic mode: what the static primitives fuse, after a matmul that
 * wrote int32 sums into q->acc for rows with scales q->rs:
 *   y[r][n] = rs[r] * sw[n] * (acc[r][n] - 128 * colsum_n) + b[n]
 * then, by `out`: f32 into dst, bf16 into dst, GELU into dst (f32), or
 * added to the residual (res, or dst itself when res is NULL) into dst. */
enum { DYN_F32, DYN_BF16, DYN_GELU, DYN_RESID };

static inline float dyn_y(float s, const qlayer *ql, const int32_t *a, int64_t n) {
    return s * ql->sw[n] * (float)(a[n] - ql->cs128[n]) + ql->b[n];
}

static void dyn_epilogue(const student_qlin *q, const qlayer *ql, int out, const float *res,
                         void *dst) {
    const int64_t M = q->M, N = ql->N;
    /* one loop per output kind, so that each vectorizes (omp simd) */
#pragma omp parallel for schedule(static) if (M * N >= 65536)
    for (int64_t r = 0; r < M; r++) {
        const int32_t *a = q->acc + r * N;
        const float s = q->rs[r];
        float *yf = (float *)dst + r * N;
        if (out == DYN_BF16) {
            uint16_t *yb = (uint16_t *)dst + r * N;
#pragma omp simd
            for (int64_t n = 0; n < N; n++) yb[n] = student_f2bf(dyn_y(s, ql, a, n));
        } else if (out == DYN_RESID) {
            const float *rr = res ? res + r * N : yf;
#pragma omp simd
            for (int64_t n = 0; n < N; n++) yf[n] = rr[n] + dyn_y(s, ql, a, n);
        } else {
#pragma omp simd
            for (int64_t n = 0; n < N; n++) yf[n] = dyn_y(s, ql, a, n);
        }
    }
    if (out == DYN_GELU) student_gelu_fwd((float *)dst, NULL, (const float *)dst, (size_t)(M * N));
}

/* Dynamic mode: layer i on f32 input x (quantized per row into scratch). */
static rt_status dyn_run(const student_model *m, student_qlin *q, int i, const float *x,
                         uint8_t *scratch, int out, const float *res, void *dst) {
    const qlayer *ql = &m->q8->lay[i];
    student_quantize_act_rows(x, q->M, ql->K, scratch, q->rs);
    RT_TRY(qexec(m, q, i, scratch, NULL, q->acc));
    dyn_epilogue(q, ql, out, res, dst);
    return RT_OK;
}

/* Low-rank linear i: t = x W_a (x f32, quantized into scratch with the
 * linear's input quantizer, or xq already quantized so), then t
 * quantized per row and t W_b as int32 sums, then the epilogue `out` of
 * the second factor (its scales and the bias) into dst. */
static rt_status lr_run(const student_model *m, student_qlin *q, int i, const float *x,
                        const uint8_t *xq, uint8_t *scratch, int out, const float *res,
                        void *dst) {
    rt_status st = RT_OK;
    const struct student_int8 *s = m->q8;
    const qlayer *qa = &s->lay[i], *qb = &s->lay2[i];
    const int k = i % 4;
    if (!xq) {
        if (s->dynamic)
            student_quantize_act_rows(x, q->M, qa->K, scratch, q->rs);
        else
            quantize_u8(scratch, x, (size_t)(q->M * qa->K), qa);
        xq = scratch;
    }
    if (s->dynamic) {
        RT_TRY(qexec(m, q, i, xq, NULL, q->acc));
        dyn_epilogue(q, qa, DYN_F32, NULL, q->t);
    } else {
        RT_TRY(qexec(m, q, i, xq, NULL, q->t));
    }
    student_quantize_act_rows(q->t, q->M, qa->N, q->tq, q->rs);
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->src2[k], q->tq));
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->dst2[k], q->acc));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, q->src2[k]},
                               {DNNL_ARG_WEIGHTS, q->wei2[i]},
                               {DNNL_ARG_DST, q->dst2[k]}};
    STUDENT_DNNL_CHECK(dnnl_primitive_execute(q->prim2[i], m->strm, 3, args));
    dyn_epilogue(q, qb, out, res, dst);
cleanup:
    return st;
}

rt_status student_qlin_run(const student_model *m, student_qlin *q, int l, int k, const float *x,
                           uint8_t *scratch, const float *res, void *dst) {
    const int i = l * 4 + k;
    const qlayer *ql = &m->q8->lay[i];
    RT_ASSERT(k == STUDENT_LIN_QKV || k == STUDENT_LIN_ATTPROJ);
    if (m->cfg.rank[k] > 0)
        return lr_run(m, q, i, x, NULL, scratch,
                      k == STUDENT_LIN_ATTPROJ                ? DYN_RESID
                      : (q->flags & STUDENT_QLIN_QKV_BF16)    ? DYN_BF16
                                                               : DYN_F32,
                      res, dst);
    if (m->q8->dynamic)
        return dyn_run(m, q, i, x, scratch,
                       k == STUDENT_LIN_ATTPROJ                ? DYN_RESID
                       : (q->flags & STUDENT_QLIN_QKV_BF16)    ? DYN_BF16
                                                                : DYN_F32,
                       res, dst);
    quantize_u8(scratch, x, (size_t)(q->M * ql->K), ql);
    return qexec(m, q, i, scratch, res, dst);
}

rt_status student_qlin_mlp(const student_model *m, student_qlin *q, int l, const float *x,
                           uint8_t *scratch, const float *res, float *dst) {
    const int i = l * 4 + STUDENT_LIN_FC;
    const qlayer *ql = &m->q8->lay[i];
    const int lr_fc = m->cfg.rank[STUDENT_LIN_FC] > 0, lr_proj = m->cfg.rank[STUDENT_LIN_FCPROJ] > 0;
    if (lr_fc || lr_proj) {
        /* the GELU output as f32 in q->h, unless a dense static c_fc can
         * still quantize it for c_proj's first factor in its epilogue */
        const int fused = !lr_fc && !m->q8->dynamic;
        uint8_t *h8 = scratch + (size_t)(q->M * ql->K);
        if (lr_fc)
            RT_TRY(lr_run(m, q, i, x, NULL, scratch, DYN_GELU, NULL, q->h));
        else if (m->q8->dynamic)
            RT_TRY(dyn_run(m, q, i, x, scratch, DYN_GELU, NULL, q->h));
        else {
            quantize_u8(scratch, x, (size_t)(q->M * ql->K), ql);
            RT_TRY(qexec(m, q, i, scratch, NULL, h8));
        }
        if (lr_proj)
            return lr_run(m, q, i + 1, q->h, fused ? h8 : NULL, scratch, DYN_RESID, res, dst);
        if (m->q8->dynamic) return dyn_run(m, q, i + 1, q->h, scratch, DYN_RESID, res, dst);
        quantize_u8(scratch, q->h, (size_t)(q->M * m->cfg.d_ff), &m->q8->lay[i + 1]);
        return qexec(m, q, i + 1, scratch, res, dst);
    }
    if (m->q8->dynamic) {
        RT_TRY(dyn_run(m, q, i, x, scratch, DYN_GELU, NULL, q->h));
        return dyn_run(m, q, i + 1, q->h, scratch, DYN_RESID, res, dst);
    }
    uint8_t *h = scratch + (size_t)(q->M * ql->K);
    quantize_u8(scratch, x, (size_t)(q->M * ql->K), ql);
    RT_TRY(qexec(m, q, i, scratch, NULL, h));
    return qexec(m, q, i + 1, h, res, dst);
}

rt_status student_qlin_head(const student_model *m, student_qlin *q, const float *x,
                            uint8_t *scratch, float *logits) {
    rt_status st = RT_OK;
    const int64_t C = m->cfg.d_model, V = m->cfg.vocab_size;
    RT_ASSERT(q->flags & STUDENT_QLIN_HEAD);
    const int64_t hr = student_int8_head_rows(m), seq = head_seq_rows(m, q->M);
    for (int64_t r = 0; r < q->M;) {
        /* a block of hr rows, or the rest of the sequence */
        const int64_t n = seq - r % seq >= hr ? hr : seq - r % seq;
        const int j = n == hr ? 0 : 1;
        /* the block's rows as one row of n*C values: one scale max|x| / 127 */
        student_quantize_act_rows(x + r * C, 1, n * C, scratch + r * C, &q->head_s);
        STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->head_src[j], scratch + r * C));
        STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(q->head_dst[j], logits + r * V));
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, q->head_src[j]},
                                   {DNNL_ARG_WEIGHTS, q->head_wei[j]},
                                   {DNNL_ARG_BIAS, q->head_bias},
                                   {DNNL_ARG_DST, q->head_dst[j]},
                                   {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                                    q->head_scale}};
        STUDENT_DNNL_CHECK(dnnl_primitive_execute(q->head[j], m->strm, 5, args));
        /* head_s is read when the primitive runs: wait before the next block's */
        STUDENT_DNNL_CHECK(dnnl_stream_wait(m->strm));
        r += n;
    }
cleanup:
    return st;
}
