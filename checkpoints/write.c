/* ckpt_save: one checkpoint file written atomically and durably.
 *
 * The file is built under a temporary name in the target's folder (same
 * file system, so the final rename is atomic), flushed, closed, fsync'ed,
 * renamed over the target and the folder fsync'ed: a reader, or a restart
 * after a crash or SIGKILL at any instant, sees either the previous complete
 * file or the new complete one, never a torn one.
 *
 * Speed: /model datasets are contiguous, uncompressed and never
 * pre-filled, so each tensor is one pwrite straight from the caller's
 * block; datasets of 64 KiB and more start on 4 KiB boundaries (whole
 * pages, no read-modify-write in the page cache). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt_internal.h"
#include "fsutil.h"

#define ALIGN_THRESHOLD (64 * 1024)
#define ALIGN_BYTES 4096

/* Handles shared by every dataset of one save. */
typedef struct {
    const char *path; /* the target, for messages */
    hid_t file, dcpl, lcpl, scalar;
} writer;

static int is_kind(const char *k) { return k && (!strcmp(k, "train") || !strcmp(k, "deploy")); }

/* Does absolute `p` lie at or inside group `g` ("/model")? */
static int inside(const char *p, const char *g) {
    size_t n = strlen(g);
    return strncmp(p, g, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

static rt_status check_extra(const char *path, const ckpt_contents *c, int i) {
    const ckpt_array *a = &c->extras[i];
    const char *p = a->path;
    if (!p || p[0] != '/' || p[1] == '\0' || strstr(p, "//") || p[strlen(p) - 1] == '/')
        return rt_fail(RT_ERR_ARGS, "%s: extra array %d has path \"%s\"; expected an absolute "
                       "path like /state/cursor", path, i, p ? p : "(null)");
    if (strlen(p) >= 1024)
        return rt_fail(RT_ERR_ARGS, "%s: extra array path %.40s... is too long", path, p);
    if (inside(p, "/config") || inside(p, "/meta") || (c->params && inside(p, "/model")) ||
        ((c->adam_m || c->adam_v) && inside(p, "/optimizer")))
        return rt_fail(RT_ERR_ARGS, "%s: extra array %s would go inside a group retort writes "
                       "itself", path, p);
    if ((unsigned)a->dtype > (unsigned)CKPT_U64)
        return rt_fail(RT_ERR_ARGS, "%s: extra array %s has an unknown dtype %d", path, p,
                       (int)a->dtype);
    if (a->ndim < 0 || a->ndim > CKPT_MAX_DIMS)
        return rt_fail(RT_ERR_ARGS, "%s: extra array %s has %d dimensions (0..%d allowed)", path,
                       p, a->ndim, CKPT_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] < 0 || (a->shape[d] > 0 && numel > SIZE_MAX / 16 / (size_t)a->shape[d]))
            return rt_fail(RT_ERR_ARGS, "%s: extra array %s has a bad shape (dimension %d is "
                           "%lld)", path, p, d, (long long)a->shape[d]);
        numel *= (size_t)a->shape[d];
    }
    if (numel > 0 && !a->data)
        return rt_fail(RT_ERR_ARGS, "%s: extra array %s has no data", path, p);
    return RT_OK;
}

static rt_status check_contents(const char *path, const ckpt_contents *c) {
    if (!c) return rt_fail(RT_ERR_ARGS, "%s: nothing to save (no contents)", path);
    if (!is_kind(c->kind))
        return rt_fail(RT_ERR_ARGS, "%s: checkpoint kind \"%s\" is neither train nor deploy", path,
                       c->kind ? c->kind : "(null)");
    if (student_config_validate(&c->cfg) != RT_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", rt_last_error());
        return rt_fail(RT_ERR_ARGS, "%s: cannot save an invalid model config: %s", path, why);
    }
    if (!c->params && strcmp(c->kind, "train") == 0)
        return rt_fail(RT_ERR_ARGS, "%s: a training checkpoint needs parameters (params is NULL)",
                       path);
    if (!c->adam_m != !c->adam_v)
        return rt_fail(RT_ERR_ARGS, "%s: optimizer state needs both AdamW moments (one of "
                       "adam_m/adam_v is NULL)", path);
    if (c->step < 0 || c->tokens_seen < 0 || c->adam_step < 0)
        return rt_fail(RT_ERR_ARGS, "%s: negative step, tokens_seen or adam_step", path);
    if (c->n_extras < 0 || (c->n_extras > 0 && !c->extras))
        return rt_fail(RT_ERR_ARGS, "%s: n_extras is %d but extras is %s", path, c->n_extras,
                       c->extras ? "set" : "NULL");
    for (int i = 0; i < c->n_extras; i++) RT_TRY(check_extra(path, c, i));
    return RT_OK;
}

