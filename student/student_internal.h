/* Internals shared by the student/ sources: the oneDNN check macro and
 * matmul wrapper, the hand-written kernels, and the student_model struct
 * with its llm.c-style blocks. Not part of the module's public API. */
#ifndef STUDENT_INTERNAL_H
#define STUDENT_INTERNAL_H

#include <dnnl.h>
#include <dnnl_debug.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "student.h"

/* Turns a failed oneDNN call into RT_ERR_DNNL naming the expression, the
 * place and oneDNN's own message. Needs `rt_status st` and a `cleanup:`
 * label, like RT_H5_CHECK. */
#define STUDENT_DNNL_CHECK(expr)                                                           \
    do {                                                                                   \
        dnnl_status_t student_dnnl_s_ = (expr);                                            \
        if (student_dnnl_s_ != dnnl_success) {                                             \
            st = rt_fail(RT_ERR_DNNL, "oneDNN: %s failed at %s:%d: %s", #expr, __FILE__,   \
                         __LINE__, dnnl_status2str(student_dnnl_s_));                      \
            goto cleanup;                                                                  \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------- matmul */

/* One oneDNN matmul primitive, built once for a shape and run many times on
 * retort's own buffers: dst (+)= src x wei (+ bias), with up to two batch
 * dimensions in front and arbitrary element strides for each operand, so
 * transposes and head slices of a fused QKV buffer need no copies. */
typedef struct {
    int ndims;               /* 2, 3 or 4 */
    int64_t dims[3][4];      /* [operand: src, wei, dst][dim] */
    int64_t strides[3][4];
    dnnl_data_type_t dt;     /* src and weights: dnnl_f32 or dnnl_bf16; dst is f32 */
    int bias;                /* add a (N) f32 bias row */
    int accumulate;          /* dst += result (sum post-op) instead of dst = result */
    /* pack: the weights are parameters, reused across calls: let oneDNN
     * pick their layout (format_tag_any) and keep a packed copy made once
     * per weight update (student_mm_pack), which saves the brgemm kernel
     * from copying plain weights into its blocks on every call. pack_as:
     * when not NULL, the packed layout another primitive chose (plans of
     * other batch sizes share the packed copies of the full batch's). */
    int pack;
    const dnnl_memory_desc_t *pack_as;
} student_mm_shape;

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bias, dst; /* descriptors with handles set per run */
    /* packed weights (shape.pack and the layout differs from the plain
     * one): the layout, its size in bytes (0: plain weights) and the
     * reorder from the plain f32 weights into it */
    dnnl_memory_desc_t wei_md;
    size_t wei_bytes;
    dnnl_primitive_t pack;
    dnnl_memory_t pack_src, pack_dst;
} student_mm;

/* 2-D case: dst(M,N) (+)= op(src)(M,K) x op(wei)(K,N) (+ bias). src_t: src
 * is stored (K,M) row-major; wei_t: wei is stored (N,K) row-major. */
void student_mm_shape_2d(student_mm_shape *s, int64_t M, int64_t K, int64_t N, int src_t,
                         int wei_t, dnnl_data_type_t dt, int bias, int accumulate);
rt_status student_mm_create(student_mm *mm, dnnl_engine_t eng, const student_mm_shape *s);
rt_status student_mm_run(student_mm *mm, dnnl_stream_t strm, const void *src, const void *wei,
                         const float *bias, float *dst);
void student_mm_destroy(student_mm *mm); /* zeroed or created; safe twice */
/* Writes the packed copy (mm->wei_bytes bytes at `packed`) of the plain f32
 * weights `plain`, laid out as the shape's weight operand (converted to
 * bf16 in a bf16 primitive, rounding to nearest even as student_f2bf). */
rt_status student_mm_pack(student_mm *mm, dnnl_stream_t strm, const float *plain, void *packed);

/* ------------------------------------------------- loss workspace rows */

/* The teacher's label kernels (top-k in loss.c, sampled labels in
 * labels.c) walk a row of logits in blocks of STUDENT_WS_BLOCK = four
 * vectors of STUDENT_WS_LANES floats, reduced across the vectors element
 * by element and across the lanes once per block by a halving tree
 * (student_lanes_max/sum): GCC's `omp simd` reductions end in a chain of
 * 16 dependent scalar operations, which at one per 64 logits cost as much
 * as the exponentials. */
enum { STUDENT_WS_LANES = 16, STUDENT_WS_BLOCK = 4 * STUDENT_WS_LANES };

static inline int student_ws_blocks(int V) { return (V + STUDENT_WS_BLOCK - 1) / STUDENT_WS_BLOCK; }

static inline float student_lanes_max(const float *v) {
    float t[STUDENT_WS_LANES];
    memcpy(t, v, sizeof t);
    for (int w = STUDENT_WS_LANES / 2; w >= 1; w /= 2) {
#pragma omp simd
        for (int l = 0; l < w; l++) t[l] = t[l + w] > t[l] ? t[l + w] : t[l];
    }
    return t[0];
}

static inline float student_lanes_sum(const float *v) {
    float t[STUDENT_WS_LANES];
    memcpy(t, v, sizeof t);
    for (int w = STUDENT_WS_LANES / 2; w >= 1; w /= 2) {
#pragma omp simd
        for (int l = 0; l < w; l++) t[l] += t[l + w];
    }
    return t[0];
}

/* This OpenMP thread's rows of a loss workspace (loss.c), for the kernels
 * of loss.c and labels.c: e (V floats), idx (V int32), in (V bytes, all
 * zero between uses), blk (one float per STUDENT_WS_BLOCK tokens: the
 * top-k's block maxima, the sampler's block sums), and the `extra` bytes
 * student_loss_ws_reserve added (NULL when none). */
typedef struct {
    float *e;
    int32_t *idx;
    uint8_t *in;
    float *blk;
    unsigned char *extra;
    size_t extra_bytes;
} student_ws_rows;
student_ws_rows student_loss_ws_thread(const student_loss_ws *w);
int student_loss_ws_vocab(const student_loss_ws *w); /* 0 for NULL */
int student_loss_ws_threads(const student_loss_ws *w);

/* ------------------------------------------------------------ kernels */

#define STUDENT_LN_EPS 1e-5f

/* exp(x) to ~2 ulp for x <= 88, 0 below -87.3; plain float arithmetic so
 * that loops calling it vectorize (glibc's expf does not without
 * -ffast-math). Cephes range reduction and polynomial. */
static inline float student_expf(float x) {
    /* written so that NaN clamps too: (int32_t)NaN below is undefined
     * behaviour (issue 16 item 12); NaN is returned as NaN at the end */
    float xc = x > -87.3f ? x : -87.3f;
    xc = xc < 88.3f ? xc : 88.3f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (xc * 1.44269504088896341f + shifter) - shifter;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } u;
    u.i = ((int32_t)n + 127) << 23;
    float y = p * u.f;
    return x != x ? x : (x < -87.3f ? 0.0f : y);
}

