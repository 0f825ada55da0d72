/* Reading checkpoints with validation: every way a file can be wrong
 * (missing, not HDF5, truncated, someone else's HDF5, newer version, broken
 * /config, a missing or reshaped tensor, flipped bits in the data) becomes
 * one rt_status with a message naming the file and, where there is one, the
 * dataset. Nothing here trusts the file's sizes for memory: every dataset's
 * extent is compared with what the caller's buffer holds before reading. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_deploy.h"
#include "ckpt_hf.h"
#include "ckpt_deploy.h" /* CKPT_SCALE_MIN/MAX */
#include "ckpt_internal.h"
#include "rt_size.h"

struct ckpt_reader {
    char *path;
    hid_t file;     /* H5I_INVALID_HID for a Hugging Face folder */
    ckpt_hf *hf;    /* the folder's weights; NULL for an HDF5 file */
    student_config cfg;
    char kind[8];
    int64_t step, tokens_seen;
    int config_crc; /* /config has its checksum (checked at open) */
};

const char *ckpt_reader_path(const ckpt_reader *r) { return r->path; }
const student_config *ckpt_reader_config(const ckpt_reader *r) { return &r->cfg; }
const char *ckpt_reader_kind(const ckpt_reader *r) { return r->kind; }
int64_t ckpt_reader_step(const ckpt_reader *r) { return r->step; }
int64_t ckpt_reader_tokens_seen(const ckpt_reader *r) { return r->tokens_seen; }
hid_t ckpt_reader_file(const ckpt_reader *r) { return r->file; }
ckpt_hf *ckpt_reader_hf(const ckpt_reader *r) { return r->hf; }

void ckpt_reader_close(ckpt_reader *r) {
    if (!r) return;
    if (r->file >= 0) H5Fclose(r->file);
    ckpt_hf_close(r->hf);
    free(r->path);
    free(r);
}

/* ------------------------------------------------------------ attributes */

/* Opens attribute `name` of obj (*a, *type, *space: the caller closes the
 * valid ones) and checks that it holds one value of class `cls` (`what`
 * names it in the error). */
static rt_status open_scalar_attr(const char *path, hid_t obj, const char *objname,
                                  const char *name, H5T_class_t cls, const char *what, hid_t *a,
                                  hid_t *type, hid_t *space) {
    rt_status st = RT_OK;
    if (H5Aexists(obj, name) <= 0)
        return rt_fail(RT_ERR_FORMAT, "%s: %s lacks the attribute %s", path, objname, name);
    RT_H5(*a = H5Aopen(obj, name, H5P_DEFAULT), RT_ERR_FORMAT, path,
          "opening attribute %s of %s", name, objname);
    RT_H5(*type = H5Aget_type(*a), RT_ERR_FORMAT, path, "reading the type of %s of %s", name,
          objname);
    RT_H5(*space = H5Aget_space(*a), RT_ERR_FORMAT, path, "reading the shape of %s of %s", name,
          objname);
    if (H5Tget_class(*type) != cls || H5Sget_simple_extent_npoints(*space) != 1)
        st = rt_fail(RT_ERR_FORMAT, "%s: attribute %s of %s is not %s", path, name, objname,
                     what);
cleanup:
    return st;
}

static rt_status read_int_attr(const char *path, hid_t obj, const char *objname,
                               const char *name, int64_t *v) {
    rt_status st = RT_OK;
    hid_t a = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    st = open_scalar_attr(path, obj, objname, name, H5T_INTEGER, "one integer", &a, &type, &space);
    if (st != RT_OK) goto cleanup;
    RT_H5(H5Aread(a, H5T_NATIVE_INT64, v), RT_ERR_FORMAT, path, "reading attribute %s of %s",
          name, objname);
cleanup:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    return st;
}

/* A string attribute (variable or fixed length) into a new string; checks
 * <name>_checksum when present. */
static rt_status read_str_attr(const char *path, hid_t obj, const char *objname, const char *name,
                               char **out) {
    rt_status st = RT_OK;
    hid_t a = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID,
          space = H5I_INVALID_HID;
    char *vstr = NULL, *s = NULL;
    *out = NULL;
    st = open_scalar_attr(path, obj, objname, name, H5T_STRING, "one string", &a, &type, &space);
    if (st != RT_OK) goto cleanup;
    RT_H5(mem = H5Tcopy(type), RT_ERR_INTERNAL, path, "H5Tcopy");
    if (H5Tis_variable_str(type) > 0) {
        RT_H5(H5Aread(a, mem, &vstr), RT_ERR_FORMAT, path, "reading attribute %s of %s", name,
              objname);
        s = strdup(vstr ? vstr : "");
    } else {
        size_t size = H5Tget_size(type);
        s = calloc(size + 1, 1);
        if (s) RT_H5(H5Aread(a, mem, s), RT_ERR_FORMAT, path, "reading attribute %s of %s", name,
                     objname);
    }
    if (!s) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading attribute %s of %s", path, name,
                     objname);
        goto cleanup;
    }
    char cname[256];
    snprintf(cname, sizeof cname, "%s%s", name, CKPT_STR_CHECKSUM_SUFFIX);
    if (H5Aexists(obj, cname) > 0) {
        int64_t want;
        if ((st = read_int_attr(path, obj, objname, cname, &want)) != RT_OK) goto cleanup;
        uint32_t got = ckpt_crc32c(0, s, strlen(s));
        if ((int64_t)got != want) {
            st = rt_fail(RT_ERR_FORMAT, "%s: attribute %s of %s fails its checksum (stored "
                         "0x%08llx, text 0x%08x): the file is corrupt", path, name, objname,
                         (unsigned long long)want, got);
            goto cleanup;
        }
    }
    *out = s;
    s = NULL;
