/* The student model: creation (blocks, activation table, oneDNN engine
 * and matmul plans), accessors, and the forward and backward passes of
 * GPT-2 as Hugging Face's GPT2LMHeadModel computes them.
 *
 * Matmuls are oneDNN primitives built once per micro-batch size (see
 * student_plan); everything between them is a hand-written kernel
 * (kernels.c). Residual adds are fused into the c_proj matmuls: the
 * residual is copied into the output buffer and the matmul accumulates
 * onto it (sum post-op), which saves one pass per add.
 *
 * bf16 mode: every matmul (the six linear ones, the LM head and the four
 * attention batches) takes bf16 operands and accumulates in f32. Operands
 * come from bf16 copies written by the kernel that produces them (LayerNorm,
 * GELU, softmax, softmax backward) or converted right before (qkv, attention
 * output, gradients); weights from a bf16 copy of the f32 master block,
 * refreshed by AdamW in its own pass or before a forward after anyone took
 * the writable parameter pointer. LayerNorm, softmax, GELU, losses,
 * residuals, gradients and optimizer state stay f32.
 *
 * int8 mode (an f32 inference model after student_int8_set, quant.c): the
 * linear layers run int8, c_attn writing its output in bf16, so the
 * attention batches reuse the bf16 mode's operand layout (qk_bf, pv_bf);
 * c_fc's primitive applies GELU and c_proj's input quantizer itself; the
 * LM head is int8 on a packed int8 copy of wte.
 *
 * How the modes are kept apart, so that one reads top to bottom: where the
 * matmul operands live (f32 activations or their bf16 copies) is decided
 * once per block in block_bufs_get; what a mode does around a linear layer
 * (QAT's fake-quantization of the input and clip mask on its gradient,
 * bf16's conversion of matmul outputs) is a table of operations, mode_ops,
 * picked by mode_ops_of; the int8 mode, which fuses its layers differently,
 * has its own block forward (block_fwd_int8) and shares the attention
 * batches (attn_fwd) with the others. */
#include <math.h>
#include <stdlib.h>

#include "rt_size.h"
#include "student_internal.h"

/* --------------------------------------------------------------- plans */

/* The attention batch `which` for query rows [q0, q1) of every (b, h)
 * plane against keys [0, q1) (causal); q0 = 0, q1 = T for the full planes.
 * Operands are views with the full buffers' strides; callers offset the
 * query-side pointers by q0 rows. dV and dK (which 3 and 5) accumulate
 * when `accumulate`. */
static void attn_shape(student_mm_shape *s, const student_model *m, int B, int which,
                       dnnl_data_type_t dt, int q0, int q1, int accumulate) {
    const int64_t T = m->cfg.seq_len, H = m->cfg.n_head, hs = student_head_dim(&m->cfg),
                  A = student_attn_width(&m->cfg);
    /* operand layouts: a head slice of qkv (B,T,3A) as (B,H,T,hs); the same
     * slice transposed (B,H,hs,T); (B,T,A) as (B,H,T,hs); the (B,H,T,T)
     * score planes, and those transposed */
    const int64_t qkv_s[4] = {T * 3 * A, hs, 3 * A, 1}, qkv_ts[4] = {T * 3 * A, hs, 1, 3 * A};
    const int64_t y_s[4] = {T * A, hs, A, 1};
    const int64_t hd_s[4] = {H * T * hs, T * hs, hs, 1}, hd_ts[4] = {H * T * hs, T * hs, 1, hs};
    const int64_t p_s[4] = {H * T * T, T * T, T, 1}, p_ts[4] = {H * T * T, T * T, 1, T};
    /* Tq query rows, Tk = q1 keys */
    const int64_t Tq = q1 - q0, Tk = q1;
    const int64_t q_hs[4] = {B, H, Tq, hs}, k_hs[4] = {B, H, Tk, hs}, hs_k[4] = {B, H, hs, Tk};
    const int64_t q_k[4] = {B, H, Tq, Tk}, k_q[4] = {B, H, Tk, Tq};
    const int64_t *d[3] = {0}, *st[3] = {0};
    switch (which) {
    case 0: /* qk: S = Q K^T */
        d[0] = q_hs, st[0] = qkv_s, d[1] = hs_k, st[1] = qkv_ts, d[2] = q_k, st[2] = p_s;
        break;
    case 1: /* pv: Y = P V */
        d[0] = q_k, st[0] = p_s, d[1] = k_hs, st[1] = qkv_s, d[2] = q_hs, st[2] = y_s;
        break;
    case 2: /* dP = dY V^T */
        d[0] = q_hs, st[0] = y_s, d[1] = hs_k, st[1] = qkv_ts, d[2] = q_k, st[2] = p_s;
        break;
    case 3: /* dV = P^T dY */
        d[0] = k_q, st[0] = p_ts, d[1] = q_hs, st[1] = y_s, d[2] = k_hs, st[2] = qkv_s;
        break;
    case 4: /* dQ = dS K */
        d[0] = q_k, st[0] = p_s, d[1] = k_hs, st[1] = qkv_s, d[2] = q_hs, st[2] = qkv_s;
        break;
    case 5: /* dK = dS^T Q */
        d[0] = k_q, st[0] = p_ts, d[1] = q_hs, st[1] = qkv_s, d[2] = k_hs, st[2] = qkv_s;
        break;
    case 6: /* int8 mode: S = Q K^T on dense (B,H,T,hs) planes (student_int8_split_heads) */
        d[0] = q_hs, st[0] = hd_s, d[1] = hs_k, st[1] = hd_ts, d[2] = q_k, st[2] = p_s;
        break;
    default: /* int8 mode: Y = P V, V dense, Y in the (B,T,C) layout */
        d[0] = q_k, st[0] = p_s, d[1] = k_hs, st[1] = hd_s, d[2] = q_hs, st[2] = y_s;
        break;
    }
    memset(s, 0, sizeof *s);
    s->ndims = 4;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) s->dims[i][k] = d[i][k], s->strides[i][k] = st[i][k];
    s->dt = dt;
    s->accumulate = accumulate;
}



static void plan_destroy(student_plan *p) {
    if (!p) return;
    student_mm *all[] = {&p->qkv,        &p->attproj,    &p->fc,        &p->fcproj,
                         &p->head,       &p->qkv_dx,     &p->attproj_dx, &p->fc_dx,
                         &p->fcproj_dx,  &p->head_dx,    &p->qkv_dw,     &p->attproj_dw,
                         &p->fc_dw,      &p->fcproj_dw,  &p->head_dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) student_mm_destroy(all[i]);
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        student_mm_destroy(&p->lr_a[k]);
        student_mm_destroy(&p->lr_b[k]);
        student_mm_destroy(&p->lr_a_dx[k]);
        student_mm_destroy(&p->lr_a_dw[k]);
        student_mm_destroy(&p->lr_b_dx[k]);
        student_mm_destroy(&p->lr_b_dw[k]);
    }
    for (int j = 0; j < STUDENT_ATT_BLOCKS; j++) {
        student_mm_destroy(&p->qk[j]);
        student_mm_destroy(&p->pv[j]);
        student_mm_destroy(&p->att_dp[j]);
        student_mm_destroy(&p->att_dv[j]);
        student_mm_destroy(&p->att_dq[j]);
        student_mm_destroy(&p->att_dk[j]);
        student_mm_destroy(&p->qk_bf[j]);
        student_mm_destroy(&p->pv_bf[j]);
    }
    student_qlin_destroy(p->q8);
    free(p);
}