/* 2^t for t <= 0 (a positive t of a few ulps is fine), 0 below -126, NaN
 * stays NaN; relative error below 1e-7 (7.9e-8 measured over [-125, 0]).
 * The attention softmax's exponential: after the row max is subtracted
 * its argument is never positive, so there is no overflow to guard and
 * the 1/sqrt(hs) scale and log2(e) fold into one multiply; without
 * student_expf's second range-reduction step and upper clamp the softmax
 * pass runs about 30% faster. */
static inline float student_exp2_nonpos(float t) {
    const float tc = t > -126.0f ? t : -126.0f; /* NaN clamps too, as in student_expf */
    const float shifter = 12582912.0f;         /* 1.5 * 2^23: adding it rounds to an integer */
    const float n = (tc + shifter) - shifter;
    const float f = tc - n; /* [-0.5, 0.5] */
    float p = 1.535336188319500e-4f; /* ln(2)^k / k!, k = 6..0 */
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    union { float f; int32_t i; } u;
    u.i = ((int32_t)n + 127) << 23;
    const float y = p * u.f;
    return t != t ? t : (t < -126.0f ? 0.0f : y);
}

/* float -> bf16 with round-to-nearest-even (NaN stays NaN). */
static inline uint16_t student_f2bf(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t u = v.u;
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0x7fc0u : (uint16_t)r;
}

