/* `retort prune`: post-training pruning of a checkpoint.
 *
 *   magnitude  unstructured: the smallest |w| of each matmul weight
 *   wanda      unstructured: the smallest |w| * ||x|| per output (Sun et al.
 *              2023), input norms measured on --calib, block by block on the
 *              already-pruned earlier blocks as the paper's code does
 *   N:M        semi-structured: N largest |w| of every M consecutive inputs
 *   heads      whole attention heads, physically removed as Hugging Face's
 *              prune_heads does: smaller n_head, d_head kept (attention
 *              width n_head*d_head below d_model)
 *   ffn        whole MLP hidden units, physically removed: smaller d_ff
 *   lowrank    each linear weight replaced by truncated-SVD factors [in, r]
 *              x [r, out] (student/lowrank.c), rank in /config
 *
 * Kernels are in student/prune.c, the procedures (calibration statistics,
 * per-method masks, removal, per-tensor statistics) in student/prune_run.c
 * and student/lowrank.c, mask storage in checkpoints/masks.c; this file
 * takes the arguments, reads the calibration windows, rewrites the config
 * text and provenance, saves and prints. The output is a
 * "train" checkpoint without optimizer state that ckpt_load_model reads,
 * config text and provenance carried over (d_ff rewritten for ffn; for heads
 * /config's n_head and d_head are what count, the text keeps the original). */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "ckpt_masks.h"
#include "cli.h"
#include "cmds.h"
#include "config.h"
#include "data.h"
#include "student.h"

/* Rows per calibration forward: enough for oneDNN to be efficient, small
 * enough that a training-mode model (which keeps every layer's
 * activations) stays small. */
#define PRUNE_CALIB_BATCH 8

typedef enum { PM_MAGNITUDE, PM_WANDA, PM_NM, PM_HEADS, PM_FFN, PM_LOWRANK } prune_method;

typedef struct {
    const char *model, *out, *calib, *method_text;
    prune_method method;
    int nm_n, nm_m;
    double sparsity;
    int64_t calib_tokens;
    int json;
    student_lowrank_opts lowrank;
} prune_opts;

/* ------------------------------------------------------- calibration */

/* Calibration windows of one shard: n evenly spread windows of T inputs. */
typedef struct {
    int32_t *tokens; /* (n, T) */
    int n, T;
} calib_set;

static rt_status calib_load(const char *path, const student_config *c, int64_t want_tokens,
                            calib_set *out) {
    rt_status st = RT_OK;
    data_shard *s = NULL;
    memset(out, 0, sizeof *out);
    RT_TRY(data_shard_open(path, &s));
    const int T = c->seq_len;
    const int64_t n = data_shard_n_tokens(s), W = n > 0 ? (n - 1) / T : 0;
    if (data_shard_vocab_size(s) > c->vocab_size) {
        st = rt_fail(RT_ERR_MISMATCH, "%s: calibration shard has vocab_size %lld but the model "
                     "has %d; use a shard made with the model's tokenizer", path,
                     (long long)data_shard_vocab_size(s), c->vocab_size);
        goto cleanup;
    }
    if (W < 1) {
        st = rt_fail(RT_ERR_ARGS, "%s: %lld tokens hold no window of seq_len %d + 1 for "
                     "calibration", path, (long long)n, T);
        goto cleanup;
    }
    int64_t nw = (want_tokens + T - 1) / T;
    nw = nw < 1 ? 1 : nw > W ? W : nw;
    out->tokens = malloc((size_t)nw * T * sizeof *out->tokens);
    if (!out->tokens) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for %lld calibration windows", path,
                     (long long)nw);
        goto cleanup;
    }
    out->n = (int)nw, out->T = T;
    /* Spread over the whole shard: consecutive windows of one document
     * would measure one topic. Window floor(k W / nw), computed without
     * k * W (up to 1e9 times a file's claimed window count): W = q nw + rem,
     * k rem < nw^2 <= 1e18. */
    const int64_t q = W / nw, rem = W % nw;
    for (int64_t k = 0; k < nw; k++)
        if ((st = data_shard_read(s, (k * q + k * rem / nw) * T, T, out->tokens + k * T)) != RT_OK)
            goto cleanup;