cleanup:
    free(s);
    if (vstr) H5free_memory(vstr);
    if (mem >= 0) H5Tclose(mem);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    return st;
}

/* ------------------------------------------------------------------ open */

static rt_status read_root(ckpt_reader *r) {
    const char *path = r->path;
    char *fmt = NULL, *kind = NULL;
    int64_t version = 0;
    rt_status st = RT_OK;
    if (H5Aexists(r->file, "format") <= 0 || read_str_attr(path, r->file, "/", "format", &fmt) ||
        strcmp(fmt, "retort") != 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: not a retort checkpoint (no format=retort attribute)",
                     path);
        goto cleanup;
    }
    if ((st = read_int_attr(path, r->file, "/ (root)", "version", &version)) != RT_OK) goto cleanup;
    if (version > CKPT_FORMAT_VERSION) {
        st = rt_fail(RT_ERR_UNSUPPORTED, "%s: checkpoint format version %lld is newer than this "
                     "retort reads (%d); use a newer retort", path, (long long)version,
                     CKPT_FORMAT_VERSION);
        goto cleanup;
    }
    if (version < 1) {
        st = rt_fail(RT_ERR_FORMAT, "%s: bad checkpoint format version %lld", path,
                     (long long)version);
        goto cleanup;
    }
    if ((st = read_str_attr(path, r->file, "/ (root)", "kind", &kind)) != RT_OK) goto cleanup;
    if (strcmp(kind, "train") != 0 && strcmp(kind, "deploy") != 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: kind is \"%.40s\"; expected train or deploy", path, kind);
        goto cleanup;
    }
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    if ((st = read_int_attr(path, r->file, "/ (root)", "step", &r->step)) != RT_OK) goto cleanup;
    if ((st = read_int_attr(path, r->file, "/ (root)", "tokens_seen", &r->tokens_seen)) != RT_OK)
        goto cleanup;
    if (r->step < 0 || r->tokens_seen < 0)
        st = rt_fail(RT_ERR_FORMAT, "%s: negative step (%lld) or tokens_seen (%lld)", path,
                     (long long)r->step, (long long)r->tokens_seen);
cleanup:
    free(fmt);
    free(kind);
    return st;
}

