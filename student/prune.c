/* Post-training pruning kernels: scores (magnitude, Wanda, head and MLP
 * unit importance), masks (unstructured, N:M, heads) and the physical
 * removal of attention heads and MLP hidden units. Pure functions over float matrices and the
 * parameter block, so they are testable without a model and `retort
 * prune` only composes them.
 *
 * Every selection sorts (score, flat index) pairs, so equal scores are
 * ordered by position and the result is the same for any thread count or
 * qsort implementation. Counts are round(sparsity * n): "50% of 7" prunes 4
 * (round half up), and what was pruned is returned so callers can report
 * exact sparsities instead of the requested ones. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "student.h"

/* A score and where it came from: a flat index into one tensor, which the
 * config bounds allow to exceed 2^32 entries (d_model 65536 x d_ff 2^20). */
typedef struct {
    double s;
    size_t i;
} scored;

/* Ascending by score, then by index; NaN sorts above everything (a NaN
 * weight is kept, so the damage stays visible instead of being hidden). */
static int scored_cmp(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    const int na = isnan(a->s), nb = isnan(b->s);
    if (na != nb) return na - nb;
    if (!na && a->s != b->s) return a->s < b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static size_t prune_count(double sparsity, size_t n) {
    if (!(sparsity > 0.0)) return 0;
    double k = floor(sparsity * (double)n + 0.5);
    return k >= (double)n ? n : (size_t)k;
}

/* ---------------------------------------------------------- statistics */

void student_colsumsq_add(double *acc, const float *x, int64_t rows, int cols) {
    /* Column-parallel, rows in order: the sum does not depend on the
     * thread count. */
#pragma omp parallel for schedule(static)
    for (int j = 0; j < cols; j++) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            const double v = x[r * cols + j];
            s += v * v;
        }
        acc[j] += s;
    }
}

/* ------------------------------------------------------- unstructured */

rt_status student_prune_magnitude(const float *w, size_t n, double sparsity, uint8_t *mask,
                                  size_t *pruned) {
    const size_t k = prune_count(sparsity, n);
    *pruned = 0;
    memset(mask, 1, n);
    if (k == 0) return RT_OK;
    scored *s = malloc(n * sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "prune: out of memory sorting %zu weights", n);
    for (size_t i = 0; i < n; i++) s[i] = (scored){fabs((double)w[i]), i};
    qsort(s, n, sizeof *s, scored_cmp);
    for (size_t i = 0; i < k; i++) mask[s[i].i] = 0;
    free(s);
    *pruned = k;
    return RT_OK;
}

rt_status student_prune_wanda(const float *w, int64_t in, int64_t out, const float *xnorm,
                              double sparsity, uint8_t *mask, size_t *pruned) {
    const size_t k = prune_count(sparsity, (size_t)in);
    const int nt = omp_get_max_threads();
    memset(mask, 1, (size_t)(in * out));
    *pruned = k * (size_t)out;
    if (k == 0) return RT_OK;
    scored *scratch = malloc((size_t)nt * (size_t)in * sizeof *scratch);
    if (!scratch)
        return rt_fail(RT_ERR_NOMEM, "prune: out of memory sorting %lld-row columns",
                       (long long)in);
    /* One output (a column of the stored [in, out] matrix) per iteration:
     * Wanda compares weights only within an output. */
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
    for (int64_t j = 0; j < out; j++) {
        scored *s = scratch + (size_t)omp_get_thread_num() * (size_t)in;
        for (int64_t i = 0; i < in; i++)
            s[i] = (scored){fabs((double)w[i * out + j]) * (double)xnorm[i], (size_t)i};
        qsort(s, (size_t)in, sizeof *s, scored_cmp);
        for (size_t r = 0; r < k; r++) mask[(int64_t)s[r].i * out + j] = 0;
    }
    free(scratch);
    return RT_OK;
}

void student_prune_nm(const float *w, int64_t in, int64_t out, int n, int m, uint8_t *mask,
                      size_t *pruned) {
    RT_ASSERT(n > 0 && n < m && m <= 64 && in % m == 0);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < out; j++) {
        for (int64_t g = 0; g < in; g += m) {
            float a[64];
            for (int t = 0; t < m; t++) a[t] = fabsf(w[(g + t) * out + j]);
            /* rank = how many group members sort before t (smaller, or
             * equal and earlier); the m - n lowest ranks are pruned. m is
             * at most 64, so the quadratic count is cheaper than a sort. */
            for (int t = 0; t < m; t++) {
                int rank = 0;
                for (int u = 0; u < m; u++)
                    rank += a[u] < a[t] || (a[u] == a[t] && u < t);
                mask[(g + t) * out + j] = rank >= m - n;
            }
        }
    }
    *pruned = (size_t)(in / m) * (size_t)(m - n) * (size_t)out;
}