cleanup:
    data_shard_close(s);
    if (st != RT_OK) {
        free(out->tokens);
        memset(out, 0, sizeof *out);
    }
    return st;
}

/* ------------------------------------------------------------ pruning */

/* How many of n units to remove: round(s*n), but at least one stays. */
static int units_to_remove(double s, int n, const char *what, int quiet) {
    int k = (int)floor(s * n + 0.5);
    if (k >= n) {
        if (!quiet)
            fprintf(stderr, "prune: --sparsity %g would remove all %d %s per layer; keeping one\n",
                    s, n, what);
        k = n - 1;
    }
    return k;
}

/* Rewrites `d_ff = ...` in the [model] section of INI text (a new string);
 * other lines stay byte for byte. Returns NULL when out of memory; sets
 * *found to whether the key was there. */
static char *ini_set_d_ff(const char *text, int d_ff, int *found) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int in_model = 0;
    *found = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *q = p;
        while (q < p + n && (*q == ' ' || *q == '\t')) q++;
        if (q < p + n && *q == '[') {
            in_model = strncmp(q, "[model]", 7) == 0;
        } else if (in_model && strncmp(q, "d_ff", 4) == 0) {
            const char *r = q + 4;
            while (r < p + n && (*r == ' ' || *r == '\t')) r++;
            if (r < p + n && *r == '=') {
                fprintf(f, "d_ff = %d%s", d_ff, e ? "\n" : "");
                *found = 1;
                p += n + (e ? 1 : 0);
                continue;
            }
        }
        fwrite(p, 1, n + (e ? 1 : 0), f);
        p += n + (e ? 1 : 0);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The input's provenance with `entry` (taken over) set as its "prune"
 * member (a new string), or a copy of it when it is not a JSON object.
 * NULL when out of memory. */
static char *provenance_with(const char *prov, json_t *entry) {
    json_error_t err;
    json_t *root = prov && prov[0] ? json_loads(prov, 0, &err) : json_object();
    if (!root || !json_is_object(root)) {
        json_decref(root);
        json_decref(entry);
        return strdup(prov ? prov : "");
    }
    char *s = NULL;
    if (entry && json_object_set_new(root, "prune", entry) == 0)
        s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return s;
}

/* What a pruned checkpoint carries over from the one it was made from. */
typedef struct {
    char *config, *prov; /* /meta's config text and provenance JSON; NULL when absent */
    int64_t step, tokens_seen;
    long long bytes; /* the source's model bytes, for the size line */
} prune_source;

static rt_status prune_source_read(ckpt_reader *r, const char *path, prune_source *s) {
    memset(s, 0, sizeof *s);
    if (ckpt_has(r, "/meta")) {
        RT_TRY(ckpt_read_string_attr(r, "/meta", "config", &s->config));
        RT_TRY(ckpt_read_string_attr(r, "/meta", "provenance", &s->prov));
    }
    s->step = ckpt_reader_step(r);
    s->tokens_seen = ckpt_reader_tokens_seen(r);
    s->bytes = (long long)ckpt_model_bytes(path);
    return RT_OK;
}

static void prune_source_free(prune_source *s) {
    free(s->config);
    free(s->prov);
    memset(s, 0, sizeof *s);
}

/* Opens the model to prune: a training checkpoint or a Hugging Face folder
 * (weights only), its /config checked before anything is sized by it. */
static rt_status prune_open(const char *path, ckpt_reader **r) {
    RT_TRY(ckpt_open(path, r));
    if (strcmp(ckpt_reader_kind(*r), "hf") != 0)
        RT_TRY(ckpt_require_kind(*r, "train", "pruning"));
    return ckpt_check_model(*r);
}

/* ------------------------------------------------------------- report */

static double frac(size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; }

static long long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* The end of every --json report, shared by all methods: the parameter
 * counts and file sizes added to `report`, which is printed as one line and
 * released. */
