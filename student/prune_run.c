/* The pruning procedures of `retort prune`, composed from the kernels of
 * prune.c: calibration statistics of the linear inputs, the masks of the
 * unstructured methods (Wanda block by block on the already-pruned
 * earlier blocks, as Sun et al.'s reference code does), the removal of
 * attention heads and MLP units, and the per-tensor statistics of the
 * result. trainer/cmd_prune.c keeps the arguments, files and printing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "student.h"

/* ---------------------------------------------------------- calibration */

/* Doubles per (layer, linear) slot of the statistics: max(C, F, A). */
static size_t stat_width(const student_config *c) {
    size_t w = (size_t)(c->d_ff > c->d_model ? c->d_ff : c->d_model);
    return w > (size_t)student_attn_width(c) ? w : (size_t)student_attn_width(c);
}

size_t student_prune_stats_size(const student_config *c) {
    return (size_t)c->n_layer * STUDENT_LIN_N * stat_width(c);
}

const double *student_prune_stats_at(const student_config *c, const double *acc, int layer,
                                     student_linear which) {
    return acc + ((size_t)layer * STUDENT_LIN_N + (size_t)which) * stat_width(c);
}

/* Adds the column sums of squares of every linear's input in m's last
 * forward to acc. */
static rt_status stats_add(student_model *m, double *acc) {
    const student_config *c = student_cfg(m);
    for (int l = 0; l < c->n_layer; l++)
        for (int w = 0; w < STUDENT_LIN_N; w++) {
            int64_t rows = 0, in, out;
            const float *x = student_linear_input(m, l, (student_linear)w, &rows);
            if (!x)
                return rt_fail(RT_ERR_ARGS, "prune: activation statistics need a training-mode "
                               "f32 model after a forward");
            student_linear_shape(c, (student_linear)w, &in, &out);
            student_colsumsq_add((double *)student_prune_stats_at(c, acc, l, (student_linear)w),
                                 x, rows, (int)in);
        }
    return RT_OK;
}

rt_status student_prune_calibrate(student_model *m, const int32_t *tokens, int n_windows,
                                  double *acc) {
    const student_config *c = student_cfg(m);
    const int T = c->seq_len, nb = student_max_batch(m);
    memset(acc, 0, student_prune_stats_size(c) * sizeof *acc);
    for (int b0 = 0; b0 < n_windows; b0 += nb) {
        const int B = n_windows - b0 < nb ? n_windows - b0 : nb;
        RT_TRY(student_forward(m, tokens + (size_t)b0 * T, B));
        RT_TRY(stats_add(m, acc));
    }
    return RT_OK;
}

/* --------------------------------------------------------- unstructured */

/* The unstructured or N:M mask of linear-weight tensor t (block `layer`,
 * linear k) into mask + t->offset, the count it masks into *n; acc holds
 * wanda's calibration statistics, NULL for the others. */
static rt_status linear_mask(const student_prune_spec *s, const student_config *c,
                             const float *params, const student_tensor *t, int layer,
                             student_linear k, const double *acc, uint8_t *mask, size_t *n) {
    *n = 0;
    if (s->method == STUDENT_PRUNE_MAGNITUDE)
        return student_prune_magnitude(params + t->offset, t->numel, s->sparsity,
                                       mask + t->offset, n);
    /* N:M and Wanda need the dense [in, out] shape: a low-rank factor is not one */
    RT_ASSERT(c->rank[k] == 0);
    const int64_t in = t->shape[0], out = t->shape[1];
    if (s->method == STUDENT_PRUNE_NM) {
        if (in % s->nm_m != 0)
            return rt_fail(RT_ERR_ARGS, "prune: %s has %lld inputs, not a multiple of M = %d of "
                           "%s", t->name, (long long)in, s->nm_m, s->name);
        if (s->nm_n < s->nm_m) /* N = M keeps every weight (gradual's start) */
            student_prune_nm(params + t->offset, in, out, s->nm_n, s->nm_m, mask + t->offset, n);
        return RT_OK;
    }
    RT_ASSERT(s->method == STUDENT_PRUNE_WANDA && acc);
    float *xnorm = malloc((size_t)in * sizeof *xnorm);
    if (!xnorm) return rt_fail(RT_ERR_NOMEM, "prune: out of memory for input norms");
    const double *a = student_prune_stats_at(c, acc, layer, k);
    for (int64_t j = 0; j < in; j++) xnorm[j] = (float)sqrt(a[j]);
    const rt_status st = student_prune_wanda(params + t->offset, in, out, xnorm, s->sparsity,
                                             mask + t->offset, n);
    free(xnorm);
    return st;
}