static rt_status plan_create(const student_model *m, int B, student_plan **out) {
    rt_status st = RT_OK;
    const int64_t M = (int64_t)B * m->cfg.seq_len, C = m->cfg.d_model, F = m->cfg.d_ff,
                  V = m->cfg.vocab_size, A = student_attn_width(&m->cfg);
    const dnnl_data_type_t dt = m->prec == STUDENT_BF16 ? dnnl_bf16 : dnnl_f32;
    student_mm_shape s;
    student_plan *p = calloc(1, sizeof *p);
    /* plans of a smaller batch read the full-batch plan's packed weights */
    const student_plan *ref = B == m->max_B ? NULL : m->plans[m->max_B];
    *out = NULL;
    if (!p) return rt_fail(RT_ERR_NOMEM, "student: out of memory for a matmul plan");
    p->B = B;
#define MM(field, ...)                                                                      \
    do {                                                                                    \
        student_mm_shape_2d(&s, __VA_ARGS__);                                               \
        st = student_mm_create(&p->field, m->eng, &s);                                      \
        if (st != RT_OK) goto cleanup;                                                      \
    } while (0)
    /* a matmul whose weight operand is a parameter: packed weights in f32,
     * except for a low-rank linear (its dense primitives are not run:
     * lin_fwd). Not in bf16: there the f32 -> bf16 packing reorder per step
     * cost what the kernels saved (12 x 768, seq 1024, batch 2: CPU time
     * per step 2,600 and 2,657 ms packed, 2,531 and 2,606 not) while
     * AdamW already writes the plain bf16 copy in its own pass. */
#define MMW(field, k, ...)                                                                  \
    do {                                                                                    \
        student_mm_shape_2d(&s, __VA_ARGS__);                                               \
        s.pack = m->prec == STUDENT_F32 && (!ref || ref->field.wei_bytes) &&                \
                 ((k) == STUDENT_LIN_N || m->cfg.rank[k] == 0);                             \
        s.pack_as = ref && ref->field.wei_bytes ? &ref->field.wei_md : NULL;                \
        st = student_mm_create(&p->field, m->eng, &s);                                      \
        if (st != RT_OK) goto cleanup;                                                      \
    } while (0)
    /* attention block j; dV and dK accumulate except in the last block */
#define MMA(field, which)                                                                   \
    do {                                                                                    \
        int q0_, q1_;                                                                       \
        student_att_block(m->cfg.seq_len, p->att_nb, j, &q0_, &q1_);                                \
        attn_shape(&s, m, B, which, dt, q0_, q1_,                                           \
                   ((which) == 3 || (which) == 5) && j != p->att_nb - 1);                   \
        st = student_mm_create(&p->field[j], m->eng, &s);                                   \
        if (st != RT_OK) goto cleanup;                                                      \
    } while (0)
    p->att_nb = student_att_blocks(m->cfg.seq_len);
    /*  field        M  K      N      src_t wei_t dt bias acc */
    MMW(qkv, STUDENT_LIN_QKV, M, C, 3 * A, 0, 0, dt, 1, 0);
    MMW(attproj, STUDENT_LIN_ATTPROJ, M, A, C, 0, 0, dt, 1, 1);
    MMW(fc, STUDENT_LIN_FC, M, C, F, 0, 0, dt, 1, 0);
    MMW(fcproj, STUDENT_LIN_FCPROJ, M, F, C, 0, 0, dt, 1, 1);
    MMW(head, STUDENT_LIN_N, M, C, V, 0, 1, dt, 0, 0);
    for (int j = 0; j < p->att_nb; j++) {
        MMA(qk, 0);
        MMA(pv, 1);
    }
    if (m->training) {
        MMW(qkv_dx, STUDENT_LIN_QKV, M, 3 * A, C, 0, 1, dt, 0, 0);
        MMW(attproj_dx, STUDENT_LIN_ATTPROJ, M, C, A, 0, 1, dt, 0, 0);
        MMW(fc_dx, STUDENT_LIN_FC, M, F, C, 0, 1, dt, 0, 0);
        MMW(fcproj_dx, STUDENT_LIN_FCPROJ, M, C, F, 0, 1, dt, 0, 0);
        MMW(head_dx, STUDENT_LIN_N, M, V, C, 0, 0, dt, 0, 0);
        MM(qkv_dw, C, M, 3 * A, 1, 0, dt, 0, 1);
        MM(attproj_dw, A, M, C, 1, 0, dt, 0, 1);
        MM(fc_dw, C, M, F, 1, 0, dt, 0, 1);
        MM(fcproj_dw, F, M, C, 1, 0, dt, 0, 1);
        MM(head_dw, V, M, C, 1, 0, dt, 0, 1);
        for (int j = 0; j < p->att_nb; j++) {
            MMA(att_dp, 2);
            MMA(att_dv, 3);
            MMA(att_dq, 4);
            MMA(att_dk, 5);
        }
    }
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        const int64_t r = m->cfg.rank[k];
        int64_t in, n_out;
        if (r == 0) continue;
        student_linear_shape(&m->cfg, (student_linear)k, &in, &n_out);
        const int acc = k == STUDENT_LIN_ATTPROJ || k == STUDENT_LIN_FCPROJ;
        MM(lr_a[k], M, in, r, 0, 0, dt, 0, 0);
        MM(lr_b[k], M, r, n_out, 0, 0, dt, 1, acc);
        if (!m->training) continue;
        MM(lr_b_dw[k], r, M, n_out, 1, 0, dt, 0, 1);
        MM(lr_b_dx[k], M, n_out, r, 0, 1, dt, 0, 0);
        MM(lr_a_dw[k], in, M, r, 1, 0, dt, 0, 1);
        MM(lr_a_dx[k], M, r, in, 0, 1, dt, 0, 0);
    }
#undef MM
#undef MMW
#undef MMA
cleanup:
    if (st != RT_OK) {
        plan_destroy(p);
        return st;
    }
    *out = p;
    return RT_OK;
}

/* The matmul of plan p whose weight is linear k's (k < STUDENT_LIN_N) or the
 * LM head's (k == STUDENT_LIN_N): the forward one (d = 0) or the
 * input-gradient one (d = 1). */
static student_mm *plan_weight_mm(student_plan *p, int k, int d) {
    switch (k) {
    case STUDENT_LIN_QKV: return d ? &p->qkv_dx : &p->qkv;
    case STUDENT_LIN_ATTPROJ: return d ? &p->attproj_dx : &p->attproj;
    case STUDENT_LIN_FC: return d ? &p->fc_dx : &p->fc;
    case STUDENT_LIN_FCPROJ: return d ? &p->fcproj_dx : &p->fcproj;
    default: return d ? &p->head_dx : &p->head;
    }
}

/* Where the packed copies go (student_model.pk_off), from the full-batch
 * plan's packed sizes; each copy starts on a 64-byte boundary. */
static void pack_layout(student_model *m) {
    student_plan *p = m->plans[m->max_B];
    size_t at = 0;
    for (int k = 0; k <= STUDENT_LIN_N; k++) {
        if (k == STUDENT_LIN_N) m->pk_layer = at, at *= (size_t)m->cfg.n_layer;
        for (int d = 0; d <= m->training; d++) {
            m->pk_off[k][d] = at;
            at = rt_size_add_sat(at, rt_size_round_sat(plan_weight_mm(p, k, d)->wei_bytes, 64));
        }
    }
    m->pk_bytes = at;
    m->pack_stale = 1;
}

static rt_status get_plan(student_model *m, int B, student_plan **out) {
    if (!m->plans[B]) RT_TRY(plan_create(m, B, &m->plans[B]));
    student_plan *p = m->plans[B];
    /* int8 layers come after creation (student_int8_set): plan them late,
     * with the attention batches in bf16 on c_attn's bf16 output */
    if (m->q8 && !p->q8) {
        RT_TRY(student_qlin_create(m, (int64_t)B * m->cfg.seq_len,
                                   STUDENT_QLIN_HEAD | STUDENT_QLIN_QKV_BF16 | STUDENT_QLIN_RESID,
                                   &p->q8));
        for (int j = 0; j < p->att_nb && !p->qk_bf[j].prim; j++) {
            student_mm_shape s;
            int q0, q1;
            student_att_block(m->cfg.seq_len, p->att_nb, j, &q0, &q1);
            attn_shape(&s, m, B, 6, dnnl_bf16, q0, q1, 0);
            RT_TRY(student_mm_create(&p->qk_bf[j], m->eng, &s));
            attn_shape(&s, m, B, 7, dnnl_bf16, q0, q1, 0);
            RT_TRY(student_mm_create(&p->pv_bf[j], m->eng, &s));
        }
    }
    *out = p;
    return RT_OK;
}

/* -------------------------------------------------------------- create */

/* llm.c-style size table: each entry a pointer field and its float count;
 * every tensor starts on a 64-byte boundary. */
typedef struct {
    float **ptr;
    size_t n;
} act_entry;
typedef struct {
    uint16_t **ptr;
    size_t n;
} act_entry_bf;

