/* HDF5 error handling shared by data/ and checkpoints/, defined once: turns
 * a negative HDF5 return into an rt_status whose message names the file and
 * what failed, plus the innermost message of HDF5's own error stack. Use inside functions that
 * have an `rt_status st` variable and a `cleanup:` label. */
#ifndef RT_H5_H
#define RT_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

/* The innermost message of HDF5's error stack (the first one walking
 * upward), flattened to one line: some HDF5 messages (the sec2 driver's
 * write errors on ENOSPC) embed a newline. "" if none; clears the stack. */
void rt_h5_message(char *msg, size_t cap);

/* Records "PATH: <what, formatted from fmt> failed (hdf5: MSG)" and returns
 * `s`. */
rt_status rt_h5_fail(rt_status s, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Most bytes one stored byte of a filtered (compressed) dataset may expand
 * to. deflate's limit is about 1032:1; the slack covers other filters. */
#define RT_H5_MAX_EXPANSION 2048

/* Checks, before anyone allocates for it, that dataset `dset` of file
 * `path` really stores `numel` elements of `elem_bytes` each: the byte
 * count must not wrap, and the file must hold that many bytes for it (or,
 * for a compressed dataset, enough to expand to them). A crafted extent
 * (2^62 elements in a 1 KB file) is RT_ERR_FORMAT naming `name`. */
rt_status rt_h5_check_stored(hid_t dset, const char *path, const char *name, uint64_t numel,
                             size_t elem_bytes);

/* Silences HDF5's default error printing (retort reports errors itself). */
void rt_h5_quiet(void);

/* Jumps to cleanup with an HDF5 failure message when expr < 0: RT_H5 with a
 * printf-style description of what failed, RT_H5_CHECK with the call's own
 * text. Need `rt_status st` and a `cleanup:` label. */
#define RT_H5(expr, status, path, ...)                                           \
    do {                                                                         \
        if ((expr) < 0) {                                                        \
            st = rt_h5_fail((status), (path), __VA_ARGS__);                      \
            goto cleanup;                                                        \
        }                                                                        \
    } while (0)
#define RT_H5_CHECK(expr, path, status) RT_H5(expr, status, path, "%s", #expr)

#endif