static rt_status attr_scalar(writer *w, hid_t obj, const char *objname, const char *name,
                             hid_t ftype, hid_t mtype, const void *v) {
    rt_status st = RT_OK;
    hid_t a = H5I_INVALID_HID;
    RT_H5(a = H5Acreate2(obj, name, ftype, w->scalar, H5P_DEFAULT, H5P_DEFAULT), RT_ERR_IO,
          w->path, "creating attribute %s of %s", name, objname);
    RT_H5(H5Awrite(a, mtype, v), RT_ERR_IO, w->path, "writing attribute %s of %s", name, objname);
cleanup:
    if (a >= 0) H5Aclose(a);
    return st;
}

static rt_status attr_i64(writer *w, hid_t obj, const char *objname, const char *name, int64_t v) {
    return attr_scalar(w, obj, objname, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static rt_status attr_i32(writer *w, hid_t obj, const char *objname, const char *name, int v) {
    return attr_scalar(w, obj, objname, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

/* A fixed-length, NUL-terminated UTF-8 string. Fixed rather than
 * variable length because variable-length strings live in HDF5's global
 * heap, which HDF5 neither checksums nor bounds-checks: one flipped bit
 * there crashes the reader inside HDF5. A fixed-length attribute sits in
 * its object header, which HDF5 checksums. (h5py reads it as bytes:
 * f.attrs["format"].decode().) With checksum, also <name>_checksum, the
 * CRC-32C of the text, for strings too long for an object header, which
 * HDF5 keeps in a separate heap. */
static rt_status attr_str(writer *w, hid_t obj, const char *objname, const char *name,
                          const char *v, int checksum) {
    rt_status st = RT_OK;
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
    size_t len = strlen(v);
    RT_H5(t = H5Tcopy(H5T_C_S1), RT_ERR_INTERNAL, w->path, "H5Tcopy");
    RT_H5(H5Tset_size(t, len + 1), RT_ERR_INTERNAL, w->path, "H5Tset_size");
    RT_H5(H5Tset_strpad(t, H5T_STR_NULLTERM), RT_ERR_INTERNAL, w->path, "H5Tset_strpad");
    RT_H5(H5Tset_cset(t, H5T_CSET_UTF8), RT_ERR_INTERNAL, w->path, "H5Tset_cset");
    RT_H5(a = H5Acreate2(obj, name, t, w->scalar, H5P_DEFAULT, H5P_DEFAULT), RT_ERR_IO,
          w->path, "creating attribute %s of %s", name, objname);
    RT_H5(H5Awrite(a, t, v), RT_ERR_IO, w->path, "writing attribute %s of %s", name, objname);
    if (checksum) {
        char cname[256];
        snprintf(cname, sizeof cname, "%s%s", name, CKPT_STR_CHECKSUM_SUFFIX);
        uint32_t crc = ckpt_crc32c(0, v, len);
        st = attr_scalar(w, obj, objname, cname, H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc);
    }
cleanup:
    if (a >= 0) H5Aclose(a);
    if (t >= 0) H5Tclose(t);
    return st;
}

/* One dataset at `name` relative to loc (intermediate groups created),
 * written from `data` and stamped with the CRC-32C of its bytes. */
static rt_status write_dataset(writer *w, hid_t loc, const char *name, const char *shown,
                               ckpt_dtype t, int ndim, const int64_t *shape, const void *data) {
    rt_status st = RT_OK;
    hid_t space = H5I_INVALID_HID, d = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    hsize_t dims[CKPT_MAX_DIMS];
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i], numel *= (size_t)shape[i];
    RT_H5(space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL),
          RT_ERR_IO, w->path, "making the dataspace of %s", shown);
    /* int8 weights (deploy files) are stored deflate-compressed in one
     * chunk: pruned zeros and the peaked distribution of quantized values
     * compress well, and every HDF5 reader (h5py included) inflates them.
     * Float tensors stay contiguous: they barely compress. */
    if (t == CKPT_I8 && ndim >= 1 && numel >= 4096) {
        RT_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE), RT_ERR_INTERNAL, w->path, "H5Pcreate");
        RT_H5(H5Pset_chunk(dcpl, ndim, dims), RT_ERR_INTERNAL, w->path, "H5Pset_chunk");
        RT_H5(H5Pset_deflate(dcpl, 6), RT_ERR_INTERNAL, w->path, "H5Pset_deflate");
    }
    RT_H5(d = H5Dcreate2(loc, name, ckpt_file_type(t), space, w->lcpl,
                           dcpl >= 0 ? dcpl : w->dcpl, H5P_DEFAULT),
          RT_ERR_IO, w->path, "creating dataset %s", shown);
    if (numel > 0)
        RT_H5(H5Dwrite(d, ckpt_mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), RT_ERR_IO,
              w->path, "writing dataset %s", shown);
    uint32_t crc = ckpt_crc32c(0, data, numel * ckpt_dtype_size(t));
    st = attr_scalar(w, d, shown, CKPT_CHECKSUM_ATTR, H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc);
cleanup:
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return st;
}