void student_to_bf16(uint16_t *dst, const float *src, size_t n);

/* LayerNorm over rows of C: out = (x - mean) * rstd * w + b. Writes `out`
 * (f32) and/or `out_bf` (bf16) when non-NULL, and mean/rstd when non-NULL. */
void student_layernorm_fwd(float *out, uint16_t *out_bf, float *mean, float *rstd,
                           const float *x, const float *w, const float *b, int64_t rows, int C);
/* ADDS the input gradient into dx and the weight/bias gradients into dw/db. */
void student_layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                           const float *w, const float *mean, const float *rstd, int64_t rows,
                           int C);

/* GELU, tanh approximation, in place on an (n) buffer; bf copy if non-NULL.
 * `pre` keeps the input when out != pre. */
void student_gelu_fwd(float *out, uint16_t *out_bf, const float *pre, size_t n);
/* dpre = dout * gelu'(pre) over (rows, cols), written (not added) to dpre
 * and/or its bf16 copy dpre_bf (either may be NULL), and ADDED column-wise
 * into the bias gradient db: three passes fused into one. */
void student_gelu_bwd(float *dpre, uint16_t *dpre_bf, float *db, const float *pre,
                      const float *dout, int64_t rows, int cols);

/* db[c] += sum over rows of d[r][c] (bias gradients); also writes the bf16
 * copy of d into d_bf when not NULL (the matmul operand in bf16 mode). */
void student_colsum_add(float *db, uint16_t *d_bf, const float *d, int64_t rows, int cols);

/* Causal softmax of attention scores in place over (b, h) planes of T x T
 * computed as the staircase of nb query blocks (student_att_blocks), for
 * the query rows [i0, i1) of every plane: row i sees keys 0..i, which
 * become softmax(scale * x); keys i+1 up to the end of its block's key
 * range (student_att_row_end) become 0, and columns past that are neither
 * read nor written (no matmul reads them). A bf16 copy of the same
 * columns goes to att_bf if not NULL (the P V matmul input in bf16 and
 * int8 modes); with att_bf and !keep_f32 (a model that never runs the
 * backward, the only reader of the f32 probabilities) att is scratch
 * afterwards: exponentials or probabilities, unspecified. */
void student_attn_softmax(float *att, uint16_t *att_bf, int64_t planes, int T, int i0, int i1,
                          int nb, float scale, int keep_f32);
/* In place: datt <- scale * P * (dP - rowsum(P * dP)) (softmax backward with
 * the 1/sqrt(hs) scale), masked, over the same columns as the forward;
 * bf16 copy to datt_bf if not NULL. */
void student_attn_softmax_bwd(float *datt, uint16_t *datt_bf, const float *att, int64_t planes,
                              int T, int nb, float scale);

/* out[b,t,:] = wte[tokens[b,t]] + wpe[t]; tokens already range-checked. */
void student_embed_fwd(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                       int B, int T, int C);
/* ADDS dout[b,t,:] into dwte[tokens[b,t]] and dwpe[t]. */
void student_embed_bwd(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B,
                       int T, int C);
void student_add_inplace(float *dst, const float *src, size_t n); /* dst += src */
void student_copy(float *dst, const float *src, size_t n);        /* parallel memcpy */

/* ----------------------------------------------------------- profile */

/* Kernel classes timed when profiling is on (student_profile_reset). */
enum {
    SPF_EMBED, SPF_LN, SPF_MM, SPF_HEAD, SPF_ATT_MM, SPF_SOFTMAX, SPF_GELU, SPF_RESID, SPF_BF16,
    SPF_HEAD_BWD, SPF_MM_DX, SPF_MM_DW, SPF_ATT_MM_BWD, SPF_SOFTMAX_BWD, SPF_GELU_BWD,
    SPF_LN_BWD, SPF_BIAS_BWD, SPF_RESID_BWD, SPF_EMBED_BWD, SPF_ADAMW, SPF_GRADNORM, SPF_PACK, SPF_N
};

