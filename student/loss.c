/* Vocabulary-level loss kernels: cross-entropy, the teacher's top-k soft
 * labels, the top-k + tail KL of distillation, and dense reverse-KL / JSD.
 *
 * Each kernel handles one position per loop iteration (OpenMP over
 * positions) and makes a few passes over that row of V logits while it is
 * in cache: max, exponentials (stored once, reused by the later passes),
 * then loss terms and gradient. The exponentials use student_expf so the
 * passes vectorize; at V = 8192 the kernels are bound by exp throughput,
 * which is why each row computes as few as it can (CE 1, dense KL 2 per
 * token). Sums over the vocabulary and over positions are accumulated in
 * double, and the student's tail mass is summed over the tokens outside the
 * top-k rather than taken as 1 - sum(top-k), which would lose most of its
 * digits when the top-k hold nearly all the probability.
 *
 * Scratch rows come from a student_loss_ws made once (a model owns one for
 * its vocabulary), one set per OpenMP thread, so a kernel allocates
 * nothing, cannot run out of memory halfway through a parallel region, and
 * reports what it rejects (a vocabulary wider than its workspace, label
 * ids outside it) as a status before any thread starts. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "student_internal.h"

/* Per thread: e, V floats (exponentials, JSD terms, the top-k heap's
 * values), idx, V int32 (the heap's ids), in, V bytes (top-k membership,
 * all zero between uses), blk, one float per STUDENT_WS_BLOCK tokens
 * (block maxima or sums of the label kernels), then `extra` bytes for the sampled soft labels
 * (labels.c: their draws and counts), 0 until student_loss_ws_reserve. */
struct student_loss_ws {
    int V, n_threads;
    size_t extra;  /* bytes per thread after the rows (ws_rows_bytes) */
    size_t stride; /* bytes per thread, a multiple of 64 */
    unsigned char *block;
};

/* Where blk starts in a thread's rows, and the rows' bytes (multiples of
 * 64). V < 2^31 and a few hundred threads cannot overflow a size_t. */
static size_t ws_blk_offset(size_t V) { return (V * 9 + 63) / 64 * 64; }
static size_t ws_rows_bytes(size_t V) {
    return (ws_blk_offset(V) + (size_t)student_ws_blocks((int)V) * sizeof(float) + 63) / 64 * 64;
}


rt_status student_loss_ws_create(int V, student_loss_ws **out) {
    *out = NULL;
    if (V < 1) return rt_fail(RT_ERR_ARGS, "student_loss_ws_create: vocabulary %d < 1", V);
    student_loss_ws *w = calloc(1, sizeof *w);
    if (!w) return rt_fail(RT_ERR_NOMEM, "student: out of memory for the loss workspace");
    w->V = V;
    w->n_threads = omp_get_max_threads();
    w->stride = ws_rows_bytes((size_t)V);
    w->block = rt_alloc_aligned(w->stride * (size_t)w->n_threads);
    if (!w->block) {
        free(w);
        return rt_fail(RT_ERR_NOMEM,
                       "student: out of memory for the loss workspace (%d threads x %d tokens)",
                       omp_get_max_threads(), V);
    }
    *out = w;
    return RT_OK;
}

rt_status student_loss_ws_reserve(student_loss_ws *w, size_t extra) {
    if (extra <= w->extra) return RT_OK;
    const size_t rows = ws_rows_bytes((size_t)w->V);
    size_t stride, total;
    if (__builtin_add_overflow(rows, (extra + 63) / 64 * 64, &stride) ||
        __builtin_mul_overflow(stride, (size_t)w->n_threads, &total))
        return rt_fail(RT_ERR_ARGS, "student: loss workspace of %zu extra bytes per thread is "
                       "too large", extra);
    unsigned char *b = rt_alloc_aligned(total);
    if (!b)
        return rt_fail(RT_ERR_NOMEM,
                       "student: out of memory for the loss workspace (%d threads x %zu bytes)",
                       w->n_threads, stride);
    /* zeroed, as `in` must be between uses */
    rt_free_aligned(w->block);
    w->block = b;
    w->stride = stride;
    w->extra = extra;
    return RT_OK;
}

