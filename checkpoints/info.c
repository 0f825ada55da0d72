/* `retort info`: what a checkpoint holds, from its metadata alone (no data
 * pass), human readable or as one JSON object. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_hf.h"
#include "ckpt_internal.h"

enum { N_TYPES = CKPT_U64 + 2 }; /* every ckpt_dtype plus "other" */

typedef struct {
    const char *path;
    unsigned long long bytes[N_TYPES];
    long long count[N_TYPES];
} sizes_ctx;

static rt_status add_size(ckpt_reader *r, const char *dpath, void *data) {
    sizes_ctx *s = data;
    rt_status st = RT_OK;
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID;
    RT_H5(d = H5Dopen2(ckpt_reader_file(r), dpath, H5P_DEFAULT), RT_ERR_FORMAT, s->path,
          "opening %s", dpath);
    RT_H5(type = H5Dget_type(d), RT_ERR_FORMAT, s->path, "reading the type of %s", dpath);
    int t = ckpt_dtype_of(type);
    int slot = t < 0 ? N_TYPES - 1 : t;
    s->bytes[slot] += (unsigned long long)H5Dget_storage_size(d);
    s->count[slot]++;
cleanup:
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return st;
}

static const char *slot_name(int i) { return i == N_TYPES - 1 ? "other" : ckpt_dtype_name((ckpt_dtype)i); }

static void human_bytes(char *buf, size_t cap, unsigned long long b) {
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.2f MiB", (double)b / (1ull << 20));
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, cap, "%llu B", b);
}

