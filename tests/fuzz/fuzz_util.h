/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_<reader>.c): outside
 * bytes handed to readers that take a path. One in-memory file (memfd) per
 * process, rewritten for each input and named /proc/self/fd/N, so the
 * readers run their real code path (stat, H5Fis_hdf5, H5Fopen) without
 * touching a disk. Readers that take a folder (a Hugging Face folder) get
 * one scratch folder per process instead (fuzz_dir). */
#ifndef RT_FUZZ_UTIL_H
#define RT_FUZZ_UTIL_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
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

/* The scratch folder's path: made on first use under /dev/shm when there
 * is one (memory, as the memfds are; an fsync there costs nothing), else
 * under $TMPDIR or /tmp, and removed with its files at exit (a crash
 * leaves it behind: rt_fuzz_* folders of a few KB). */
static inline void fuzz_dir_remove(void);
static inline const char *fuzz_dir(void) {
    static char path[256];
    if (!path[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/rt_fuzz_XXXXXX", base && base[0] ? base : "/tmp");
        if (!mkdtemp(path)) {
            perror("fuzz_dir: mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return path;
}

static inline void fuzz_dir_remove(void) {
    const char *dir = fuzz_dir();
    DIR *d = opendir(dir);
    if (!d) return;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Makes `name` in fuzz_dir() hold data[0..n), or removes it when data is
 * NULL (already absent is fine). */
static inline void fuzz_dir_file(const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), name);
    if (!data) {
        unlink(p);
        return;
    }
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
}

#endif