/* Runs `stmt`, adding its wall time to m->prof[slot] when profiling is on.
 * oneDNN primitives on the CPU engine with OpenMP return when done, so
 * the time is the kernel's. */
#define STUDENT_PROF(m, slot, stmt)                                                         \
    do {                                                                                    \
        const double student_t0_ = (m)->prof_on ? omp_get_wtime() : 0.0;                    \
        stmt;                                                                               \
        if ((m)->prof_on) (m)->prof[slot] += omp_get_wtime() - student_t0_;                 \
    } while (0)

/* ----------------------------------------------------------- model */

/* Query blocks of the attention batches: nb = student_att_blocks(T) blocks,
 * block j holding query rows [j T / nb, (j+1) T / nb). Blocks of at least
 * 4 rows (so the test fixtures' T = 16 runs 4 of them) and at most
 * STUDENT_ATT_BLOCKS: at T = 1024, 8 blocks of 128 rows compute 56% of the
 * full score planes. */
#define STUDENT_ATT_BLOCKS 8
static inline int student_att_blocks(int T) {
    const int nb = T / 4;
    return nb < 1 ? 1 : nb > STUDENT_ATT_BLOCKS ? STUDENT_ATT_BLOCKS : nb;
}
/* Query rows [*q0, *q1) of attention block j of nb over T positions. */
static inline void student_att_block(int T, int nb, int j, int *q0, int *q1) {
    *q0 = (int)((int64_t)j * T / nb);
    *q1 = (int)((int64_t)(j + 1) * T / nb);
}
/* The end q1 of the key range of the block holding query row i: the
 * block j with j T / nb <= i < (j+1) T / nb (floors). */
static inline int student_att_row_end(int T, int nb, int i) {
    const int j = (int)(((int64_t)(i + 1) * nb + T - 1) / T) - 1;
    return (int)((int64_t)(j + 1) * T / nb);
}

/* The matmul primitives for one micro-batch size B (M = B*T rows). Weights
 * of every layer share a shape, so one primitive serves all layers. A =
 * n_head * d_head is the attention width (C unless heads were removed). */
typedef struct {
    int B;
    /* forward */
    student_mm qkv;      /* (M,C) x (C,3A) + b */
    student_mm attproj;  /* (M,A) x (A,C) + b, accumulated onto the residual copy */
    student_mm fc;       /* (M,C) x (C,F) + b */
    student_mm fcproj;   /* (M,F) x (F,C) + b, accumulated onto the residual copy */
    student_mm head;     /* (M,C) x wte^T (C,V) */
    /* Attention runs per block of query rows: block j holds rows q0..q1-1
     * (student_att_block) and, being causal, needs keys 0..q1-1 only, so
     * the score planes are computed as a staircase of nb blocks, about
     * (nb+1)/(2 nb) of the full T x T. */
    int att_nb;
    student_mm qk[STUDENT_ATT_BLOCKS]; /* (B,H,Tq,hs) x (B,H,hs,q1) -> scores, slices of qkv */
    student_mm pv[STUDENT_ATT_BLOCKS]; /* (B,H,Tq,q1) x (B,H,q1,hs) -> (B,T,A) layout */
    /* backward: input gradients dX = dY W^T */
    student_mm qkv_dx, attproj_dx, fc_dx, fcproj_dx, head_dx;
    /* backward: weight gradients dW += X^T dY */
    student_mm qkv_dw, attproj_dw, fc_dw, fcproj_dw, head_dw;
    /* low-rank linears (cfg.rank[k] = r > 0): t = x W_a, y (+)= t W_b + b;
     * backward dW_b += t^T g, dt = g W_b^T, dW_a += x^T dt, dx = dt W_a^T */
    student_mm lr_a[STUDENT_LIN_N], lr_b[STUDENT_LIN_N];
    student_mm lr_a_dx[STUDENT_LIN_N], lr_a_dw[STUDENT_LIN_N];
    student_mm lr_b_dx[STUDENT_LIN_N], lr_b_dw[STUDENT_LIN_N];
    /* backward: attention, per query block; dV and dK of keys 0..q1-1
     * accumulate over the blocks (the last block, which covers every key,
     * writes them) */
    student_mm att_dp[STUDENT_ATT_BLOCKS]; /* dP = dO V^T */
    student_mm att_dv[STUDENT_ATT_BLOCKS]; /* dV (+)= P^T dO */
    student_mm att_dq[STUDENT_ATT_BLOCKS]; /* dQ = dS K */
    student_mm att_dk[STUDENT_ATT_BLOCKS]; /* dK (+)= dS^T Q */
    /* int8 mode: the linear layers and the LM head for M rows (quant.c),
     * and the attention batches in bf16 (qk, pv are f32 in an f32 model) */
    struct student_qlin *q8;
    student_mm qk_bf[STUDENT_ATT_BLOCKS], pv_bf[STUDENT_ATT_BLOCKS]; /* per query block */
} student_plan;