static size_t round16(size_t n) { return rt_size_round_sat(n, 16); } /* 64 bytes of f32 */
static size_t round32(size_t n) { return rt_size_round_sat(n, 32); } /* 64 bytes of bf16 */

void student_destroy(student_model *m) {
    if (!m) return;
    student_qat_disable(m);
    student_int8_free(m);
    student_loss_ws_free(m->loss_ws);
    if (m->plans) {
        for (int b = 0; b <= m->max_B; b++) plan_destroy(m->plans[b]);
        free(m->plans);
    }
    if (m->strm) dnnl_stream_destroy(m->strm);
    if (m->eng) dnnl_engine_destroy(m->eng);
    rt_free_aligned(m->params);
    rt_free_aligned(m->grads);
    rt_free_aligned(m->adam_m);
    rt_free_aligned(m->adam_v);
    rt_free_aligned(m->params_bf);
    rt_free_aligned(m->act_block);
    rt_free_aligned(m->act_bf_block);
    rt_free_aligned(m->packed);
    free(m->inputs);
    free(m->offset);
    free(m->tensors);
    free(m);
}

rt_status student_create(const student_config *c, int batch, student_precision p, int training,
                         student_model **out) {
    rt_status st = RT_OK;
    student_model *m = NULL;
    *out = NULL;
    RT_TRY(student_config_validate(c));
    if (batch < 1) return rt_fail(RT_ERR_ARGS, "student: batch must be >= 1 (got %d)", batch);
    if (p != STUDENT_F32 && p != STUDENT_BF16)
        return rt_fail(RT_ERR_ARGS, "student: unknown precision %d", (int)p);
    if (training & ~(STUDENT_TRAIN | STUDENT_RECOMPUTE) ||
        training == STUDENT_RECOMPUTE)
        return rt_fail(RT_ERR_ARGS, "student: training flags %d: use 0, STUDENT_TRAIN or "
                       "STUDENT_TRAIN | STUDENT_RECOMPUTE", training);
    if (p == STUDENT_BF16 && student_is_lowrank(c))
        return rt_fail(RT_ERR_UNSUPPORTED, "student: a low-rank model runs in f32 only (set "
                       "train.precision = f32, or distill.teacher_precision = f32 for a "
                       "low-rank teacher)");
    m = calloc(1, sizeof *m);
    if (!m) return rt_fail(RT_ERR_NOMEM, "student: out of memory for the model");
    m->cfg = *c;
    m->prec = p;
    m->training = training ? 1 : 0;
    m->recompute = training & STUDENT_RECOMPUTE ? 1 : 0;
    m->max_B = batch;
    m->lmul = m->training && !m->recompute;
    m->n_tensors = student_tensor_count(c);
    m->block_floats = student_block_floats(c);
    m->offset = calloc((size_t)m->n_tensors, sizeof *m->offset);
    m->tensors = calloc((size_t)m->n_tensors, sizeof *m->tensors);
    m->inputs = calloc((size_t)batch * (size_t)c->seq_len, sizeof *m->inputs);
    m->plans = calloc((size_t)batch + 1, sizeof *m->plans);
    if (!m->offset || !m->tensors || !m->inputs || !m->plans) {
        st = rt_fail(RT_ERR_NOMEM, "student: out of memory for the model tables");
        goto cleanup;
    }
    /* The table once per model: offsets are read on every layer of every pass. */
    for (int i = 0; i < m->n_tensors; i++) {
        student_tensor_info(c, i, &m->tensors[i]);
        m->offset[i] = m->tensors[i].offset;
    }

    const size_t bf = m->block_floats * sizeof(float);
    m->params = rt_alloc_aligned(bf);
    if (m->training) {
        m->grads = rt_alloc_aligned(bf);
        m->adam_m = rt_alloc_aligned(bf);
        m->adam_v = rt_alloc_aligned(bf);
    }
    if (p == STUDENT_BF16) m->params_bf = rt_alloc_aligned(m->block_floats * sizeof(uint16_t));
    if (!m->params || (m->training && (!m->grads || !m->adam_m || !m->adam_v)) ||
        (p == STUDENT_BF16 && !m->params_bf)) {
        st = rt_fail(RT_ERR_NOMEM, "student: out of memory for %zu-float parameter blocks",
                     m->block_floats);
        goto cleanup;
    }
    m->bf_stale = 1;
    if ((st = student_loss_ws_create(c->vocab_size, &m->loss_ws)) != RT_OK) goto cleanup;

    {
        const size_t L = (size_t)c->n_layer, B = (size_t)batch, T = (size_t)c->seq_len,
                     C = (size_t)c->d_model, F = (size_t)c->d_ff, V = (size_t)c->vocab_size,
                     H = (size_t)c->n_head, A = (size_t)student_attn_width(c);
        const size_t Lt = m->lmul ? L : 1, tr = (size_t)m->training;
        size_t R = 0, Rmax = 0; /* ranks of the low-rank linears: sum, largest */
        for (int k = 0; k < STUDENT_LIN_N; k++) {
            R += (size_t)c->rank[k];
            Rmax = (size_t)c->rank[k] > Rmax ? (size_t)c->rank[k] : Rmax;
        }
        const size_t f32 = p == STUDENT_F32; /* f32 copies of matmul inputs */
        student_acts *a = &m->act;
        act_entry e[] = {
            {&a->encoded, RT_SIZE_PROD(B, T, C)},
            {&a->ln1, RT_SIZE_PROD(f32, Lt, B, T, C)},
            {&a->ln1_mean, RT_SIZE_PROD(Lt, B, T)},
            {&a->ln1_rstd, RT_SIZE_PROD(Lt, B, T)},
            {&a->qkv, RT_SIZE_PROD(Lt, B, T, 3, A)},
            {&a->att, RT_SIZE_PROD(Lt, B, H, T, T)},
            {&a->atty, RT_SIZE_PROD(Lt, B, T, A)},
            {&a->res2, RT_SIZE_PROD(Lt, B, T, C)},
            {&a->ln2, RT_SIZE_PROD(f32, Lt, B, T, C)},
            {&a->ln2_mean, RT_SIZE_PROD(Lt, B, T)},
            {&a->ln2_rstd, RT_SIZE_PROD(Lt, B, T)},
            {&a->fch, RT_SIZE_PROD(Lt, B, T, F)},
            {&a->fch_gelu, RT_SIZE_PROD(f32, Lt, B, T, F)},
            {&a->res3, RT_SIZE_PROD(L, B, T, C)},
            {&a->lnf, RT_SIZE_PROD(f32, B, T, C)},
            {&a->lnf_mean, RT_SIZE_PROD(B, T)},
            {&a->lnf_rstd, RT_SIZE_PROD(B, T)},
            {&a->logits, RT_SIZE_PROD(B, T, V)},
            {&a->dlogits, RT_SIZE_PROD(tr, B, T, V)},
            {&a->hidden_grad, RT_SIZE_PROD(tr, L, B, T, C)},
            {&a->dres, RT_SIZE_PROD(tr, B, T, C)},
            {&a->dc, RT_SIZE_PROD(tr, B, T, (A > C ? A : C))}, /* dx of ln and of c_proj */
            {&a->dqkv, RT_SIZE_PROD(tr, B, T, 3, A)},
            {&a->dfch, RT_SIZE_PROD(f32, tr, B, T, F)},
            {&a->datt, RT_SIZE_PROD(tr, B, H, T, T)},
            {&a->dfch_gelu, RT_SIZE_PROD(tr, B, T, F)},
            {&a->lrt, RT_SIZE_PROD(Lt, B, T, R)},
            {&a->dlrt, RT_SIZE_PROD(tr, B, T, Rmax)},
        };
        size_t total = 0;
        for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
            total = rt_size_add_sat(total, round16(e[i].n));
        /* saturated sums and products end at SIZE_MAX: a shape no machine holds */
        if (total > SIZE_MAX / sizeof(float)) {
            st = rt_fail(RT_ERR_NOMEM, "student: activations of batch %d x seq_len %d (n_layer "
                         "%d, n_head %d) exceed the address space", batch, c->seq_len,
                         c->n_layer, c->n_head);
            goto cleanup;
        }
        m->act_block = rt_alloc_aligned(total * sizeof(float));
        if (!m->act_block) {
            st = rt_fail(RT_ERR_NOMEM, "student: out of memory for %zu MiB of activations",
                         total * sizeof(float) >> 20);
            goto cleanup;
        }
        m->act_bytes = total * sizeof(float);
        float *q = m->act_block;
        for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
            *e[i].ptr = e[i].n ? q : NULL;
            q += round16(e[i].n);
        }
        if (p == STUDENT_BF16) {
            student_acts_bf *ab = &m->abf;
            size_t dy = V > F ? V : F;
            dy = dy > 3 * A ? dy : 3 * A; /* each below 2^25: no wrap */
            act_entry_bf eb[] = {
                {&ab->ln1, RT_SIZE_PROD(Lt, B, T, C)},      {&ab->atty, RT_SIZE_PROD(Lt, B, T, A)},
                {&ab->qkv, RT_SIZE_PROD(Lt, B, T, 3, A)},  {&ab->att, RT_SIZE_PROD(Lt, B, H, T, T)},
                {&ab->datt, RT_SIZE_PROD(tr, B, H, T, T)},
                {&ab->ln2, RT_SIZE_PROD(Lt, B, T, C)},      {&ab->fch_gelu, RT_SIZE_PROD(Lt, B, T, F)},
                {&ab->lnf, RT_SIZE_PROD(B, T, C)},           {&ab->dy, RT_SIZE_PROD(tr, B, T, dy)},
            };
            size_t totb = 0;
            for (size_t i = 0; i < sizeof eb / sizeof eb[0]; i++)
                totb = rt_size_add_sat(totb, round32(eb[i].n));
            m->act_bf_block = totb > SIZE_MAX / sizeof(uint16_t)
                                  ? NULL
                                  : rt_alloc_aligned(totb * sizeof(uint16_t));
            if (!m->act_bf_block) {
                st = rt_fail(RT_ERR_NOMEM, "student: out of memory for bf16 activations");
                goto cleanup;
            }
            m->act_bytes += totb * sizeof(uint16_t);
            uint16_t *h = m->act_bf_block;
            for (size_t i = 0; i < sizeof eb / sizeof eb[0]; i++) {
                *eb[i].ptr = eb[i].n ? h : NULL;
                h += round32(eb[i].n);
            }
        }
    }

    STUDENT_DNNL_CHECK(dnnl_engine_create(&m->eng, dnnl_cpu, 0));
    STUDENT_DNNL_CHECK(dnnl_stream_create(&m->strm, m->eng, dnnl_stream_default_flags));
    /* Plan the full batch now so shape errors surface here, not mid-run. */
    st = plan_create(m, batch, &m->plans[batch]);
    if (st == RT_OK) pack_layout(m);