/* Unstructured and N:M masks of block `layer` into `mask`. */
static rt_status prune_layer(const student_prune_spec *s, const student_config *c,
                             const float *params, int layer, const double *acc, uint8_t *mask) {
    for (int w = 0; w < STUDENT_LIN_N; w++) {
        student_tensor t;
        student_tensor_info(c, student_linear_tensor(c, layer, (student_linear)w), &t);
        size_t pruned;
        RT_TRY(linear_mask(s, c, params, &t, layer, (student_linear)w, acc, mask, &pruned));
    }
    return RT_OK;
}

/* ---------------------------------------------------------------- run */

void student_prune_result_free(student_prune_result *r) {
    if (!r) return;
    rt_free_aligned(r->mask);
    rt_free_aligned(r->params);
    free(r->heads_kept);
    free(r->ffn_kept);
    memset(r, 0, sizeof *r);
}

rt_status student_prune_run(student_model *m, const student_prune_spec *s, const int32_t *calib,
                            int n_windows, double *acc, const uint8_t *old_mask,
                            student_prune_result *r) {
    rt_status st = RT_OK;
    const student_config c = *student_cfg(m);
    const int L = c.n_layer, C = c.d_model, F = c.d_ff, H = c.n_head;
    const size_t nb = student_block_floats(&c);
    const int use_calib = calib != NULL;
    double *score = NULL;
    uint8_t *keep = NULL;
    memset(r, 0, sizeof *r);
    r->cfg = c;
    RT_ASSERT(!student_is_lowrank(&c));
    RT_ASSERT(!use_calib || acc);
    float *P = student_params(m);
    if (s->method != STUDENT_PRUNE_FFN && s->method != STUDENT_PRUNE_HEADS) {
        r->mask = rt_alloc_aligned(nb);
        if (!r->mask) {
            st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for a %zu-byte mask block", nb);
            goto cleanup;
        }
        memset(r->mask, 1, nb);
    }
    switch (s->method) {
    case STUDENT_PRUNE_MAGNITUDE:
    case STUDENT_PRUNE_NM:
        for (int l = 0; l < L; l++)
            if ((st = prune_layer(s, &c, P, l, NULL, r->mask)) != RT_OK) goto cleanup;
        break;
    case STUDENT_PRUNE_WANDA:
        /* Block by block: block l is calibrated on the outputs of the
         * already-pruned blocks before it, so each block's pruning sees the
         * inputs it will get (Sun et al.'s reference code does the same). */
        RT_ASSERT(use_calib);
        for (int l = 0; l < L; l++) {
            if ((st = student_prune_calibrate(m, calib, n_windows, acc)) != RT_OK) goto cleanup;
            if ((st = prune_layer(s, &c, P, l, acc, r->mask)) != RT_OK) goto cleanup;
            student_apply_mask(P, r->mask, nb);
            P = student_params(m); /* marks the weights changed */
        }
        break;
    case STUDENT_PRUNE_HEADS: {
        const int heads_k = s->remove;
        r->cfg.n_head = H - heads_k;
        r->cfg.d_head = student_head_dim(&c);
        /* d_head stays implicit when it still equals d_model / n_head */
        if (C % r->cfg.n_head == 0 && C / r->cfg.n_head == r->cfg.d_head) r->cfg.d_head = 0;
        score = malloc((size_t)H * sizeof *score);
        r->heads_kept = malloc((size_t)L * H);
        r->params = rt_alloc_aligned(student_block_floats(&r->cfg) * sizeof *r->params);
        if (!score || !r->heads_kept || !r->params) {
            st = rt_fail(RT_ERR_NOMEM, "prune: out of memory removing heads");
            goto cleanup;
        }
        if (use_calib && (st = student_prune_calibrate(m, calib, n_windows, acc)) != RT_OK)
            goto cleanup;
        for (int l = 0; l < L; l++) {
            student_tensor tq, tp;
            student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_QKV), &tq);
            student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_ATTPROJ), &tp);
            student_head_scores(P + tq.offset, P + tp.offset, C, H, student_head_dim(&c),
                                use_calib ? student_prune_stats_at(&c, acc, l, STUDENT_LIN_ATTPROJ)
                                          : NULL,
                                score);
            if ((st = student_prune_lowest(score, H, heads_k, r->heads_kept + (size_t)l * H)) !=
                RT_OK)
                goto cleanup;
        }
        student_heads_shrink(&c, P, r->heads_kept, &r->cfg, r->params);
        break;
    }
    case STUDENT_PRUNE_FFN: {
        const int ffn_k = s->remove;
        r->cfg.d_ff = F - ffn_k;
        const int F2 = r->cfg.d_ff;
        score = malloc((size_t)F * sizeof *score);
        keep = malloc((size_t)L * F);
        r->ffn_kept = malloc((size_t)L * F2 * sizeof *r->ffn_kept);
        r->params = rt_alloc_aligned(student_block_floats(&r->cfg) * sizeof *r->params);
        if (!score || !keep || !r->ffn_kept || !r->params) {
            st = rt_fail(RT_ERR_NOMEM, "prune: out of memory removing MLP units");
            goto cleanup;
        }
        if (use_calib && (st = student_prune_calibrate(m, calib, n_windows, acc)) != RT_OK)
            goto cleanup;
        for (int l = 0; l < L; l++) {
            student_tensor tf, tp;
            student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_FC), &tf);
            student_tensor_info(&c, student_linear_tensor(&c, l, STUDENT_LIN_FCPROJ), &tp);
            student_ffn_scores(P + tf.offset, P + tp.offset, C, F,
                               use_calib ? student_prune_stats_at(&c, acc, l, STUDENT_LIN_FCPROJ)
                                         : NULL,
                               score);
            uint8_t *kl = keep + (size_t)l * F;
            if ((st = student_prune_lowest(score, F, ffn_k, kl)) != RT_OK) goto cleanup;
            for (int u = 0, j = 0; u < F; u++)
                if (kl[u]) r->ffn_kept[(size_t)l * F2 + j++] = u;
        }
        student_ffn_shrink(&c, P, keep, &r->cfg, r->params);
        break;
    }
    }
    if (r->mask) {
        /* Weights pruned before stay pruned (they are zero already, so
         * this only keeps the masks honest). */
        if (old_mask)
            for (size_t i = 0; i < nb; i++) r->mask[i] &= old_mask[i];
        student_apply_mask(P, r->mask, nb);
    }