rt_status student_prune_lowest(const double *score, int n, int k, uint8_t *keep) {
    RT_ASSERT(n > 0 && k >= 0 && k <= n);
    scored *s = malloc((size_t)n * sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "prune: out of memory ranking %d units", n);
    for (int i = 0; i < n; i++) s[i] = (scored){score[i], (size_t)i};
    qsort(s, (size_t)n, sizeof *s, scored_cmp);
    memset(keep, 1, (size_t)n);
    for (int i = 0; i < k; i++) keep[s[i].i] = 0;
    free(s);
    return RT_OK;
}

/* ------------------------------------------------------------ heads */

void student_head_scores(const float *qkvw, const float *projw, int C, int H, int hs,
                         const double *act_sq, double *score) {
    const size_t A = (size_t)H * hs; /* attention width */
    for (int h = 0; h < H; h++) {
        double in = 0.0, o = 0.0;
        if (act_sq) {
            for (int d = 0; d < hs; d++) in += act_sq[h * hs + d];
        } else {
            for (int r = 0; r < C; r++)
                for (int part = 0; part < 3; part++)
                    for (int d = 0; d < hs; d++) {
                        const double v = qkvw[(size_t)r * 3 * A + (size_t)part * A + h * hs + d];
                        in += v * v;
                    }
        }
        for (int d = 0; d < hs; d++)
            for (int c = 0; c < C; c++) {
                const double v = projw[(size_t)(h * hs + d) * C + c];
                o += v * v;
            }
        score[h] = sqrt(in) * sqrt(o);
    }
}

void student_head_masks(int C, int H, int hs, const uint8_t *keep, uint8_t *qkvw_mask,
                        uint8_t *qkvb_mask, uint8_t *projw_mask) {
    const int A = H * hs;
    for (int j = 0; j < 3 * A; j++) qkvb_mask[j] = keep[(j % A) / hs];
    for (int r = 0; r < C; r++) memcpy(qkvw_mask + (size_t)r * 3 * A, qkvb_mask, (size_t)3 * A);
    for (int r = 0; r < A; r++) memset(projw_mask + (size_t)r * C, keep[r / hs], (size_t)C);
}

/* The walk both structured shrinks share: every tensor of c's table is
 * copied unchanged into c2's block, except the block tensors whose slot k
 * (student_block_tensor) is in [k0, k1]; those go to gather(k, layer, src
 * tensor, dst tensor, ctx). */
typedef void (*shrink_gather)(int k, int layer, const float *s, float *d, const void *ctx);

static void shrink_walk(const student_config *c, const float *src, const student_config *c2,
                        float *dst, student_block_tensor k0, student_block_tensor k1,
                        shrink_gather gather, const void *ctx) {
    const int n = student_tensor_count(c);
    RT_ASSERT(student_tensor_count(c2) == n && c2->d_model == c->d_model &&
              c2->n_layer == c->n_layer);
    memset(dst, 0, student_block_floats(c2) * sizeof *dst);
    student_tensor t, t2;
    for (int i = 0; i < n; i++) {
        student_tensor_info(c, i, &t);
        student_tensor_info(c2, i, &t2);
        int l;
        const int k = student_block_slot(c, i, &l);
        if (k >= (int)k0 && k <= (int)k1) {
            gather(k, l, src + t.offset, dst + t2.offset, ctx);
        } else {
            RT_ASSERT(t.numel == t2.numel);
            memcpy(dst + t2.offset, src + t.offset, t.numel * sizeof *dst);
        }
    }
}

typedef struct {
    const uint8_t *keep; /* (n_layer, H) */
    int C, H, hs, A, A2;
} heads_ctx;

static void heads_gather(int k, int l, const float *s, float *d, const void *ctx) {
    const heads_ctx *x = ctx;
    const int C = x->C, H = x->H, hs = x->hs, A = x->A, A2 = x->A2;
    const uint8_t *kp = x->keep + (size_t)l * H;
    if (k == STUDENT_QKVW || k == STUDENT_QKVB) { /* c_attn weight [C, 3A] rows / bias [3A]: keep q, k, v columns */
        const int rows = k == STUDENT_QKVW ? C : 1;
        for (int r = 0; r < rows; r++) {
            int o = 0;
            for (int part = 0; part < 3; part++)
                for (int h = 0; h < H; h++)
                    if (kp[h]) {
                        memcpy(d + (size_t)r * 3 * A2 + o, s + (size_t)r * 3 * A + part * A + h * hs,
                               (size_t)hs * sizeof *d);
                        o += hs;
                    }
            RT_ASSERT(o == 3 * A2);
        }
    } else { /* attn.c_proj weight [A, C]: keep the head's rows */
        int o = 0;
        for (int h = 0; h < H; h++)
            if (kp[h]) {
                memcpy(d + (size_t)o * C, s + (size_t)h * hs * C, (size_t)hs * C * sizeof *d);
                o += hs;
            }
        RT_ASSERT(o == A2);
    }
}

void student_heads_shrink(const student_config *c, const float *src, const uint8_t *keep,
                          const student_config *c2, float *dst) {
    const heads_ctx x = {.keep = keep, .C = c->d_model, .H = c->n_head,
                         .hs = student_head_dim(c), .A = student_attn_width(c),
                         .A2 = student_attn_width(c2)};
    RT_ASSERT(student_head_dim(c2) == x.hs && c2->d_ff == c->d_ff);
    shrink_walk(c, src, c2, dst, STUDENT_QKVW, STUDENT_ATTPROJW, heads_gather, &x);
}