void student_loss_ws_free(student_loss_ws *w) {
    if (!w) return;
    rt_free_aligned(w->block);
    free(w);
}

student_ws_rows student_loss_ws_thread(const student_loss_ws *w) {
    unsigned char *b = w->block + w->stride * (size_t)omp_get_thread_num();
    const size_t V = (size_t)w->V;
    return (student_ws_rows){(float *)b, (int32_t *)(b + 4 * V), b + 8 * V,
                             (float *)(b + ws_blk_offset(V)),
                             w->extra ? b + ws_rows_bytes(V) : NULL, w->extra};
}

int student_loss_ws_vocab(const student_loss_ws *w) { return w ? w->V : 0; }
int student_loss_ws_threads(const student_loss_ws *w) { return w->n_threads; }

/* The checks every kernel that uses the workspace makes before its
 * parallel region: rows fit, and label ids (n of them) lie in [0, V). */
static rt_status ws_check(const student_loss_ws *w, const char *who, int V, const int32_t *ids,
                          size_t n) {
    if (!w || V > w->V)
        return rt_fail(RT_ERR_ARGS, "%s: the loss workspace holds rows of %d tokens, not %d", who,
                       w ? w->V : 0, V);
    if (!ids) return RT_OK;
    size_t bad = n;
#pragma omp parallel for reduction(min : bad) schedule(static)
    for (size_t i = 0; i < n; i++)
        if ((uint32_t)ids[i] >= (uint32_t)V && i < bad) bad = i;
    if (bad < n)
        return rt_fail(RT_ERR_FORMAT, "%s: soft-label entry %zu has token id %d, outside the "
                       "vocabulary of %d", who, bad, ids[bad], V);
    return RT_OK;
}

static float row_max(const float *z, int V) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    return mx;
}

/* Vectorized sums are float within blocks of SUM_BLOCK terms and double
 * across blocks: GCC does not vectorize an `omp simd` loop that mixes a
 * double reduction with float math, and a float sum over a whole row of
 * 50k terms would lose digits. */
enum { SUM_BLOCK = 256 };

/* sum_j exp((z_j - mx) * invT). */
static double row_sumexp(const float *z, int V, float mx, float invT) {
    double s = 0.0;
    for (int j0 = 0; j0 < V; j0 += SUM_BLOCK) {
        const int j1 = j0 + SUM_BLOCK < V ? j0 + SUM_BLOCK : V;
        float b = 0.0f;
#pragma omp simd reduction(+ : b)
        for (int j = j0; j < j1; j++) b += student_expf((z[j] - mx) * invT);
        s += b;
    }
    return s;
}

/* e_j = exp((z_j - mx) * invT) stored in e, returns their sum: later
 * passes reuse e instead of recomputing exponentials. */
static double row_exp_store(float *e, const float *z, int V, float mx, float invT) {
    double s = 0.0;
    for (int j0 = 0; j0 < V; j0 += SUM_BLOCK) {
        const int j1 = j0 + SUM_BLOCK < V ? j0 + SUM_BLOCK : V;
        float b = 0.0f;
#pragma omp simd reduction(+ : b)
        for (int j = j0; j < j1; j++) {
            e[j] = student_expf((z[j] - mx) * invT);
            b += e[j];
        }
        s += b;
    }
    return s;
}