/* Every tensor of the table from `block` into group `grp` (shown as gname). */
static rt_status write_block(writer *w, hid_t grp, const char *gname, const student_config *cfg,
                             const float *block) {
    student_tensor t;
    char shown[256];
    for (int i = 0; i < student_tensor_count(cfg); i++) {
        student_tensor_info(cfg, i, &t);
        snprintf(shown, sizeof shown, "%s/%s", gname, t.name);
        RT_TRY(write_dataset(w, grp, t.name, shown, CKPT_F32, t.ndim, t.shape, block + t.offset));
    }
    return RT_OK;
}

static rt_status write_group(writer *w, hid_t loc, const char *name, const char *shown,
                             hid_t *out) {
    rt_status st = RT_OK;
    RT_H5(*out = H5Gcreate2(loc, name, w->lcpl, H5P_DEFAULT, H5P_DEFAULT), RT_ERR_IO, w->path,
          "creating group %s", shown);
cleanup:
    return st;
}

static rt_status write_config(writer *w, const student_config *cfg) {
    hid_t g = H5I_INVALID_HID;
    rt_status st = write_group(w, w->file, "config", "/config", &g);
    const struct { const char *name; int v; } f[] = {
        {"n_layer", cfg->n_layer}, {"n_head", cfg->n_head},         {"d_model", cfg->d_model},
        {"d_ff", cfg->d_ff},       {"vocab_size", cfg->vocab_size}, {"seq_len", cfg->seq_len},
    };
    for (size_t i = 0; st == RT_OK && i < sizeof f / sizeof f[0]; i++)
        st = attr_i32(w, g, "/config", f[i].name, f[i].v);
    /* only where heads were removed: files of an unpruned shape stay
     * exactly what older readers know */
    const int has_d_head = ckpt_config_has_d_head(cfg);
    if (st == RT_OK && has_d_head) st = attr_i32(w, g, "/config", "d_head", cfg->d_head);
    /* ranks only for a low-rank model: dense files stay as they were */
    const int lowrank = student_is_lowrank(cfg);
    for (int k = 0; st == RT_OK && lowrank && k < STUDENT_LIN_N; k++) {
        char name[64];
        snprintf(name, sizeof name, "rank.%s", student_linear_name((student_linear)k));
        st = attr_i32(w, g, "/config", name, cfg->rank[k]);
    }
    const int64_t v[CKPT_CONFIG_FIELDS_LOWRANK] = {
        cfg->n_layer, cfg->n_head,   cfg->d_model,  cfg->d_ff,     cfg->vocab_size, cfg->seq_len,
        has_d_head ? cfg->d_head : 0, cfg->rank[0], cfg->rank[1], cfg->rank[2], cfg->rank[3]};
    uint32_t crc = ckpt_config_crc(v, lowrank ? CKPT_CONFIG_FIELDS_LOWRANK : CKPT_CONFIG_FIELDS);
    if (st == RT_OK)
        st = attr_scalar(w, g, "/config", CKPT_CHECKSUM_ATTR, H5T_STD_U32LE, H5T_NATIVE_UINT32,
                         &crc);
    if (g >= 0) H5Gclose(g);
    return st;
}