/* Activations, one block; per-layer tensors hold L layers in training mode
 * and one shared layer otherwise (layer stride 0: inference, and training
 * with STUDENT_RECOMPUTE, whose backward recomputes them block by block),
 * except res3, which always keeps every layer (hidden states for feature
 * distillation, and the block inputs a recomputation starts from). B is the
 * maximum batch; a forward with fewer rows uses the first B*T of each. */
typedef struct {
    float *encoded;     /* (B, T, C) wte[token] + wpe[t] */
    float *ln1;         /* (L, B, T, C) f32 mode only */
    float *ln1_mean;    /* (L, B, T) */
    float *ln1_rstd;    /* (L, B, T) */
    float *qkv;         /* (L, B, T, 3A) */
    float *att;         /* (L, B, H, T, T) softmax probabilities */
    float *atty;        /* (L, B, T, A) attention output before c_proj */
    float *res2;        /* (L, B, T, C) residual after attention */
    float *ln2;         /* (L, B, T, C) f32 mode only */
    float *ln2_mean;    /* (L, B, T) */
    float *ln2_rstd;    /* (L, B, T) */
    float *fch;         /* (L, B, T, F) c_fc output before GELU */
    float *fch_gelu;    /* (L, B, T, F) f32 mode only */
    float *res3;        /* (L, B, T, C) residual after the block (hidden state) */
    float *lnf;         /* (B, T, C) f32 mode only */
    float *lnf_mean;    /* (B, T) */
    float *lnf_rstd;    /* (B, T) */
    float *logits;      /* (B, T, V) */
    /* training only */
    float *dlogits;     /* (B, T, V) */
    float *hidden_grad; /* (L, B, T, C) */
    float *dres;        /* (B, T, C) running residual gradient */
    float *dc;          /* (B, T, max(A, C)) scratch: dln, datty */
    float *dqkv;        /* (B, T, 3A) */
    float *dfch;        /* (B, T, F) f32 mode only (bf16: straight to abf.dy) */
    float *datt;        /* (B, H, T, T) */
    float *dfch_gelu;   /* (B, T, F) */
    /* low-rank linears: the inner activations t = x W_a, per layer the
     * (B, T, r_k) rows of each factored linear k one after the other */
    float *lrt;         /* (L, B, T, sum of ranks) */
    float *dlrt;        /* (B, T, max rank) training only: dt */
} student_acts;

/* bf16 mode: matmul inputs in bf16 (same shapes as their f32 names). */
typedef struct {
    uint16_t *ln1;      /* (L, B, T, C) */
    uint16_t *qkv;      /* (L, B, T, 3A) attention matmul operands */
    uint16_t *att;      /* (L, B, H, T, T) probabilities for P V and dV */
    uint16_t *atty;     /* (L, B, T, A) */
    uint16_t *ln2;      /* (L, B, T, C) */
    uint16_t *fch_gelu; /* (L, B, T, F) */
    uint16_t *lnf;      /* (B, T, C) */
    uint16_t *dy;       /* (B, T, max(V, F, 3A)) training only: gradient fed to matmuls */
    uint16_t *datt;     /* (B, H, T, T) training only: softmax input gradient dS */
} student_acts_bf;