double student_loss_ce(const float *logits, const int32_t *targets, int n_pos, int V,
                       float *dlogits, float scale) {
    for (int i = 0; i < n_pos; i++) RT_ASSERT(targets[i] < V);
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int i = 0; i < n_pos; i++) {
        const float *z = logits + (size_t)i * V;
        float *d = dlogits ? dlogits + (size_t)i * V : NULL;
        const int tg = targets[i];
        if (tg < 0) {
            if (d) memset(d, 0, (size_t)V * sizeof *d);
            continue;
        }
        const float mx = row_max(z, V);
        if (!d) {
            total += (double)mx + log(row_sumexp(z, V, mx, 1.0f)) - (double)z[tg];
            continue;
        }
        /* the exponentials go straight into the output row, then scale */
        const double s = row_exp_store(d, z, V, mx, 1.0f);
        total += (double)mx + log(s) - (double)z[tg];
        const float f = (float)(scale / s);
#pragma omp simd
        for (int j = 0; j < V; j++) d[j] *= f;
        d[tg] -= scale;
    }
    return total;
}

/* ---------------------------------------------------------- teacher top-k */

/* Heap entry order: a ranks below b when its logit is smaller, or equal
 * with a larger id (so ties keep the lower id). */
static int ranks_below(float av, int32_t ai, float bv, int32_t bi) {
    return av < bv || (av == bv && ai > bi);
}

static void sift_down(float *hv, int32_t *hi, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ranks_below(hv[l], hi[l], hv[w], hi[w])) w = l;
        if (r < n && ranks_below(hv[r], hi[r], hv[w], hi[w])) w = r;
        if (w == i) return;
        float tv = hv[i];
        int32_t ti = hi[i];
        hv[i] = hv[w], hi[i] = hi[w], hv[w] = tv, hi[w] = ti;
        i = w;
    }
}

/* The k-th largest of a[0..n) (1 <= k <= n), which it reorders: Wirth's
 * selection, expected O(n). A NaN stops its scans like any value, so it
 * stays within a[0..n); the result is then not a true k-th largest, which
 * the caller's count of candidates catches (topk_heap_fill). */
static float kth_largest(float *a, int n, int k) {
    int l = 0, r = n - 1;
    const int t = k - 1;
    while (l < r) {
        const float x = a[t];
        int i = l, j = r;
        do {
            while (a[i] > x) i++;
            while (x > a[j]) j--;
            if (i <= j) {
                const float v = a[i];
                a[i] = a[j], a[j] = v;
                i++, j--;
            }
        } while (i <= j);
        if (j < t) l = i;
        if (t < i) r = j;
    }
    return a[t];
}

/* Rescales the sum so far when the maximum it runs against rises from *m
 * to bm (a few times per row; nothing was summed while *m = -inf). */
static void topk_raise_max(double *acc, float *m, float bm, float invT) {
    if (!(bm > *m)) return;
    const double f = *m == -INFINITY ? 0.0 : exp(((double)*m - (double)bm) * (double)invT);
#pragma omp simd
    for (int l = 0; l < STUDENT_WS_LANES; l++) acc[l] *= f;
    *m = bm;
}

/* One pass over a row of V logits, read from memory once: the maximum of
 * every STUDENT_WS_BLOCK logits into bmax, when gmax is not NULL the
 * STUDENT_WS_LANES maxima of 4 logits each (one lane) of every full block
 * into gmax, the row's maximum into *mx, and the
 * sum of exp((z - *mx) * invT), returned. The sum runs against the maximum
 * so far and is rescaled when it rises, so the exponentials are computed
 * while the block is in registers rather than in a second pass; its terms
 * differ from those of a sum against the final maximum by float rounding
 * only. Per lane, the four terms of a block are summed in float and the
 * blocks in double. Blocks of -inf add nothing. */