static rt_status read_config(ckpt_reader *r) {
    const char *path = r->path;
    rt_status st = RT_OK;
    hid_t g = H5I_INVALID_HID;
    if (H5Lexists(r->file, "config", H5P_DEFAULT) <= 0)
        return rt_fail(RT_ERR_FORMAT, "%s: no /config group (model shape unknown)", path);
    RT_H5(g = H5Gopen2(r->file, "config", H5P_DEFAULT), RT_ERR_FORMAT, path, "opening /config");
    struct { const char *name; int *dst; } f[] = {
        {"n_layer", &r->cfg.n_layer}, {"n_head", &r->cfg.n_head},
        {"d_model", &r->cfg.d_model}, {"d_ff", &r->cfg.d_ff},
        {"vocab_size", &r->cfg.vocab_size}, {"seq_len", &r->cfg.seq_len},
    };
    int64_t raw[CKPT_CONFIG_FIELDS_LOWRANK] = {0};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        int64_t v;
        if ((st = read_int_attr(path, g, "/config", f[i].name, &v)) != RT_OK) goto cleanup;
        raw[i] = v;
        if (v > INT_MAX || v < INT_MIN) {
            st = rt_fail(RT_ERR_FORMAT, "%s: /config %s is %lld, too large", path, f[i].name,
                         (long long)v);
            goto cleanup;
        }
        *f[i].dst = (int)v;
    }
    /* d_head is optional: absent = d_model / n_head (written only by heads
     * pruning, when the attention width no longer equals d_model) */
    r->cfg.d_head = 0;
    htri_t has = H5Aexists(g, "d_head");
    if (has < 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: cannot query /config d_head", path);
        goto cleanup;
    }
    if (has > 0) {
        int64_t v;
        if ((st = read_int_attr(path, g, "/config", "d_head", &v)) != RT_OK) goto cleanup;
        raw[6] = v;
        if (v <= 0 || v > INT_MAX) {
            st = rt_fail(RT_ERR_FORMAT, "%s: /config d_head is %lld; it must be a positive "
                         "head width", path, (long long)v);
            goto cleanup;
        }
        r->cfg.d_head = (int)v;
        if (!ckpt_config_has_d_head(&r->cfg)) r->cfg.d_head = 0; /* one spelling per shape */
    }
    /* ranks of low-rank linears: optional, absent = dense */
    int lowrank = 0;
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        char name[64];
        snprintf(name, sizeof name, "rank.%s", student_linear_name((student_linear)k));
        r->cfg.rank[k] = 0;
        if ((has = H5Aexists(g, name)) < 0) {
            st = rt_fail(RT_ERR_FORMAT, "%s: cannot query /config %s", path, name);
            goto cleanup;
        }
        if (has == 0) continue;
        int64_t v;
        if ((st = read_int_attr(path, g, "/config", name, &v)) != RT_OK) goto cleanup;
        if (v < 0 || v > INT_MAX) {
            st = rt_fail(RT_ERR_FORMAT, "%s: /config %s is %lld; a rank is 0 (dense) to "
                         "min(in, out)", path, name, (long long)v);
            goto cleanup;
        }
        raw[CKPT_CONFIG_FIELDS + k] = v;
        r->cfg.rank[k] = (int)v;
        lowrank |= v > 0;
    }
    /* the shape attributes' own checksum (files of other tools may lack it;
     * --verify then says so) */
    has = H5Aexists(g, CKPT_CHECKSUM_ATTR);
    if (has > 0) {
        int64_t want;
        if ((st = read_int_attr(path, g, "/config", CKPT_CHECKSUM_ATTR, &want)) != RT_OK)
            goto cleanup;
        const uint32_t got =
            ckpt_config_crc(raw, lowrank ? CKPT_CONFIG_FIELDS_LOWRANK : CKPT_CONFIG_FIELDS);
        if ((int64_t)got != want) {
            st = rt_fail(RT_ERR_FORMAT, "%s: /config fails its checksum (stored 0x%08llx, "
                         "attributes 0x%08x): the model shape was edited or is corrupt", path,
                         (unsigned long long)want, got);
            goto cleanup;
        }
        r->config_crc = 1;
    }
    if (student_config_validate(&r->cfg) != RT_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", rt_last_error());
        st = rt_fail(RT_ERR_FORMAT, "%s: /config is invalid: %s", path, why);
    }
cleanup:
    if (g >= 0) H5Gclose(g);
    return st;
}

/* A Hugging Face GPT-2 folder: weights only, like an f32 deploy file. */
static rt_status open_hf(const char *path, ckpt_reader **out) {
    ckpt_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return rt_fail(RT_ERR_NOMEM, "%s: out of memory opening the folder", path);
    }
    r->file = H5I_INVALID_HID;
    snprintf(r->kind, sizeof r->kind, "hf");
    rt_status st = ckpt_hf_open(path, &r->hf, &r->cfg);
    if (st != RT_OK) {
        ckpt_reader_close(r);
        return st;
    }
    *out = r;
    return RT_OK;
}

rt_status ckpt_open(const char *path, ckpt_reader **out) {
    *out = NULL;
    if (!path || !path[0]) return rt_fail(RT_ERR_ARGS, "no checkpoint path given");
    rt_h5_quiet();
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return rt_fail(RT_ERR_IO, "%s: no such file", path);
        return rt_fail(RT_ERR_IO, "%s: cannot access (%s)", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode) && ckpt_hf_is_folder(path)) return open_hf(path, out);
    if (S_ISDIR(sb.st_mode))
        return rt_fail(RT_ERR_IO, "%s: is a folder, not a checkpoint file (pass a step_*.h5 file, "
                       "\"latest\" or a Hugging Face folder with config.json)", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rt_fail(RT_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    close(fd);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return rt_fail(RT_ERR_FORMAT, "%s: not an HDF5 file", path);
    }
    rt_status st = RT_OK;
    hid_t fapl = H5I_INVALID_HID;
    ckpt_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory opening the checkpoint", path);
        goto cleanup;
    }
    r->file = H5I_INVALID_HID;
    RT_H5(fapl = ckpt_fapl(), RT_ERR_INTERNAL, path, "making file access properties");
    r->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (r->file < 0) {
        char msg[512];
        rt_h5_message(msg, sizeof msg);
        st = rt_fail(RT_ERR_FORMAT, "%s: cannot open (truncated or corrupt HDF5)%s%s", path,
                     msg[0] ? "; hdf5: " : "", msg);
        goto cleanup;
    }
    if ((st = read_root(r)) != RT_OK) goto cleanup;
    if ((st = read_config(r)) != RT_OK) goto cleanup;
    *out = r;
    r = NULL;
