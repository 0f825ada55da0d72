/* Hand-written element-wise and row-wise kernels around the matmuls:
 * LayerNorm, GELU, bias gradients, causal attention softmax, bf16
 * conversion. They are OpenMP loops that the compiler vectorizes
 * (`omp simd`), not oneDNN primitives, because each one fuses what oneDNN
 * would need two primitives or an extra pass for: LayerNorm writes its bf16
 * matmul input directly, GELU uses a vectorizable exp and writes the bf16
 * copy, the softmax applies scale + causal mask in one pass, and gradient
 * reductions run column-parallel so results do not depend on the thread
 * count. All of them are memory-bound and a small part of a step. */
#include <math.h>
#include <omp.h>

#include "student_internal.h"

void student_to_bf16(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = student_f2bf(src[i]);
}

void student_layernorm_fwd(float *out, uint16_t *out_bf, float *mean, float *rstd,
                           const float *x, const float *w, const float *b, int64_t rows, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += xr[c];
        const float mu = s / (float)C;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (xr[c] - mu) * (xr[c] - mu);
        const float rs = 1.0f / sqrtf(v / (float)C + STUDENT_LN_EPS);
        if (out) {
            float *o = out + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (xr[c] - mu) * rs * w[c] + b[c];
        }
        if (out_bf) {
            uint16_t *o = out_bf + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = student_f2bf((xr[c] - mu) * rs * w[c] + b[c]);
        }
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
    }
}

/* The thread's share [*c0, *c1) of `cols` columns, in 16-float chunks so
 * neighbours do not share cache lines. */
static void col_range(int cols, int *c0, int *c1) {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int chunk = ((cols + nt - 1) / nt + 15) / 16 * 16;
    *c0 = id * chunk < cols ? id * chunk : cols;
    *c1 = *c0 + chunk < cols ? *c0 + chunk : cols;
}

void student_layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                           const float *w, const float *mean, const float *rstd, int64_t rows,
                           int C) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dr = dout + r * C;
        const float mu = mean[r], rs = rstd[r];
        float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
        for (int c = 0; c < C; c++) {
            float dn = dr[c] * w[c];
            s1 += dn;
            s2 += dn * (xr[c] - mu) * rs;
        }
        s1 /= (float)C, s2 /= (float)C;
        float *o = dx + r * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float norm = (xr[c] - mu) * rs;
            o[c] += (dr[c] * w[c] - s1 - norm * s2) * rs;
        }
    }
#pragma omp parallel
    {
        int c0, c1;
        col_range(C, &c0, &c1);
        for (int64_t r = 0; r < rows && c0 < c1; r++) {
            const float *xr = x + r * C, *dr = dout + r * C;
            const float mu = mean[r], rs = rstd[r];
#pragma omp simd
            for (int c = c0; c < c1; c++) {
                dw[c] += dr[c] * (xr[c] - mu) * rs;
                db[c] += dr[c];
            }
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

/* tanh(u) = 1 - 2 / (1 + exp(2u)); exact limits at +-inf, ~1e-7 absolute. */
static inline float tanh_fast(float u) { return 1.0f - 2.0f / (1.0f + student_expf(2.0f * u)); }

void student_gelu_fwd(float *out, uint16_t *out_bf, const float *pre, size_t n) {
    if (out && out_bf) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) {
            float x = pre[i];
            float y = 0.5f * x * (1.0f + tanh_fast(GELU_K * (x + GELU_A * x * x * x)));
            out[i] = y;
            out_bf[i] = student_f2bf(y);
        }
    } else if (out) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) {
            float x = pre[i];
            out[i] = 0.5f * x * (1.0f + tanh_fast(GELU_K * (x + GELU_A * x * x * x)));
        }
    } else {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) {
            float x = pre[i];
            out_bf[i] =
                student_f2bf(0.5f * x * (1.0f + tanh_fast(GELU_K * (x + GELU_A * x * x * x))));
        }
    }
}

static inline float gelu_grad(float x) {
    float th = tanh_fast(GELU_K * (x + GELU_A * x * x * x));
    return 0.5f * (1.0f + th) +
           0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_A * x * x);
}