static double topk_scan_blocks(const float *z, int V, float invT, float *bmax, float *gmax,
                               float *mx) {
    double acc[STUDENT_WS_LANES] = {0};
    float m = -INFINITY;
    const int full = V / STUDENT_WS_BLOCK;
    for (int b = 0; b < full; b++) {
        const float *zb = z + (size_t)b * STUDENT_WS_BLOCK;
        float v[STUDENT_WS_LANES];
#pragma omp simd
        for (int l = 0; l < STUDENT_WS_LANES; l++) {
            const float a = zb[l + 16] > zb[l] ? zb[l + 16] : zb[l];
            const float c = zb[l + 48] > zb[l + 32] ? zb[l + 48] : zb[l + 32];
            v[l] = c > a ? c : a;
        }
        bmax[b] = student_lanes_max(v);
        if (gmax) memcpy(gmax + (size_t)b * STUDENT_WS_LANES, v, sizeof v);
        topk_raise_max(acc, &m, bmax[b], invT);
        if (m == -INFINITY) continue;
#pragma omp simd
        for (int l = 0; l < STUDENT_WS_LANES; l++)
            acc[l] += (double)(student_expf((zb[l] - m) * invT) +
                               student_expf((zb[l + 16] - m) * invT) +
                               student_expf((zb[l + 32] - m) * invT) +
                               student_expf((zb[l + 48] - m) * invT));
    }
    if (full * STUDENT_WS_BLOCK < V) { /* the last, shorter block */
        const float *zb = z + (size_t)full * STUDENT_WS_BLOCK;
        const int len = V - full * STUDENT_WS_BLOCK;
        bmax[full] = row_max(zb, len);
        topk_raise_max(acc, &m, bmax[full], invT);
        if (m > -INFINITY)
            for (int j = 0; j < len; j++) acc[0] += (double)student_expf((zb[j] - m) * invT);
    }
    double s = 0.0;
    for (int l = 0; l < STUDENT_WS_LANES; l++) s += acc[l];
    *mx = m;
    return s;
}

/* Fills the heap (hv, hi) with the k best logits >= theta of the blocks
 * whose maximum is >= theta, and returns how many candidates it saw (at
 * most k are kept; fewer than k means the heap is not full). Candidates
 * come in id order: the first k fill the heap, a later one enters when
 * strictly above the root (a tie ranks below: its id is larger). With
 * theta = -inf every logit, NaN included, is a candidate. */
static int topk_heap_fill(const float *z, int V, const float *bmax, float theta, int k, float *hv,
                          int32_t *hi) {
    int n = 0;
    const int nb = student_ws_blocks(V);
    for (int b = 0; b < nb; b++) {
        if (bmax[b] < theta) continue;
        const int j1 = (b + 1) * STUDENT_WS_BLOCK < V ? (b + 1) * STUDENT_WS_BLOCK : V;
        for (int j = b * STUDENT_WS_BLOCK; j < j1; j++) {
            if (z[j] < theta) continue;
            if (n < k) {
                /* push, then restore the heap by sifting up */
                int c = n++;
                hv[c] = z[j], hi[c] = j;
                while (c > 0) {
                    int par = (c - 1) / 2;
                    if (!ranks_below(hv[c], hi[c], hv[par], hi[par])) break;
                    float tv = hv[c];
                    int32_t ti = hi[c];
                    hv[c] = hv[par], hi[c] = hi[par], hv[par] = tv, hi[par] = ti;
                    c = par;
                }
            } else if (z[j] > hv[0]) {
                hv[0] = z[j], hi[0] = j;
                sift_down(hv, hi, k, 0);
            }
        }
    }
    return n;
}