static rt_status write_optimizer(writer *w, const ckpt_contents *c) {
    hid_t g = H5I_INVALID_HID, m = H5I_INVALID_HID, v = H5I_INVALID_HID;
    rt_status st = write_group(w, w->file, "optimizer", "/optimizer", &g);
    if (st == RT_OK) st = attr_i64(w, g, "/optimizer", "step", c->adam_step);
    if (st == RT_OK) st = write_group(w, g, "m", "/optimizer/m", &m);
    if (st == RT_OK) st = write_block(w, m, "/optimizer/m", &c->cfg, c->adam_m);
    if (st == RT_OK) st = write_group(w, g, "v", "/optimizer/v", &v);
    if (st == RT_OK) st = write_block(w, v, "/optimizer/v", &c->cfg, c->adam_v);
    if (v >= 0) H5Gclose(v);
    if (m >= 0) H5Gclose(m);
    if (g >= 0) H5Gclose(g);
    return st;
}

static rt_status write_meta(writer *w, const ckpt_contents *c) {
    hid_t g = H5I_INVALID_HID;
    rt_status st = write_group(w, w->file, "meta", "/meta", &g);
    if (st == RT_OK)
        st = attr_str(w, g, "/meta", "config", c->config_text ? c->config_text : "", 1);
    if (st == RT_OK)
        st = attr_str(w, g, "/meta", "provenance", c->provenance_json ? c->provenance_json : "", 1);
    if (st == RT_OK) st = attr_str(w, g, "/meta", "retort_version", RETORT_VERSION, 1);
    if (g >= 0) H5Gclose(g);
    return st;
}

/* Closes a file being written after a failed write (a full disk, a file
 * size limit). HDF5 flushes again on close, which would fail on the same
 * disk and leave the id open; so the file's descriptor is first pointed at
 * an anonymous in-memory file: the last metadata goes there and the
 * half-written temporary (which the caller unlinks) stays as it was.
 * HDF5 1.10.8 still cannot close a file whose flush already failed (its
 * cache stays "slist already enabled"): that id is left to the process's
 * end, and main() turns off HDF5's atexit handler, which would crash on
 * it. Returns the close status. */
static herr_t close_discarding(hid_t file) {
    void *handle = NULL;
    hid_t fapl = H5Fget_access_plist(file);
    if (fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2 &&
        H5Fget_vfd_handle(file, fapl, &handle) >= 0 && handle) {
        int sink = memfd_create("retort-discard", MFD_CLOEXEC);
        if (sink >= 0) {
            (void)dup2(sink, *(int *)handle); /* keeps the fd number HDF5 holds */
            close(sink);
        }
    }
    if (fapl >= 0) H5Pclose(fapl);
    return H5Fclose(file);
}