cleanup:
    if (fapl >= 0) H5Pclose(fapl);
    ckpt_reader_close(r);
    return st;
}

rt_status ckpt_require_kind(const ckpt_reader *r, const char *kind, const char *purpose) {
    if (strcmp(r->kind, kind) == 0) return RT_OK;
    if (strcmp(r->kind, "deploy") == 0)
        return rt_fail(RT_ERR_FORMAT, "%s: is a deploy file (kind=deploy); %s needs a training "
                       "checkpoint (kind=%s, e.g. <run_dir>/step_*.h5)", r->path,
                       purpose ? purpose : "this", kind);
    return rt_fail(RT_ERR_FORMAT, "%s: is a kind=%s checkpoint; %s needs kind=%s", r->path,
                   r->kind, purpose ? purpose : "this", kind);
}

rt_status ckpt_check_config(const ckpt_reader *r, const student_config *want, const char *what) {
    const struct { const char *name; int have, want; } f[] = {
        {"n_layer", r->cfg.n_layer, want->n_layer}, {"n_head", r->cfg.n_head, want->n_head},
        {"d_model", r->cfg.d_model, want->d_model}, {"d_ff", r->cfg.d_ff, want->d_ff},
        {"vocab_size", r->cfg.vocab_size, want->vocab_size},
        {"seq_len", r->cfg.seq_len, want->seq_len},
        {"d_head", student_head_dim(&r->cfg), student_head_dim(want)},
        {"rank.attn.c_attn", r->cfg.rank[0], want->rank[0]},
        {"rank.attn.c_proj", r->cfg.rank[1], want->rank[1]},
        {"rank.mlp.c_fc", r->cfg.rank[2], want->rank[2]},
        {"rank.mlp.c_proj", r->cfg.rank[3], want->rank[3]},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].have != f[i].want)
            return rt_fail(RT_ERR_MISMATCH, "%s: %s is %d, expected %d%s%s%s", r->path, f[i].name,
                           f[i].have, f[i].want, what ? " (" : "", what ? what : "",
                           what ? ")" : "");
    return RT_OK;
}

/* -------------------------------------------------------------- datasets */