rt_status student_teacher_topk(student_loss_ws *ws, const float *logits, int n_pos, int V, float T,
                               int k, int32_t *ids, float *logp, float *tail) {
    RT_ASSERT(T > 0.0f && k >= 1 && k <= V && (ids || k == V));
    RT_TRY(ws_check(ws, "student_teacher_topk", V, NULL, 0));
    const float invT = 1.0f / T;
#pragma omp parallel num_threads(ws->n_threads)
    {
        /* per-thread heap of the k best so far, worst at the root */
        const student_ws_rows r = student_loss_ws_thread(ws);
        float *hv = r.e;
        int32_t *hi = r.idx;
#pragma omp for schedule(static)
        for (int i = 0; i < n_pos; i++) {
            const float *z = logits + (size_t)i * V;
            int32_t *oi = ids ? ids + (size_t)i * k : NULL;
            float *op = logp + (size_t)i * k;
            if (k == V) {
                const float mx = row_max(z, V);
                const float logs = (float)log(row_sumexp(z, V, mx, invT));
                if (oi)
                    for (int j = 0; j < V; j++) oi[j] = j;
#pragma omp simd
                for (int j = 0; j < V; j++) op[j] = (z[j] - mx) * invT - logs;
                tail[i] = 0.0f;
                continue;
            }
            /* Prefilter: theta = the k-th largest block maximum. k blocks
             * hold a logit >= theta, so the top k are all >= theta and lie
             * in blocks whose maximum is >= theta: about k blocks, and
             * about k logits in them, instead of a heap fed by a scan of
             * the whole row (k ln(V / k) insertions on a row in random
             * order). With no more blocks than k, the same with the
             * maxima of 4 logits (16 per block), and with fewer than 2k
             * of those, every logit is a candidate. The maxima are
             * selected in the heap's row, free until then. */
            const int nb = student_ws_blocks(V);
            const int ng = V / STUDENT_WS_BLOCK * STUDENT_WS_LANES;
            const int by_groups = nb <= k && ng >= 2 * k; /* else the selection costs more */
            float mx;
            const double s = topk_scan_blocks(z, V, invT, r.blk, by_groups ? hv : NULL, &mx);
            float theta = -INFINITY;
            if (nb > k) {
                memcpy(hv, r.blk, (size_t)nb * sizeof *hv);
                theta = kth_largest(hv, nb, k);
            } else if (by_groups) {
                theta = kth_largest(hv, ng, k);
            }
            /* NaN logits can leave fewer than k candidates (a NaN may
             * or may not be a block maximum): then every logit is one */
            if (topk_heap_fill(z, V, r.blk, theta, k, hv, hi) < k)
                topk_heap_fill(z, V, r.blk, -INFINITY, k, hv, hi);
            const float logs = (float)log(s);
            /* pop the worst to the back: descending order */
            double s_top = 0.0;
            for (int c = k - 1; c >= 0; c--) {
                oi[c] = hi[0];
                op[c] = (hv[0] - mx) * invT - logs;
                s_top += (double)student_expf((hv[0] - mx) * invT);
                hv[0] = hv[c], hi[0] = hi[c];
                sift_down(hv, hi, c, 0);
            }
            double t = (s - s_top) / s;
            tail[i] = t > 0.0 ? (float)t : 0.0f;
        }
    }
    return RT_OK;
}

/* ------------------------------------------------------------- top-k KL */

/* One position of the top-k + tail KL: returns KL(p_T || q_T) and, if d,
 * ADDS cf * (q - p~) (cf = scale / T). id may be NULL when k == V; ids are
 * in [0, V) (ws_check). The thread's rows: e holds the row's exponentials
 * exp((z - max)/T), reused by every pass; in marks the top-k ids, so
 * q_tail is summed directly rather than as 1 - sum(top-k) (cancellation
 * when the top-k hold nearly all the mass). */
