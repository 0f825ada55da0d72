/* Overflow-checked size arithmetic: the one home for multiplying and adding
 * sizes that come from files, configs or peers. Two flavours:
 *
 *   rt_size_mul/rt_size_add  return false when the exact result does not
 *                            fit size_t (the caller reports a bad size);
 *   rt_size_prod/_sum_sat    saturate at SIZE_MAX, so a long formula
 *                            (B * H * T * T) can be written plainly and
 *                            checked once at the end: a saturated result
 *                            is never a size anyone can allocate.
 *
 * Saturation is sticky: SIZE_MAX times anything non-zero, or plus
 * anything, stays SIZE_MAX. */
#ifndef RT_SIZE_H
#define RT_SIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool rt_size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool rt_size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

static inline size_t rt_size_mul_sat(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static inline size_t rt_size_add_sat(size_t a, size_t b) {
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* n rounded up to a multiple of `to` (a power of two), saturating. */
static inline size_t rt_size_round_sat(size_t n, size_t to) {
    return n > SIZE_MAX - (to - 1) ? SIZE_MAX : (n + to - 1) & ~(to - 1);
}

/* Product of n factors, saturating at SIZE_MAX; RT_SIZE_PROD(a, b, c)
 * spells it without counting. */
static inline size_t rt_size_prod(const size_t *f, size_t n) {
    size_t r = 1;
    for (size_t i = 0; i < n; i++) r = rt_size_mul_sat(r, f[i]);
    return r;
}
#define RT_SIZE_PROD(...)                                                        \
    rt_size_prod((const size_t[]){__VA_ARGS__},                                  \
                 sizeof((const size_t[]){__VA_ARGS__}) / sizeof(size_t))

#endif
