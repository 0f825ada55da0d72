/* Status strings, the per-thread last-error message, and aligned allocation. */
#include "rt_status.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char rt_msg[1024];

const char *rt_status_str(rt_status s) {
    switch (s) {
    case RT_OK: return "ok";
    case RT_ERR_ARGS: return "bad argument";
    case RT_ERR_IO: return "i/o error";
    case RT_ERR_FORMAT: return "bad file format";
    case RT_ERR_MISMATCH: return "mismatch";
    case RT_ERR_NOMEM: return "out of memory";
    case RT_ERR_MPI: return "mpi error";
    case RT_ERR_DNNL: return "onednn error";
    case RT_ERR_UNSUPPORTED: return "unsupported";
    case RT_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

rt_status rt_fail(rt_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt_msg, sizeof rt_msg, fmt, ap);
    va_end(ap);
    return s;
}

const char *rt_last_error(void) { return rt_msg; }

int rt_report(rt_status s) {
    if (s == RT_OK) return 0;
    fprintf(stderr, "retort: %s\n", rt_msg[0] ? rt_msg : rt_status_str(s));
    return s == RT_ERR_ARGS ? 2 : 1;
}

void rt_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "retort: internal bug: assertion `%s` failed at %s:%d\n", expr, file, line);
    abort();
}

void *rt_alloc_aligned(size_t bytes) {
    /* 0 bytes is a caller's size gone wrong (a wrapped product rounds to
     * 0), never a real request; so is anything that rounding would wrap. */
    if (bytes == 0 || bytes > SIZE_MAX - 63) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    memset(p, 0, rounded);
    return p;
}

void rt_free_aligned(void *p) { free(p); }