static double kd_row(const float *z, const int32_t *id, const float *lp, float tail_i, int k,
                     int V, float invT, float cf, float *d, const student_ws_rows *w) {
    float *e = w->e;
    /* dense with ids 0..V-1 in order (or none): contiguous passes */
    int in_order = !id;
    if (id && k == V) {
        int shuffled = 0;
#pragma omp simd reduction(| : shuffled)
        for (int j = 0; j < V; j++) shuffled |= id[j] != j;
        in_order = !shuffled;
    }
    const float mx = row_max(z, V);
    const double s = row_exp_store(e, z, V, mx, invT);
    const float logs = (float)log(s), invs = (float)(1.0 / s);
    double kl = 0.0;
    if (in_order) {
        /* one pass: KL terms p (log p - log q) and d += c (q - p) */
        for (int j0 = 0; j0 < V; j0 += SUM_BLOCK) {
            const int j1 = j0 + SUM_BLOCK < V ? j0 + SUM_BLOCK : V;
            float b = 0.0f;
            if (d) {
#pragma omp simd reduction(+ : b)
                for (int j = j0; j < j1; j++) {
                    const float p = student_expf(lp[j]);
                    b += p * (lp[j] - ((z[j] - mx) * invT - logs));
                    d[j] += cf * (e[j] * invs - p);
                }
            } else {
#pragma omp simd reduction(+ : b)
                for (int j = j0; j < j1; j++)
                    b += student_expf(lp[j]) * (lp[j] - ((z[j] - mx) * invT - logs));
            }
            kl += b;
        }
        return kl;
    }
    /* the k listed tokens: p (log p - log q); logp = -inf is padding (no
     * mass, possibly a repeated id) and is skipped here and below */
    for (int j0 = 0; j0 < k; j0 += SUM_BLOCK) {
        const int j1 = j0 + SUM_BLOCK < k ? j0 + SUM_BLOCK : k;
        float b = 0.0f;
#pragma omp simd reduction(+ : b)
        for (int j = j0; j < j1; j++)
            b += lp[j] > -INFINITY
                     ? student_expf(lp[j]) * (lp[j] - ((z[id[j]] - mx) * invT - logs))
                     : 0.0f;
        kl += b;
    }
    /* the tail bucket: the student's mass outside the ids; with no teacher
     * mass there (sampled rows) it enters neither the KL nor the gradient */
    double s_tail = 0.0;
    if (k < V && tail_i > 0.0f) {
        uint8_t *in = w->in;
        for (int j = 0; j < k; j++) in[id[j]] = 1;
        for (int j0 = 0; j0 < V; j0 += SUM_BLOCK) {
            const int j1 = j0 + SUM_BLOCK < V ? j0 + SUM_BLOCK : V;
            float b = 0.0f;
#pragma omp simd reduction(+ : b)
            for (int j = j0; j < j1; j++) b += in[j] ? 0.0f : e[j];
            s_tail += b;
        }
        for (int j = 0; j < k; j++) in[id[j]] = 0;
    }
    const double pt = tail_i > 0.0f ? tail_i : 0.0, q_tail = s_tail / s;
    /* q_tail > 0 whenever pt > 0 unless the student underflows there; then
     * the floor keeps the term finite */
    const double qt = q_tail > 1e-300 ? q_tail : 1e-300;
    if (pt > 0.0) kl += pt * (log(pt) - log(qt));
    if (!d) return kl;
    /* every token: c q_j (1 - tail/q_tail); the listed ones are then
     * corrected to c (q_j - p_j) */
    const double ratio = pt > 0.0 ? pt / qt : 0.0;
    const float f = (float)((double)cf * (1.0 - ratio) / s), rf = (float)ratio;
#pragma omp simd
    for (int j = 0; j < V; j++) d[j] += f * e[j];
    for (int j = 0; j < k; j++)
        if (lp[j] > -INFINITY)
            d[id[j]] += cf * (e[id[j]] * invs * rf - student_expf(lp[j]));
    return kl;
}

/* One position of student_loss_distill for a sparse row whose teacher
 * tail is 0 (every sampled row) and a gradient to write: the CE and KL
 * terms in three passes over the row instead of six. The tail bucket then
 * carries no mass, so the KL gradient is c (q - p~) with p~ = p on the
 * listed ids and 0 elsewhere: q for every token, then -c p at the ids.
 * Returns the KL; adds the CE term to *ce. */
