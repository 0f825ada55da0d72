/* Token shards: one HDF5 file per split with a 1-D /tokens dataset and the
 * root attributes vocab_size and source, readable by h5py without retort.
 *
 * Tokens are stored unsigned 16-bit when the vocabulary fits (half the disk
 * and page cache of 32-bit) and unsigned 32-bit otherwise; HDF5 converts to
 * and from retort's int32 in memory. Reads convert to int32 whatever integer
 * type the file holds (saturating out-of-range values, which the
 * vocabulary check then rejects), so shards written by other tools load
 * too as long as their tokens fit the vocabulary. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "fsutil.h"
#include "rt_h5.h"

/* Elements per chunk: 256 Ki tokens (512 KiB at 16 bits). */
#define SHARD_CHUNK (1 << 18)

struct data_shard {
    char *path;
    hid_t file, dset;
    int64_t n, vocab;
    char *source;
};

static rt_status check_tokens(const char *path, const int32_t *tokens, int64_t n, int64_t vocab) {
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return rt_fail(RT_ERR_ARGS, "%s: token %d at index %lld is outside the vocabulary "
                           "of %lld", path, tokens[i], (long long)i, (long long)vocab);
    return RT_OK;
}

static rt_status write_attrs(hid_t file, const char *path, int64_t vocab_size,
                             const char *source) {
    rt_status st = RT_OK;
    hid_t scalar = H5I_INVALID_HID, attr = H5I_INVALID_HID, str = H5I_INVALID_HID;
    RT_H5_CHECK(scalar = H5Screate(H5S_SCALAR), path, RT_ERR_IO);
    RT_H5_CHECK(attr = H5Acreate2(file, "vocab_size", H5T_STD_I64LE, scalar, H5P_DEFAULT,
                                  H5P_DEFAULT), path, RT_ERR_IO);
    RT_H5_CHECK(H5Awrite(attr, H5T_NATIVE_INT64, &vocab_size), path, RT_ERR_IO);
    H5Aclose(attr);
    attr = H5I_INVALID_HID;
    /* A variable-length UTF-8 string reads back as a Python str in h5py. */
    RT_H5_CHECK(str = H5Tcopy(H5T_C_S1), path, RT_ERR_IO);
    RT_H5_CHECK(H5Tset_size(str, H5T_VARIABLE), path, RT_ERR_IO);
    RT_H5_CHECK(H5Tset_cset(str, H5T_CSET_UTF8), path, RT_ERR_IO);
    RT_H5_CHECK(attr = H5Acreate2(file, "source", str, scalar, H5P_DEFAULT, H5P_DEFAULT), path,
                RT_ERR_IO);
    const char *src = source ? source : "";
    RT_H5_CHECK(H5Awrite(attr, str, &src), path, RT_ERR_IO);
cleanup:
    if (attr >= 0) H5Aclose(attr);
    if (str >= 0) H5Tclose(str);
    if (scalar >= 0) H5Sclose(scalar);
    return st;
}

/* ---- writing, a chunk at a time ---- */

struct data_shard_writer {
    char path[DATA_PATH_MAX], tmp[DATA_PATH_MAX];
    hid_t file, dset;
    int64_t n, vocab;
    char *source;
};

void data_shard_writer_abort(data_shard_writer *w) {
    if (!w) return;
    if (w->dset >= 0) H5Dclose(w->dset);
    if (w->file >= 0) H5Fclose(w->file);
    if (w->tmp[0]) unlink(w->tmp);
    free(w->source);
    free(w);
}