cleanup:
    if (st != RT_OK) {
        student_destroy(m);
        return st;
    }
    *out = m;
    return RT_OK;
}

/* ----------------------------------------------------------- accessors */

const student_config *student_cfg(const student_model *m) { return &m->cfg; }
size_t student_activation_bytes(const student_model *m) { return m->act_bytes; }
student_precision student_prec(const student_model *m) { return m->prec; }
int student_max_batch(const student_model *m) { return m->max_B; }
size_t student_block_size(const student_model *m) { return m->block_floats; }
float *student_params(student_model *m) {
    m->bf_stale = 1; /* the caller may write through the pointer */
    m->pack_stale = 1;
    return m->params;
}
float *student_grads(student_model *m) { return m->grads; }
float *student_adam_m(student_model *m) { return m->adam_m; }
float *student_adam_v(student_model *m) { return m->adam_v; }
float *student_logits(student_model *m) { return m->act.logits; }
student_loss_ws *student_loss_workspace(student_model *m) { return m->loss_ws; }
float *student_dlogits(student_model *m) { return m->act.dlogits; }

float *student_hidden(student_model *m, int layer) {
    RT_ASSERT(layer >= 0 && layer < m->cfg.n_layer);
    return m->act.res3 + (size_t)layer * m->max_B * m->cfg.seq_len * m->cfg.d_model;
}

float *student_hidden_grad(student_model *m, int layer) {
    RT_ASSERT(layer >= 0 && layer < m->cfg.n_layer);
    if (!m->training) return NULL;
    return m->act.hidden_grad + (size_t)layer * m->max_B * m->cfg.seq_len * m->cfg.d_model;
}

void student_zero_grad(student_model *m) {
    if (m->grads) memset(m->grads, 0, m->block_floats * sizeof(float));
}

void student_sync_bf16(student_model *m) {
    if (m->prec != STUDENT_BF16 || !m->bf_stale) return;
    student_to_bf16(m->params_bf, m->params, m->block_floats);
    m->bf_stale = 0;
}

/* Weight tensor at block offset `off` as the matmuls take it. */
static const void *wgt(const student_model *m, size_t off) {
    return m->prec == STUDENT_BF16 ? (const void *)(m->params_bf + off)
                                   : (const void *)(m->params + off);
}

/* The weight linear k (student_linear) of block l multiplies with: the
 * fake-quantized copy under QAT, else the parameter (or its bf16 copy). */
static const void *lin_w(const student_model *m, int l, int k) {
    const float *q = m->qat ? student_qat_weight(m, l, k) : NULL;
    return q ? (const void *)q : wgt(m, m->offset[student_linear_tensor(&m->cfg, l, k)]);
}

/* The inner activation t = x W_a of low-rank linear k of block l: (B*T,
 * r) rows in the model's lrt block (one layer's worth unless training). */
static float *lr_inner(const student_model *m, int l, int k) {
    const student_config *c = &m->cfg;
    size_t R = 0, before = 0;
    for (int j = 0; j < STUDENT_LIN_N; j++) {
        R += (size_t)c->rank[j];
        if (j < k) before += (size_t)c->rank[j];
    }
    const size_t BT = (size_t)m->max_B * c->seq_len;
    return m->act.lrt + (size_t)(l * m->lmul) * BT * R + BT * before;
}

/* The f32 weight that packing reads for linear k of block l (the LM head,
 * wte, when k == STUDENT_LIN_N): what lin_w gives in f32. */
static const float *pack_src(const student_model *m, int l, int k) {
    if (k == STUDENT_LIN_N) return m->params + m->offset[0];
    const float *q = m->qat ? student_qat_weight(m, l, k) : NULL;
    return q ? q : m->params + m->offset[student_linear_tensor(&m->cfg, l, k)];
}

/* Refreshes the packed weight copies when the weights changed (always
 * under QAT: the fake-quantized weights are rewritten every forward). */
static rt_status pack_weights(student_model *m) {
    if ((!m->pack_stale && !m->qat) || m->pk_bytes == 0) return RT_OK;
    if (!m->packed && !(m->packed = rt_alloc_aligned(m->pk_bytes)))
        return rt_fail(RT_ERR_NOMEM, "student: out of memory for %zu MiB of packed weights",
                       m->pk_bytes >> 20);
    student_plan *p = m->plans[m->max_B];
    for (int k = 0; k <= STUDENT_LIN_N; k++)
        for (int d = 0; d <= m->training; d++) {
            student_mm *mm = plan_weight_mm(p, k, d);
            if (!mm->wei_bytes) continue;
            const int nl = k == STUDENT_LIN_N ? 1 : m->cfg.n_layer;
            for (int l = 0; l < nl; l++)
                RT_TRY(student_mm_pack(mm, m->strm, pack_src(m, l, k),
                                       m->packed + (size_t)l * m->pk_layer + m->pk_off[k][d]));
        }
    m->pack_stale = 0;
    return RT_OK;
}

/* The weight operand of `mm` (plan_weight_mm(.., k, d)) for block l: its
 * packed copy when it has one, else lin_w (wte for the head). */
static const void *mm_w(const student_model *m, const student_mm *mm, int l, int k, int d) {
    if (mm->wei_bytes)
        return m->packed + (size_t)(k == STUDENT_LIN_N ? 0 : l) * m->pk_layer + m->pk_off[k][d];
    return k == STUDENT_LIN_N ? wgt(m, 0) : lin_w(m, l, k);
}

/* ------------------------------------------------------ precision modes */