static double distill_row_sampled(const float *z, int tg, const int32_t *id, const float *lp,
                                  int k, int V, float invT, float ce_scale, float cf, float *d,
                                  float *e, double *ce) {
    const float mx = row_max(z, V);
    /* both exponentials of a block while it is in registers */
    double s1 = 0.0, sT = 0.0;
    for (int j0 = 0; j0 < V; j0 += SUM_BLOCK) {
        const int j1 = j0 + SUM_BLOCK < V ? j0 + SUM_BLOCK : V;
        float b1 = 0.0f, bT = 0.0f;
#pragma omp simd reduction(+ : b1, bT)
        for (int j = j0; j < j1; j++) {
            const float t = z[j] - mx;
            d[j] = student_expf(t);
            e[j] = student_expf(t * invT);
            b1 += d[j];
            bT += e[j];
        }
        s1 += b1;
        sT += bT;
    }
    *ce += (double)mx + log(s1) - (double)z[tg];
    const float f1 = (float)(ce_scale / s1), fT = (float)(cf / sT), logs = (float)log(sT);
#pragma omp simd
    for (int j = 0; j < V; j++) d[j] = f1 * d[j] + fT * e[j];
    d[tg] -= ce_scale;
    double kl = 0.0;
    for (int j = 0; j < k; j++) {
        if (!(lp[j] > -INFINITY)) continue; /* padding: no mass */
        const float p = student_expf(lp[j]);
        kl += (double)p * (double)(lp[j] - ((z[id[j]] - mx) * invT - logs));
        d[id[j]] -= cf * p;
    }
    return kl;
}

rt_status student_loss_distill(student_loss_ws *ws, const float *logits, const int32_t *targets,
                               int n_pos, int V, float T, const int32_t *topk_ids,
                               const float *topk_logp, const float *tail, int k, float *dlogits,
                               float ce_scale, float kd_scale, double *ce_sum, double *kd_sum) {
    RT_ASSERT(T > 0.0f && k >= 1 && k <= V && (topk_ids || k == V) && (tail || k == V));
    for (int i = 0; i < n_pos; i++) RT_ASSERT(targets[i] < V);
    RT_TRY(ws_check(ws, "student_loss_distill", V, topk_ids, (size_t)n_pos * (size_t)k));
    const float invT = 1.0f / T;
    double ce = 0.0, kl = 0.0;
#pragma omp parallel reduction(+ : ce, kl) num_threads(ws->n_threads)
    {
        const student_ws_rows w = student_loss_ws_thread(ws);
#pragma omp for schedule(static)
        for (int i = 0; i < n_pos; i++) {
            /* the row stays in cache between the CE and KL passes, so logits
             * and dlogits cross memory once instead of twice */
            const float *z = logits + (size_t)i * V;
            float *d = dlogits ? dlogits + (size_t)i * V : NULL;
            const int tg = targets[i];
            if (d && tg >= 0 && k < V && !(tail && tail[i] > 0.0f)) {
                kl += distill_row_sampled(z, tg, topk_ids + (size_t)i * k,
                                          topk_logp + (size_t)i * k, k, V, invT, ce_scale,
                                          kd_scale * invT, d, w.e, &ce);
                continue;
            }
            if (tg < 0) {
                if (d) memset(d, 0, (size_t)V * sizeof *d);
            } else {
                const float mx = row_max(z, V);
                if (d) {
                    const double s = row_exp_store(d, z, V, mx, 1.0f);
                    ce += (double)mx + log(s) - (double)z[tg];
                    const float f = (float)(ce_scale / s);
#pragma omp simd
                    for (int j = 0; j < V; j++) d[j] *= f;
                    d[tg] -= ce_scale;
                } else {
                    ce += (double)mx + log(row_sumexp(z, V, mx, 1.0f)) - (double)z[tg];
                }
            }
            kl += kd_row(z, topk_ids ? topk_ids + (size_t)i * k : NULL, topk_logp + (size_t)i * k,
                         tail ? tail[i] : 0.0f, k, V, invT, kd_scale * invT, d, &w);
        }
    }
    *ce_sum = ce;
    if (kd_sum) *kd_sum = kl;
    return RT_OK;
}

