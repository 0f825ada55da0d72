/* Status and error conventions shared by every retort library.
 *
 * Two tiers: RT_ASSERT is for broken invariants, i.e. bugs, and
 * aborts with file, line and expression. Everything a user or the
 * environment can cause (bad file, bad config, dead peer, no memory) is an
 * rt_status returned up the stack, with a one-line message recorded by
 * rt_fail() that names the file, key or rank involved. The top level prints
 * rt_last_error() and exits non-zero.
 *
 * This lives in data/ because data/ is the bottom of the dependency graph:
 * every other library already links it. */
#ifndef RT_STATUS_H
#define RT_STATUS_H

#include <stddef.h>

typedef enum {
    RT_OK = 0,
    RT_ERR_ARGS,        /* bad command line, config key or value */
    RT_ERR_IO,          /* a file is missing, unreadable or unwritable */
    RT_ERR_FORMAT,      /* a file exists but its contents are wrong */
    RT_ERR_MISMATCH,    /* shapes, vocabularies or batch identities disagree */
    RT_ERR_NOMEM,       /* an allocation failed */
    RT_ERR_MPI,         /* a peer died or MPI failed */
    RT_ERR_DNNL,        /* oneDNN refused a primitive or failed to run it */
    RT_ERR_UNSUPPORTED, /* asked for something this build cannot do */
    RT_ERR_INTERNAL,    /* a library returned an unexpected error */
} rt_status;

/* Short fixed name of a status ("io error", ...). Never NULL. */
const char *rt_status_str(rt_status s);

/* Records a printf-style one-line message for the current thread and returns
 * `s`, so error paths read `return rt_fail(RT_ERR_IO, "%s: %s", path, why);`.
 * A later rt_fail overwrites the message. */
rt_status rt_fail(rt_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of the last rt_fail on this thread ("" if none). */
const char *rt_last_error(void);

/* Prints "retort: <last error>" to stderr and returns the process exit code
 * for `s` (2 for argument errors, 1 otherwise, 0 for RT_OK). */
int rt_report(rt_status s);

/* Aborts on a broken invariant: a bug in retort, never a user error. */
#define RT_ASSERT(cond)                                                          \
    do {                                                                         \
        if (!(cond)) rt_assert_fail(#cond, __FILE__, __LINE__);                  \
    } while (0)
void rt_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* Propagates a non-OK status to the caller. */
#define RT_TRY(expr)                                                             \
    do {                                                                         \
        rt_status rt_try_s_ = (expr);                                            \
        if (rt_try_s_ != RT_OK) return rt_try_s_;                                \
    } while (0)

/* 64-byte aligned allocation (zeroed) for tensors and blocks; free with
 * rt_free_aligned. Returns NULL on failure (callers turn that into
 * RT_ERR_NOMEM with a message naming what they were allocating), and also
 * for 0 bytes or a size that rounding up to 64 would wrap: both mean the
 * caller's size arithmetic went wrong (rt_size.h checks it). */
void *rt_alloc_aligned(size_t bytes);
void rt_free_aligned(void *p);

#endif