/* What the f32, bf16 and QAT modes do differently around a linear layer,
 * as one table per mode picked by mode_ops_of, so that the passes below read
 * without precision tests. Which buffers hold the matmul operands (f32
 * activations or their bf16 copies) is decided once in block_bufs_get. The
 * int8 mode fuses its layers differently and has its own block forward
 * (block_fwd_int8); it shares the attention batches (attn_fwd). */
typedef struct {
    /* Prepares the f32 input x (n floats) of linear k of block l in place:
     * QAT fake-quantizes it, the other modes leave it. */
    void (*act_in)(student_model *m, int l, int k, float *x, size_t n);
    /* Writes xb, the bf16 copy of a matmul output that later matmuls read
     * (qkv, attention output); the f32 modes read x itself. */
    void (*act_out)(student_model *m, uint16_t *xb, const float *x, size_t n);
    /* The last step of a linear's input gradient: QAT's straight-through
     * clip mask; none in the other modes. */
    void (*grad_in)(const student_model *m, int l, int k, float *dx, size_t n);
} mode_ops;

static void act_in_none(student_model *m, int l, int k, float *x, size_t n) {
    (void)m, (void)l, (void)k, (void)x, (void)n;
}
static void act_out_none(student_model *m, uint16_t *xb, const float *x, size_t n) {
    (void)m, (void)xb, (void)x, (void)n;
}
static void act_out_bf16(student_model *m, uint16_t *xb, const float *x, size_t n) {
    STUDENT_PROF(m, SPF_BF16, student_to_bf16(xb, x, n));
}
static void grad_in_none(const student_model *m, int l, int k, float *dx, size_t n) {
    (void)m, (void)l, (void)k, (void)dx, (void)n;
}

static const mode_ops ops_f32 = {act_in_none, act_out_none, grad_in_none};
static const mode_ops ops_bf16 = {act_in_none, act_out_bf16, grad_in_none};
static const mode_ops ops_qat = {student_qat_act, act_out_none, student_qat_act_grad};

/* The mode's table: bf16 from creation; QAT while student_qat_enable'd
 * (an f32 model only). */
static const mode_ops *mode_ops_of(const student_model *m) {
    if (m->prec == STUDENT_BF16) return &ops_bf16;
    return m->qat ? &ops_qat : &ops_f32;
}

/* One linear layer of the forward: y (+)= x W + b through the f32/bf16
 * primitive `mm`, or, for a low-rank linear, t = x W_a then y (+)= t W_b +
 * b through the plan's lr_a, lr_b. QAT has already fake-quantized x in
 * place (student_qat_act). */
static rt_status lin_fwd(student_model *m, student_plan *pl, student_mm *mm, int l, int k,
                         const void *x, float *y) {
    const float *b = m->params + m->offset[student_linear_tensor(&m->cfg, l, k) + 1];
    if (m->cfg.rank[k] == 0) return student_mm_run(mm, m->strm, x, mm_w(m, mm, l, k, 0), b, y);
    float *t = lr_inner(m, l, k);
    const float *wb = m->params + m->offset[student_linear_factor(&m->cfg, l, k)];
    RT_TRY(student_mm_run(&pl->lr_a[k], m->strm, x, lin_w(m, l, k), NULL, t));
    return student_mm_run(&pl->lr_b[k], m->strm, t, wb, b, y);
}

/* Its backward through the pair of primitives dw_mm, dx_mm: dW += x^T g,
 * dx = g W^T (n_dx floats), then under QAT the straight-through estimator's
 * clip mask on dx. A low-rank linear goes through its factors: dW_b +=
 * t^T g, dt = g W_b^T, dW_a += x^T dt, dx = dt W_a^T. */
static rt_status lin_bwd(student_model *m, const mode_ops *ops, student_plan *pl,
                         student_mm *dw_mm, student_mm *dx_mm, int l, int k, const void *x,
                         const void *g, float *dx, size_t n_dx) {
    float *dw = m->grads + m->offset[student_linear_tensor(&m->cfg, l, k)];
    if (m->cfg.rank[k] > 0) {
        const size_t ib = (size_t)student_linear_factor(&m->cfg, l, k);
        const float *t = lr_inner(m, l, k), *wb = m->params + m->offset[ib];
        float *dt = m->act.dlrt, *dwb = m->grads + m->offset[ib];
        STUDENT_PROF(m, SPF_MM_DW, RT_TRY(student_mm_run(&pl->lr_b_dw[k], m->strm, t, g, NULL, dwb)));
        STUDENT_PROF(m, SPF_MM_DX, RT_TRY(student_mm_run(&pl->lr_b_dx[k], m->strm, g, wb, NULL, dt)));
        STUDENT_PROF(m, SPF_MM_DW, RT_TRY(student_mm_run(&pl->lr_a_dw[k], m->strm, x, dt, NULL, dw)));
        STUDENT_PROF(m, SPF_MM_DX,
                     RT_TRY(student_mm_run(&pl->lr_a_dx[k], m->strm, dt, lin_w(m, l, k), NULL, dx)));
        return RT_OK;
    }
    STUDENT_PROF(m, SPF_MM_DW, RT_TRY(student_mm_run(dw_mm, m->strm, x, g, NULL, dw)));
    STUDENT_PROF(m, SPF_MM_DX,
                 RT_TRY(student_mm_run(dx_mm, m->strm, g, mm_w(m, dx_mm, l, k, 1), NULL, dx)));
    ops->grad_in(m, l, k, dx, n_dx);
    return RT_OK;
}

/* Block l's activation buffers, and the operands its matmuls read: the
 * f32 buffers, or in bf16 mode their bf16 copies (the f32 LayerNorm and
 * GELU outputs are then not written: NULL, and the kernels write the bf16
 * copies alone). */
typedef struct {
    const float *res_in;
    float *qkv, *att, *atty, *res2, *fch, *res3;
    float *ln1, *ln2, *gelu;                        /* NULL in bf16 mode */
    uint16_t *ln1b, *ln2b, *qkvb, *attb, *attyb, *gelub; /* bf16 mode only */
    const void *ln1_op, *ln2_op, *qkv_op, *att_op, *atty_op, *gelu_op;
    size_t es; /* operand element size: 4 (f32) or 2 (bf16) */
} block_bufs;

static void block_bufs_get(student_model *m, int l, block_bufs *b) {
    const student_config *c = &m->cfg;
    const size_t T = (size_t)c->seq_len, BT = (size_t)m->max_B * T;
    const size_t A = (size_t)student_attn_width(c);
    const size_t BTC = BT * (size_t)c->d_model, BTF = BT * (size_t)c->d_ff, BTA = BT * A;
    const size_t li = (size_t)l * (size_t)m->lmul, H = (size_t)c->n_head;
    student_acts *a = &m->act;
    student_acts_bf *ab = &m->abf;
    memset(b, 0, sizeof *b);
    b->res_in = l == 0 ? a->encoded : a->res3 + (size_t)(l - 1) * BTC;
    b->qkv = a->qkv + li * 3 * BTA, b->att = a->att + li * BT * H * T;
    b->atty = a->atty + li * BTA, b->res2 = a->res2 + li * BTC;
    b->fch = a->fch + li * BTF, b->res3 = a->res3 + (size_t)l * BTC;
    if (m->prec == STUDENT_BF16) {
        b->ln1b = ab->ln1 + li * BTC, b->ln2b = ab->ln2 + li * BTC;
        b->qkvb = ab->qkv + li * 3 * BTA, b->attb = ab->att + li * BT * H * T;
        b->attyb = ab->atty + li * BTA, b->gelub = ab->fch_gelu + li * BTF;
        b->ln1_op = b->ln1b, b->ln2_op = b->ln2b, b->qkv_op = b->qkvb;
        b->att_op = b->attb, b->atty_op = b->attyb, b->gelu_op = b->gelub;
        b->es = sizeof(uint16_t);
    } else {
        b->ln1 = a->ln1 + li * BTC, b->ln2 = a->ln2 + li * BTC;
        b->gelu = a->fch_gelu + li * BTF;
        b->ln1_op = b->ln1, b->ln2_op = b->ln2, b->qkv_op = b->qkv;
        b->att_op = b->att, b->atty_op = b->atty, b->gelu_op = b->gelu;
        b->es = sizeof(float);
    }
}