int ckpt_has(ckpt_reader *r, const char *path) {
    if (!path || path[0] != '/' || r->hf) return 0; /* a folder holds /model only */
    if (path[1] == '\0') return 1;
    char buf[CKPT_PATH_MAX];
    if (strlen(path) >= sizeof buf) return 0;
    snprintf(buf, sizeof buf, "%s", path);
    /* H5Lexists needs every parent to exist: check them one by one. */
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            htri_t e = H5Lexists(r->file, buf, H5P_DEFAULT);
            if (e <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return 0;
            }
            if (c == '\0') break;
            *p = c;
        }
    }
    htri_t e = H5Oexists_by_name(r->file, path, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

static void format_shape(char *buf, size_t cap, int ndim, const hsize_t *dims) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Opens the dataset at dpath; RT_ERR_FORMAT naming it when missing. */
static rt_status open_dataset(ckpt_reader *r, const char *dpath, hid_t *d) {
    if (!ckpt_has(r, dpath))
        return rt_fail(RT_ERR_FORMAT, "%s: %s is missing (incomplete checkpoint?)", r->path, dpath);
    rt_status st = RT_OK;
    *d = H5Dopen2(r->file, dpath, H5P_DEFAULT);
    if (*d < 0) st = rt_h5_fail(RT_ERR_FORMAT, r->path, "opening %s as a dataset", dpath);
    return st;
}

/* Opens dataset `dpath` into *d after checking its type is t (or alt_t
 * when alt_t >= 0), its shape is shape[ndim] (ndim >= 0) or its element
 * count numel (ndim < 0), and that the file stores the bytes it declares.
 * *type_out is the type it has; nothing is read. */
static rt_status check_dataset(ckpt_reader *r, const char *dpath, ckpt_dtype t, int alt_t,
                               int ndim, const int64_t *shape, size_t numel, hid_t *d_out,
                               ckpt_dtype *type_out, size_t *numel_out) {
    const char *path = r->path;
    rt_status st = RT_OK;
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int have_t = -1;
    size_t have_n = 1;
    if ((st = open_dataset(r, dpath, &d)) != RT_OK) return st;
    RT_H5(type = H5Dget_type(d), RT_ERR_FORMAT, path, "reading the type of %s", dpath);
    have_t = ckpt_dtype_of(type);
    if (have_t != (int)t && (alt_t < 0 || have_t != alt_t)) {
        st = rt_fail(RT_ERR_FORMAT, "%s: %s is %s, expected %s", path, dpath,
                     have_t < 0 ? "of an unsupported type" : ckpt_dtype_name((ckpt_dtype)have_t),
                     ckpt_dtype_name(t));
        goto cleanup;
    }
    RT_H5(space = H5Dget_space(d), RT_ERR_FORMAT, path, "reading the shape of %s", dpath);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (rank < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = rt_h5_fail(RT_ERR_FORMAT, path, "reading the shape of %s", dpath);
        goto cleanup;
    }
    for (int i = 0; i < rank; i++)
        if (dims[i] > SIZE_MAX || !rt_size_mul(have_n, (size_t)dims[i], &have_n)) {
            st = rt_fail(RT_ERR_FORMAT, "%s: %s declares more elements than memory can address",
                         path, dpath);
            goto cleanup;
        }
    if (ndim >= 0) {
        int same = rank == ndim;
        for (int i = 0; same && i < ndim; i++) same = dims[i] == (hsize_t)shape[i];
        if (!same) {
            char hb[128], wb[128];
            hsize_t wd[CKPT_MAX_DIMS];
            for (int i = 0; i < ndim; i++) wd[i] = (hsize_t)shape[i];
            format_shape(hb, sizeof hb, rank, dims);
            format_shape(wb, sizeof wb, ndim, wd);
            st = rt_fail(RT_ERR_MISMATCH, "%s: %s has shape %s, expected %s", path, dpath, hb, wb);
            goto cleanup;
        }
    } else if (have_n != numel) {
        st = rt_fail(RT_ERR_MISMATCH, "%s: %s has %zu elements, expected %zu", path, dpath, have_n,
                     numel);
        goto cleanup;
    }
    st = rt_h5_check_stored(d, path, dpath, have_n, ckpt_dtype_size((ckpt_dtype)have_t));
cleanup:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (st == RT_OK) {
        *d_out = d;
        *type_out = (ckpt_dtype)have_t;
        *numel_out = have_n;
    } else if (d >= 0) {
        H5Dclose(d);
    }
    return st;
}

/* Reads dataset `dpath` into out after check_dataset, then verifies the
 * stored checksum. */
static rt_status read_dataset(ckpt_reader *r, const char *dpath, ckpt_dtype t, int ndim,
                              const int64_t *shape, size_t numel, void *out) {
    const char *path = r->path;
    rt_status st = RT_OK;
    hid_t d = H5I_INVALID_HID;
    ckpt_dtype have_t = t;
    size_t have_n = 0;
    if ((st = check_dataset(r, dpath, t, -1, ndim, shape, numel, &d, &have_t, &have_n)) != RT_OK)
        goto cleanup;
    if (have_n > 0)
        RT_H5(H5Dread(d, ckpt_mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, out), RT_ERR_FORMAT,
              path, "reading %s", dpath);
    if (H5Aexists(d, CKPT_CHECKSUM_ATTR) > 0) {
        int64_t want;
        if ((st = read_int_attr(path, d, dpath, CKPT_CHECKSUM_ATTR, &want)) != RT_OK) goto cleanup;
        uint32_t got = ckpt_crc32c(0, out, have_n * ckpt_dtype_size(t));
        if ((int64_t)got != want)
            st = rt_fail(RT_ERR_FORMAT, "%s: %s fails its checksum (stored 0x%08llx, data "
                         "0x%08x): the file is corrupt", path, dpath, (unsigned long long)want,
                         got);
    }
cleanup:
    if (d >= 0) H5Dclose(d);
    H5Eclear2(H5E_DEFAULT);
    return st;
}

rt_status ckpt_check_model(ckpt_reader *r) {
    if (r->hf) return RT_OK; /* a Hugging Face folder: its headers were checked on open */
    if (r->hf) return RT_OK; /* a folder's tensors were checked against config.json on open */
    if (!ckpt_has(r, "/model"))
        return rt_fail(RT_ERR_FORMAT, "%s: no /model group (kind=%s file without weights)",
                       r->path, r->kind);
    /* int8 deploy files hold the quantized tensors as int8 of the same
     * shape; a codebook deploy's linear weights are uint8 indices of their
     * own shape, which ckpt_deploy_read_codebook checks */
    const int deploy = strcmp(r->kind, "deploy") == 0;
    const int alt = deploy ? (int)CKPT_I8 : -1;
    const int codebook = deploy && ckpt_has(r, CKPT_DEPLOY_CODEBOOK);
    student_tensor t;
    char dpath[256];
    for (int i = 0; i < student_tensor_count(&r->cfg); i++) {
        if (codebook && student_prune_target(&r->cfg, i, NULL) >= 0) continue;
        student_tensor_info(&r->cfg, i, &t);
        snprintf(dpath, sizeof dpath, "/model/%s", t.name);
        hid_t d = H5I_INVALID_HID;
        ckpt_dtype have_t = CKPT_F32;
        size_t have_n = 0;
        rt_status st = check_dataset(r, dpath, CKPT_F32, alt, t.ndim, t.shape, t.numel, &d,
                                     &have_t, &have_n);
        if (d >= 0) H5Dclose(d);
        H5Eclear2(H5E_DEFAULT);
        if (st != RT_OK) return st;
    }
    return RT_OK;
}

rt_status ckpt_check_floats(const ckpt_reader *r, const char *dpath, const float *x, size_t n,
                            float lo, float hi) {
    return ckpt_check_floats_in(r->path, dpath, x, n, lo, hi);
}

/* Every tensor of the table from group `gname` into block, laid out for
 * mc (the file's config, or the same with fewer positions: then only the
 * first mc->seq_len rows of wpe are kept), each checked to lie in
 * [lo, hi] (finite). */
static rt_status read_block(ckpt_reader *r, const char *gname, const student_config *mc,
                            float *block, float lo, float hi) {
    student_tensor t, ft;
    char dpath[256];
    for (int i = 0; i < student_tensor_count(mc); i++) {
        student_tensor_info(mc, i, &t);
        student_tensor_info(&r->cfg, i, &ft);
        snprintf(dpath, sizeof dpath, "%s/%s", gname, t.name);
        if (t.numel == ft.numel) {
            RT_TRY(read_dataset(r, dpath, CKPT_F32, t.ndim, t.shape, t.numel, block + t.offset));
            RT_TRY(ckpt_check_floats(r, dpath, block + t.offset, t.numel, lo, hi));
            continue;
        }
        float *full = malloc(ft.numel * sizeof *full);
        if (!full) return rt_fail(RT_ERR_NOMEM, "%s: out of memory reading %s", r->path, dpath);
        rt_status st = read_dataset(r, dpath, CKPT_F32, ft.ndim, ft.shape, ft.numel, full);
        if (st == RT_OK) memcpy(block + t.offset, full, t.numel * sizeof *full);
        free(full);
        RT_TRY(st);
        RT_TRY(ckpt_check_floats(r, dpath, block + t.offset, t.numel, lo, hi));
    }
    return RT_OK;
}

/* The LM head is tied to wte: a stored /model/lm_head.weight must equal it. */
static rt_status check_lm_head(ckpt_reader *r, const float *wte) {
    static const char hp[] = "/model/lm_head.weight";
    if (!ckpt_has(r, hp)) return RT_OK;
    student_tensor t;
    student_tensor_info(&r->cfg, 0, &t);
    float *h = malloc(t.numel * sizeof *h);
    if (!h) return rt_fail(RT_ERR_NOMEM, "%s: out of memory reading %s", r->path, hp);
    rt_status st = read_dataset(r, hp, CKPT_F32, t.ndim, t.shape, t.numel, h);
    if (st == RT_OK && memcmp(h, wte, t.numel * sizeof *h) != 0)
        st = rt_fail(RT_ERR_UNSUPPORTED, "%s: %s differs from /model/%s: an untied LM head is "
                     "not supported (retort's head is wte)", r->path, hp, t.name);
    free(h);
    return st;
}

rt_status ckpt_read_params_for(ckpt_reader *r, const student_config *mc, float *block) {
    student_config same = *mc;
    same.seq_len = r->cfg.seq_len;
    RT_ASSERT(memcmp(&same, &r->cfg, sizeof same) == 0 && mc->seq_len <= r->cfg.seq_len);
    if (r->hf) return ckpt_hf_read_params(r->hf, mc, block);
    if (!ckpt_has(r, "/model"))
        return rt_fail(RT_ERR_FORMAT, "%s: no /model group (kind=%s file without float weights)",
                       r->path, r->kind);
    RT_TRY(read_block(r, "/model", mc, block, -FLT_MAX, FLT_MAX));
    return check_lm_head(r, block); /* wte is tensor 0, at offset 0 */
}

rt_status ckpt_read_params(ckpt_reader *r, float *block) {
    return ckpt_read_params_for(r, &r->cfg, block);
}

rt_status ckpt_read_optimizer(ckpt_reader *r, float *adam_m, float *adam_v, int64_t *step) {
    rt_status st = RT_OK;
    hid_t g = H5I_INVALID_HID;
    if (!ckpt_has(r, "/optimizer"))
        return rt_fail(RT_ERR_FORMAT, "%s: has no optimizer state (/optimizer); it cannot resume "
                       "training exactly", r->path);
    RT_H5(g = H5Gopen2(r->file, "/optimizer", H5P_DEFAULT), RT_ERR_FORMAT, r->path,
          "opening /optimizer");
    if ((st = read_int_attr(r->path, g, "/optimizer", "step", step)) != RT_OK) goto cleanup;
    if ((st = read_block(r, "/optimizer/m", &r->cfg, adam_m, -FLT_MAX, FLT_MAX)) != RT_OK)
        goto cleanup;
    /* v is a running mean of squares: a negative one would make sqrt(v) NaN */
    st = read_block(r, "/optimizer/v", &r->cfg, adam_v, 0.0f, FLT_MAX);
cleanup:
    if (g >= 0) H5Gclose(g);
    return st;
}

rt_status ckpt_array_info(ckpt_reader *r, const char *path, ckpt_dtype *dtype, int *ndim,
                          int64_t *shape) {
    rt_status st = RT_OK;
    hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    if ((st = open_dataset(r, path, &d)) != RT_OK) return st;
    RT_H5(type = H5Dget_type(d), RT_ERR_FORMAT, r->path, "reading the type of %s", path);
    int t = ckpt_dtype_of(type);
    if (t < 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: %s is of a type retort does not read", r->path, path);
        goto cleanup;
    }
    RT_H5(space = H5Dget_space(d), RT_ERR_FORMAT, r->path, "reading the shape of %s", path);
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > CKPT_MAX_DIMS) {
        st = rt_fail(RT_ERR_FORMAT, "%s: %s has %d dimensions (at most %d)", r->path, path, rank,
                     CKPT_MAX_DIMS);
        goto cleanup;
    }
    hsize_t dims[CKPT_MAX_DIMS];
    RT_H5(H5Sget_simple_extent_dims(space, dims, NULL), RT_ERR_FORMAT, r->path,
          "reading the shape of %s", path);
    *dtype = (ckpt_dtype)t;
    *ndim = rank;
    if (shape)
        for (int i = 0; i < rank; i++) shape[i] = (int64_t)dims[i];
cleanup:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return st;
}