static rt_status emit_json(FILE *out, ckpt_reader *r, const student_config *c, size_t params,
                           long long file_bytes, const sizes_ctx *sz, const char *config,
                           const char *prov, const char *version, const int64_t *opt_step,
                           const char *const *opt_names, const int *opt_has, int n_opt) {
    json_t *o = json_object(), *cfg = json_object(), *dt = json_object(), *state = json_object();
    if (!o || !cfg || !dt || !state) {
        json_decref(o), json_decref(cfg), json_decref(dt), json_decref(state);
        return rt_fail(RT_ERR_NOMEM, "%s: out of memory building the JSON summary",
                       ckpt_reader_path(r));
    }
    json_object_set_new(o, "path", json_string(ckpt_reader_path(r)));
    json_object_set_new(o, "format", json_string("retort"));
    json_object_set_new(o, "version", json_integer(CKPT_FORMAT_VERSION));
    json_object_set_new(o, "kind", json_string(ckpt_reader_kind(r)));
    json_object_set_new(o, "step", json_integer(ckpt_reader_step(r)));
    json_object_set_new(o, "tokens_seen", json_integer(ckpt_reader_tokens_seen(r)));
    json_object_set_new(cfg, "n_layer", json_integer(c->n_layer));
    json_object_set_new(cfg, "n_head", json_integer(c->n_head));
    json_object_set_new(cfg, "d_model", json_integer(c->d_model));
    json_object_set_new(cfg, "d_ff", json_integer(c->d_ff));
    json_object_set_new(cfg, "d_head", json_integer(student_head_dim(c)));
    json_object_set_new(cfg, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(cfg, "seq_len", json_integer(c->seq_len));
    json_object_set_new(o, "model", cfg);
    json_object_set_new(o, "parameters", json_integer((json_int_t)params));
    json_object_set_new(o, "file_bytes", json_integer(file_bytes));
    for (int i = 0; i < N_TYPES; i++)
        if (sz->count[i]) json_object_set_new(dt, slot_name(i), json_integer((json_int_t)sz->bytes[i]));
    json_object_set_new(o, "bytes_by_dtype", dt);
    json_object_set_new(o, "retort_version", version ? json_string(version) : json_null());
    json_t *pj = NULL;
    if (prov && prov[0]) {
        pj = json_loads(prov, 0, NULL); /* embedded as JSON when it parses */
        if (!pj) pj = json_string(prov);
    }
    json_object_set_new(o, "provenance", pj ? pj : json_null());
    json_object_set_new(o, "has_config", json_boolean(config && config[0]));
    for (int i = 0; i < n_opt; i++) json_object_set_new(state, opt_names[i], json_boolean(opt_has[i]));
    json_object_set_new(o, "present", state);
    json_object_set_new(o, "optimizer_step", opt_step ? json_integer(*opt_step) : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return rt_fail(RT_ERR_NOMEM, "%s: out of memory printing JSON", ckpt_reader_path(r));
    fprintf(out, "%s\n", s);
    free(s);
    return RT_OK;
}

rt_status ckpt_info(const char *path, int json, FILE *out) {
    ckpt_reader *r = NULL;
    char *config = NULL, *prov = NULL, *version = NULL;
    hid_t file, opt = H5I_INVALID_HID;
    rt_status st = ckpt_open(path, &r);
    if (st != RT_OK) return st;
    if (ckpt_reader_hf(r)) {
        st = ckpt_hf_info(ckpt_reader_hf(r), ckpt_reader_config(r), json, out);
        ckpt_reader_close(r);
        return st;
    }
    struct stat sb;
    long long file_bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    const student_config *c = ckpt_reader_config(r);
    size_t params = student_param_count(c);

    sizes_ctx sz = {.path = path};
    file = ckpt_reader_file(r);
    if ((st = ckpt_walk_datasets(r, add_size, &sz)) != RT_OK) goto cleanup;

    /* /meta is optional for reading (files made by other tools). */
    if (ckpt_has(r, "/meta")) {
        if ((st = ckpt_read_string_attr(r, "/meta", "config", &config)) != RT_OK ||
            (st = ckpt_read_string_attr(r, "/meta", "provenance", &prov)) != RT_OK ||
            (st = ckpt_read_string_attr(r, "/meta", "retort_version", &version)) != RT_OK)
            goto cleanup;
    }
    static const char *const opt_names[] = {"optimizer", "state", "distill", "qat", "prune"};
    enum { N_OPT = sizeof opt_names / sizeof opt_names[0] };
    int opt_has[N_OPT];
    for (int i = 0; i < N_OPT; i++) {
        char g[32];
        snprintf(g, sizeof g, "/%s", opt_names[i]);
        opt_has[i] = ckpt_has(r, g);
    }
    int64_t opt_step = 0;
    int have_opt_step = 0;
    if (opt_has[0]) {
        RT_H5(opt = H5Gopen2(file, "/optimizer", H5P_DEFAULT), RT_ERR_FORMAT, path,
              "opening /optimizer");
        if (H5Aexists(opt, "step") > 0) {
            hid_t a = H5Aopen(opt, "step", H5P_DEFAULT);
            have_opt_step = a >= 0 && H5Aread(a, H5T_NATIVE_INT64, &opt_step) >= 0;
            if (a >= 0) H5Aclose(a);
        }
    }

    if (json) {
        st = emit_json(out, r, c, params, file_bytes, &sz, config, prov, version,
                       have_opt_step ? &opt_step : NULL, opt_names, opt_has, N_OPT);
        goto cleanup;
    }
    char hb[32];
    fprintf(out, "checkpoint   %s\n", path);
    fprintf(out, "kind         %s (format retort v%d, written by retort %s)\n", ckpt_reader_kind(r),
            CKPT_FORMAT_VERSION, version ? version : "?");
    fprintf(out, "step         %lld\n", (long long)ckpt_reader_step(r));
    fprintf(out, "tokens seen  %lld\n", (long long)ckpt_reader_tokens_seen(r));
    fprintf(out, "model        n_layer=%d n_head=%d d_model=%d d_ff=%d vocab_size=%d seq_len=%d\n",
            c->n_layer, c->n_head, c->d_model, c->d_ff, c->vocab_size, c->seq_len);
    if (ckpt_config_has_d_head(c)) /* heads removed: attention narrower than d_model */
        fprintf(out, "attention    d_head=%d width=%d (n_head*d_head; d_model=%d)\n",
                student_head_dim(c), student_attn_width(c), c->d_model);
    fprintf(out, "parameters   %zu (%.2fM)\n", params, (double)params / 1e6);
    human_bytes(hb, sizeof hb, (unsigned long long)(file_bytes < 0 ? 0 : file_bytes));
    fprintf(out, "file size    %s (%lld bytes)\n", hb, file_bytes);
    fprintf(out, "data         ");
    int first = 1;
    for (int i = 0; i < N_TYPES; i++) {
        if (!sz.count[i]) continue;
        human_bytes(hb, sizeof hb, sz.bytes[i]);
        fprintf(out, "%s%s %s in %lld dataset%s", first ? "" : ", ", slot_name(i), hb,
                sz.count[i], sz.count[i] == 1 ? "" : "s");
        first = 0;
    }
    fprintf(out, "%s\n", first ? "none" : "");
    for (int i = 0; i < N_OPT; i++) {
        fprintf(out, "%-12s %s", opt_names[i], opt_has[i] ? "yes" : "no");
        if (i == 0 && have_opt_step) fprintf(out, " (AdamW step %lld)", (long long)opt_step);
        fprintf(out, "\n");
    }
    fprintf(out, "config       %s", config && config[0] ? "yes" : "no");
    if (config && config[0]) fprintf(out, " (%zu bytes of INI in /meta config)", strlen(config));
    fprintf(out, "\nprovenance   %s\n", prov && prov[0] ? prov : "none");
cleanup:
    if (opt >= 0) H5Gclose(opt);
    free(config);
    free(prov);
    free(version);
    ckpt_reader_close(r);
    return st;
}