struct student_model {
    student_config cfg;
    student_precision prec;
    int training;
    int max_B;
    int n_tensors;
    student_tensor *tensors; /* (n_tensors) the parameter table, cached */
    size_t *offset;        /* (n_tensors) offsets into every block */
    size_t block_floats;
    float *params;         /* (block_floats) */
    float *grads;          /* (block_floats) training only */
    float *adam_m;         /* (block_floats) training only */
    float *adam_v;         /* (block_floats) training only */
    uint16_t *params_bf;   /* (block_floats) bf16 copy, bf16 mode only */
    int bf_stale;          /* params changed since params_bf was written */
    /* Packed copies of the weights for the matmuls that asked for them
     * (student_mm_shape.pack) in the full-batch plan, made at the first
     * forward after a weight change (pack_weights in model.c). Per layer,
     * linear k's forward (d = 0) and input-gradient (d = 1) copies sit at
     * packed + l * pk_layer + pk_off[k][d]; the LM head's at pk_off[STUDENT_LIN_N][d]
     * past the layers. Allocated at the first packing. */
    uint8_t *packed;
    size_t pk_off[STUDENT_LIN_N + 1][2], pk_layer, pk_bytes;
    int pack_stale;        /* params changed since the packed copies were written */
    float *act_block;
    size_t act_bytes;      /* act_block and act_bf_block together */
    student_acts act;
    uint16_t *act_bf_block;
    student_acts_bf abf;
    int recompute;         /* STUDENT_RECOMPUTE: training with one shared layer */
    int lmul;              /* 1: per-layer activations (training), 0: shared */
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    student_plan **plans;  /* [1..max_B], built on first use */
    int32_t *inputs;       /* (max_B, T) tokens of the last forward */
    int prof_on;           /* accumulate kernel times into prof */
    double prof[SPF_N];    /* seconds per kernel class since student_profile_reset */
    int last_B;            /* B of the last forward, 0 if none */
    struct student_qat *qat;   /* QAT / range observers, NULL when off (qat.c) */
    struct student_int8 *q8;   /* int8 linear layers, NULL unless int8 (quant.c) */
    student_loss_ws *loss_ws;  /* scratch of the loss kernels, rows of vocab_size */
};

/* Offset of tensor k of block l inside a block laid out like the
 * parameters. */
static inline size_t student_off(const student_model *m, int l, student_block_tensor k) {
    return m->offset[student_block_index(l, k)];
}

/* Refreshes params_bf from params if stale (bf16 mode). */
void student_sync_bf16(student_model *m);

/* ------------------------------------------------------ int8 (quant.c) */

/* Round to nearest, ties to even (what PyTorch's fake quantization and
 * torch.round do) for |v| < 2^22, in plain float arithmetic so that the
 * quantization loops vectorize; callers clamp v to +-2^21 first. */
static inline float student_qround(float v) {
    const float shifter = 12582912.0f; /* 1.5 * 2^23 */
    return (v + shifter) - shifter;
}

/* The int8 primitives of the 4 * n_layer linear layers for M rows, one per
 * layer because oneDNN 2.6 keeps int8 matmuls on its AMX/VNNI brgemm
 * kernels only with output scales fixed at creation (runtime scales fall
 * back to gemm:jit), plus the int8 LM head with STUDENT_QLIN_HEAD. c_fc's
 * primitive ends in GELU and c_proj's input quantizer (u8 out), so the
 * MLP runs as one call (student_qlin_mlp). */
enum {
    STUDENT_QLIN_HEAD = 1,     /* with the LM head */
    STUDENT_QLIN_QKV_BF16 = 2, /* c_attn writes bf16 (the attention operands), not f32 */
    STUDENT_QLIN_RESID = 4,    /* the c_projs add a residual tensor, not dst's contents */
};
typedef struct student_qlin student_qlin;
rt_status student_qlin_create(const student_model *m, int64_t M, int flags, student_qlin **out);
void student_qlin_destroy(student_qlin *q); /* NULL-safe */
/* dst (+)= linear `k` (STUDENT_LIN_QKV or _ATTPROJ) of block l over the M
 * rows of x (f32, C columns), quantized into `scratch` (M*C bytes) first.
 * attn.c_proj adds the residual: dst = res + x W + b under
 * STUDENT_QLIN_RESID (res != dst), else dst += x W + b (res NULL). dst is
 * f32, or bf16 for c_attn under STUDENT_QLIN_QKV_BF16. */
