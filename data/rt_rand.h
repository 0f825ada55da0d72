/* The random numbers of retort, defined once, so every user draws the same
 * stream from the same seed and no file carries a private copy:
 *   - splitmix64: small, fast, well mixed; weight init, synthetic benchmark
 *     data, and the seeding of the stream below;
 *   - xoshiro256** (Blackman & Vigna): the long-period stream behind the
 *     sampler's epoch permutations (data/sampler.c) and generation's draws
 *     (trainer/cmd_generate.c), seeded from splitmix64. */
#ifndef RT_RAND_H
#define RT_RAND_H

#include <stdint.h>

/* Advances *state and returns the next 64 random bits. */
static inline uint64_t rt_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* xoshiro256** state; seed it with rt_xoshiro_seed. */
typedef struct {
    uint64_t s[4];
} rt_xoshiro;

/* The four state words are the next four splitmix64 draws of *seed_state. */
static inline void rt_xoshiro_seed(rt_xoshiro *r, uint64_t *seed_state) {
    for (int i = 0; i < 4; i++) r->s[i] = rt_splitmix64(seed_state);
}

static inline uint64_t rt_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Advances r and returns the next 64 random bits. */
static inline uint64_t rt_xoshiro_next(rt_xoshiro *r) {
    uint64_t *s = r->s;
    const uint64_t out = rt_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rt_rotl64(s[3], 45);
    return out;
}

/* Uniform in [0, range) without modulo bias (Lemire's method); range >= 1. */
static inline uint64_t rt_xoshiro_below(rt_xoshiro *r, uint64_t range) {
    unsigned __int128 m = (unsigned __int128)rt_xoshiro_next(r) * range;
    uint64_t low = (uint64_t)m;
    if (low < range) {
        const uint64_t floor = (0 - range) % range;
        while (low < floor) {
            m = (unsigned __int128)rt_xoshiro_next(r) * range;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rt_xoshiro_uniform(rt_xoshiro *r) {
    return (double)(rt_xoshiro_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in (0, 1]: never 0, so log() of it is finite. */
static inline double rt_uniform01(uint64_t *state) {
    return ((double)(rt_splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
}

/* The seed of sub-stream `id` of `seed`: different ids (steps, windows,
 * positions) give unrelated streams, and nesting derives a stream from a
 * tuple, e.g. rt_seed_derive(rt_seed_derive(seed, step), position). */
static inline uint64_t rt_seed_derive(uint64_t seed, uint64_t id) {
    uint64_t s = seed ^ (id * 0xD1B54A32D192ED03ull);
    return rt_splitmix64(&s);
}

#endif
