/* Low-rank factorization of linear weights (`retort prune --method
 * lowrank`, issue 11): a truncated SVD of each [in, out] weight W gives
 * factors W_a [in, r] and W_b [r, out] whose product is the best rank-r
 * approximation of W in the Frobenius norm (Eckart-Young), which the model
 * then stores and trains in place of W (params.c lays them out, model.c
 * runs them as two matmuls).
 *
 * The SVD is computed here, without LAPACK: the Gram matrix of the smaller
 * side (W^T W when out <= in, else W W^T) in double, its eigenvectors by
 * Householder tridiagonalization and implicit QL (EISPACK's tred2/tql2),
 * the singular values as square roots of its eigenvalues and the other
 * side's vectors as W v / sigma. Squaring the matrix squares its
 * condition number, so singular values below about 1e-8 of the largest
 * come out as noise; those are exactly the ones a truncation drops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "student.h"

/* Householder reduction of the symmetric n x n matrix in V (row-major,
 * replaced by the orthogonal transformation) to tridiagonal form: d the
 * diagonal, e[1..n-1] the subdiagonal. EISPACK's tred2 as JAMA writes it. */
static void tred2(int64_t n, double *V, double *d, double *e) {
#define Vx(i, j) V[(i) * n + (j)]
    for (int64_t j = 0; j < n; j++) d[j] = Vx(n - 1, j);
    for (int64_t i = n - 1; i > 0; i--) {
        double scale = 0.0, h = 0.0;
        for (int64_t k = 0; k < i; k++) scale += fabs(d[k]);
        if (scale == 0.0) {
            e[i] = d[i - 1];
            for (int64_t j = 0; j < i; j++) {
                d[j] = Vx(i - 1, j);
                Vx(i, j) = 0.0;
                Vx(j, i) = 0.0;
            }
        } else {
            for (int64_t k = 0; k < i; k++) {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            double f = d[i - 1], g = sqrt(h);
            if (f > 0) g = -g;
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (int64_t j = 0; j < i; j++) e[j] = 0.0;
            for (int64_t j = 0; j < i; j++) {
                f = d[j];
                Vx(j, i) = f;
                g = e[j] + Vx(j, j) * f;
                for (int64_t k = j + 1; k <= i - 1; k++) {
                    g += Vx(k, j) * d[k];
                    e[k] += Vx(k, j) * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for (int64_t j = 0; j < i; j++) {
                e[j] /= h;
                f += e[j] * d[j];
            }
            const double hh = f / (h + h);
            for (int64_t j = 0; j < i; j++) e[j] -= hh * d[j];
            for (int64_t j = 0; j < i; j++) {
                f = d[j];
                g = e[j];
                for (int64_t k = j; k <= i - 1; k++) Vx(k, j) -= f * e[k] + g * d[k];
                d[j] = Vx(i - 1, j);
                Vx(i, j) = 0.0;
            }
        }
        d[i] = h;
    }
    for (int64_t i = 0; i < n - 1; i++) { /* accumulate the transformations */
        Vx(n - 1, i) = Vx(i, i);
        Vx(i, i) = 1.0;
        const double h = d[i + 1];
        if (h != 0.0) {
            for (int64_t k = 0; k <= i; k++) d[k] = Vx(k, i + 1) / h;
            for (int64_t j = 0; j <= i; j++) {
                double g = 0.0;
                for (int64_t k = 0; k <= i; k++) g += Vx(k, i + 1) * Vx(k, j);
                for (int64_t k = 0; k <= i; k++) Vx(k, j) -= g * d[k];
            }
        }
        for (int64_t k = 0; k <= i; k++) Vx(k, i + 1) = 0.0;
    }
    for (int64_t j = 0; j < n; j++) {
        d[j] = Vx(n - 1, j);
        Vx(n - 1, j) = 0.0;
    }
    Vx(n - 1, n - 1) = 1.0;
    e[0] = 0.0;
#undef Vx
}

/* Implicit QL iterations on the tridiagonal (d, e) of tred2, rotating the
 * rows of W (W = tred2's V transposed, so eigenvector i ends as row i and
 * every rotation touches two contiguous rows). EISPACK's tql2 as JAMA
 * writes it, with an iteration bound. */
static rt_status tql2(int64_t n, double *W, double *d, double *e) {
    for (int64_t i = 1; i < n; i++) e[i - 1] = e[i];
    e[n - 1] = 0.0;
    double f = 0.0, tst1 = 0.0;
    const double eps = 0x1p-52;
    for (int64_t l = 0; l < n; l++) {
        tst1 = fmax(tst1, fabs(d[l]) + fabs(e[l]));
        int64_t m = l;
        while (m < n - 1 && fabs(e[m]) > eps * tst1) m++;
        if (m > l) {
            int iter = 0;
            do {
                if (++iter > 60)
                    return rt_fail(RT_ERR_INTERNAL, "lowrank: the eigenvalue iteration did not "
                                   "converge (value %lld of %lld)", (long long)l, (long long)n);
                double g = d[l], p = (d[l + 1] - g) / (2.0 * e[l]), r = hypot(p, 1.0);
                if (p < 0) r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                const double dl1 = d[l + 1];
                double h = g - d[l];
                for (int64_t i = l + 2; i < n; i++) d[i] -= h;
                f += h;
                p = d[m];
                double c = 1.0, c2 = c, c3 = c, s = 0.0, s2 = 0.0;
                const double el1 = e[l + 1];
                for (int64_t i = m - 1; i >= l; i--) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    double *wi = W + i * n, *wi1 = W + (i + 1) * n;
                    for (int64_t k = 0; k < n; k++) {
                        const double t = wi1[k];
                        wi1[k] = s * wi[k] + c * t;
                        wi[k] = c * wi[k] - s * t;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
            } while (fabs(e[l]) > eps * tst1);
        }
        d[l] += f;
        e[l] = 0.0;
    }
    return RT_OK;
}

/* Eigen-decomposition of the symmetric n x n matrix a (row-major, double;
 * destroyed): ev (n) the eigenvalues descending, vec (n x n, row-major)
 * with column i the unit eigenvector of ev[i]. Householder tridiagonal
 * reduction and implicit QL (O(n^3): 5 s at n = 768 on one loaded core;
 * cyclic Jacobi, tried first, took 180 s there). */
static rt_status sym_eig(double *a, int64_t n, double *ev, double *vec) {
    double *e = malloc((size_t)n * sizeof *e), *w = malloc((size_t)(n * n) * sizeof *w);
    int64_t *order = malloc((size_t)n * sizeof *order);
    rt_status st = RT_OK;
    if (!e || !w || !order) {
        st = rt_fail(RT_ERR_NOMEM, "lowrank: out of memory for a %lld x %lld eigenproblem",
                     (long long)n, (long long)n);
        goto cleanup;
    }
    tred2(n, a, ev, e);
    for (int64_t i = 0; i < n; i++) /* W = V^T: eigenvectors as rows */
        for (int64_t k = 0; k < n; k++) w[i * n + k] = a[k * n + i];
    if ((st = tql2(n, w, ev, e)) != RT_OK) goto cleanup;
    /* descending eigenvalues (ties by index: deterministic) */
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = 1; i < n; i++) { /* insertion sort: n is at most a few thousand */
        const int64_t o = order[i];
        int64_t j = i;
        while (j > 0 && ev[order[j - 1]] < ev[o]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = o;
    }
    for (int64_t i = 0; i < n; i++) {
        e[i] = ev[order[i]];
        for (int64_t k = 0; k < n; k++) vec[k * n + i] = w[order[i] * n + k];
    }
    memcpy(ev, e, (size_t)n * sizeof *ev);
cleanup:
    free(e);
    free(w);
    free(order);
    return st;
}

/* The Gram matrix of the smaller side of w [in, out] (n x n, n = min) and
 * its eigenvectors (columns of vec) and singular values sv (descending). */
static rt_status gram_eig(const float *w, int64_t in, int64_t out, double *sv, double *vec) {
    const int right = out <= in; /* W^T W (out x out), else W W^T (in x in) */
    const int64_t n = right ? out : in, m = right ? in : out;
    double *g = malloc((size_t)(n * n) * sizeof *g);
    if (!g) return rt_fail(RT_ERR_NOMEM, "lowrank: out of memory for a %lld x %lld Gram matrix",
                           (long long)n, (long long)n);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < m; k++)
                acc += right ? (double)w[k * out + i] * w[k * out + j]
                             : (double)w[i * out + k] * w[j * out + k];
            g[i * n + j] = g[j * n + i] = acc;
        }
    rt_status st = sym_eig(g, n, sv, vec);
    for (int64_t i = 0; st == RT_OK && i < n; i++) sv[i] = sqrt(sv[i] > 0.0 ? sv[i] : 0.0);
    free(g);
    return st;
}

rt_status student_svd_values(const float *w, int64_t in, int64_t out, double *sv) {
    const int64_t n = in < out ? in : out;
    double *vec = malloc((size_t)(n * n) * sizeof *vec);
    if (!vec) return rt_fail(RT_ERR_NOMEM, "lowrank: out of memory for singular vectors");
    rt_status st = gram_eig(w, in, out, sv, vec);
    free(vec);
    return st;
}

rt_status student_lowrank_factor(const float *w, int64_t in, int64_t out, int r, float *a,
                                 float *b, double *sv) {
    const int64_t n = in < out ? in : out;
    RT_ASSERT(r >= 1 && r <= n);
    double *vec = malloc((size_t)(n * n) * sizeof *vec), *s = malloc((size_t)n * sizeof *s);
    if (!vec || !s) {
        free(vec);
        free(s);
        return rt_fail(RT_ERR_NOMEM, "lowrank: out of memory for singular vectors");
    }
    rt_status st = gram_eig(w, in, out, s, vec);
    if (st == RT_OK) {
        /* balanced factors: W_a = U_r S^(1/2), W_b = S^(1/2) V_r^T, so both
         * start at the same scale for training. The eigenvectors are V (out
         * <= in: W_a = W V / sqrt(s), W_b = sqrt(s) V^T) or U (W_a = sqrt(s)
         * U, W_b = U^T W / sqrt(s)); a zero singular value gives zero rows
         * and columns, which is what it contributes. */
        const int right = out <= in;
        for (int i = 0; i < r; i++) {
            const double rs = sqrt(s[i]), inv = s[i] > 0.0 ? 1.0 / rs : 0.0;
            if (right) {
                for (int64_t j = 0; j < out; j++) b[(int64_t)i * out + j] = (float)(rs * vec[j * n + i]);
#pragma omp parallel for schedule(static)
                for (int64_t k = 0; k < in; k++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < out; j++) acc += (double)w[k * out + j] * vec[j * n + i];
                    a[k * r + i] = (float)(acc * inv);
                }
            } else {
                for (int64_t k = 0; k < in; k++) a[k * r + i] = (float)(rs * vec[k * n + i]);
#pragma omp parallel for schedule(static)
                for (int64_t j = 0; j < out; j++) {
                    double acc = 0.0;
                    for (int64_t k = 0; k < in; k++) acc += (double)w[k * out + j] * vec[k * n + i];
                    b[(int64_t)i * out + j] = (float)(acc * inv);
                }
            }
        }
        if (sv) memcpy(sv, s, (size_t)n * sizeof *sv);
    }
    free(vec);
    free(s);
    return st;
}

int student_lowrank_energy_rank(const double *sv, int64_t n, double energy) {
    double total = 0.0, acc = 0.0;
    for (int64_t i = 0; i < n; i++) total += sv[i] * sv[i];
    if (!(total > 0.0)) return 1;
    for (int64_t i = 0; i < n; i++) {
        acc += sv[i] * sv[i];
        /* a relative 1e-12 of slack: energy 1 is reached at the last
         * nonzero value, not lost to rounding of the sum */
        if (acc >= energy * total * (1.0 - 1e-12)) return (int)(i + 1);
    }
    return (int)n;
}

void student_lowrank_merge(const student_config *c, const float *src, student_config *c2,
                           float *dst) {
    *c2 = *c;
    for (int k = 0; k < STUDENT_LIN_N; k++) c2->rank[k] = 0;
    if (!dst) return;
    memset(dst, 0, student_block_floats(c2) * sizeof *dst);
    const int n2 = student_tensor_count(c2), n = student_tensor_count(c);
    for (int i = 0; i < n2; i++) { /* c2's table is c's without the second factors */
        student_tensor t2, t;
        student_tensor_info(c2, i, &t2);
        student_tensor_info(c, i < n2 - 2 ? i : i + n - n2, &t); /* ln_f: after them in c */
        int l;
        const int k = student_prune_target(c2, i, &l);
        if (k < 0 || c->rank[k] == 0) {
            memcpy(dst + t2.offset, src + t.offset, t.numel * sizeof *dst);
            continue;
        }
        student_tensor tb;
        student_tensor_info(c, student_linear_factor(c, l, (student_linear)k), &tb);
        const int64_t in = t2.shape[0], out = t2.shape[1], r = c->rank[k];
        const float *wa = src + t.offset, *wb = src + tb.offset;
        float *w = dst + t2.offset;
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < in; row++)
            for (int64_t j = 0; j < out; j++) {
                double acc = 0.0;
                for (int64_t q = 0; q < r; q++) acc += (double)wa[row * r + q] * wb[q * out + j];
                w[row * out + j] = (float)acc;
            }
    }
}