void student_gelu_bwd(float *dpre, uint16_t *dpre_bf, float *db, const float *pre,
                      const float *dout, int64_t rows, int cols) {
    /* column-parallel so the bias gradient needs no cross-thread reduction;
     * each thread streams its slice of every row */
#pragma omp parallel
    {
        int c0, c1;
        col_range(cols, &c0, &c1);
        for (int64_t r = 0; r < rows && c0 < c1; r++) {
            const size_t o = (size_t)r * cols;
            const float *x = pre + o, *dy = dout + o;
            if (dpre && dpre_bf) {
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    float d = dy[c] * gelu_grad(x[c]);
                    dpre[o + c] = d, dpre_bf[o + c] = student_f2bf(d), db[c] += d;
                }
            } else if (dpre) {
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    float d = dy[c] * gelu_grad(x[c]);
                    dpre[o + c] = d, db[c] += d;
                }
            } else {
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    float d = dy[c] * gelu_grad(x[c]);
                    dpre_bf[o + c] = student_f2bf(d), db[c] += d;
                }
            }
        }
    }
}

void student_colsum_add(float *db, uint16_t *d_bf, const float *d, int64_t rows, int cols) {
#pragma omp parallel
    {
        int c0, c1;
        col_range(cols, &c0, &c1);
        for (int64_t r = 0; r < rows && c0 < c1; r++) {
            const float *dr = d + r * cols;
            if (d_bf) {
                uint16_t *h = d_bf + r * cols;
#pragma omp simd
                for (int c = c0; c < c1; c++) db[c] += dr[c], h[c] = student_f2bf(dr[c]);
            } else {
#pragma omp simd
                for (int c = c0; c < c1; c++) db[c] += dr[c];
            }
        }
    }
}

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#define SOFTMAX_ROW_BF16 1
#include <immintrin.h>
/* 2^t on 16 lanes for t <= 0, the vector form of student_exp2_nonpos
 * (same polynomial): n = round(t), 2^n p(t - n) through vscalefps. Below
 * -127 it returns 2^-127 p, a denormal, instead of 0 (the caller zeroes
 * masked keys itself; a visible key that far below the row's maximum
 * weighs under 1e-38 either way); NaN stays NaN (vmaxps returns its second
 * operand when one is NaN). */
static inline __m512 exp2_nonpos_x16(__m512 t) {
    t = _mm512_max_ps(_mm512_set1_ps(-127.0f), t);
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* One row of student_attn_softmax's inference case (bf16 probabilities
 * only): h[0..end) <- bf16(softmax(c' a[0..n))) with keys n.. zero, in
 * 16-column vectors, the last one masked; the exponentials go over the
 * scores in a, which nothing reads afterwards. next: the next row's
 * scores, prefetched while the exponentials of this one are computed (each
 * row of a T = 1,024 plane is its own 4 KiB page, where the hardware
 * prefetcher starts cold). */
static void softmax_row_bf16(uint16_t *h, float *a, const float *next, int n, int end, float c) {
    const int nv = (n + 15) / 16, tail = n - 16 * (nv - 1); /* lanes of the last vector */
    const __mmask16 last = (__mmask16)(0xffffu >> (16 - tail));
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int v = 0;
    for (; v + 4 < nv; v += 4) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(a + 16 * v));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(a + 16 * v + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(a + 16 * v + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(a + 16 * v + 48));
    }
    for (; v + 1 < nv; v++) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(a + 16 * v));
    m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, last, a + 16 * v));
    m0 = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
    const float cm = c * _mm512_reduce_max_ps(m0);
    const __m512 vc = _mm512_set1_ps(c), vcm = _mm512_set1_ps(cm);
    __m512 sum = _mm512_setzero_ps();
    for (v = 0; v + 1 < nv; v++) {
        _mm_prefetch((const char *)(next + 16 * v), _MM_HINT_T0);
        const __m512 y = exp2_nonpos_x16(_mm512_fmsub_ps(_mm512_loadu_ps(a + 16 * v), vc, vcm));
        _mm512_storeu_ps(a + 16 * v, y);
        sum = _mm512_add_ps(sum, y);
    }
    _mm_prefetch((const char *)(next + 16 * v), _MM_HINT_T0);
    _mm_prefetch((const char *)(next + 16 * v + 16), _MM_HINT_T0);
    const __m512 xl = _mm512_mask_loadu_ps(ninf, last, a + 16 * v);
    const __m512 y = _mm512_maskz_mov_ps(last, exp2_nonpos_x16(_mm512_fmsub_ps(xl, vc, vcm)));
    _mm512_mask_storeu_ps(a + 16 * v, last, y);
    sum = _mm512_add_ps(sum, y);
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (v = 0; v + 1 < nv; v++) {
        const __m512 p = _mm512_mul_ps(_mm512_loadu_ps(a + 16 * v), inv);
        _mm256_storeu_si256((__m256i *)(h + 16 * v), (__m256i)_mm512_cvtneps_pbh(p));
    }
    /* the last vector: its columns up to the row's end (the plane's last
     * rows need not have 16 columns left) */
    const int room = end - 16 * v;
    const __mmask16 out = (__mmask16)(0xffffu >> (16 - (room < 16 ? room : 16)));
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(last, a + 16 * v), inv);
    _mm256_mask_storeu_epi16(h + 16 * v, out, (__m256i)_mm512_cvtneps_pbh(p));
    for (int s = 16 * nv; s < end; s++) h[s] = 0;
}
#else
#define SOFTMAX_ROW_BF16 0
#endif