/* ------------------------------------------------------- dense variants */

double student_loss_rkl(const float *logits, int n_pos, int V, float T, const float *teacher_logp,
                        float *dlogits, float scale) {
    RT_ASSERT(T > 0.0f);
    const float invT = 1.0f / T;
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int i = 0; i < n_pos; i++) {
        const float *z = logits + (size_t)i * V, *lp = teacher_logp + (size_t)i * V;
        const float mx = row_max(z, V);
        const double s = row_sumexp(z, V, mx, invT);
        const float logs = (float)log(s);
        /* KL(q||p) = sum q (log q - log p) */
        double kl = 0.0;
        for (int j0 = 0; j0 < V; j0 += SUM_BLOCK) {
            const int j1 = j0 + SUM_BLOCK < V ? j0 + SUM_BLOCK : V;
            float b = 0.0f;
#pragma omp simd reduction(+ : b)
            for (int j = j0; j < j1; j++) {
                float lq = (z[j] - mx) * invT - logs;
                b += student_expf(lq) * (lq - lp[j]);
            }
            kl += b;
        }
        total += kl;
        if (dlogits) {
            /* d/dz_m = (1/T) q_m (log q_m - log p_m - KL) */
            float *d = dlogits + (size_t)i * V;
            const float c = scale * invT, klf = (float)kl;
#pragma omp simd
            for (int j = 0; j < V; j++) {
                float lq = (z[j] - mx) * invT - logs;
                d[j] += c * student_expf(lq) * (lq - lp[j] - klf);
            }
        }
    }
    return total;
}

rt_status student_loss_jsd(student_loss_ws *ws, const float *logits, int n_pos, int V, float T,
                           const float *teacher_logp, float *dlogits, float scale, double *js_sum) {
    RT_ASSERT(T > 0.0f);
    RT_TRY(ws_check(ws, "student_loss_jsd", V, NULL, 0));
    const float invT = 1.0f / T;
    double total = 0.0;
#pragma omp parallel reduction(+ : total) num_threads(ws->n_threads)
    {
        float *g = student_loss_ws_thread(ws).e; /* 0.5 (log q - log m) per token */
#pragma omp for schedule(static)
        for (int i = 0; i < n_pos; i++) {
            const float *z = logits + (size_t)i * V, *lp = teacher_logp + (size_t)i * V;
            const float mx = row_max(z, V);
            const double s = row_sumexp(z, V, mx, invT);
            const float logs = (float)log(s);
            double js = 0.0, qg = 0.0;
            for (int j = 0; j < V; j++) {
                const float lq = (z[j] - mx) * invT - logs;
                const float q = student_expf(lq), p = student_expf(lp[j]);
                const float mm = 0.5f * (p + q);
                if (mm <= 0.0f) {
                    g[j] = 0.0f; /* both zero: no contribution, no gradient */
                    continue;
                }
                const float lm = logf(mm);
                /* 0 * log 0 = 0 for whichever side vanishes */
                if (p > 0.0f) js += 0.5 * (double)p * (double)(lp[j] - lm);
                if (q > 0.0f) js += 0.5 * (double)q * (double)(lq - lm);
                g[j] = 0.5f * (lq - lm);
                qg += (double)q * g[j];
            }
            total += js;
            if (dlogits) {
                /* d/dz_m = (1/T) q_m (g_m - sum_j q_j g_j) */
                float *d = dlogits + (size_t)i * V;
                const float c = scale * invT, qgf = (float)qg;
#pragma omp simd
                for (int j = 0; j < V; j++)
                    d[j] += c * student_expf((z[j] - mx) * invT - logs) * (g[j] - qgf);
            }
        }
    }
    *js_sum = total;
    return RT_OK;
}
