/* HDF5 check macro shared by data/ and checkpoints/: turns a negative HDF5
 * return into an rt_status whose message names the file and the call, plus
 * the innermost message of HDF5's own error stack. Use inside functions that
 * have an `rt_status st` variable and a `cleanup:` label. */
#ifndef RT_H5_H
#define RT_H5_H

#include <hdf5.h>

#include "rt_status.h"

/* Records "PATH: WHAT failed (hdf5: MSG)" and returns `s`. */
rt_status rt_h5_fail(rt_status s, const char *path, const char *what);

/* Silences HDF5's default error printing (retort reports errors itself). */
void rt_h5_quiet(void);

#define RT_H5_CHECK(expr, path, status)                                          \
    do {                                                                         \
        if ((expr) < 0) {                                                        \
            st = rt_h5_fail((status), (path), #expr);                            \
            goto cleanup;                                                        \
        }                                                                        \
    } while (0)

#endif
