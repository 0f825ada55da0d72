/* `retort info`'s data: what a checkpoint holds, from its metadata alone
 * (no data pass), as a ckpt_summary. The storage library returns data;
 * trainer/cmd_info.c prints it (text or JSON). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_hf.h"
#include "ckpt_internal.h"

const char *const ckpt_summary_groups[CKPT_SUMMARY_N_GROUPS] = {"optimizer", "state", "distill",
                                                                "qat", "prune"};

const char *ckpt_summary_type_name(int slot) {
    return slot == CKPT_SUMMARY_N_TYPES - 1 ? "other" : ckpt_dtype_name((ckpt_dtype)slot);
}

static rt_status add_size(ckpt_reader *r, const char *dpath, void *data) {
    ckpt_summary *s = data;
    rt_status st = RT_OK;
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID;
    RT_H5(d = H5Dopen2(ckpt_reader_file(r), dpath, H5P_DEFAULT), RT_ERR_FORMAT, s->path,
          "opening %s", dpath);
    RT_H5(type = H5Dget_type(d), RT_ERR_FORMAT, s->path, "reading the type of %s", dpath);
    int t = ckpt_dtype_of(type);
    int slot = t < 0 ? CKPT_SUMMARY_N_TYPES - 1 : t;
    s->type_bytes[slot] += (unsigned long long)H5Dget_storage_size(d);
    s->type_count[slot]++;
cleanup:
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return st;
}

void ckpt_summary_free(ckpt_summary *s) {
    if (!s) return;
    free(s->path);
    free(s->config);
    free(s->provenance);
    free(s->version);
    memset(s, 0, sizeof *s);
}

rt_status ckpt_summarize(const char *path, ckpt_summary *s) {
    memset(s, 0, sizeof *s);
    ckpt_reader *r = NULL;
    hid_t opt = H5I_INVALID_HID;
    rt_status st = ckpt_open(path, &r);
    if (st != RT_OK) return st;
    s->cfg = *ckpt_reader_config(r);
    s->params = student_param_count(&s->cfg);
    if (ckpt_reader_hf(r)) {
        st = ckpt_hf_summarize(ckpt_reader_hf(r), s);
        goto cleanup;
    }
    if (!(s->path = strdup(path))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    snprintf(s->kind, sizeof s->kind, "%s", ckpt_reader_kind(r));
    s->step = ckpt_reader_step(r);
    s->tokens_seen = ckpt_reader_tokens_seen(r);
    s->d_head_stored = ckpt_config_has_d_head(&s->cfg);
    struct stat sb;
    s->file_bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    if ((st = ckpt_walk_datasets(r, add_size, s)) != RT_OK) goto cleanup;

    /* /meta is optional for reading (files made by other tools). */
    if (ckpt_has(r, "/meta")) {
        if ((st = ckpt_read_string_attr(r, "/meta", "config", &s->config)) != RT_OK ||
            (st = ckpt_read_string_attr(r, "/meta", "provenance", &s->provenance)) != RT_OK ||
            (st = ckpt_read_string_attr(r, "/meta", "retort_version", &s->version)) != RT_OK)
            goto cleanup;
    }
    for (int i = 0; i < CKPT_SUMMARY_N_GROUPS; i++) {
        char g[32];
        snprintf(g, sizeof g, "/%s", ckpt_summary_groups[i]);
        s->has_group[i] = ckpt_has(r, g);
    }
    if (s->has_group[0]) { /* /optimizer */
        RT_H5(opt = H5Gopen2(ckpt_reader_file(r), "/optimizer", H5P_DEFAULT), RT_ERR_FORMAT, path,
              "opening /optimizer");
        if (H5Aexists(opt, "step") > 0) {
            hid_t a = H5Aopen(opt, "step", H5P_DEFAULT);
            s->has_opt_step = a >= 0 && H5Aread(a, H5T_NATIVE_INT64, &s->opt_step) >= 0;
            if (a >= 0) H5Aclose(a);
        }
    }
cleanup:
    if (opt >= 0) H5Gclose(opt);
    ckpt_reader_close(r);
    return st;
}
