/* File helpers for data/ (see fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

rt_status data_read_file(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    rt_status st = RT_OK;
    char *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(RT_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    data = malloc(cap);
    if (!data) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading the file", path);
        goto cleanup;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *d = realloc(data, cap * 2);
            if (!d) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
                goto cleanup;
            }
            data = d;
            cap *= 2;
        }
        size_t got = fread(data + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        st = rt_fail(RT_ERR_IO, "%s: read failed (%s)", path, strerror(errno));
        goto cleanup;
    }
    data[n] = '\0';
    *buf = data;
    *len = n;
    data = NULL;
cleanup:
    free(data);
    fclose(f);
    return st;
}

rt_status data_path_join(char *dst, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] == '/';
    int n = snprintf(dst, cap, "%s%s%s", dir, slash ? "" : "/", name);
    if (n < 0 || (size_t)n >= cap)
        return rt_fail(RT_ERR_ARGS, "%s/%s: path longer than %zu bytes", dir, name, cap - 1);
    return RT_OK;
}

rt_status data_tmp_path(char *dst, size_t cap, const char *path) {
    int n = snprintf(dst, cap, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= cap)
        return rt_fail(RT_ERR_ARGS, "%s: path longer than %zu bytes", path, cap - 20);
    return RT_OK;
}

rt_status data_commit_tmp(const char *tmp, const char *path) {
    if (rename(tmp, path) == 0) return RT_OK;
    int e = errno;
    unlink(tmp);
    return rt_fail(RT_ERR_IO, "%s: cannot rename %s into place (%s)", path, tmp, strerror(e));
}

rt_status data_write_atomic(const char *path, void (*body)(FILE *f, const void *ctx),
                            const void *ctx) {
    char tmp[DATA_PATH_MAX];
    RT_TRY(data_tmp_path(tmp, sizeof tmp, path));
    FILE *f = fopen(tmp, "w");
    if (!f) return rt_fail(RT_ERR_IO, "%s: cannot write (%s)", tmp, strerror(errno));
    body(f, ctx);
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        unlink(tmp);
        return rt_fail(RT_ERR_IO, "%s: write failed", path);
    }
    return data_commit_tmp(tmp, path);
}

/* mkdir that treats an existing folder as success. */
static int mkdir_one(const char *dir) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 0;
        errno = ENOTDIR;
    }
    return -1;
}

rt_status data_mkdir_p(const char *dir) {
    char buf[DATA_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0) return rt_fail(RT_ERR_ARGS, "output folder: empty path");
    if (n >= sizeof buf) return rt_fail(RT_ERR_ARGS, "%s: path too long", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/') continue;
        buf[i] = '\0';
        if (mkdir_one(buf) != 0)
            return rt_fail(RT_ERR_IO, "%s: cannot create folder %s (%s)", dir, buf,
                           strerror(errno));
        buf[i] = '/';
    }
    if (mkdir_one(buf) != 0)
        return rt_fail(RT_ERR_IO, "%s: cannot create folder (%s)", dir, strerror(errno));
    if (access(dir, W_OK | X_OK) != 0)
        return rt_fail(RT_ERR_IO, "%s: folder is not writable (%s)", dir, strerror(errno));
    return RT_OK;
}