rt_status data_shard_writer_create(const char *path, int64_t vocab_size, const char *source,
                                   int64_t size_hint, data_shard_writer **out) {
    *out = NULL;
    if (vocab_size < 1 || vocab_size > INT32_MAX)
        return rt_fail(RT_ERR_ARGS, "%s: vocab_size %lld is outside 1..%d", path,
                       (long long)vocab_size, INT32_MAX);
    rt_h5_quiet();
    rt_status st = RT_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    data_shard_writer *w = calloc(1, sizeof *w);
    if (!w) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
    w->file = w->dset = H5I_INVALID_HID;
    w->vocab = vocab_size;
    if ((size_t)snprintf(w->path, sizeof w->path, "%s", path) >= sizeof w->path) {
        st = rt_fail(RT_ERR_ARGS, "%s: path too long", path);
        goto cleanup;
    }
    if (!(w->source = strdup(source ? source : ""))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if ((st = data_tmp_path(w->tmp, sizeof w->tmp, path)) != RT_OK) {
        w->tmp[0] = '\0';
        goto cleanup;
    }
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        w->tmp[0] = '\0'; /* nothing was made to remove */
        st = rt_h5_fail(RT_ERR_IO, path, "creating the shard (is the folder writable?)");
        goto cleanup;
    }
    /* extendible: the writer never needs to know the final size */
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED};
    hsize_t chunk[1] = {size_hint > 0 && size_hint < SHARD_CHUNK ? (hsize_t)size_hint
                                                                 : SHARD_CHUNK};
    RT_H5_CHECK(space = H5Screate_simple(1, dims, maxdims), path, RT_ERR_IO);
    RT_H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), path, RT_ERR_IO);
    RT_H5_CHECK(H5Pset_chunk(dcpl, 1, chunk), path, RT_ERR_IO);
    hid_t ftype = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
    RT_H5_CHECK(w->dset = H5Dcreate2(w->file, "tokens", ftype, space, H5P_DEFAULT, dcpl,
                                     H5P_DEFAULT),
                path, RT_ERR_IO);
    *out = w;
    w = NULL;
cleanup:
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    data_shard_writer_abort(w);
    return st;
}

rt_status data_shard_writer_append(data_shard_writer *w, const int32_t *tokens, int64_t n) {
    if (n < 0) return rt_fail(RT_ERR_ARGS, "%s: negative token count %lld", w->path, (long long)n);
    if (n == 0) return RT_OK;
    RT_TRY(check_tokens(w->path, tokens, n, w->vocab));
    if (n > INT64_MAX - w->n)
        return rt_fail(RT_ERR_ARGS, "%s: more than %lld tokens", w->path, (long long)INT64_MAX);
    rt_status st = RT_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hsize_t size[1] = {(hsize_t)(w->n + n)}, off[1] = {(hsize_t)w->n}, cnt[1] = {(hsize_t)n};
    RT_H5_CHECK(H5Dset_extent(w->dset, size), w->path, RT_ERR_IO);
    RT_H5_CHECK(fspace = H5Dget_space(w->dset), w->path, RT_ERR_IO);
    RT_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL), w->path,
                RT_ERR_IO);
    RT_H5_CHECK(mspace = H5Screate_simple(1, cnt, NULL), w->path, RT_ERR_IO);
    RT_H5_CHECK(H5Dwrite(w->dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, tokens),
                w->path, RT_ERR_IO);
    w->n += n;
cleanup:
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return st;
}

int64_t data_shard_writer_n_tokens(const data_shard_writer *w) { return w->n; }

rt_status data_shard_writer_finish(data_shard_writer *w) {
    rt_status st = write_attrs(w->file, w->path, w->vocab, w->source);
    if (st == RT_OK) {
        herr_t e = H5Dclose(w->dset);
        w->dset = H5I_INVALID_HID;
        if (e < 0) st = rt_h5_fail(RT_ERR_IO, w->path, "closing /tokens");
    }
    if (st == RT_OK) {
        herr_t e = H5Fclose(w->file);
        w->file = H5I_INVALID_HID;
        if (e < 0) st = rt_h5_fail(RT_ERR_IO, w->path, "closing the shard");
    }
    if (st == RT_OK) {
        st = data_commit_tmp(w->tmp, w->path); /* removes tmp itself on failure */
        w->tmp[0] = '\0';
    }
    data_shard_writer_abort(w);
    return st;
}

rt_status data_shard_write(const char *path, const int32_t *tokens, int64_t n,
                           int64_t vocab_size, const char *source) {
    if (n < 0) return rt_fail(RT_ERR_ARGS, "%s: negative token count %lld", path, (long long)n);
    data_shard_writer *w = NULL;
    RT_TRY(data_shard_writer_create(path, vocab_size, source, n, &w));
    /* in chunks, so HDF5's type conversion buffer stays small */
    for (int64_t i = 0; i < n; i += SHARD_CHUNK) {
        const int64_t k = n - i < SHARD_CHUNK ? n - i : SHARD_CHUNK;
        rt_status st = data_shard_writer_append(w, tokens + i, k);
        if (st != RT_OK) {
            data_shard_writer_abort(w);
            return st;
        }
    }
    return data_shard_writer_finish(w);
}

/* ---- reading ---- */

void data_shard_close(data_shard *s) {
    if (!s) return;
    if (s->dset >= 0) H5Dclose(s->dset);
    if (s->file >= 0) H5Fclose(s->file);
    free(s->path);
    free(s->source);
    free(s);
}

