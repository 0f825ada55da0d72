/* safetensors reading and writing; the format and the checks are described
 * in ckpt_st.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_internal.h"
#include "ckpt_st.h"
#include "fsutil.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

struct ckpt_st_file {
    char *path;
    int fd;                   /* -1 for a parsed-only header */
    uint64_t data_base;       /* file offset of the data block */
    int n;
    ckpt_st_tensor *t;        /* sorted by name */
};

/* Largest dimension accepted: far above any real model, low enough that no
 * product of a few of them is near overflow before it is checked. */
#define ST_MAX_DIM ((int64_t)1 << 40)

static const struct {
    const char *name;
    int supported; /* index into ckpt_st_dtype + 1, or 0 when known but not read */
} st_dtypes[] = {
    {"F32", CKPT_ST_F32 + 1}, {"F16", CKPT_ST_F16 + 1}, {"BF16", CKPT_ST_BF16 + 1},
    {"F64", 0}, {"I64", 0}, {"I32", 0}, {"I16", 0}, {"I8", 0}, {"U8", 0}, {"U16", 0},
    {"U32", 0}, {"U64", 0}, {"BOOL", 0}, {"F8_E4M3", 0}, {"F8_E5M2", 0},
};

const char *ckpt_st_dtype_name(ckpt_st_dtype t) {
    switch (t) {
    case CKPT_ST_F32: return "F32";
    case CKPT_ST_F16: return "F16";
    case CKPT_ST_BF16: return "BF16";
    }
    return "?";
}

size_t ckpt_st_dtype_size(ckpt_st_dtype t) { return t == CKPT_ST_F32 ? 4 : 2; }

/* ----------------------------------------------------------- conversions */

float ckpt_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        float f = (float)m * 0x1p-24f; /* zero or subnormal: exact */
        memcpy(&x, &f, 4);
        x |= sign;
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

float ckpt_bf16_to_f32(uint16_t h) {
    const uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t ckpt_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, or NaN kept quiet */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax < 0x38800000u) { /* below the smallest normal half (2^-14) */
        if (ax < 0x33000000u) return (uint16_t)sign; /* <= 2^-25 rounds to zero */
        const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(ax >> 23); /* 14 .. 24 */
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: infinity */
    uint32_t h = (ax - 0x38000000u) >> 13;
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

uint16_t ckpt_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* --------------------------------------------------------------- parsing */

void ckpt_st_close(ckpt_st_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->path);
    free(f);
}

const char *ckpt_st_path(const ckpt_st_file *f) { return f->path; }
int ckpt_st_count(const ckpt_st_file *f) { return f->n; }
const ckpt_st_tensor *ckpt_st_tensor_at(const ckpt_st_file *f, int i) { return &f->t[i]; }

static int by_name(const void *a, const void *b) {
    return strcmp(((const ckpt_st_tensor *)a)->name, ((const ckpt_st_tensor *)b)->name);
}

const ckpt_st_tensor *ckpt_st_find(const ckpt_st_file *f, const char *name) {
    if (f->n == 0) return NULL;
    const ckpt_st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->t, (size_t)f->n, sizeof key, by_name);
}

static int by_begin(const void *a, const void *b) {
    const ckpt_st_tensor *x = *(const ckpt_st_tensor *const *)a,
                         *y = *(const ckpt_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* A JSON integer in [0, max] into *v. */
static int json_uint(const json_t *j, int64_t max, int64_t *v) {
    if (!json_is_integer(j)) return 0;
    const json_int_t x = json_integer_value(j);
    if (x < 0 || x > max) return 0;
    *v = (int64_t)x;
    return 1;
}

/* Fills t from the header entry `v` of tensor `key`. */
static rt_status parse_tensor(const char *name, const char *key, json_t *v, uint64_t data_size,
                              ckpt_st_tensor *t) {
    if (!json_is_object(v))
        return rt_fail(RT_ERR_FORMAT, "%s: header entry \"%.100s\" is not an object", name, key);
    const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                 *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s has no dtype string", name, key);
    const char *d = json_string_value(dt);
    int found = -1;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(d, st_dtypes[i].name) == 0) found = (int)i;
    if (found < 0)
        return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s has an unknown dtype \"%.20s\"", name,
                       key, d);
    if (!st_dtypes[found].supported)
        return rt_fail(RT_ERR_UNSUPPORTED, "%s: tensor %.100s is %s; retort reads F32, F16 and "
                       "BF16 weights", name, key, d);
    t->dtype = (ckpt_st_dtype)(st_dtypes[found].supported - 1);
    if (!json_is_array(sh) || json_array_size(sh) > CKPT_ST_MAX_DIMS)
        return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s has no shape array of at most %d "
                       "dimensions", name, key, CKPT_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (!json_uint(json_array_get(sh, (size_t)i), ST_MAX_DIM, &t->shape[i]))
            return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s: shape entry %d is not an integer "
                           "in [0, 2^40]", name, key, i);
        if (__builtin_mul_overflow(numel, (uint64_t)t->shape[i], &numel))
            return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s: shape overflows", name, key);
    }
    t->numel = numel;
    int64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_uint(json_array_get(off, 0), INT64_MAX, &b) ||
        !json_uint(json_array_get(off, 1), INT64_MAX, &e))
        return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s has no data_offsets [begin, end]", name,
                       key);
    if (b > e || (uint64_t)e > data_size)
        return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s: data_offsets [%lld, %lld] lie outside "
                       "the %llu-byte data block", name, key, (long long)b, (long long)e,
                       (unsigned long long)data_size);
    uint64_t bytes;
    if (__builtin_mul_overflow(numel, (uint64_t)ckpt_st_dtype_size(t->dtype), &bytes) ||
        bytes != (uint64_t)(e - b))
        return rt_fail(RT_ERR_FORMAT, "%s: tensor %.100s: data_offsets span %lld bytes, its "
                       "shape and dtype need %llu", name, key, (long long)(e - b),
                       (unsigned long long)numel * ckpt_st_dtype_size(t->dtype));
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    return RT_OK;
}