/* ------------------------------------------------------------- forward */

/* A matmul operand: the bf16 copy xb where the mode keeps one, else the
 * f32 buffer x. */
static const void *operand(const uint16_t *xb, const float *x) {
    return xb ? (const void *)xb : (const void *)x;
}

/* p advanced by i elements of es bytes (f32 or bf16 operands) */
static const void *elem(const void *p, size_t i, size_t es) {
    return (const uint8_t *)p + i * es;
}

/* The CPU stream with OpenMP runs primitives synchronously; waiting keeps
 * the contract explicit should the runtime ever be asynchronous. */
static rt_status stream_wait(student_model *m) {
    rt_status st = RT_OK;
    STUDENT_DNNL_CHECK(dnnl_stream_wait(m->strm));
cleanup:
    return st;
}

/* Causal attention of one block, atty = softmax(scale q k^T) v, in nb
 * query blocks through the primitives qk[j], pv[j]. q_op, k_op, v_op: the
 * query, key and value operands, q_rs elements from one query row to the
 * next (3A in qkv, hs in int8's dense per-head planes); att: the f32
 * scores and probabilities; att_op: the probabilities as the pv batches
 * read them (att itself, or attb, the bf16 copy the softmax writes); es:
 * the operands' element size. */
static rt_status attn_fwd(student_model *m, student_mm *qk, student_mm *pv, int nb, int B,
                          const void *q_op, const void *k_op, const void *v_op, size_t q_rs,
                          float *att, uint16_t *attb, const void *att_op, size_t es, float *atty) {
    const student_config *c = &m->cfg;
    const int T = c->seq_len, H = c->n_head;
    const size_t A = (size_t)student_attn_width(c);
    const float scale = 1.0f / sqrtf((float)student_head_dim(c));
    /* block by block, so that a block's scores and probabilities are
     * still in the caches when the softmax and P V read them */
    for (int j = 0; j < nb; j++) {
        int q0, q1;
        student_att_block(T, nb, j, &q0, &q1);
        STUDENT_PROF(m, SPF_ATT_MM,
                     RT_TRY(student_mm_run(&qk[j], m->strm, elem(q_op, (size_t)q0 * q_rs, es),
                                           k_op, NULL, att + (size_t)q0 * T)));
        STUDENT_PROF(m, SPF_SOFTMAX,
                     student_attn_softmax(att, attb, (int64_t)B * H, T, q0, q1, nb, scale,
                                          m->training));
        STUDENT_PROF(m, SPF_ATT_MM,
                     RT_TRY(student_mm_run(&pv[j], m->strm, elem(att_op, (size_t)q0 * T, es),
                                           v_op, NULL, atty + (size_t)q0 * A)));
    }
    return RT_OK;
}

/* Block l in the f32, bf16 and QAT modes (ops): res2 = res_in +
 * attn(ln_1(res_in)) Wo + bo, then res3 = res2 + gelu(ln_2(res2) Wfc +
 * bfc) Wproj + bproj; the residuals are copied into the c_proj outputs,
 * which accumulate onto them. `recompute` (the backward of a
 * STUDENT_RECOMPUTE model) stops once the last activation the block's
 * backward reads, GELU's output (fake-quantized under QAT), is written:
 * res3, the block's output, is kept from the forward. */
static rt_status block_fwd(student_model *m, student_plan *pl, const mode_ops *ops, int l, int B,
                           int recompute) {
    const student_config *c = &m->cfg;
    const int C = c->d_model, F = c->d_ff, A = student_attn_width(c);
    const size_t M = (size_t)B * c->seq_len, BT = (size_t)m->max_B * c->seq_len,
                 li = (size_t)l * (size_t)m->lmul;
    const float *P = m->params;
    student_acts *a = &m->act;
    block_bufs b;
    block_bufs_get(m, l, &b);

    STUDENT_PROF(m, SPF_LN,
                 student_layernorm_fwd(b.ln1, b.ln1b, a->ln1_mean + li * BT, a->ln1_rstd + li * BT,
                                       b.res_in, P + student_off(m, l, STUDENT_LN1W),
                                       P + student_off(m, l, STUDENT_LN1B), (int64_t)M, C));
    ops->act_in(m, l, STUDENT_LIN_QKV, b.ln1, M * C);
    STUDENT_PROF(m, SPF_MM, RT_TRY(lin_fwd(m, pl, &pl->qkv, l, STUDENT_LIN_QKV, b.ln1_op, b.qkv)));
    ops->act_out(m, b.qkvb, b.qkv, M * 3 * A);
    RT_TRY(attn_fwd(m, pl->qk, pl->pv, pl->att_nb, B, b.qkv_op, elem(b.qkv_op, (size_t)A, b.es),
                    elem(b.qkv_op, 2 * (size_t)A, b.es), 3 * (size_t)A, b.att, b.attb, b.att_op,
                    b.es, b.atty));
    ops->act_out(m, b.attyb, b.atty, M * A);
    STUDENT_PROF(m, SPF_RESID, student_copy(b.res2, b.res_in, M * C));
    ops->act_in(m, l, STUDENT_LIN_ATTPROJ, b.atty, M * A);
    STUDENT_PROF(m, SPF_MM,
                 RT_TRY(lin_fwd(m, pl, &pl->attproj, l, STUDENT_LIN_ATTPROJ, b.atty_op, b.res2)));

    STUDENT_PROF(m, SPF_LN,
                 student_layernorm_fwd(b.ln2, b.ln2b, a->ln2_mean + li * BT, a->ln2_rstd + li * BT,
                                       b.res2, P + student_off(m, l, STUDENT_LN2W),
                                       P + student_off(m, l, STUDENT_LN2B), (int64_t)M, C));
    ops->act_in(m, l, STUDENT_LIN_FC, b.ln2, M * C);
    STUDENT_PROF(m, SPF_MM, RT_TRY(lin_fwd(m, pl, &pl->fc, l, STUDENT_LIN_FC, b.ln2_op, b.fch)));
    STUDENT_PROF(m, SPF_GELU, student_gelu_fwd(b.gelu, b.gelub, b.fch, M * F));
    ops->act_in(m, l, STUDENT_LIN_FCPROJ, b.gelu, M * F);
    if (recompute) return RT_OK;
    STUDENT_PROF(m, SPF_RESID, student_copy(b.res3, b.res2, M * C));
    STUDENT_PROF(m, SPF_MM,
                 RT_TRY(lin_fwd(m, pl, &pl->fcproj, l, STUDENT_LIN_FCPROJ, b.gelu_op, b.res3)));
    return RT_OK;
}

/* Block l in int8 mode (an f32 inference model, one shared layer of
 * activations): c_attn writes qkv in bf16, split into dense per-head
 * planes for the bf16 attention batches (qk_bf, pv_bf);
 * c_proj adds the residual in its epilogue; c_fc's primitive applies GELU
 * and c_proj's input quantizer (student_qlin_mlp). */
static rt_status block_fwd_int8(student_model *m, student_plan *pl, int l, int B) {
    const student_config *c = &m->cfg;
    const int T = c->seq_len, C = c->d_model, H = c->n_head, hs = student_head_dim(c);
    const size_t M = (size_t)B * T, A = (size_t)student_attn_width(c),
                 BT = (size_t)m->max_B * T, li = (size_t)l * (size_t)m->lmul;
    const float *P = m->params;
    student_acts *a = &m->act;
    uint8_t *qs = student_int8_scratch(m);
    block_bufs b;
    block_bufs_get(m, l, &b);
    uint16_t *qkvb = student_int8_qkv_bf(m), *attb = student_int8_att_bf(m);
    uint16_t *hd = student_int8_heads_bf(m);

    STUDENT_PROF(m, SPF_LN,
                 student_layernorm_fwd(b.ln1, NULL, a->ln1_mean + li * BT,
                                       a->ln1_rstd + li * BT, b.res_in,
                                       P + student_off(m, l, STUDENT_LN1W),
                                       P + student_off(m, l, STUDENT_LN1B), (int64_t)M, C));
    STUDENT_PROF(m, SPF_MM,
                 RT_TRY(student_qlin_run(m, pl->q8, l, STUDENT_LIN_QKV, b.ln1, qs, NULL, qkvb)));
    STUDENT_PROF(m, SPF_BF16, student_int8_split_heads(hd, qkvb, B, T, H, hs));
    RT_TRY(attn_fwd(m, pl->qk_bf, pl->pv_bf, pl->att_nb, B, hd, hd + M * A, hd + 2 * M * A,
                    (size_t)hs, b.att, attb, attb, sizeof(uint16_t), b.atty));
    STUDENT_PROF(m, SPF_MM,
                 RT_TRY(student_qlin_run(m, pl->q8, l, STUDENT_LIN_ATTPROJ, b.atty, qs, b.res_in,
                                         b.res2)));
    STUDENT_PROF(m, SPF_LN,
                 student_layernorm_fwd(b.ln2, NULL, a->ln2_mean + li * BT,
                                       a->ln2_rstd + li * BT, b.res2,
                                       P + student_off(m, l, STUDENT_LN2W),
                                       P + student_off(m, l, STUDENT_LN2B), (int64_t)M, C));
    STUDENT_PROF(m, SPF_MM, RT_TRY(student_qlin_mlp(m, pl->q8, l, b.ln2, qs, b.res2, b.res3)));
    return RT_OK;
}

