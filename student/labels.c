/* Sampled soft labels: the teacher side of the `sample` and `topk+sample`
 * label schemes.
 *
 * Top-k truncation is a biased estimate of the teacher's distribution: the
 * tail bucket carries the tail's total mass but not its shape, so the
 * student's soft-label gradient differs from the dense one in expectation.
 * Drawing n tokens from the teacher's p = softmax(z / T) and sending the
 * distinct ones with their counts gives an empirical distribution p^ with
 * E[p^] = p, and the KL gradient (q - p^) / T is linear in p^, so it equals
 * the dense gradient in expectation (random-sampling KD; Anshumann et al.,
 * "Sparse Logit Sampling", ACL 2025). The stratified variant keeps the k
 * largest probabilities exactly and samples only the tail, with the tail's
 * mass: same unbiasedness, lower variance where the teacher is peaked.
 *
 * Counts travel as log-probabilities of the empirical distribution,
 * log(mass * count / n), in the same (ids, logp) rows as top-k labels, so
 * the student's one KL kernel (loss.c) serves every sparse scheme; rows are
 * padded to a fixed width with logp = -inf (no mass), which the kernel
 * skips. The draws of a position come from the splitmix64 stream of its
 * seed (data/rt_rand.h), which the trainer derives from (seed, step, window,
 * position): a run, its resume and a label cache draw the same tokens. */
#include <math.h>
#include <stdlib.h>

#include "rt_rand.h"
#include "student_internal.h"

typedef struct {
    int32_t id, count;
} label_count;

/* count descending, then id ascending: a total order, so qsort is
 * deterministic */