/* The activation weights of linear k of block l: s_i = sqrt(act_sq_i), the
 * input's RMS up to a constant, floored at 1e-6 of the largest so that an
 * input never seen keeps a (tiny) weight; NULL without statistics. */
static float *act_weights(const student_config *c, const double *act_sq, int l, int k,
                          int64_t in) {
    if (!act_sq) return NULL;
    float *s = malloc((size_t)in * sizeof *s);
    if (!s) return NULL;
    const double *a = student_prune_stats_at(c, act_sq, l, (student_linear)k);
    double mx = 0.0;
    for (int64_t i = 0; i < in; i++) mx = fmax(mx, sqrt(a[i]));
    for (int64_t i = 0; i < in; i++)
        s[i] = (float)(mx > 0.0 ? fmax(sqrt(a[i]), 1e-6 * mx) : 1.0);
    return s;
}

/* w (in, out) with row i scaled by s[i], into a new buffer. */
static float *scale_rows(const float *w, int64_t in, int64_t out, const float *s) {
    float *ws = malloc((size_t)(in * out) * sizeof *ws);
    if (!ws) return NULL;
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = 0; j < out; j++) ws[i * out + j] = s[i] * w[i * out + j];
    return ws;
}

rt_status student_lowrank_apply(const student_config *c, const float *src,
                                 const student_config *c2, const double *act_sq, float *dst,
                                 student_lowrank_stat *stats) {
    RT_ASSERT(!student_is_lowrank(c));
    memset(dst, 0, student_block_floats(c2) * sizeof *dst);
    const int n = student_tensor_count(c), n2 = student_tensor_count(c2);
    for (int i = 0; i < n; i++) { /* c2's table is c's with the second factors added */
        student_tensor t, t2;
        student_tensor_info(c, i, &t);
        student_tensor_info(c2, i < n - 2 ? i : i + n2 - n, &t2); /* ln_f: after them in c2 */
        int l;
        const int k = student_prune_target(c, i, &l);
        if (k < 0 || c2->rank[k] == 0) {
            memcpy(dst + t2.offset, src + t.offset, t.numel * sizeof *dst);
            continue;
        }
        student_tensor tb;
        student_tensor_info(c2, student_linear_factor(c2, l, (student_linear)k), &tb);
        const int64_t in = t.shape[0], out = t.shape[1], nsv = in < out ? in : out;
        double *sv = malloc((size_t)nsv * sizeof *sv);
        float *s = act_weights(c, act_sq, l, k, in), *ws = s ? scale_rows(src + t.offset, in, out, s)
                                                            : NULL;
        if (!sv || (act_sq && (!s || !ws))) {
            free(sv), free(s), free(ws);
            return rt_fail(RT_ERR_NOMEM, "lowrank: out of memory for singular values");
        }
        /* activation-weighted: factor diag(s) W, then W_a = diag(1/s) (diag(s) W)_a */
        float *wa = dst + t2.offset;
        rt_status st = student_lowrank_factor(ws ? ws : src + t.offset, in, out, c2->rank[k], wa,
                                              dst + tb.offset, sv);
        for (int64_t row = 0; s && row < in; row++)
            for (int q = 0; q < c2->rank[k]; q++) wa[row * c2->rank[k] + q] /= s[row];
        free(s);
        free(ws);
        if (st == RT_OK && stats) {
            student_lowrank_stat *fig = &stats[l * STUDENT_LIN_N + k];
            double kept = 0.0, all = 0.0;
            for (int64_t q = 0; q < nsv; q++) {
                all += sv[q] * sv[q];
                if (q < c2->rank[k]) kept += sv[q] * sv[q];
            }
            fig->rank = c2->rank[k];
            fig->energy = all > 0.0 ? kept / all : 1.0;
            fig->rel_error = all > 0.0 ? sqrt((all - kept > 0.0 ? all - kept : 0.0) / all) : 0.0;
        }
        free(sv);
        if (st != RT_OK) return st;
    }
    return RT_OK;
}