rt_status ckpt_st_parse(const char *name, const uint8_t *header, size_t hlen, uint64_t file_size,
                        ckpt_st_file **out) {
    *out = NULL;
    if (file_size < 8 || hlen > file_size - 8)
        return rt_fail(RT_ERR_FORMAT, "%s: header length %zu runs past the end of the file "
                       "(%llu bytes)", name, hlen, (unsigned long long)file_size);
    const uint64_t data_size = file_size - 8 - hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)header, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return rt_fail(RT_ERR_FORMAT, "%s: header is not valid JSON (line %d: %.100s)", name,
                       jerr.line, jerr.text);
    rt_status st = RT_OK;
    ckpt_st_tensor **order = NULL;
    ckpt_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name))) goto nomem;
    f->fd = -1;
    if (!json_is_object(root)) {
        st = rt_fail(RT_ERR_FORMAT, "%s: header is not a JSON object", name);
        goto cleanup;
    }
    size_t cap = json_object_size(root);
    if (cap > CKPT_ST_MAX_TENSORS) {
        st = rt_fail(RT_ERR_FORMAT, "%s: header lists %zu entries (at most %d)", name, cap,
                     CKPT_ST_MAX_TENSORS);
        goto cleanup;
    }
    f->t = calloc(cap ? cap : 1, sizeof *f->t);
    if (!f->t) goto nomem;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        ckpt_st_tensor *t = &f->t[f->n];
        if (!(t->name = strdup(key))) goto nomem;
        f->n++;
        if ((st = parse_tensor(name, key, v, data_size, t)) != RT_OK) goto cleanup;
    }
    /* no two non-empty tensors may share a byte */
    order = malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!order) goto nomem;
    int m = 0;
    for (int i = 0; i < f->n; i++)
        if (f->t[i].end > f->t[i].begin) order[m++] = &f->t[i];
    qsort(order, (size_t)m, sizeof *order, by_begin);
    for (int i = 1; i < m; i++)
        if (order[i]->begin < order[i - 1]->end) {
            st = rt_fail(RT_ERR_FORMAT, "%s: tensors %.100s and %.100s overlap in the data block "
                         "(bytes %llu.. and ..%llu)", name, order[i - 1]->name, order[i]->name,
                         (unsigned long long)order[i]->begin,
                         (unsigned long long)order[i - 1]->end);
            goto cleanup;
        }
    qsort(f->t, (size_t)f->n, sizeof *f->t, by_name);
    f->data_base = 8 + (uint64_t)hlen;
    *out = f;
    f = NULL;
    goto cleanup;
nomem:
    st = rt_fail(RT_ERR_NOMEM, "%s: out of memory parsing the header", name);
cleanup:
    free(order);
    ckpt_st_close(f);
    json_decref(root);
    return st;
}

/* Reads exactly n bytes at offset off; RT_ERR_IO naming path otherwise. */
static rt_status pread_all(int fd, const char *path, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return rt_fail(RT_ERR_IO, "%s: read failed (%s)", path, strerror(errno));
        if (got == 0) return rt_fail(RT_ERR_IO, "%s: truncated (read past the end)", path);
        p += got, n -= (size_t)got, off += (uint64_t)got;
    }
    return RT_OK;
}