rt_status ckpt_read_array(ckpt_reader *r, const char *path, ckpt_dtype dtype, size_t numel,
                          void *out) {
    return read_dataset(r, path, dtype, -1, NULL, numel, out);
}

rt_status ckpt_read_string_attr(ckpt_reader *r, const char *obj, const char *name, char **out) {
    *out = NULL;
    if (!ckpt_has(r, obj))
        return rt_fail(RT_ERR_FORMAT, "%s: %s is missing", r->path, obj);
    rt_status st = RT_OK;
    hid_t o = H5I_INVALID_HID;
    RT_H5(o = H5Oopen(r->file, obj, H5P_DEFAULT), RT_ERR_FORMAT, r->path, "opening %s", obj);
    st = read_str_attr(r->path, o, obj, name, out);
cleanup:
    if (o >= 0) H5Oclose(o);
    return st;
}

/* ------------------------------------------------------------------ walk */

/* Deepest group nesting and most links a retort file has any business
 * holding: a crafted file with a link cycle or millions of links is an
 * error, not a hang. */
enum { WALK_MAX_DEPTH = 16, WALK_MAX_LINKS = 1 << 20 };

typedef struct {
    ckpt_reader *r;
    ckpt_dataset_fn fn;
    void *ctx;
    char path[CKPT_PATH_MAX];
    int depth;
    long links;
    rt_status st;
} walk_ctx;

