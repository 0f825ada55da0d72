/* Shared pieces of checkpoints/: element types and their HDF5 mapping, the
 * file access properties and the float range check of every reader (HDF5
 * in read.c, safetensors in hf.c). (HDF5 error messages are data/rt_h5.h's;
 * atomic, durable writes are data/fsutil.h's, shared with every writer.) */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ckpt_internal.h"

/* Checksums are computed over the in-memory bytes and the file holds
 * little-endian data; on a big-endian host the two would differ. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints/ assumes a little-endian host (checksums cover the file's little-endian bytes)"
#endif

int ckpt_config_has_d_head(const student_config *c) {
    return c->d_head > 0 && (c->d_model % c->n_head != 0 || c->d_head != c->d_model / c->n_head);
}

uint32_t ckpt_config_crc(const int64_t *v, int n) {
    return ckpt_crc32c(0, v, (size_t)n * sizeof *v);
}

size_t ckpt_dtype_size(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return 4;
    case CKPT_F64: return 8;
    case CKPT_I8: return 1;
    case CKPT_U8: return 1;
    case CKPT_I32: return 4;
    case CKPT_I64: return 8;
    case CKPT_U64: return 8;
    }
    return 0;
}

const char *ckpt_dtype_name(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return "float32";
    case CKPT_F64: return "float64";
    case CKPT_I8: return "int8";
    case CKPT_U8: return "uint8";
    case CKPT_I32: return "int32";
    case CKPT_I64: return "int64";
    case CKPT_U64: return "uint64";
    }
    return "unknown";
}

hid_t ckpt_file_type(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return H5T_IEEE_F32LE;
    case CKPT_F64: return H5T_IEEE_F64LE;
    case CKPT_I8: return H5T_STD_I8LE;
    case CKPT_U8: return H5T_STD_U8LE;
    case CKPT_I32: return H5T_STD_I32LE;
    case CKPT_I64: return H5T_STD_I64LE;
    case CKPT_U64: return H5T_STD_U64LE;
    }
    return H5I_INVALID_HID;
}

hid_t ckpt_mem_type(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return H5T_NATIVE_FLOAT;
    case CKPT_F64: return H5T_NATIVE_DOUBLE;
    case CKPT_I8: return H5T_NATIVE_INT8;
    case CKPT_U8: return H5T_NATIVE_UINT8;
    case CKPT_I32: return H5T_NATIVE_INT32;
    case CKPT_I64: return H5T_NATIVE_INT64;
    case CKPT_U64: return H5T_NATIVE_UINT64;
    }
    return H5I_INVALID_HID;
}

int ckpt_dtype_of(hid_t type) {
    static const ckpt_dtype all[] = {CKPT_F32, CKPT_F64, CKPT_I8, CKPT_U8,
                                     CKPT_I32, CKPT_I64, CKPT_U64};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (H5Tequal(type, ckpt_file_type(all[i])) > 0) return (int)all[i];
    return -1;
}

hid_t ckpt_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    /* 1.8+ structures: superblock v2 and object header v2 carry checksums,
     * so a flipped metadata byte is an error instead of garbage. */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_file_locking(fapl, 0, 1) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

rt_status ckpt_check_floats_in(const char *file, const char *what, const float *x, size_t n,
                               float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= lo && x[i] <= hi)) /* also false for NaN */
            return rt_fail(RT_ERR_FORMAT, "%s: %s[%zu] = %g is %s", file, what, i, (double)x[i],
                           isfinite(x[i]) ? "out of range" : "not finite");
    return RT_OK;
}