typedef struct {
    int C, A, A2;
} heads_pad_ctx;

static void heads_scatter(int k, int l, const float *s, float *d, const void *ctx) {
    (void)l;
    const heads_pad_ctx *x = ctx;
    const int C = x->C, A = x->A, A2 = x->A2;
    if (k == 2 || k == 3) { /* c_attn [C, 3A] -> [C, 3A2]: q, k, v each first A of A2 */
        const int rows = k == 2 ? C : 1;
        for (int r = 0; r < rows; r++)
            for (int part = 0; part < 3; part++)
                memcpy(d + (size_t)r * 3 * A2 + part * A2, s + (size_t)r * 3 * A + part * A,
                       (size_t)A * sizeof *d);
    } else { /* attn.c_proj [A, C] -> [A2, C]: the added rows stay zero */
        memcpy(d, s, (size_t)A * C * sizeof *d);
    }
}

void student_heads_pad(const student_config *c, const float *src, student_config *c2,
                       float *dst) {
    const int hs = student_head_dim(c);
    RT_ASSERT(c->d_model % hs == 0);
    *c2 = *c;
    c2->n_head = c->d_model / hs;
    c2->d_head = 0;
    if (!dst) return;
    const heads_pad_ctx x = {.C = c->d_model, .A = student_attn_width(c),
                             .A2 = student_attn_width(c2)};
    shrink_walk(c, src, c2, dst, 2, 4, heads_scatter, &x);
}

/* ------------------------------------------------------------- MLP */

void student_ffn_scores(const float *fcw, const float *projw, int C, int F, const double *act_sq,
                        double *score) {
#pragma omp parallel for schedule(static)
    for (int u = 0; u < F; u++) {
        double in = 0.0, o = 0.0;
        if (act_sq) {
            in = act_sq[u];
        } else {
            for (int r = 0; r < C; r++) {
                const double v = fcw[(size_t)r * F + u];
                in += v * v;
            }
        }
        for (int c = 0; c < C; c++) {
            const double v = projw[(size_t)u * C + c];
            o += v * v;
        }
        score[u] = sqrt(in) * sqrt(o);
    }
}

typedef struct {
    const uint8_t *keep; /* (n_layer, F) */
    int C, F, F2;
} ffn_ctx;

static void ffn_gather(int k, int l, const float *s, float *d, const void *ctx) {
    const ffn_ctx *x = ctx;
    const int C = x->C, F = x->F, F2 = x->F2;
    const uint8_t *kp = x->keep + (size_t)l * F;
    if (k == STUDENT_FCW) { /* c_fc weight [C, F]: keep columns */
        for (int r = 0; r < C; r++) {
            int o = 0;
            for (int u = 0; u < F; u++)
                if (kp[u]) d[(size_t)r * F2 + o++] = s[(size_t)r * F + u];
            RT_ASSERT(o == F2);
        }
    } else if (k == STUDENT_FCB) { /* c_fc bias [F] */
        int o = 0;
        for (int u = 0; u < F; u++)
            if (kp[u]) d[o++] = s[u];
        RT_ASSERT(o == F2);
    } else { /* c_proj weight [F, C]: keep rows */
        int o = 0;
        for (int u = 0; u < F; u++)
            if (kp[u]) memcpy(d + (size_t)(o++) * C, s + (size_t)u * C, (size_t)C * sizeof *d);
        RT_ASSERT(o == F2);
    }
}

void student_ffn_shrink(const student_config *c, const float *src, const uint8_t *keep,
                        const student_config *c2, float *dst) {
    const ffn_ctx x = {.keep = keep, .C = c->d_model, .F = c->d_ff, .F2 = c2->d_ff};
    shrink_walk(c, src, c2, dst, STUDENT_FCW, STUDENT_FCPROJW, ffn_gather, &x);
}

/* ------------------------------------------------------------ masks */

/* ------------------------------------------------------------ gradual */

int student_prune_gradual_due(int64_t start, int64_t end, int64_t every, int64_t step) {
    return step >= start && step <= end && ((step - start) % every == 0 || step == end);
}

double student_prune_gradual_sparsity(double final, int64_t start, int64_t end, int64_t every,
                                      int64_t step) {
    if (step < start) return 0.0;
    if (step >= end) return final;
    const int64_t t = start + (step - start) / every * every; /* the last update */
    const double r = 1.0 - (double)(t - start) / (double)(end - start);
    return final * (1.0 - r * r * r);
}

void student_apply_mask(float *params, const uint8_t *mask, size_t n) {
    /* A select rather than a multiply: 0 * inf or 0 * NaN would not be 0. */
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) params[i] = mask[i] ? params[i] : 0.0f;
}

size_t student_count_zeros(const float *x, size_t n) {
    size_t z = 0;
#pragma omp parallel for simd reduction(+ : z) schedule(static)
    for (size_t i = 0; i < n; i++) z += x[i] == 0.0f;
    return z;
}