int64_t data_shard_n_tokens(const data_shard *s) { return s->n; }
int64_t data_shard_vocab_size(const data_shard *s) { return s->vocab; }
const char *data_shard_source(const data_shard *s) { return s->source ? s->source : ""; }
const char *data_shard_path(const data_shard *s) { return s->path; }

static rt_status read_vocab_attr(data_shard *s) {
    rt_status st = RT_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    if (H5Aexists(s->file, "vocab_size") <= 0)
        return rt_fail(RT_ERR_FORMAT, "%s: no vocab_size attribute (not a retort token shard)",
                       s->path);
    RT_H5_CHECK(attr = H5Aopen(s->file, "vocab_size", H5P_DEFAULT), s->path, RT_ERR_FORMAT);
    RT_H5_CHECK(type = H5Aget_type(attr), s->path, RT_ERR_FORMAT);
    RT_H5_CHECK(space = H5Aget_space(attr), s->path, RT_ERR_FORMAT);
    if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) {
        st = rt_fail(RT_ERR_FORMAT, "%s: vocab_size is not one integer", s->path);
        goto cleanup;
    }
    RT_H5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, &s->vocab), s->path, RT_ERR_FORMAT);
    if (s->vocab < 1 || s->vocab > INT32_MAX)
        st = rt_fail(RT_ERR_FORMAT, "%s: vocab_size %lld is outside 1..%d", s->path,
                     (long long)s->vocab, INT32_MAX);
cleanup:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

/* Reads the optional `source` string attribute (variable or fixed length). */
static rt_status read_source_attr(data_shard *s) {
    rt_status st = RT_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    char *vstr = NULL;
    if (H5Aexists(s->file, "source") <= 0) return RT_OK;
    RT_H5_CHECK(attr = H5Aopen(s->file, "source", H5P_DEFAULT), s->path, RT_ERR_FORMAT);
    RT_H5_CHECK(type = H5Aget_type(attr), s->path, RT_ERR_FORMAT);
    if (H5Tget_class(type) != H5T_STRING) goto cleanup; /* not ours to interpret */
    RT_H5_CHECK(mem = H5Tcopy(type), s->path, RT_ERR_FORMAT);
    if (H5Tis_variable_str(type) > 0) {
        RT_H5_CHECK(H5Aread(attr, mem, &vstr), s->path, RT_ERR_FORMAT);
        s->source = strdup(vstr ? vstr : "");
    } else {
        size_t size = H5Tget_size(type);
        s->source = calloc(size + 1, 1);
        if (s->source) RT_H5_CHECK(H5Aread(attr, mem, s->source), s->path, RT_ERR_FORMAT);
    }
    if (!s->source) st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for the source attribute", s->path);
cleanup:
    if (vstr) H5free_memory(vstr);
    if (mem >= 0) H5Tclose(mem);
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

static rt_status open_tokens(data_shard *s) {
    rt_status st = RT_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    if (H5Lexists(s->file, "tokens", H5P_DEFAULT) <= 0)
        return rt_fail(RT_ERR_FORMAT, "%s: no /tokens dataset (not a retort token shard; "
                       "`retort prepare` makes them)", s->path);
    s->dset = H5Dopen2(s->file, "tokens", H5P_DEFAULT);
    if (s->dset < 0) return rt_h5_fail(RT_ERR_FORMAT, s->path, "opening /tokens as a dataset");
    RT_H5_CHECK(type = H5Dget_type(s->dset), s->path, RT_ERR_FORMAT);
    if (H5Tget_class(type) != H5T_INTEGER) {
        st = rt_fail(RT_ERR_FORMAT, "%s: /tokens is not an integer dataset", s->path);
        goto cleanup;
    }
    RT_H5_CHECK(space = H5Dget_space(s->dset), s->path, RT_ERR_FORMAT);
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank != 1) {
        st = rt_fail(RT_ERR_FORMAT, "%s: /tokens has %d dimensions; expected 1", s->path, rank);
        goto cleanup;
    }
    hsize_t dims[1];
    RT_H5_CHECK(H5Sget_simple_extent_dims(space, dims, NULL), s->path, RT_ERR_FORMAT);
    /* the extent is the file's claim: hold it to the bytes really stored
     * (and to what int32 memory can address) before anyone allocates */
    if (dims[0] > (hsize_t)(INT64_MAX / sizeof(int32_t))) {
        st = rt_fail(RT_ERR_FORMAT, "%s: /tokens declares %llu tokens, more than memory can "
                     "address", s->path, (unsigned long long)dims[0]);
        goto cleanup;
    }
    if ((st = rt_h5_check_stored(s->dset, s->path, "/tokens", dims[0], H5Tget_size(type))) !=
        RT_OK)
        goto cleanup;
    s->n = (int64_t)dims[0];
cleanup:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return st;
}