static int by_count(const void *a, const void *b) {
    const label_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Per-thread scratch, from the loss workspace: e (V) exponentials, in (V)
 * top-k marks (all zero between uses), blk (one per STUDENT_WS_BLOCK
 * tokens) each block's mass outside the marks, u (n) draws, c (n)
 * distinct tokens with counts. */
typedef struct {
    float *e;
    uint8_t *in;
    float *blk;
    double *u;
    label_count *c;
} sample_scratch;

/* e = exp((z - mx) * invT) for the V logits of a row, the sum of each
 * block into blk (float sums of 64 terms), returning the row's sum
 * (double over blocks). */
static double sample_exps(const float *z, int V, float mx, float invT, const sample_scratch *w) {
    _Static_assert(STUDENT_WS_BLOCK == 64 && STUDENT_WS_LANES == 16, "four vectors of 16");
    float *restrict e = w->e, *restrict blk = w->blk;
    double all = 0.0;
    const int full = V / STUDENT_WS_BLOCK;
    for (int b = 0; b < full; b++) {
        const float *zb = z + (size_t)b * STUDENT_WS_BLOCK;
        float *eb = e + (size_t)b * STUDENT_WS_BLOCK;
        float ea[STUDENT_WS_LANES];
        /* the block's four vectors, written out: GCC does not vectorize
         * the lanes around an inner loop over them */
#pragma omp simd
        for (int l = 0; l < STUDENT_WS_LANES; l++) {
            const float x0 = student_expf((zb[l] - mx) * invT);
            const float x1 = student_expf((zb[l + 16] - mx) * invT);
            const float x2 = student_expf((zb[l + 32] - mx) * invT);
            const float x3 = student_expf((zb[l + 48] - mx) * invT);
            eb[l] = x0, eb[l + 16] = x1, eb[l + 32] = x2, eb[l + 48] = x3;
            ea[l] = (x0 + x1) + (x2 + x3);
        }
        blk[b] = student_lanes_sum(ea);
        all += (double)blk[b];
    }
    if (full * STUDENT_WS_BLOCK < V) { /* the last, shorter block */
        float sa = 0.0f;
        for (int j = full * STUDENT_WS_BLOCK; j < V; j++) {
            e[j] = student_expf((z[j] - mx) * invT);
            sa += e[j];
        }
        blk[full] = sa;
        all += (double)sa;
    }
    return all;
}

/* One position: see student_teacher_sample. The draws u (sorted, in (0,
 * s_out]) are inverted through the cumulative mass outside the marks,
 * block by block: a block is entered only when a draw falls below the
 * running sum plus its blk, and within it draw u goes to the first token
 * whose partial sum reaches it. The block's own total (blk) bounds every
 * partial sum inside it, and what rounding leaves over goes to the
 * block's last token with mass, so every draw lands on a token with
 * mass, in the block the block sums assign it to. (The sums differ from
 * one running sum over the row by rounding: a draw within that of a
 * boundary between two tokens may go to the other one.) */
static void sample_row(const float *z, int V, float invT, int k, const int32_t *tk_ids,
                       const float *tk_logp, int n, uint64_t seed, int32_t *ids, float *logp,
                       const sample_scratch *w) {
    const int W = k + n;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < k; j++) {
        ids[j] = tk_ids[j];
        logp[j] = tk_logp[j];
        w->in[tk_ids[j]] = 1;
    }
    const double s = sample_exps(z, V, mx, invT, w);
    /* the blocks of the exact entries keep only the mass outside them,
     * summed again rather than subtracted (no cancellation) */
    for (int t = 0; t < k; t++) {
        const int b = tk_ids[t] / STUDENT_WS_BLOCK;
        const int j1 = (b + 1) * STUDENT_WS_BLOCK < V ? (b + 1) * STUDENT_WS_BLOCK : V;
        float so = 0.0f;
        for (int j = b * STUDENT_WS_BLOCK; j < j1; j++) so += w->in[j] ? 0.0f : w->e[j];
        w->blk[b] = so;
    }
    const int nb = student_ws_blocks(V);
    double s_out = 0.0;
    for (int b = 0; b < nb; b++) s_out += (double)w->blk[b];
    int n_dist = 0;
    if (s_out > 0.0) {
        uint64_t st = seed;
        for (int i = 0; i < n; i++) w->u[i] = rt_uniform01(&st) * s_out; /* (0, s_out] */
        qsort(w->u, (size_t)n, sizeof *w->u, by_value);
        double cum = 0.0; /* the sum of blk before block b, added as s_out was */
        int i = 0;
        for (int b = 0; b < nb && i < n; b++) {
            const double hi = cum + (double)w->blk[b];
            if (w->blk[b] > 0.0f && w->u[i] <= hi) {
                const int j1 = (b + 1) * STUDENT_WS_BLOCK < V ? (b + 1) * STUDENT_WS_BLOCK : V;
                double acc = cum;
                int last = -1;
                for (int j = b * STUDENT_WS_BLOCK; j < j1 && i < n && w->u[i] <= hi; j++) {
                    if (w->in[j] || w->e[j] <= 0.0f) continue;
                    acc += w->e[j];
                    last = j;
                    int c = 0;
                    while (i < n && w->u[i] <= acc && w->u[i] <= hi) i++, c++;
                    if (c) w->c[n_dist++] = (label_count){j, c};
                }
                /* draws the partial sums left short of the block's total:
                 * the loop then saw the whole block, which has mass */
                int c = 0;
                while (i < n && w->u[i] <= hi) i++, c++;
                RT_ASSERT(c == 0 || last >= 0);
                if (c && n_dist > 0 && w->c[n_dist - 1].id == last)
                    w->c[n_dist - 1].count += c;
                else if (c)
                    w->c[n_dist++] = (label_count){last, c};
            }
            cum = hi;
        }
        /* the last block's bound is s_out itself, which bounds every draw */
        RT_ASSERT(i == n);
        qsort(w->c, (size_t)n_dist, sizeof *w->c, by_count);
    }
    const double m = s_out / s; /* probability mass the draws stand for */
    for (int d = 0; d < n_dist; d++) {
        ids[k + d] = w->c[d].id;
        logp[k + d] = (float)log(m * (double)w->c[d].count / (double)n);
    }
    for (int d = k + n_dist; d < W; d++) {
        ids[d] = ids[0];
        logp[d] = -INFINITY;
    }
    for (int j = 0; j < k; j++) w->in[tk_ids[j]] = 0;
}