static rt_status walk_group(walk_ctx *w, hid_t g);

static herr_t walk_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    walk_ctx *w = data;
    if (++w->links > WALK_MAX_LINKS) {
        w->st = rt_fail(RT_ERR_FORMAT, "%s: more than %d links: not a retort checkpoint",
                        w->r->path, WALK_MAX_LINKS);
        return -1;
    }
    if (info->type != H5L_TYPE_HARD) return 0; /* soft/external links: not ours to follow */
    const size_t len = strlen(w->path);
    if (len + 1 + strlen(name) + 1 > sizeof w->path) {
        w->st = rt_fail(RT_ERR_FORMAT, "%s: an object path under %s is too long", w->r->path,
                        w->path[0] ? w->path : "/");
        return -1;
    }
    snprintf(w->path + len, sizeof w->path - len, "/%s", name);
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0) {
        w->st = rt_h5_fail(RT_ERR_FORMAT, w->r->path, "inspecting %s", w->path);
        return -1;
    }
    if (oi.type == H5O_TYPE_DATASET) {
        w->st = w->fn(w->r, w->path, w->ctx);
    } else if (oi.type == H5O_TYPE_GROUP) {
        hid_t sub = H5Gopen2(g, name, H5P_DEFAULT);
        if (sub < 0)
            w->st = rt_h5_fail(RT_ERR_FORMAT, w->r->path, "opening group %s", w->path);
        else if (w->depth >= WALK_MAX_DEPTH)
            w->st = rt_fail(RT_ERR_FORMAT, "%s: groups nest deeper than %d at %s", w->r->path,
                            WALK_MAX_DEPTH, w->path);
        else {
            w->depth++;
            w->st = walk_group(w, sub);
            w->depth--;
        }
        if (sub >= 0) H5Gclose(sub);
    }
    w->path[len] = '\0';
    return w->st == RT_OK ? 0 : -1;
}

