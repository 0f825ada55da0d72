/* Weight sharing (Deep Compression, Han et al. 2016): every linear weight
 * becomes a small codebook of shared values plus, per weight, the index of
 * its value; `retort export --codebook 16|256` stores 4- or 8-bit indices
 * and the deploy reader decodes them back into the f32 block at load.
 *
 * The clustering is 1-D k-means (Lloyd's algorithm) with the linear
 * initialization the paper found best (centroids evenly spaced between the
 * minimum and the maximum, which keeps the rare large weights
 * representable). In one dimension every cluster is a run of the sorted
 * values, so each iteration only moves k - 1 boundaries (a binary search
 * each) and takes the means from prefix sums: after one sort the
 * iterations cost O(k log n), and the loop runs until the partition stops
 * changing. The result is deterministic: one sort, sums in a fixed order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "student.h"

enum { KMEANS_MAX_ITERS = 1000 };

static int float_cmp(const void *pa, const void *pb) {
    const float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* The number of sorted values s[0 .. n) that are <= v. */
static size_t count_le(const float *s, size_t n, float v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (s[mid] <= v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Cluster j of value v: the first j with v <= (c[j] + c[j+1]) / 2. */
static int nearest(const float *c, int k, float v) {
    int lo = 0, hi = k - 1; /* answer in [lo, hi] */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (v <= 0.5f * (c[mid] + c[mid + 1])) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

rt_status student_kmeans_1d(const float *x, size_t n, int k, float *centroids, uint8_t *idx) {
    RT_ASSERT(k >= 1 && k <= 256 && n >= 1);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return rt_fail(RT_ERR_ARGS, "codebook: value %zu is %g; k-means needs finite values",
                           i, (double)x[i]);
    float *s = malloc(n * sizeof *s);
    double *pre = malloc((n + 1) * sizeof *pre);
    size_t *b = malloc(2 * (size_t)k * sizeof *b), *prev = b ? b + k : NULL;
    if (!s || !pre || !b) {
        free(s), free(pre), free(b);
        return rt_fail(RT_ERR_NOMEM, "codebook: out of memory clustering %zu values", n);
    }
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, float_cmp);
    pre[0] = 0.0;
    for (size_t i = 0; i < n; i++) pre[i + 1] = pre[i] + (double)s[i];
    const float lo = s[0], hi = s[n - 1];
    /* at most k distinct values (a codebook already, e.g. after shared-
     * weight fine-tuning): they are the centroids, the optimum with zero
     * error, which Lloyd's iterations from the linear start need not find */
    int d = 0;
    for (size_t i = 0; i < n && d <= k; i++)
        if (i == 0 || s[i] != s[i - 1]) s[d++] = s[i];
    if (d <= k) {
        for (int j = 0; j < k; j++) centroids[j] = s[j < d ? j : d - 1];
        for (size_t i = 0; i < n; i++) { /* the equal one: no midpoint rounding */
            int a = 0, z = d - 1;
            while (a < z) {
                const int mid = (a + z) / 2;
                if (centroids[mid] < x[i]) a = mid + 1;
                else z = mid;
            }
            idx[i] = (uint8_t)a;
        }
        free(s), free(pre), free(b);
        return RT_OK;
    }
    /* s was compacted up to d > k entries: sort it again in full */
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, float_cmp);
    for (int j = 0; j < k; j++)
        centroids[j] = k == 1 ? (float)(pre[n] / (double)n)
                              : lo + (hi - lo) * (float)j / (float)(k - 1);
    /* b[j]: end of cluster j in s (cluster j is [b[j-1], b[j]), b[-1] = 0) */
    for (int it = 0; it < KMEANS_MAX_ITERS; it++) {
        for (int j = 0; j + 1 < k; j++)
            b[j] = count_le(s, n, 0.5f * (centroids[j] + centroids[j + 1]));
        b[k - 1] = n;
        if (it > 0 && memcmp(b, prev, (size_t)k * sizeof *b) == 0) break;
        size_t start = 0;
        for (int j = 0; j < k; j++) {
            if (b[j] > start) /* an empty cluster keeps its value */
                centroids[j] = (float)((pre[b[j]] - pre[start]) / (double)(b[j] - start));
            start = b[j];
        }
        memcpy(prev, b, (size_t)k * sizeof *b);
    }
    for (size_t i = 0; i < n; i++) idx[i] = (uint8_t)nearest(centroids, k, x[i]);
    free(s);
    free(pre);
    free(b);
    return RT_OK;
}

rt_status student_codebook_weight(const float *w, int64_t in, int64_t out, int k, int per_channel,
                                  float *centroids, uint8_t *idx) {
    if (!per_channel) return student_kmeans_1d(w, (size_t)(in * out), k, centroids, idx);
    float *col = malloc((size_t)in * sizeof *col);
    uint8_t *ci = malloc((size_t)in);
    rt_status st = RT_OK;
    if (!col || !ci) st = rt_fail(RT_ERR_NOMEM, "codebook: out of memory for a column of %lld",
                                  (long long)in);
    for (int64_t j = 0; st == RT_OK && j < out; j++) {
        for (int64_t i = 0; i < in; i++) col[i] = w[i * out + j];
        st = student_kmeans_1d(col, (size_t)in, k, centroids + j * k, ci);
        for (int64_t i = 0; st == RT_OK && i < in; i++) idx[i * out + j] = ci[i];
    }
    free(col);
    free(ci);
    return st;
}

/* ------------------------------------------------ shared-weight training */

/* Clusters by exact value of every linear weight: ids (one per weight of
 * those tensors, in table order) and, per tensor, its cluster count. */
struct student_shared {
    int n;                  /* linear weight tensors */
    size_t *offset, *numel; /* (n) in the parameter block */
    int *k;                 /* (n) distinct values */
    uint16_t *id;           /* (sum of numel) cluster of each weight */
    double *sums;           /* (max k) scratch */
    int kmax;
};

typedef struct {
    float v;
    uint32_t i;
} valued;

static int valued_cmp(const void *pa, const void *pb) {
    const valued *a = pa, *b = pb;
    if (a->v != b->v) return a->v < b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

void student_shared_free(student_shared *s) {
    if (!s) return;
    free(s->offset);
    free(s->numel);
    free(s->k);
    free(s->id);
    free(s->sums);
    free(s);
}

rt_status student_shared_create(const student_config *c, const float *params,
                                student_shared **out) {
    rt_status st = RT_OK;
    *out = NULL;
    student_shared *s = calloc(1, sizeof *s);
    const int nt = student_tensor_count(c);
    size_t total = 0, maxn = 0;
    valued *sorted = NULL;
    if (!s) goto nomem;
    s->offset = calloc((size_t)nt, sizeof *s->offset);
    s->numel = calloc((size_t)nt, sizeof *s->numel);
    s->k = calloc((size_t)nt, sizeof *s->k);
    if (!s->offset || !s->numel || !s->k) goto nomem;
    for (int i = 0; i < nt; i++) {
        if (student_prune_target(c, i, NULL) < 0) continue;
        student_tensor t;
        student_tensor_info(c, i, &t);
        if (t.numel > UINT32_MAX) {
            st = rt_fail(RT_ERR_ARGS, "shared weights: %s has more than 2^32 entries", t.name);
            goto fail;
        }
        s->offset[s->n] = t.offset, s->numel[s->n] = t.numel, s->n++;
        total += t.numel;
        maxn = t.numel > maxn ? t.numel : maxn;
    }
    s->id = malloc(total * sizeof *s->id);
    sorted = malloc(maxn * sizeof *sorted);
    if (!s->id || !sorted) goto nomem;
    size_t base = 0;
    for (int j = 0; j < s->n; j++) {
        const float *w = params + s->offset[j];
        for (size_t e = 0; e < s->numel[j]; e++) sorted[e] = (valued){w[e], (uint32_t)e};
        qsort(sorted, s->numel[j], sizeof *sorted, valued_cmp);
        int k = 0;
        for (size_t e = 0; e < s->numel[j]; e++) {
            if (e > 0 && sorted[e].v != sorted[e - 1].v) k++;
            if (k >= 65536) {
                student_tensor t;
                for (int i = 0; i < nt; i++) { /* its name, for the message */
                    student_tensor_info(c, i, &t);
                    if (t.offset == s->offset[j]) break;
                }
                st = rt_fail(RT_ERR_ARGS, "shared weights: %s has more than 65536 distinct values; "
                             "start from a weight-shared model (retort export --codebook)", t.name);
                goto fail;
            }
            s->id[base + sorted[e].i] = (uint16_t)k;
        }
        s->k[j] = k + 1;
        s->kmax = s->k[j] > s->kmax ? s->k[j] : s->kmax;
        base += s->numel[j];
    }
    s->sums = malloc((size_t)s->kmax * sizeof *s->sums);
    if (!s->sums) goto nomem;
    free(sorted);
    *out = s;
    return RT_OK;
nomem:
    st = rt_fail(RT_ERR_NOMEM, "shared weights: out of memory for the clusters");
fail:
    free(sorted);
    student_shared_free(s);
    return st;
}

int student_shared_max_values(const student_shared *s) { return s->kmax; }

void student_shared_grads(student_shared *s, float *grads) {
    size_t base = 0;
    for (int j = 0; j < s->n; j++) {
        float *g = grads + s->offset[j];
        const uint16_t *id = s->id + base;
        memset(s->sums, 0, (size_t)s->k[j] * sizeof *s->sums);
        for (size_t e = 0; e < s->numel[j]; e++) s->sums[id[e]] += g[e];
        for (size_t e = 0; e < s->numel[j]; e++) g[e] = (float)s->sums[id[e]];
        base += s->numel[j];
    }
}