size_t student_teacher_sample_bytes(int n_samples) {
    /* the draws (doubles) then the distinct tokens with counts */
    return (size_t)(n_samples > 0 ? n_samples : 0) * (sizeof(double) + sizeof(label_count));
}

rt_status student_teacher_sample(student_loss_ws *ws, const float *logits, int n_pos, int V,
                                 float T, int k, const int32_t *topk_ids, const float *topk_logp,
                                 int n_samples, const uint64_t *seeds, int32_t *ids, float *logp) {
    RT_ASSERT(T > 0.0f && k >= 0 && n_samples >= 1 && k + n_samples <= V);
    RT_ASSERT(k == 0 || (topk_ids && topk_logp));
    if (V > student_loss_ws_vocab(ws))
        return rt_fail(RT_ERR_ARGS, "student_teacher_sample: the loss workspace holds rows of %d "
                       "tokens, not %d", student_loss_ws_vocab(ws), V);
    const size_t need = student_teacher_sample_bytes(n_samples);
    if (student_loss_ws_thread(ws).extra_bytes < need)
        return rt_fail(RT_ERR_ARGS, "student_teacher_sample: %d draws need %zu bytes of workspace "
                       "per thread, it was reserved for %zu (student_loss_ws_reserve)",
                       n_samples, need, student_loss_ws_thread(ws).extra_bytes);
    const float invT = 1.0f / T;
    const int W = k + n_samples;
#pragma omp parallel num_threads(student_loss_ws_threads(ws))
    {
        const student_ws_rows r = student_loss_ws_thread(ws);
        /* the doubles first: the extra area starts 64-byte aligned */
        const sample_scratch w = {r.e, r.in, r.blk, (double *)r.extra,
                                  (label_count *)(r.extra + (size_t)n_samples * sizeof(double))};
#pragma omp for schedule(static)
        for (int i = 0; i < n_pos; i++)
            sample_row(logits + (size_t)i * V, V, invT, k, k ? topk_ids + (size_t)i * k : NULL,
                       k ? topk_logp + (size_t)i * k : NULL, n_samples, seeds[i],
                       ids + (size_t)i * W, logp + (size_t)i * W, &w);
    }
    return RT_OK;
}

/* ------------------------------------------------- hidden-state labels
 *
 * The `hidden` scheme sends, instead of label entries, the teacher's final
 * normalized hidden state h = ln_f(x_L) per position; a student rank that
 * holds the teacher's tied output matrix wte (V, C) rebuilds the teacher's
 * logits z = h wte^T, all V of them, with one matmul. int8 keeps one scale
 * s = max|h| / 127 per position and q = round(h / s), so every entry is off
 * by at most s/2 and every logit by at most (s/2) sum_c |wte[v][c]|
 * (tests/test_student.c checks this bound on a teacher's real logits). */

void student_final_hidden(student_model *m, int B, float *out) {
    RT_ASSERT(B >= 1 && B <= m->max_B);
    const int L = m->cfg.n_layer, C = m->cfg.d_model, nt = m->n_tensors;
    /* what the forward's own ln_f computes (model.c), from the last block's
     * residual stream, which every mode keeps */
    student_layernorm_fwd(out, NULL, NULL, NULL, student_hidden(m, L - 1),
                          m->params + m->offset[nt - 2], m->params + m->offset[nt - 1],
                          (int64_t)B * m->cfg.seq_len, C);
}