static rt_status print_json_report(json_t *report, size_t params_before, size_t params_after,
                                   long long in_bytes, long long out_bytes) {
    json_object_set_new(report, "params_before", json_integer((json_int_t)params_before));
    json_object_set_new(report, "params_after", json_integer((json_int_t)params_after));
    json_object_set_new(report, "file_bytes_before", json_integer(in_bytes));
    json_object_set_new(report, "file_bytes", json_integer(out_bytes));
    char *text = json_dumps(report, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(report);
    if (!text) return rt_fail(RT_ERR_NOMEM, "prune: out of memory for the JSON report");
    printf("%s\n", text);
    free(text);
    return RT_OK;
}

/* ------------------------------------------------------------ lowrank */

/* "all" or a comma-separated list of linear names into a bit set over
 * student_linear. */
static rt_status parse_linears(const char *v, unsigned *set) {
    *set = 0;
    if (strcmp(v, "all") == 0) {
        *set = (1u << STUDENT_LIN_N) - 1;
        return RT_OK;
    }
    const char *p = v;
    while (*p) {
        const char *e = strchr(p, ',');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        int k = 0;
        for (; k < STUDENT_LIN_N; k++) {
            const char *name = student_linear_name((student_linear)k);
            if (strlen(name) == n && strncmp(name, p, n) == 0) break;
        }
        if (k == STUDENT_LIN_N)
            return rt_fail(RT_ERR_ARGS, "prune: --linears: '%.*s' is not attn.c_attn, "
                           "attn.c_proj, mlp.c_fc, mlp.c_proj or all", (int)n, p);
        *set |= 1u << k;
        p += n + (e ? 1 : 0);
    }
    return RT_OK;
}

/* `--method lowrank`: the factors of student/lowrank.c, a checkpoint of
 * the low-rank shape (ranks in /config), and a table of what each linear
 * kept. */
static rt_status prune_lowrank_run(const prune_opts *o) {
    rt_status st = RT_OK;
    ckpt_reader *r = NULL;
    student_model *m = NULL;
    uint8_t *old_mask = NULL;
    float *out_params = NULL;
    char *prov_out = NULL;
    prune_source src = {0};
    student_lowrank_stat *stats = NULL;
    calib_set cs = {0};
    double *acc = NULL;

    if ((st = prune_open(o->model, &r)) != RT_OK) goto cleanup;
    const student_config c = *ckpt_reader_config(r);
    /* --calib: activation-weighted factors, from a training-mode f32 model's
     * per-layer linear inputs */
    if ((st = student_create(&c, o->calib ? PRUNE_CALIB_BATCH : 1, STUDENT_F32, o->calib != NULL,
                             &m)) != RT_OK)
        goto cleanup;
    if ((st = ckpt_read_model(r, m)) != RT_OK) goto cleanup;
    if ((st = ckpt_masks_read(r, &c, &old_mask)) != RT_OK) goto cleanup;
    if (old_mask) {
        st = rt_fail(RT_ERR_UNSUPPORTED, "%s: has pruning masks; factor a dense model (a "
                     "product of factors does not keep zeros)", o->model);
        goto cleanup;
    }
    if (o->calib && !student_is_lowrank(&c)) {
        if ((st = calib_load(o->calib, &c, o->calib_tokens, &cs)) != RT_OK) goto cleanup;
        if (!(acc = calloc(student_prune_stats_size(&c), sizeof *acc))) {
            st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for calibration statistics");
            goto cleanup;
        }
        if (!o->json)
            fprintf(stderr, "prune: activation-weighted factors, calibrated on %d windows x %d "
                    "tokens of %s\n", cs.n, cs.T, o->calib);
        if ((st = student_prune_calibrate(m, cs.tokens, cs.n, acc)) != RT_OK) goto cleanup;
    }
    if ((st = prune_source_read(r, o->model, &src)) != RT_OK) goto cleanup;
    ckpt_reader_close(r);
    r = NULL;

    const float *P = student_params(m);
    student_config c2;
    int wanted[STUDENT_LIN_N];
    if ((st = student_lowrank_choose(&c, P, &o->lowrank, acc, &c2, wanted)) != RT_OK) goto cleanup;
    stats = calloc((size_t)c.n_layer * STUDENT_LIN_N, sizeof *stats);
    out_params = rt_alloc_aligned(student_block_floats(&c2) * sizeof *out_params);
    if (!stats || !out_params) {
        st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for the factors");
        goto cleanup;
    }
    if ((st = student_lowrank_apply(&c, P, &c2, acc, out_params, stats)) != RT_OK) goto cleanup;

    /* provenance: what was asked and what each linear got */
    json_t *ranks = json_object();
    for (int k = 0; k < STUDENT_LIN_N; k++)
        json_object_set_new(ranks, student_linear_name((student_linear)k),
                            json_integer(c2.rank[k]));
    prov_out = provenance_with(
        src.prov, json_pack("{s:s, s:s, s:i, s:f, s:f, s:f, s:s?, s:o}", "from", o->model,
                            "method", "lowrank", "rank", o->lowrank.rank, "rank_ratio",
                            o->lowrank.rank_ratio, "energy", o->lowrank.energy, "param_ratio",
                            o->lowrank.param_ratio, "calib", o->calib, "ranks", ranks));
    if (!prov_out) {
        st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for the provenance");
        goto cleanup;
    }
    ckpt_contents cc = {.kind = "train", .step = src.step, .tokens_seen = src.tokens_seen,
                        .cfg = c2, .params = out_params, .config_text = src.config,
                        .provenance_json = prov_out};
    if ((st = ckpt_save(o->out, &cc)) != RT_OK) goto cleanup;
    const long long out_bytes = file_size(o->out);
    const size_t pb = student_param_count(&c), pa = student_param_count(&c2);

    if (o->json) {
        json_t *out = json_object(), *jl = json_array();
        for (int l = 0; l < c.n_layer; l++)
            for (int k = 0; k < STUDENT_LIN_N; k++) {
                const student_lowrank_stat *s = &stats[l * STUDENT_LIN_N + k];
                json_array_append_new(
                    jl, json_pack("{s:i, s:s, s:i, s:f, s:f}", "layer", l, "linear",
                                  student_linear_name((student_linear)k), "rank", s->rank,
                                  "energy_kept", s->rank ? s->energy : 1.0, "rel_error",
                                  s->rel_error));
            }
        json_object_set_new(out, "model", json_string(o->model));
        json_object_set_new(out, "out", json_string(o->out));
        json_object_set_new(out, "method", json_string("lowrank"));
        json_object_set_new(out, "linears", jl);
        if ((st = print_json_report(out, pb, pa, src.bytes, out_bytes)) != RT_OK) goto cleanup;
    } else {
        printf("factored %s -> %s (method lowrank)\n", o->model, o->out);
        for (int k = 0; k < STUDENT_LIN_N; k++) {
            int64_t in, out;
            student_linear_shape(&c, (student_linear)k, &in, &out);
            if (c2.rank[k] > 0)
                printf("%-12s [%lld, %lld] -> [%lld, %d] x [%d, %lld]\n",
                       student_linear_name((student_linear)k), (long long)in, (long long)out,
                       (long long)in, c2.rank[k], c2.rank[k], (long long)out);
            else if (wanted[k] > 0)
                printf("%-12s [%lld, %lld] kept dense: rank %d would not make it smaller\n",
                       student_linear_name((student_linear)k), (long long)in, (long long)out,
                       wanted[k]);
        }
        printf("\n%-5s %-12s %6s %12s %10s\n", "layer", "linear", "rank", "energy kept",
               "rel error");
        for (int l = 0; l < c.n_layer; l++)
            for (int k = 0; k < STUDENT_LIN_N; k++) {
                const student_lowrank_stat *s = &stats[l * STUDENT_LIN_N + k];
                if (s->rank == 0) continue;
                printf("%-5d %-12s %6d %11.4f%% %10.4f\n", l,
                       student_linear_name((student_linear)k), s->rank, 100.0 * s->energy,
                       s->rel_error);
            }
        printf("\nparameter count   %zu -> %zu (%.2f%%)\n", pb, pa, 100.0 * frac(pa, pb));
        printf("file size         %lld -> %lld bytes\n", src.bytes, out_bytes);
    }

cleanup:
    ckpt_reader_close(r);
    student_destroy(m);
    rt_free_aligned(old_mask);
    rt_free_aligned(out_params);
    prune_source_free(&src);
    free(prov_out);
    free(stats);
    free(cs.tokens);
    free(acc);
    return st;
}

/* ---------------------------------------------------------------- run */

static rt_status prune_run(const prune_opts *o) {
    rt_status st = RT_OK;
    ckpt_reader *r = NULL;
    student_model *m = NULL;
    calib_set cs = {0};
    double *acc = NULL;
    uint8_t *old_mask = NULL;
    student_prune_result pr = {0};
    char *config_out = NULL, *prov_out = NULL;
    prune_source src = {0};
    student_prune_tensor_stat *ts = NULL;
    ckpt_masks_extras mx = {0};
    ckpt_array *extras = NULL;

    const int use_calib = o->calib && (o->method == PM_WANDA || o->method == PM_HEADS ||
                                       o->method == PM_FFN);
    if (o->method == PM_WANDA && !o->calib)
        return rt_fail(RT_ERR_ARGS, "prune: --method wanda needs --calib SHARD (the input norms "
                       "||x|| come from calibration tokens)");
    if (o->calib && !use_calib && !o->json)
        fprintf(stderr, "prune: --calib is not used by --method %s\n", o->method_text);

    if ((st = prune_open(o->model, &r)) != RT_OK) goto cleanup;
    const student_config c = *ckpt_reader_config(r);
    const int L = c.n_layer, F = c.d_ff, H = c.n_head;
    if (student_is_lowrank(&c)) {
        st = rt_fail(RT_ERR_UNSUPPORTED, "%s: is low-rank (factored linears); --method %s "
                     "prunes dense models", o->model, o->method_text);
        goto cleanup;
    }
    /* Calibration needs every layer's matmul inputs, which only a
     * training-mode f32 model keeps. */
    if ((st = student_create(&c, PRUNE_CALIB_BATCH, STUDENT_F32, use_calib, &m)) != RT_OK)
        goto cleanup;
    if ((st = ckpt_read_model(r, m)) != RT_OK) goto cleanup;
    if ((st = ckpt_masks_read(r, &c, &old_mask)) != RT_OK) goto cleanup;
    if (old_mask && (o->method == PM_FFN || o->method == PM_HEADS)) {
        st = rt_fail(RT_ERR_UNSUPPORTED, "%s: already has pruning masks; remove %s before "
                     "unstructured pruning, not after", o->model,
                     o->method == PM_FFN ? "MLP units (ffn)" : "attention heads (heads)");
        goto cleanup;
    }
    if ((st = prune_source_read(r, o->model, &src)) != RT_OK) goto cleanup;
    const int had_optimizer = ckpt_has(r, "/optimizer");
    ckpt_reader_close(r);
    r = NULL;

    if (use_calib) {
        if ((st = calib_load(o->calib, &c, o->calib_tokens, &cs)) != RT_OK) goto cleanup;
        acc = calloc(student_prune_stats_size(&c), sizeof *acc);
        if (!acc) {
            st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for calibration statistics");
            goto cleanup;
        }
        if (!o->json)
            fprintf(stderr, "prune: calibrating on %d windows x %d tokens of %s\n", cs.n, cs.T,
                    o->calib);
    }

    char method_arg[64]; /* for messages */
    snprintf(method_arg, sizeof method_arg, "--method %s", o->method_text);
    student_prune_spec spec = {.name = method_arg, .sparsity = o->sparsity,
                               .nm_n = o->nm_n, .nm_m = o->nm_m};
    int heads_k = 0, ffn_k = 0;
    switch (o->method) {
    case PM_MAGNITUDE: spec.method = STUDENT_PRUNE_MAGNITUDE; break;
    case PM_WANDA: spec.method = STUDENT_PRUNE_WANDA; break;
    case PM_NM: spec.method = STUDENT_PRUNE_NM; break;
    case PM_HEADS:
        spec.method = STUDENT_PRUNE_HEADS;
        spec.remove = heads_k = units_to_remove(o->sparsity, H, "heads", o->json);
        break;
    case PM_FFN:
        spec.method = STUDENT_PRUNE_FFN;
        spec.remove = ffn_k = units_to_remove(o->sparsity, F, "MLP units", o->json);
        break;
    case PM_LOWRANK: /* prune_lowrank_run */
        RT_ASSERT(0 && "lowrank has its own run");
        break;
    }
    if ((st = student_prune_run(m, &spec, use_calib ? cs.tokens : NULL, cs.n, acc, old_mask,
                                &pr)) != RT_OK)
        goto cleanup;
    const student_config c2 = pr.cfg;
    const float *final = pr.params ? pr.params : student_params(m);
    const uint8_t *mask = pr.mask, *heads_kept = pr.heads_kept;
    const int32_t *ffn_kept = pr.ffn_kept;

    /* ---- statistics over the written weights */
    const int nt = student_tensor_count(&c);
    ts = calloc((size_t)nt, sizeof *ts);
    if (!ts) {
        st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for the report");
        goto cleanup;
    }
    student_prune_totals tot;
    student_prune_stats(&c, &c2, final, ts, &tot);
    const size_t pr_before = tot.prunable_before, pr_gone = tot.prunable_gone,
                 all_before = tot.all_before, all_gone = tot.all_gone;
    const size_t params_before = student_param_count(&c), params_after = student_param_count(&c2);
    const double achieved = o->method == PM_FFN    ? frac((size_t)ffn_k, (size_t)F)
                            : o->method == PM_HEADS ? frac((size_t)heads_k, (size_t)H)
                                                    : frac(pr_gone, pr_before);

    /* ---- save */
    ckpt_prune_meta meta = {.sparsity = o->method == PM_NM ? 1.0 - (double)o->nm_n / o->nm_m
                                                           : o->sparsity,
                            .achieved = achieved};
    snprintf(meta.method, sizeof meta.method, "%s", o->method_text);
    if ((st = ckpt_masks_extras_build(&c2, mask, &meta, &mx)) != RT_OK) goto cleanup;
    extras = calloc((size_t)mx.n + 1, sizeof *extras);
    if (!extras) {
        st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for the checkpoint table");
        goto cleanup;
    }
    memcpy(extras, mx.arrays, (size_t)mx.n * sizeof *extras);
    int n_extras = mx.n;
    if (ffn_kept)
        extras[n_extras++] = (ckpt_array){.path = "/prune/ffn_kept", .dtype = CKPT_I32,
                                          .ndim = 2, .shape = {L, c2.d_ff}, .data = ffn_kept};
    if (heads_kept)
        extras[n_extras++] = (ckpt_array){.path = "/prune/heads_kept", .dtype = CKPT_U8,
                                          .ndim = 2, .shape = {L, H}, .data = heads_kept};
    if (o->method == PM_FFN && src.config && src.config[0]) {
        int found = 0;
        config_out = ini_set_d_ff(src.config, c2.d_ff, &found);
        if (!config_out) {
            st = rt_fail(RT_ERR_NOMEM, "prune: out of memory rewriting the config text");
            goto cleanup;
        }
        if (!found && !o->json)
            fprintf(stderr, "prune: %s's config text has no [model] d_ff; /config d_ff = %d is "
                    "what counts\n", o->model, c2.d_ff);
    }
    prov_out = provenance_with(
        src.prov, json_pack("{s:s, s:s, s:f, s:f, s:s?, s:I}", "from", o->model, "method",
                            o->method_text, "sparsity", o->sparsity, "sparsity_achieved",
                            achieved, "calib", o->calib, "calib_tokens",
                            (json_int_t)o->calib_tokens));
    if (!prov_out) {
        st = rt_fail(RT_ERR_NOMEM, "prune: out of memory for the provenance");
        goto cleanup;
    }
    ckpt_contents cc = {.kind = "train", .step = src.step, .tokens_seen = src.tokens_seen,
                        .cfg = c2, .params = final, .extras = extras, .n_extras = n_extras,
                        .config_text = config_out ? config_out : src.config,
                        .provenance_json = prov_out};
    if ((st = ckpt_save(o->out, &cc)) != RT_OK) goto cleanup;
    const long long out_bytes = file_size(o->out);

    /* ---- report */
    if (o->json) {
        json_t *root = json_object(), *jt = json_array(), *jl = json_array();
        for (int i = 0; i < nt; i++) {
            const student_prune_tensor_stat *s = &ts[i];
            student_tensor ti;
            student_tensor_info(&c, i, &ti);
            const size_t gone = s->before - s->after + s->zeros;
            json_t *shape = s->ndim == 2 ? json_pack("[I,I]", (json_int_t)s->shape[0],
                                                     (json_int_t)s->shape[1])
                                         : json_pack("[I]", (json_int_t)s->shape[0]);
            json_array_append_new(
                jt, json_pack("{s:s, s:i, s:b, s:o, s:I, s:I, s:I, s:f}", "name", ti.name,
                              "layer", s->layer, "prunable", s->prunable, "shape", shape,
                              "params_before", (json_int_t)s->before, "params_after",
                              (json_int_t)s->after, "zeros", (json_int_t)s->zeros, "sparsity",
                              frac(gone, s->before)));
        }
        for (int l = 0; l < L; l++) {
            size_t b = 0, g = 0;
            for (int w = 0; w < STUDENT_LIN_N; w++) {
                const student_prune_tensor_stat *s =
                    &ts[student_linear_tensor(&c, l, (student_linear)w)];
                b += s->before, g += s->before - s->after + s->zeros;
            }
            json_t *jo = json_pack("{s:i, s:I, s:I, s:f}", "layer", l, "prunable_params",
                                   (json_int_t)b, "pruned", (json_int_t)g, "sparsity", frac(g, b));
            if (heads_kept) {
                json_t *hr = json_array();
                for (int h = 0; h < H; h++)
                    if (!heads_kept[(size_t)l * H + h]) json_array_append_new(hr, json_integer(h));
                json_object_set_new(jo, "heads_removed", hr);
            }
            json_array_append_new(jl, jo);
        }
        json_object_set_new(root, "model", json_string(o->model));
        json_object_set_new(root, "out", json_string(o->out));
        json_object_set_new(root, "method", json_string(o->method_text));
        json_object_set_new(root, "structured",
                            json_string(o->method == PM_FFN || o->method == PM_HEADS ? "removed"
                                                                                     : "no"));
        json_object_set_new(root, "target_sparsity", json_real(meta.sparsity));
        json_object_set_new(root, "achieved_sparsity", json_real(achieved));
        if (use_calib)
            json_object_set_new(root, "calib_tokens",
                                json_integer((json_int_t)cs.n * cs.T));
        json_object_set_new(root, "d_ff_before", json_integer(F));
        json_object_set_new(root, "d_ff_after", json_integer(c2.d_ff));
        json_object_set_new(root, "n_head_before", json_integer(H));
        json_object_set_new(root, "n_head_after", json_integer(c2.n_head));
        json_object_set_new(root, "tensors", jt);
        json_object_set_new(root, "layers", jl);
        json_object_set_new(root, "prunable",
                            json_pack("{s:I, s:I, s:f}", "params", (json_int_t)pr_before,
                                      "pruned", (json_int_t)pr_gone, "sparsity",
                                      frac(pr_gone, pr_before)));
        json_object_set_new(root, "all",
                            json_pack("{s:I, s:I, s:f}", "params", (json_int_t)all_before,
                                      "pruned", (json_int_t)all_gone, "sparsity",
                                      frac(all_gone, all_before)));
        json_object_set_new(root, "input_has_optimizer", json_boolean(had_optimizer));
        if ((st = print_json_report(root, params_before, params_after, src.bytes, out_bytes)) !=
            RT_OK)
            goto cleanup;
    } else {
        printf("pruned %s -> %s (method %s, target sparsity %.4f)\n", o->model, o->out,
               o->method_text, meta.sparsity);
        if (o->method == PM_HEADS)
            printf("attention heads REMOVED: n_head %d -> %d in every layer (head_dim %d, "
                   "attention width %d -> %d)\n", H, c2.n_head, student_head_dim(&c),
                   student_attn_width(&c), student_attn_width(&c2));
        if (o->method == PM_FFN)
            printf("MLP units REMOVED: d_ff %d -> %d in every layer\n", F, c2.d_ff);
        /* params: in the input; pruned: zeroed (masks) or removed (ffn, heads);
         * shape: as written. */
        printf("\n%-5s %-20s %-12s %10s %10s %9s\n", "layer", "tensor", "shape out", "params in",
               "pruned", "sparsity");
        for (int l = 0; l < L; l++) {
            size_t b = 0, g = 0;
            for (int w = 0; w < STUDENT_LIN_N; w++) {
                const int ti = student_linear_tensor(&c, l, (student_linear)w);
                const student_prune_tensor_stat *s = &ts[ti];
                const size_t gone = s->before - s->after + s->zeros;
                student_tensor tt;
                student_tensor_info(&c, ti, &tt);
                char shape[32];
                snprintf(shape, sizeof shape, "%lldx%lld", (long long)s->shape[0],
                         (long long)s->shape[1]);
                const char *short_name = strchr(tt.name + strlen("transformer.h."), '.') + 1;
                printf("%-5d %-20s %-12s %10zu %10zu %8.2f%%\n", l, short_name, shape, s->before,
                       gone, 100.0 * frac(gone, s->before));
                b += s->before, g += gone;
            }
            printf("%-5d %-20s %-12s %10zu %10zu %8.2f%%", l, "(layer)", "", b, g,
                   100.0 * frac(g, b));
            if (heads_kept) {
                printf("  heads removed:");
                for (int h = 0; h < H; h++)
                    if (!heads_kept[(size_t)l * H + h]) printf(" %d", h);
            }
            printf("\n");
        }
        printf("\nprunable weights  %zu of %zu pruned (%.2f%%)\n", pr_gone, pr_before,
               100.0 * frac(pr_gone, pr_before));
        printf("all parameters    %zu of %zu pruned (%.2f%%)\n", all_gone, all_before,
               100.0 * frac(all_gone, all_before));
        printf("parameter count   %zu -> %zu\n", params_before, params_after);
        printf("file size         %lld -> %lld bytes%s\n", src.bytes, out_bytes,
               had_optimizer ? " (the input holds AdamW state, the output does not)" : "");
    }

cleanup:
    ckpt_reader_close(r);
    student_destroy(m);
    free(cs.tokens);
    free(acc);
    student_prune_result_free(&pr);
    rt_free_aligned(old_mask);
    prune_source_free(&src);
    free(config_out);
    free(prov_out);
    free(ts);
    free(extras);
    ckpt_masks_extras_free(&mx);
    return st;
}

int trainer_cmd_prune(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_prune, argc, argv, &a);
    if (rc >= 0) return rc;
    prune_opts o = {
        .model = cli_str(a, "model"),
        .out = cli_str(a, "out"),
        .calib = cli_str(a, "calib"),
        .method_text = cli_str(a, "method"),
        .sparsity = cli_real(a, "sparsity"),
        .calib_tokens = cli_int(a, "calib-tokens"),
        .json = cli_flag(a, "json"),
    };
    rt_status st = RT_OK;
    if (!strcmp(o.method_text, "magnitude")) o.method = PM_MAGNITUDE;
    else if (!strcmp(o.method_text, "wanda")) o.method = PM_WANDA;
    else if (!strcmp(o.method_text, "heads")) o.method = PM_HEADS;
    else if (!strcmp(o.method_text, "ffn")) o.method = PM_FFN;
    else if (!strcmp(o.method_text, "lowrank")) o.method = PM_LOWRANK;
    else {
        o.method = PM_NM;
        st = trainer_parse_nm(o.method_text, &o.nm_n, &o.nm_m); /* cli checked it already */
        if (st == RT_OK && cli_has(a, "sparsity") && !o.json)
            fprintf(stderr, "prune: --sparsity is ignored with --method %s (N:M prunes %g)\n",
                    o.method_text, 1.0 - (double)o.nm_n / o.nm_m);
    }
    if (o.method == PM_LOWRANK) {
        o.lowrank.rank = cli_has(a, "rank") ? (int)cli_int(a, "rank") : 0;
        o.lowrank.rank_ratio = cli_has(a, "rank-ratio") ? cli_real(a, "rank-ratio") : 0.0;
        o.lowrank.energy = cli_has(a, "energy") ? cli_real(a, "energy") : 0.0;
        o.lowrank.param_ratio = cli_has(a, "param-ratio") ? cli_real(a, "param-ratio") : 0.0;
        st = parse_linears(cli_str(a, "linears"), &o.lowrank.linears);
    } else if (cli_has(a, "rank") || cli_has(a, "rank-ratio") || cli_has(a, "energy") ||
               cli_has(a, "param-ratio")) {
        st = rt_fail(RT_ERR_ARGS, "prune: --rank, --rank-ratio, --energy and --param-ratio are "
                     "for --method lowrank");
    }
    if (st == RT_OK) st = o.method == PM_LOWRANK ? prune_lowrank_run(&o) : prune_run(&o);
    cli_args_free(a);
    return rt_report(st);
}