rt_status ckpt_st_open(const char *path, ckpt_st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rt_fail(RT_ERR_IO, "%s: %s", path,
                       errno == ENOENT ? "no such file" : strerror(errno));
    rt_status st = RT_OK;
    uint8_t *hdr = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = rt_fail(RT_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    const uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = rt_fail(RT_ERR_FORMAT, "%s: truncated (%llu bytes; a safetensors file starts with "
                     "an 8-byte header length)", path, (unsigned long long)size);
        goto cleanup;
    }
    uint8_t len8[8];
    if ((st = pread_all(fd, path, len8, 8, 0)) != RT_OK) goto cleanup;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > size - 8) {
        st = rt_fail(RT_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu "
                     "bytes): truncated or not safetensors", path, (unsigned long long)hlen,
                     (unsigned long long)size);
        goto cleanup;
    }
    if (hlen > CKPT_ST_MAX_HEADER) {
        st = rt_fail(RT_ERR_FORMAT, "%s: header of %llu bytes is larger than the %u retort reads",
                     path, (unsigned long long)hlen, CKPT_ST_MAX_HEADER);
        goto cleanup;
    }
    if (!(hdr = malloc(hlen ? hlen : 1))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for the header", path);
        goto cleanup;
    }
    if ((st = pread_all(fd, path, hdr, hlen, 8)) != RT_OK) goto cleanup;
    ckpt_st_file *f = NULL;
    if ((st = ckpt_st_parse(path, hdr, hlen, size, &f)) != RT_OK) goto cleanup;
    f->fd = fd;
    fd = -1;
    *out = f;
cleanup:
    free(hdr);
    if (fd >= 0) close(fd);
    return st;
}

rt_status ckpt_st_read_f32(const ckpt_st_file *f, const ckpt_st_tensor *t, size_t first,
                           size_t count, float *dst) {
    RT_ASSERT(f->fd >= 0 && first <= t->numel && count <= t->numel - first);
    const uint64_t off = f->data_base + t->begin + (uint64_t)first * ckpt_st_dtype_size(t->dtype);
    if (t->dtype == CKPT_ST_F32) return pread_all(f->fd, f->path, dst, count * 4, off);
    enum { CHUNK = 1 << 16 };
    uint16_t buf[CHUNK];
    for (size_t i = 0; i < count; i += CHUNK) {
        const size_t n = count - i < CHUNK ? count - i : CHUNK;
        RT_TRY(pread_all(f->fd, f->path, buf, n * 2, off + (uint64_t)i * 2));
        if (t->dtype == CKPT_ST_F16)
            for (size_t j = 0; j < n; j++) dst[i + j] = ckpt_f16_to_f32(buf[j]);
        else
            for (size_t j = 0; j < n; j++) dst[i + j] = ckpt_bf16_to_f32(buf[j]);
    }
    return RT_OK;
}

/* --------------------------------------------------------------- writing */

static rt_status write_data(FILE *fp, const char *path, const float *x, size_t n,
                            ckpt_st_dtype dtype) {
    if (dtype == CKPT_ST_F32) {
        if (fwrite(x, 4, n, fp) != n) return rt_fail(RT_ERR_IO, "%s: write failed", path);
        return RT_OK;
    }
    enum { CHUNK = 1 << 16 };
    uint16_t buf[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        const size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++)
            buf[j] = dtype == CKPT_ST_F16 ? ckpt_f32_to_f16(x[i + j]) : ckpt_f32_to_bf16(x[i + j]);
        if (fwrite(buf, 2, k, fp) != k) return rt_fail(RT_ERR_IO, "%s: write failed", path);
    }
    return RT_OK;
}

rt_status ckpt_st_write(const char *path, const ckpt_st_out *t, int n, ckpt_st_dtype dtype) {
    rt_status st = RT_OK;
    char tmp[CKPT_PATH_MAX] = "";
    FILE *fp = NULL;
    char *js = NULL;
    json_t *root = json_object();
    if (!root) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
    json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        const uint64_t end = off + numel * ckpt_st_dtype_size(dtype);
        json_object_set_new(root, t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", ckpt_st_dtype_name(dtype),
                                      "shape", shape, "data_offsets", (json_int_t)off,
                                      (json_int_t)end));
        off = end;
    }
    if (!(js = json_dumps(root, JSON_COMPACT))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory building the header", path);
        goto cleanup;
    }
    /* the data block starts 8-aligned: pad the header with spaces */
    size_t hlen = strlen(js);
    const size_t padded = (hlen + 7) & ~(size_t)7;
    if ((st = data_tmp_open(tmp, sizeof tmp, path, &fp)) != RT_OK) goto cleanup;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(js, 1, hlen, fp) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    if (!ok) {
        st = rt_fail(RT_ERR_IO, "%s: write failed", tmp);
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        if ((st = write_data(fp, tmp, t[i].data, numel, dtype)) != RT_OK) goto cleanup;
    }
    st = data_tmp_finish(fp, tmp, path); /* removes tmp on failure */
    fp = NULL;
    tmp[0] = '\0';
cleanup:
    if (fp) fclose(fp);
    if (st != RT_OK && tmp[0]) unlink(tmp);
    free(js);
    json_decref(root);
    return st;
}