/* One group's links, one level at a time, in the native order of its
 * storage. HDF5 1.10.8 crashes (frees memory it does not own, in
 * H5G__link_release_table) when a large ("dense") group's metadata fails
 * its checksum while it builds the sorted link table that H5Lvisit and any
 * increasing/decreasing-order iteration use; native order walks the
 * group's B-tree without that table (issue 16 item 17). */
static rt_status walk_group(walk_ctx *w, hid_t g) {
    hsize_t idx = 0;
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, walk_link, w);
    if (w->st != RT_OK) return w->st;
    if (rc < 0)
        return rt_h5_fail(RT_ERR_FORMAT, w->r->path, "listing group %s",
                            w->path[0] ? w->path : "/");
    return RT_OK;
}

rt_status ckpt_walk_datasets(ckpt_reader *r, ckpt_dataset_fn fn, void *ctx) {
    walk_ctx *w = calloc(1, sizeof *w);
    if (!w) return rt_fail(RT_ERR_NOMEM, "%s: out of memory walking the file", r->path);
    w->r = r, w->fn = fn, w->ctx = ctx;
    rt_status st = walk_group(w, r->file);
    H5Eclear2(H5E_DEFAULT);
    free(w);
    return st;
}

/* ---------------------------------------------------------------- verify */

static rt_status verify_one(ckpt_reader *r, const char *dpath, void *ctx) {
    (void)ctx;
    rt_status st = RT_OK;
    hid_t d = H5I_INVALID_HID;
    ckpt_dtype t;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    RT_TRY(ckpt_array_info(r, dpath, &t, &ndim, shape));
    /* a dataset without a checksum cannot be verified: saying OK would be
     * a claim nothing backs (every dataset retort writes carries one) */
    RT_H5(d = H5Dopen2(r->file, dpath, H5P_DEFAULT), RT_ERR_FORMAT, r->path, "opening %s",
          dpath);
    htri_t has = H5Aexists(d, CKPT_CHECKSUM_ATTR);
    if (has <= 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: %s has no checksum attribute, so it cannot be verified "
                     "(not written by retort?)", r->path, dpath);
        goto cleanup;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (!rt_size_mul(numel, (size_t)shape[i], &numel)) {
            st = rt_fail(RT_ERR_FORMAT, "%s: %s declares more elements than memory can address",
                         r->path, dpath);
            goto cleanup;
        }
    /* sized by the file: hold the claim to the bytes it really stores */
    if ((st = rt_h5_check_stored(d, r->path, dpath, numel, ckpt_dtype_size(t))) != RT_OK)
        goto cleanup;
    void *buf = malloc(numel ? numel * ckpt_dtype_size(t) : 1);
    if (!buf) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory verifying %s", r->path, dpath);
        goto cleanup;
    }
    st = read_dataset(r, dpath, t, -1, NULL, numel, buf);
    /* weights, scales and moments: what loading would refuse, --verify
     * refuses too (a NaN can carry a valid checksum) */
    if (st == RT_OK && t == CKPT_F32) {
        const size_t len = strlen(dpath);
        float lo = -FLT_MAX, hi = FLT_MAX;
        if (strncmp(dpath, "/optimizer/v/", 13) == 0) lo = 0.0f;
        if (strncmp(dpath, "/model/", 7) == 0 && len > 6 && strcmp(dpath + len - 6, "_scale") == 0)
            lo = CKPT_SCALE_MIN, hi = CKPT_SCALE_MAX;
        if (strncmp(dpath, "/model/", 7) == 0 || strncmp(dpath, "/optimizer/", 11) == 0)
            st = ckpt_check_floats(r, dpath, buf, numel, lo, hi);
    }
    free(buf);
cleanup:
    if (d >= 0) H5Dclose(d);
    return st;
}

rt_status ckpt_verify(ckpt_reader *r) {
    if (r->hf) { /* every tensor read once (headers were checked on open) */
        float *b = rt_alloc_aligned(student_block_floats(&r->cfg) * sizeof *b);
        if (!b) return rt_fail(RT_ERR_NOMEM, "%s: out of memory verifying", r->path);
        rt_status st = ckpt_hf_read_params(r->hf, &r->cfg, b);
        rt_free_aligned(b);
        return st;
    }
    if (!r->config_crc)
        return rt_fail(RT_ERR_FORMAT, "%s: /config has no checksum attribute, so the model shape "
                       "cannot be verified (not written by retort?)", r->path);
    RT_TRY(ckpt_check_model(r)); /* every tensor /config implies, shaped as it says */
    RT_TRY(ckpt_walk_datasets(r, verify_one, NULL));
    if (ckpt_has(r, "/meta")) {
        static const char *const names[] = {"config", "provenance", "retort_version"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char *s = NULL;
            rt_status st = ckpt_read_string_attr(r, "/meta", names[i], &s);
            free(s);
            if (st != RT_OK) return st;
        }
    }
    return RT_OK;
}