/* Builds the whole file at `tmp`. */
static rt_status write_file(const char *tmp, const char *path, const ckpt_contents *c) {
    rt_status st = RT_OK;
    writer w = {path, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
    hid_t fapl = H5I_INVALID_HID, g = H5I_INVALID_HID;
    RT_H5(fapl = ckpt_fapl(), RT_ERR_INTERNAL, path, "making file access properties");
    RT_H5(H5Pset_alignment(fapl, ALIGN_THRESHOLD, ALIGN_BYTES), RT_ERR_INTERNAL, path,
          "setting the alignment");
    /* A handle left open would make H5Fclose return success without
     * writing the file out; SEMI turns that bug into a failed save. */
    RT_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI), RT_ERR_INTERNAL, path,
          "setting the close degree");
    RT_H5(w.file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), RT_ERR_IO, path,
          "creating the temporary file %s", tmp);
    RT_H5(w.dcpl = H5Pcreate(H5P_DATASET_CREATE), RT_ERR_INTERNAL, path, "H5Pcreate");
    /* Every byte is written right after creation: pre-filling would write
     * each dataset twice. */
    RT_H5(H5Pset_fill_time(w.dcpl, H5D_FILL_TIME_NEVER), RT_ERR_INTERNAL, path, "H5Pset_fill_time");
    RT_H5(H5Pset_layout(w.dcpl, H5D_CONTIGUOUS), RT_ERR_INTERNAL, path, "H5Pset_layout");
    RT_H5(w.lcpl = H5Pcreate(H5P_LINK_CREATE), RT_ERR_INTERNAL, path, "H5Pcreate");
    RT_H5(H5Pset_create_intermediate_group(w.lcpl, 1), RT_ERR_INTERNAL, path,
          "H5Pset_create_intermediate_group");
    RT_H5(w.scalar = H5Screate(H5S_SCALAR), RT_ERR_INTERNAL, path, "H5Screate");

    if ((st = attr_str(&w, w.file, "/", "format", "retort", 0)) != RT_OK) goto cleanup;
    if ((st = attr_i32(&w, w.file, "/", "version", CKPT_FORMAT_VERSION)) != RT_OK) goto cleanup;
    if ((st = attr_str(&w, w.file, "/", "kind", c->kind, 0)) != RT_OK) goto cleanup;
    if ((st = attr_i64(&w, w.file, "/", "step", c->step)) != RT_OK) goto cleanup;
    if ((st = attr_i64(&w, w.file, "/", "tokens_seen", c->tokens_seen)) != RT_OK) goto cleanup;
    if ((st = write_config(&w, &c->cfg)) != RT_OK) goto cleanup;
    if (c->params) {
        if ((st = write_group(&w, w.file, "model", "/model", &g)) != RT_OK) goto cleanup;
        if ((st = write_block(&w, g, "/model", &c->cfg, c->params)) != RT_OK) goto cleanup;
        H5Gclose(g);
        g = H5I_INVALID_HID;
    }
    if (c->adam_m && (st = write_optimizer(&w, c)) != RT_OK) goto cleanup;
    for (int i = 0; i < c->n_extras; i++) {
        const ckpt_array *a = &c->extras[i];
        st = write_dataset(&w, w.file, a->path, a->path, a->dtype, a->ndim, a->shape, a->data);
        if (st != RT_OK) goto cleanup;
    }
    if ((st = write_meta(&w, c)) != RT_OK) goto cleanup;
    RT_H5(H5Fflush(w.file, H5F_SCOPE_GLOBAL), RT_ERR_IO, path, "flushing %s", tmp);
cleanup:
    if (g >= 0) H5Gclose(g);
    if (w.scalar >= 0) H5Sclose(w.scalar);
    if (w.lcpl >= 0) H5Pclose(w.lcpl);
    if (w.dcpl >= 0) H5Pclose(w.dcpl);
    if (fapl >= 0) H5Pclose(fapl);
    /* Closing writes the last metadata; a failure here is a failed save.
     * Whatever failed, the file is closed before returning (item 10). */
    if (w.file >= 0 && st != RT_OK) {
        (void)close_discarding(w.file);
    } else if (w.file >= 0 && H5Fclose(w.file) < 0) {
        st = rt_h5_fail(RT_ERR_IO, path, "closing %s", tmp);
        (void)close_discarding(w.file); /* the id is still open after a failed close */
    }
    H5Eclear2(H5E_DEFAULT);
    return st;
}

rt_status ckpt_save(const char *path, const ckpt_contents *c) {
    if (!path || !path[0]) return rt_fail(RT_ERR_ARGS, "checkpoint path is empty");
    rt_h5_quiet();
    RT_TRY(check_contents(path, c));
    char tmp[CKPT_PATH_MAX];
    RT_TRY(data_tmp_path(tmp, sizeof tmp, path));
    /* Creating the file ourselves first turns "folder missing / not
     * writable" into a message with the system's reason. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rt_fail(RT_ERR_IO, "%s: cannot create the temporary file %s (%s)", path, tmp,
                       strerror(errno));
    close(fd);
    rt_status st = write_file(tmp, path, c);
    if (st != RT_OK) {
        unlink(tmp);
        return st;
    }
    return data_commit_tmp(tmp, path);
}