void student_hidden_encode(const float *h, int64_t n, int C, int bf16, void *out, float *scale) {
    if (bf16) {
        student_to_bf16(out, h, (size_t)n * (size_t)C);
        return;
    }
    int8_t *q = out;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *x = h + i * C;
        float mx = 0.0f;
        for (int c = 0; c < C; c++) mx = fabsf(x[c]) > mx ? fabsf(x[c]) : mx;
        const float s = mx / 127.0f;
        scale[i] = s;
        int8_t *qi = q + i * C;
        for (int c = 0; c < C; c++) {
            /* |x / s| <= 127 up to rounding; the clamp keeps it so */
            const float v = s > 0.0f ? nearbyintf(x[c] / s) : 0.0f;
            qi[c] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}

struct student_hidden_head {
    int V, C;
    float *wte;     /* (V, C) the teacher's output matrix, owned */
    float *x;       /* (rows, C) decoded hidden states */
    int rows;       /* rows x and mm are built for, 0 = none yet */
    student_mm mm;  /* (rows, C) x wte^T (C, V) */
    dnnl_engine_t eng;
    dnnl_stream_t strm;
};

rt_status student_hidden_head_create(const float *wte, int V, int C, student_hidden_head **out) {
    rt_status st = RT_OK;
    *out = NULL;
    if (V < 1 || C < 1)
        return rt_fail(RT_ERR_ARGS, "student_hidden_head_create: shape %d x %d", V, C);
    student_hidden_head *h = calloc(1, sizeof *h);
    if (!h) return rt_fail(RT_ERR_NOMEM, "out of memory for the teacher's output matrix");
    h->V = V, h->C = C;
    h->wte = rt_alloc_aligned((size_t)V * (size_t)C * sizeof *h->wte);
    if (!h->wte) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for the teacher's %d x %d output matrix", V, C);
        goto cleanup;
    }
    memcpy(h->wte, wte, (size_t)V * (size_t)C * sizeof *h->wte);
    STUDENT_DNNL_CHECK(dnnl_engine_create(&h->eng, dnnl_cpu, 0));
    STUDENT_DNNL_CHECK(dnnl_stream_create(&h->strm, h->eng, dnnl_stream_default_flags));
cleanup:
    if (st != RT_OK) student_hidden_head_free(h);
    else *out = h;
    return st;
}

void student_hidden_head_free(student_hidden_head *h) {
    if (!h) return;
    student_mm_destroy(&h->mm);
    if (h->strm) dnnl_stream_destroy(h->strm);
    if (h->eng) dnnl_engine_destroy(h->eng);
    rt_free_aligned(h->wte);
    rt_free_aligned(h->x);
    free(h);
}

rt_status student_hidden_head_logits(student_hidden_head *h, const void *hidden, int bf16,
                                     const float *scale, int n, float *logits) {
    RT_ASSERT(n >= 1 && (bf16 || scale));
    const int C = h->C;
    if (n != h->rows) {
        /* built once per row count (training keeps one: its micro-batch) */
        student_mm_destroy(&h->mm);
        rt_free_aligned(h->x);
        h->rows = 0;
        h->x = rt_alloc_aligned((size_t)n * (size_t)C * sizeof *h->x);
        if (!h->x)
            return rt_fail(RT_ERR_NOMEM, "out of memory for %d hidden states of width %d", n, C);
        student_mm_shape s;
        student_mm_shape_2d(&s, n, C, h->V, 0, 1, dnnl_f32, 0, 0);
        RT_TRY(student_mm_create(&h->mm, h->eng, &s));
        h->rows = n;
    }
    const size_t total = (size_t)n * (size_t)C;
    if (bf16) {
        const uint16_t *b = hidden;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++) {
            union { uint32_t u; float f; } v = {(uint32_t)b[i] << 16};
            h->x[i] = v.f;
        }
    } else {
        const int8_t *q = hidden;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++)
                h->x[(size_t)i * C + c] = (float)q[(size_t)i * C + c] * scale[i];
    }
    return student_mm_run(&h->mm, h->strm, h->x, h->wte, NULL, logits);
}