void student_attn_softmax(float *att, uint16_t *att_bf, int64_t planes, int T, int i0, int i1,
                          int nb, float scale, int keep_f32) {
    const float c = scale * 1.44269504088896341f; /* exp(scale x) = 2^(c x) */
    /* inference (bf16 probabilities only) on a CPU with AVX-512 BF16 */
    const int row_bf16 = SOFTMAX_ROW_BF16 && att_bf && !keep_f32;
    (void)row_bf16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        for (int i = i0; i < i1; i++) {
            float *a = att + (p * T + i) * (int64_t)T;
            const int n = i + 1, end = student_att_row_end(T, nb, i); /* keys 0..i visible */
            uint16_t *h = att_bf ? att_bf + (p * T + i) * (int64_t)T : NULL;
#if SOFTMAX_ROW_BF16
            if (row_bf16) {
                softmax_row_bf16(h, a, a + T, n, end, c);
                continue;
            }
#endif
            float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
            for (int s = 0; s < n; s++) mx = a[s] > mx ? a[s] : mx;
            const float cm = c * mx;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int s = 0; s < n; s++) {
                float e = student_exp2_nonpos(a[s] * c - cm);
                a[s] = e;
                sum += e;
            }
            const float inv = 1.0f / sum;
            if (h) {
#pragma omp simd
                for (int s = 0; s < n; s++) {
                    a[s] *= inv;
                    h[s] = student_f2bf(a[s]);
                }
                for (int s = n; s < end; s++) h[s] = 0;
            } else {
#pragma omp simd
                for (int s = 0; s < n; s++) a[s] *= inv;
            }
            for (int s = n; s < end; s++) a[s] = 0.0f;
        }
    }
}

void student_attn_softmax_bwd(float *datt, uint16_t *datt_bf, const float *att, int64_t planes,
                              int T, int nb, float scale) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        for (int t = 0; t < T; t++) {
            const float *a = att + (p * T + t) * (int64_t)T;
            float *d = datt + (p * T + t) * (int64_t)T;
            const int n = t + 1, end = student_att_row_end(T, nb, t);
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int s = 0; s < n; s++) dot += a[s] * d[s];
#pragma omp simd
            for (int s = 0; s < n; s++) d[s] = scale * a[s] * (d[s] - dot);
            for (int s = n; s < end; s++) d[s] = 0.0f;
            if (datt_bf) {
                uint16_t *h = datt_bf + (p * T + t) * (int64_t)T;
#pragma omp simd
                for (int s = 0; s < end; s++) h[s] = student_f2bf(d[s]);
            }
        }
    }
}

void student_embed_fwd(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                       int B, int T, int C) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *we = wte + (int64_t)tokens[b * T + t] * C, *pe = wpe + (int64_t)t * C;
            float *o = out + ((int64_t)b * T + t) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
        }
}

void student_embed_bwd(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B,
                       int T, int C) {
    /* Column-parallel: a token repeated in the batch hits the same dwte row,
     * so rows cannot be split between threads; columns can. */
#pragma omp parallel
    {
        int c0, c1;
        col_range(C, &c0, &c1);
        for (int b = 0; b < B && c0 < c1; b++)
            for (int t = 0; t < T; t++) {
                const float *d = dout + ((int64_t)b * T + t) * C;
                float *we = dwte + (int64_t)tokens[b * T + t] * C, *pe = dwpe + (int64_t)t * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    we[c] += d[c];
                    pe[c] += d[c];
                }
            }
    }
}

void student_add_inplace(float *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void student_copy(float *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}