rt_status data_shard_open(const char *path, data_shard **out) {
    *out = NULL;
    rt_h5_quiet();
    if (access(path, R_OK) != 0)
        return rt_fail(RT_ERR_IO, "%s: cannot open shard (%s)", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0) return rt_fail(RT_ERR_FORMAT, "%s: not an HDF5 file", path);
    rt_status st = RT_OK;
    data_shard *s = calloc(1, sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
    s->file = s->dset = H5I_INVALID_HID;
    s->path = strdup(path);
    if (!s->path) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->file < 0) {
        st = rt_h5_fail(RT_ERR_FORMAT, path, "opening the shard");
        goto cleanup;
    }
    if ((st = open_tokens(s)) != RT_OK) goto cleanup;
    if ((st = read_vocab_attr(s)) != RT_OK) goto cleanup;
    if ((st = read_source_attr(s)) != RT_OK) goto cleanup;
    *out = s;
    s = NULL;
cleanup:
    data_shard_close(s);
    return st;
}

rt_status data_shard_read(data_shard *s, int64_t start, int64_t count, int32_t *out) {
    if (start < 0 || count < 0 || start > s->n || count > s->n - start)
        return rt_fail(RT_ERR_ARGS, "%s: read of tokens [%lld, %lld) outside the %lld tokens",
                       s->path, (long long)start, (long long)(start + count), (long long)s->n);
    if (count == 0) return RT_OK;
    rt_status st = RT_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hsize_t off[1] = {(hsize_t)start}, cnt[1] = {(hsize_t)count};
    RT_H5_CHECK(fspace = H5Dget_space(s->dset), s->path, RT_ERR_IO);
    RT_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL), s->path,
                RT_ERR_IO);
    RT_H5_CHECK(mspace = H5Screate_simple(1, cnt, NULL), s->path, RT_ERR_IO);
    RT_H5_CHECK(H5Dread(s->dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, out), s->path,
                RT_ERR_IO);
    for (int64_t i = 0; i < count; i++)
        if (out[i] < 0 || out[i] >= s->vocab) {
            st = rt_fail(RT_ERR_FORMAT, "%s: token at index %lld is outside the vocabulary of "
                         "%lld (vocab_size attribute)", s->path, (long long)(start + i),
                         (long long)s->vocab);
            goto cleanup;
        }
cleanup:
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return st;
}

rt_status data_shard_read_window(data_shard *s, int64_t start, int32_t T, int32_t *inputs,
                                 int32_t *targets) {
    RT_ASSERT(T >= 1);
    /* the bounds check of data_shard_read covers the whole window */
    if (start < 0 || start > s->n - T - (targets ? 1 : 0))
        return rt_fail(RT_ERR_ARGS, "%s: window of %d tokens at %lld is outside the %lld tokens",
                       s->path, T + (targets ? 1 : 0), (long long)start, (long long)s->n);
    RT_TRY(data_shard_read(s, start, T, inputs));
    if (!targets) return RT_OK;
    memcpy(targets, inputs + 1, (size_t)(T - 1) * sizeof *targets);
    return data_shard_read(s, start + T, 1, targets + T - 1);
}

rt_status data_shard_load(const char *path, int32_t **tokens, int64_t *n, int64_t *vocab_size) {
    *tokens = NULL;
    *n = 0;
    data_shard *s = NULL;
    RT_TRY(data_shard_open(path, &s));
    rt_status st = RT_OK;
    int32_t *buf = NULL;
    if (s->n == 0) { /* nothing to hold: callers check the count they need */
        if (vocab_size) *vocab_size = s->vocab;
        goto cleanup;
    }
    buf = rt_alloc_aligned((size_t)s->n * sizeof *buf); /* n is bounded by open_tokens */
    if (!buf) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for %lld tokens", path, (long long)s->n);
        goto cleanup;
    }
    if ((st = data_shard_read(s, 0, s->n, buf)) != RT_OK) goto cleanup;
    *tokens = buf;
    *n = s->n;
    if (vocab_size) *vocab_size = s->vocab;
    buf = NULL;
cleanup:
    rt_free_aligned(buf);
    data_shard_close(s);
    return st;
}
