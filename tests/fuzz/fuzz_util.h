/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_<reader>.c): outside
 * bytes handed to readers that take a path. One in-memory file (memfd) per
 * process, rewritten for each input and named /proc/self/fd/N, so the
 * readers run their real code path (stat, H5Fis_hdf5, H5Fopen) without
 * touching a disk. */
#ifndef RT_FUZZ_UTIL_H
#define RT_FUZZ_UTIL_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replaces the contents of in-memory file `slot` (0..3) by data[0..n) and
 * returns its path (valid until the next call with that slot). */
static inline const char *fuzz_file(int slot, const void *data, size_t n) {
    static int fd[4] = {-1, -1, -1, -1};
    static char path[4][64];
    if (fd[slot] < 0) {
        fd[slot] = memfd_create("retort-fuzz", 0);
        if (fd[slot] < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path[slot], sizeof path[slot], "/proc/self/fd/%d", fd[slot]);
    }
    if (ftruncate(fd[slot], 0) != 0 || (n && pwrite(fd[slot], data, n, 0) != (ssize_t)n)) {
        perror("fuzz_file");
        abort();
    }
    return path[slot];
}

#endif
