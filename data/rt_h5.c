/* HDF5 error capture: walk HDF5's error stack for the innermost message so a
 * one-line retort error can say *why* a read failed, not just that it did. */
#include "rt_h5.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rt_size.h"

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    char *out = data;
    if (out[0] == '\0' && e->desc) snprintf(out, 512, "%s", e->desc);
    return 0;
}

void rt_h5_message(char *msg, size_t cap) {
    char buf[512] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, buf);
    H5Eclear2(H5E_DEFAULT);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    snprintf(msg, cap, "%s", buf);
}

rt_status rt_h5_fail(rt_status s, const char *path, const char *fmt, ...) {
    char what[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    rt_h5_message(msg, sizeof msg);
    if (msg[0]) return rt_fail(s, "%s: %s failed (hdf5: %s)", path, what, msg);
    return rt_fail(s, "%s: %s failed", path, what);
}

rt_status rt_h5_check_stored(hid_t dset, const char *path, const char *name, uint64_t numel,
                             size_t elem_bytes) {
    size_t bytes;
    if (numel > SIZE_MAX || !rt_size_mul((size_t)numel, elem_bytes, &bytes))
        return rt_fail(RT_ERR_FORMAT, "%s: %s declares %llu elements, more than memory can address",
                       path, name, (unsigned long long)numel);
    if (bytes == 0) return RT_OK;
    hsize_t stored = H5Dget_storage_size(dset);
    hid_t dcpl = H5Dget_create_plist(dset);
    int nfilters = dcpl < 0 ? -1 : H5Pget_nfilters(dcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (nfilters < 0) return rt_h5_fail(RT_ERR_FORMAT, path, "reading the storage of a dataset");
    /* stored * RT_H5_MAX_EXPANSION cannot wrap: stored is at most a file size */
    const uint64_t can_hold = nfilters == 0 ? stored : stored * (uint64_t)RT_H5_MAX_EXPANSION;
    if (stored == 0 || can_hold < bytes)
        return rt_fail(RT_ERR_FORMAT, "%s: %s declares %llu elements (%zu bytes) but the file "
                       "stores only %llu bytes of it: the file is truncated or forged", path,
                       name, (unsigned long long)numel, bytes, (unsigned long long)stored);
    return RT_OK;
}

void rt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