rt_status student_lowrank_choose(const student_config *c, const float *params,
                                 const student_lowrank_opts *o, const double *act_sq,
                                 student_config *c2, int wanted[STUDENT_LIN_N]) {
    *c2 = *c;
    if (student_is_lowrank(c))
        return rt_fail(RT_ERR_UNSUPPORTED, "lowrank: the model is low-rank already");
    const int by = (o->rank > 0) + (o->rank_ratio > 0.0) + (o->energy > 0.0) +
                   (o->param_ratio > 0.0);
    if (by != 1)
        return rt_fail(RT_ERR_ARGS, "prune: --method lowrank takes exactly one of --rank, "
                       "--rank-ratio, --energy and --param-ratio");
    if (o->param_ratio > 1.0)
        return rt_fail(RT_ERR_ARGS, "prune: --param-ratio %g is outside (0, 1] (the share of "
                       "each dense weight's parameters the factors may hold)", o->param_ratio);
    if (o->rank_ratio > 1.0)
        return rt_fail(RT_ERR_ARGS, "prune: --rank-ratio %g asks for a rank above min(in, out); "
                       "it must be in (0, 1]", o->rank_ratio);
    if (o->energy > 1.0)
        return rt_fail(RT_ERR_ARGS, "prune: --energy %g is outside (0, 1] (the share of each "
                       "weight's squared Frobenius norm to keep)", o->energy);
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        wanted[k] = 0;
        c2->rank[k] = 0;
        if (!(o->linears & (1u << k))) continue;
        int64_t in, out;
        student_linear_shape(c, (student_linear)k, &in, &out);
        const int64_t mn = in < out ? in : out;
        int64_t r = 0;
        if (o->rank > 0) {
            if (o->rank > mn)
                return rt_fail(RT_ERR_ARGS, "prune: --rank %d is above min(in, out) = %lld of %s "
                               "[%lld, %lld]", o->rank, (long long)mn,
                               student_linear_name((student_linear)k), (long long)in,
                               (long long)out);
            r = o->rank;
        } else if (o->rank_ratio > 0.0) {
            r = (int64_t)floor(o->rank_ratio * (double)mn + 0.5);
            r = r < 1 ? 1 : r;
        } else if (o->param_ratio > 0.0) {
            r = (int64_t)floor(o->param_ratio * (double)in * (double)out / (double)(in + out));
            r = r < 1 ? 1 : r > mn ? mn : r;
        } else { /* the rank every layer needs to keep `energy` of its norm */
            double *sv = malloc((size_t)mn * sizeof *sv);
            if (!sv) return rt_fail(RT_ERR_NOMEM, "lowrank: out of memory for singular values");
            for (int l = 0; l < c->n_layer; l++) {
                student_tensor t;
                student_tensor_info(c, student_linear_tensor(c, l, (student_linear)k), &t);
                float *s = act_weights(c, act_sq, l, k, in),
                      *ws = s ? scale_rows(params + t.offset, in, out, s) : NULL;
                rt_status st = act_sq && !ws ? rt_fail(RT_ERR_NOMEM, "lowrank: out of memory")
                                             : student_svd_values(ws ? ws : params + t.offset,
                                                                  in, out, sv);
                free(s);
                free(ws);
                if (st != RT_OK) {
                    free(sv);
                    return st;
                }
                const int rl = student_lowrank_energy_rank(sv, mn, o->energy);
                r = rl > r ? rl : r;
            }
            free(sv);
        }
        wanted[k] = (int)r;
        /* factors of r (in + out) values must be smaller than in * out */
        if (r * (in + out) < in * out) c2->rank[k] = (int)r;
    }
    return RT_OK;
}