rt_status student_forward(student_model *m, const int32_t *inputs, int B) {
    const student_config *c = &m->cfg;
    const int L = c->n_layer, T = c->seq_len, C = c->d_model, V = c->vocab_size;
    if (B < 1 || B > m->max_B)
        return rt_fail(RT_ERR_ARGS, "student_forward: batch %d outside [1, %d]", B, m->max_B);
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (inputs[i] < 0 || inputs[i] >= V)
            return rt_fail(RT_ERR_ARGS,
                           "student_forward: token id %d at row %d position %d is outside the "
                           "vocabulary [0, %d); check the tokenizer matches the model",
                           inputs[i], (int)(i / T), (int)(i % T), V);
    student_plan *pl;
    RT_TRY(get_plan(m, B, &pl));
    STUDENT_PROF(m, SPF_BF16, student_sync_bf16(m));
    m->last_B = 0;
    memcpy(m->inputs, inputs, (size_t)B * T * sizeof *inputs);

    const float *P = m->params;
    student_acts *a = &m->act;
    const size_t M = (size_t)B * T, BTC = (size_t)m->max_B * T * C;
    const int nt = m->n_tensors;
    const mode_ops *ops = mode_ops_of(m);
    /* the LayerNorm output the LM head reads: f32, or its bf16 copy */
    uint16_t *lnfb = m->prec == STUDENT_BF16 ? m->abf.lnf : NULL;

    if (m->qat) student_qat_forward_begin(m);
    STUDENT_PROF(m, SPF_EMBED,
                 student_embed_fwd(a->encoded, inputs, P + m->offset[0], P + m->offset[1], B, T, C));
    if (m->q8) {
        for (int l = 0; l < L; l++) RT_TRY(block_fwd_int8(m, pl, l, B));
    } else {
        STUDENT_PROF(m, SPF_PACK, RT_TRY(pack_weights(m)));
        for (int l = 0; l < L; l++) RT_TRY(block_fwd(m, pl, ops, l, B, 0));
    }
    STUDENT_PROF(m, SPF_LN,
                 student_layernorm_fwd(a->lnf, lnfb, a->lnf_mean, a->lnf_rstd,
                                       a->res3 + (size_t)(L - 1) * BTC, P + m->offset[nt - 2],
                                       P + m->offset[nt - 1], (int64_t)M, C));
    if (m->q8)
        STUDENT_PROF(m, SPF_HEAD,
                     RT_TRY(student_qlin_head(m, pl->q8, a->lnf, student_int8_scratch(m),
                                              a->logits)));
    else
        STUDENT_PROF(m, SPF_HEAD,
                     RT_TRY(student_mm_run(&pl->head, m->strm, operand(lnfb, a->lnf),
                                           mm_w(m, &pl->head, 0, STUDENT_LIN_N, 0), NULL,
                                           a->logits)));
    if (m->qat) student_qat_forward_end(m);
    if (m->training)
        for (int l = 0; l < L; l++)
            memset(a->hidden_grad + (size_t)l * BTC, 0, M * C * sizeof(float));
    RT_TRY(stream_wait(m));
    m->last_B = B;
    return RT_OK;
}

/* ------------------------------------------------------------ backward */