rt_status student_qlin_run(const student_model *m, student_qlin *q, int l, int k, const float *x,
                           uint8_t *scratch, const float *res, void *dst);
/* The MLP after ln_2: dst = res + gelu(x Wfc + bfc) Wproj + bproj (res as
 * for student_qlin_run) over the M rows of x (f32): x quantized into
 * scratch, the GELU output (quantized by c_fc's primitive) after it:
 * M*(C+F) bytes. */
rt_status student_qlin_mlp(const student_model *m, student_qlin *q, int l, const float *x,
                           uint8_t *scratch, const float *res, float *dst);
/* logits (M, V) = x (M, C) wte^T in int8: x quantized into scratch (M*C
 * bytes) with one scale per block of student_int8_head_rows rows of a
 * sequence (M = B*T: sequences of T rows; M = 1: one row). */
rt_status student_qlin_head(const student_model *m, student_qlin *q, const float *x,
                            uint8_t *scratch, float *logits);
int64_t student_int8_head_rows(const student_model *m);
/* The model's own scratch for student_forward: (max_B*T*(max(A, C)+F))
 * bytes (quantized activations, the head's input included), and the bf16
 * attention operands:
 * qkv (max_B*T*3A) and the probabilities (max_B*H*T*T). */
uint8_t *student_int8_scratch(const student_model *m);
uint16_t *student_int8_qkv_bf(const student_model *m);
/* (3, max_B, H, T, hs) bf16: Q, K and V of each (b, h) as dense (T, hs)
 * planes. oneDNN 2.6 runs the attention batches on AMX brgemm only for
 * dense planes; head slices of the fused (B, T, 3A) buffer drop to
 * gemm:jit, 2-3x slower (standalone loop, B=4 H=4 T=128 hs=64). Without
 * AMX (AVX-512 bf16) they run gemm:jit either way: brgemm wants every
 * operand without padding between planes, which a causal block's key
 * prefix of a plane has, and on dense copies it was no faster (12 planes
 * of 128 x 64 x 896: gemm:jit 455 GFLOP/s per CPU-second on 1 thread,
 * brgemm 354-365 on 2; standalone oneDNN loop), about the bf16 peak of
 * `retort bench peak` per CPU-second. */
uint16_t *student_int8_heads_bf(const student_model *m);
/* qkv (B, T, 3, H, hs) -> heads (3, B, H, T, hs), bf16. */
void student_int8_split_heads(uint16_t *heads, const uint16_t *qkv, int B, int T, int H, int hs);
uint16_t *student_int8_att_bf(const student_model *m);
void student_int8_free(student_model *m);

/* ------------------------------------------------------- QAT (qat.c) */

/* Start of a forward: refresh the fake-quantized weights from the
 * current ones; the forward observes ranges only when
 * student_qat_observe_next asked for it and calibration is not over. */
void student_qat_forward_begin(student_model *m);
/* End of a forward: an observed one makes the step count (see
 * student_qat_step_end). */
void student_qat_forward_end(student_model *m);
/* The fake-quantized weight of linear k of block l, or NULL when the
 * forward should use the plain weight (QAT off or observe_only). */
const float *student_qat_weight(const student_model *m, int l, int k);
/* Records the range of x (n floats, the input of linear k of block l)
 * while calibrating, then fake-quantizes x in place (unless observe_only),
 * writing the STE in-range mask of block `l` when training. */
void student_qat_act(student_model *m, int l, int k, float *x, size_t n);
/* Fake-quantizes x in place with the current quantizer, observing
 * nothing (the KV-cache path). */
void student_qat_act_apply(const student_model *m, int l, int k, float *x, size_t n);
/* dx[i] = 0 where the forward clipped x[i] (STE with clipping). */
void student_qat_act_grad(const student_model *m, int l, int k, float *dx, size_t n);

#endif
