/* splitmix64: the small, fast, well-mixed generator retort uses wherever it
 * needs reproducible random numbers from a seed (weight init, the sampler's
 * permutations, generation, synthetic benchmark data). One definition, so
 * every user draws the same stream from the same seed. */
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

/* Uniform in (0, 1]: never 0, so log() of it is finite. */
static inline double rt_uniform01(uint64_t *state) {
    return ((double)(rt_splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
}

#endif