cleanup:
    free(score);
    free(keep);
    if (st != RT_OK) student_prune_result_free(r);
    return st;
}

/* -------------------------------------------------------------- block */

rt_status student_prune_stats_last(student_model *m, double *acc) {
    memset(acc, 0, student_prune_stats_size(student_cfg(m)) * sizeof *acc);
    return stats_add(m, acc);
}

rt_status student_prune_block_masks(const student_config *c, const float *params,
                                    const student_prune_spec *s, const double *acc,
                                    uint8_t *mask, size_t *pruned, size_t *prunable) {
    RT_ASSERT(s->method == STUDENT_PRUNE_MAGNITUDE || s->method == STUDENT_PRUNE_WANDA ||
              s->method == STUDENT_PRUNE_NM);
    RT_ASSERT(s->method != STUDENT_PRUNE_WANDA || acc);
    *pruned = *prunable = 0;
    memset(mask, 1, student_block_floats(c));
    for (int i = 0; i < student_tensor_count(c); i++) {
        int l;
        const int k = student_prune_target(c, i, &l);
        if (k < 0) continue;
        student_tensor t;
        student_tensor_info(c, i, &t);
        size_t n;
        RT_TRY(linear_mask(s, c, params, &t, l, (student_linear)k, acc, mask, &n));
        *pruned += n;
        *prunable += t.numel;
    }
    return RT_OK;
}

/* prune.c's kernels are used here, never the other way round: this
 * wrapper lives beside the function it calls. */
rt_status student_prune_magnitude_block(const student_config *c, const float *params,
                                        double sparsity, uint8_t *mask, size_t *pruned,
                                        size_t *prunable) {
    const student_prune_spec s = {.method = STUDENT_PRUNE_MAGNITUDE, .name = "magnitude",
                                  .sparsity = sparsity};
    return student_prune_block_masks(c, params, &s, NULL, mask, pruned, prunable);
}

/* ---------------------------------------------------------- statistics */

static double frac(size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; }

void student_prune_stats(const student_config *c, const student_config *c2, const float *final,
                         student_prune_tensor_stat *ts, student_prune_totals *tot) {
    const int nt = student_tensor_count(c);
    memset(tot, 0, sizeof *tot);
    for (int i = 0; i < nt; i++) {
        student_tensor t, t2;
        student_tensor_info(c, i, &t);
        student_tensor_info(c2, i, &t2);
        student_prune_tensor_stat *s = &ts[i];
        s->layer = -1;
        s->ndim = t2.ndim, s->shape[0] = t2.shape[0], s->shape[1] = t2.shape[1];
        s->before = t.numel, s->after = t2.numel;
        s->zeros = student_count_zeros(final + t2.offset, t2.numel);
        s->prunable = student_prune_target(c, i, NULL) >= 0;
        student_block_slot(c, i, &s->layer);
        const size_t gone = s->before - s->after + s->zeros;
        tot->all_before += s->before, tot->all_gone += gone;
        if (s->prunable) tot->prunable_before += s->before, tot->prunable_gone += gone;
    }
    tot->sparsity = frac(tot->prunable_gone, tot->prunable_before);
}