rt_status student_backward(student_model *m, int B) {
    const student_config *c = &m->cfg;
    const int L = c->n_layer, T = c->seq_len, C = c->d_model, F = c->d_ff, V = c->vocab_size,
              H = c->n_head, A = student_attn_width(c), hs = student_head_dim(c);
    const mode_ops *ops = mode_ops_of(m);
    if (!m->training)
        return rt_fail(RT_ERR_ARGS, "student_backward: the model was created with training = 0");
    if (B != m->last_B || B < 1)
        return rt_fail(RT_ERR_ARGS,
                       "student_backward: batch %d does not match the last forward (batch %d)", B,
                       m->last_B);
    student_plan *pl;
    RT_TRY(get_plan(m, B, &pl));

    const float *P = m->params;
    float *G = m->grads;
    student_acts *a = &m->act;
    const size_t M = (size_t)B * T;
    const size_t BTC = (size_t)m->max_B * T * C, BT = (size_t)m->max_B * T;
    const float scale = 1.0f / sqrtf((float)hs);
    const int nt = m->n_tensors;
    float *dres = a->dres, *dc = a->dc;
    /* The gradient operands of the backward matmuls: f32 as they are, or
     * in bf16 mode a bf16 copy in dyb (written by the kernel that makes the
     * gradient, or by ops->act_out) and dattb; the f32 dfch is then not
     * written (NULL). */
    const int bf = m->prec == STUDENT_BF16;
    uint16_t *dyb = bf ? m->abf.dy : NULL, *dattb = bf ? m->abf.datt : NULL;
    float *dfch = bf ? NULL : a->dfch;
    const void *lnf_op = operand(bf ? m->abf.lnf : NULL, a->lnf), *ds_op = operand(dattb, a->datt);
    const void *g; /* the gradient operand of each pair of backward matmuls */

    /* LM head: logits = ln_f(res3) wte^T */
    ops->act_out(m, dyb, a->dlogits, M * V);
    g = operand(dyb, a->dlogits);
    STUDENT_PROF(m, SPF_HEAD_BWD,
                 RT_TRY(student_mm_run(&pl->head_dx, m->strm, g,
                                       mm_w(m, &pl->head_dx, 0, STUDENT_LIN_N, 1), NULL, dc)));
    STUDENT_PROF(m, SPF_HEAD_BWD,
                 RT_TRY(student_mm_run(&pl->head_dw, m->strm, g, lnf_op, NULL, G + m->offset[0])));
    memset(dres, 0, M * C * sizeof(float));
    STUDENT_PROF(m, SPF_LN_BWD,
                 student_layernorm_bwd(dres, G + m->offset[nt - 2], G + m->offset[nt - 1], dc,
                                       a->res3 + (size_t)(L - 1) * BTC, P + m->offset[nt - 2],
                                       a->lnf_mean, a->lnf_rstd, (int64_t)M, C));
    STUDENT_PROF(m, SPF_RESID_BWD,
                 student_add_inplace(dres, a->hidden_grad + (size_t)(L - 1) * BTC, M * C));

    for (int l = L - 1; l >= 0; l--) {
        const size_t li = (size_t)l * (size_t)m->lmul;
        block_bufs b;
        block_bufs_get(m, l, &b);
        /* recomputation: the shared layer still holds the last block's
         * activations from the forward; the others are made again from
         * the block's input (res3 of the block before) */
        if (m->recompute && l < L - 1) RT_TRY(block_fwd(m, pl, ops, l, B, 1));

        /* MLP: res3 = res2 + gelu(ln2 Wfc + bfc) Wproj + bproj. Bias
         * gradients come with the bf16 conversion of the same buffer. */
        STUDENT_PROF(m, SPF_BIAS_BWD,
                     student_colsum_add(G + student_off(m, l, STUDENT_FCPROJB), dyb, dres,
                                        (int64_t)M, C));
        g = operand(dyb, dres);
        RT_TRY(lin_bwd(m, ops, pl, &pl->fcproj_dw, &pl->fcproj_dx, l, STUDENT_LIN_FCPROJ,
                       b.gelu_op, g, a->dfch_gelu, M * F));
        STUDENT_PROF(m, SPF_GELU_BWD,
                     student_gelu_bwd(dfch, dyb, G + student_off(m, l, STUDENT_FCB), b.fch,
                                      a->dfch_gelu, (int64_t)M, F));
        g = operand(dyb, dfch);
        RT_TRY(lin_bwd(m, ops, pl, &pl->fc_dw, &pl->fc_dx, l, STUDENT_LIN_FC, b.ln2_op, g, dc,
                       M * C));
        STUDENT_PROF(m, SPF_LN_BWD,
                     student_layernorm_bwd(dres, G + student_off(m, l, STUDENT_LN2W),
                                           G + student_off(m, l, STUDENT_LN2B), dc, b.res2,
                                           P + student_off(m, l, STUDENT_LN2W), a->ln2_mean + li * BT,
                                           a->ln2_rstd + li * BT, (int64_t)M, C));

        /* attention: res2 = res_in + attn(ln1) Wo + bo */
        STUDENT_PROF(m, SPF_BIAS_BWD,
                     student_colsum_add(G + student_off(m, l, STUDENT_ATTPROJB), dyb, dres,
                                        (int64_t)M, C));
        g = operand(dyb, dres);
        RT_TRY(lin_bwd(m, ops, pl, &pl->attproj_dw, &pl->attproj_dx, l, STUDENT_LIN_ATTPROJ,
                       b.atty_op, g, dc, M * A));
        /* attention backward on the forward's operands (qkv and P, or their
         * bf16 copies) and on dY, dS made here */
        const size_t es = b.es;
        const void *q_op = b.qkv_op, *k_op = elem(b.qkv_op, (size_t)A, es),
                   *v_op = elem(b.qkv_op, 2 * (size_t)A, es);
        ops->act_out(m, dyb, dc, M * A);
        g = operand(dyb, dc);
        /* per query block, the last one first: it writes dV and dK of every
         * key, the others add to the keys they see */
        const int nb = pl->att_nb;
        for (int j = nb - 1; j >= 0; j--) {
            int q0, q1;
            student_att_block(T, nb, j, &q0, &q1);
            STUDENT_PROF(m, SPF_ATT_MM_BWD,
                         RT_TRY(student_mm_run(&pl->att_dp[j], m->strm,
                                               elem(g, (size_t)q0 * A, es), v_op, NULL,
                                               a->datt + (size_t)q0 * T)));
            STUDENT_PROF(m, SPF_ATT_MM_BWD,
                         RT_TRY(student_mm_run(&pl->att_dv[j], m->strm,
                                               elem(b.att_op, (size_t)q0 * T, es),
                                               elem(g, (size_t)q0 * A, es), NULL,
                                               a->dqkv + 2 * A)));
        }
        STUDENT_PROF(m, SPF_SOFTMAX_BWD,
                     student_attn_softmax_bwd(a->datt, dattb, b.att, (int64_t)B * H, T, nb,
                                              scale));
        for (int j = nb - 1; j >= 0; j--) {
            int q0, q1;
            student_att_block(T, nb, j, &q0, &q1);
            STUDENT_PROF(m, SPF_ATT_MM_BWD,
                         RT_TRY(student_mm_run(&pl->att_dq[j], m->strm,
                                               elem(ds_op, (size_t)q0 * T, es), k_op, NULL,
                                               a->dqkv + (size_t)q0 * 3 * A)));
            STUDENT_PROF(m, SPF_ATT_MM_BWD,
                         RT_TRY(student_mm_run(&pl->att_dk[j], m->strm,
                                               elem(ds_op, (size_t)q0 * T, es),
                                               elem(q_op, (size_t)q0 * 3 * A, es), NULL,
                                               a->dqkv + A)));
        }
        STUDENT_PROF(m, SPF_BIAS_BWD,
                     student_colsum_add(G + student_off(m, l, STUDENT_QKVB), dyb, a->dqkv,
                                        (int64_t)M, 3 * A));
        g = operand(dyb, a->dqkv);
        RT_TRY(lin_bwd(m, ops, pl, &pl->qkv_dw, &pl->qkv_dx, l, STUDENT_LIN_QKV, b.ln1_op, g, dc,
                       M * C));
        STUDENT_PROF(m, SPF_LN_BWD,
                     student_layernorm_bwd(dres, G + student_off(m, l, STUDENT_LN1W),
                                           G + student_off(m, l, STUDENT_LN1B), dc, b.res_in,
                                           P + student_off(m, l, STUDENT_LN1W), a->ln1_mean + li * BT,
                                           a->ln1_rstd + li * BT, (int64_t)M, C));
        if (l > 0)
            STUDENT_PROF(m, SPF_RESID_BWD,
                         student_add_inplace(dres, a->hidden_grad + (size_t)(l - 1) * BTC, M * C));
    }
    STUDENT_PROF(m, SPF_EMBED_BWD,
                 student_embed_bwd(G + m->offset[0], G + m->offset[1], dres, m->inputs, B, T, C));
    return stream_wait(m);
}

/* ------------------------------------------------------------ profile */

static const char *const prof_names[SPF_N] = {
    [SPF_EMBED] = "embedding",          [SPF_LN] = "layernorm",
    [SPF_MM] = "matmul",                [SPF_HEAD] = "lm_head",
    [SPF_ATT_MM] = "attention_matmul",  [SPF_SOFTMAX] = "attention_softmax",
    [SPF_GELU] = "gelu",                [SPF_RESID] = "residual_copy",
    [SPF_BF16] = "bf16_convert",        [SPF_HEAD_BWD] = "lm_head_bwd",
    [SPF_MM_DX] = "matmul_bwd_input",   [SPF_MM_DW] = "matmul_bwd_weight",
    [SPF_ATT_MM_BWD] = "attention_matmul_bwd", [SPF_SOFTMAX_BWD] = "attention_softmax_bwd",
    [SPF_GELU_BWD] = "gelu_bwd",        [SPF_LN_BWD] = "layernorm_bwd",
    [SPF_BIAS_BWD] = "bias_grad",       [SPF_RESID_BWD] = "residual_grad_add",
    [SPF_EMBED_BWD] = "embedding_bwd",  [SPF_ADAMW] = "adamw",
    [SPF_GRADNORM] = "grad_norm_scale", [SPF_PACK] = "weight_packing",
};

void student_profile_reset(student_model *m, int enable) {
    m->prof_on = enable ? 1 : 0;
    memset(m->prof, 0, sizeof m->prof);
}

int student_profile_get(const student_model *m, const char **names, double *seconds, int n) {
    int k = 0;
    for (int i = 0; i < SPF_N && k < n; i++, k++) {
        names[k] = prof_names[i];
        seconds[k] = m->prof[i];
    }
    return k;
}

/* ------------------------------------------------- pruning calibration */

/* For Wanda / activation-aware pruning (prune.c): the per-layer copies of
 * the matmul inputs exist only in a training-mode f32 model (lmul = 1;
 * bf16 keeps bf16 copies, inference and recomputation one shared layer). */
const float *student_linear_input(student_model *m, int layer, student_linear which,
                                  int64_t *rows) {
    RT_ASSERT(layer >= 0 && layer < m->cfg.n_layer && which >= 0 && which < STUDENT_LIN_N);
    *rows = 0;
    if (!m->lmul || m->prec != STUDENT_F32 || m->last_B == 0) return NULL;
    const size_t BT = (size_t)m->max_B * m->cfg.seq_len, l = (size_t)layer;
    const size_t BTC = BT * m->cfg.d_model, BTF = BT * m->cfg.d_ff,
                 BTA = BT * (size_t)student_attn_width(&m->cfg);
    *rows = (int64_t)m->last_B * m->cfg.seq_len;
    switch (which) {
    case STUDENT_LIN_QKV: return m->act.ln1 + l * BTC;
    case STUDENT_LIN_ATTPROJ: return m->act.atty + l * BTA;
    case STUDENT_LIN_FC: return m->act.ln2 + l * BTC;
    default: return m->act.fch_gelu + l * BTF;
    }
}
