/* HDF5 error capture: walk HDF5's error stack for the innermost message so a
 * one-line retort error can say *why* a read failed, not just that it did. */
#include "rt_h5.h"

#include <stdio.h>
#include <string.h>

static herr_t rt_h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    char *out = data;
    /* Keep the first (innermost-reported first in H5E_WALK_UPWARD) message. */
    if (out[0] == '\0' && e->desc) snprintf(out, 256, "%s", e->desc);
    return 0;
}

rt_status rt_h5_fail(rt_status s, const char *path, const char *what) {
    char msg[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, rt_h5_walk, msg);
    H5Eclear2(H5E_DEFAULT);
    if (msg[0])
        return rt_fail(s, "%s: %s failed (hdf5: %s)", path, what, msg);
    return rt_fail(s, "%s: %s failed", path, what);
}

void rt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
