/* File helpers of data/ and retort's one durable atomic writer (see
 * fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

rt_status data_read_file(const char *path, char **buf, size_t *len) {
    return data_read_file_max(path, SIZE_MAX - 1, NULL, buf, len);
}

rt_status data_read_file_max(const char *path, size_t max, const char *what, char **buf,
                             size_t *len) {
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
        if (n > max) {
            st = rt_fail(RT_ERR_FORMAT, "%s: larger than %zu MiB, more than any %s", path,
                         max >> 20, what ? what : "file this reads");
            goto cleanup;
        }
        if (n + 1 >= cap) {
            char *d = realloc(data, cap * 2);
            if (!d) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
                goto cleanup;
            }
            data = d;
            cap *= 2;
        }
        size_t want = cap - 1 - n;
        if (want > max + 1 - n) want = max + 1 - n; /* one past max tells "too large" */
        size_t got = fread(data + n, 1, want, f);
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

/* Splits path into its folder ("." for a bare name, "/" for "/name") and
 * its last component. */
static rt_status split_path(const char *path, char *dir, size_t dir_cap, char *base,
                            size_t base_cap) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (name[0] == '\0') return rt_fail(RT_ERR_ARGS, "%s: names a folder, not a file", path);
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    if (slash && dlen == 0) dlen = 1; /* "/file" lives in "/" */
    if (dlen + 1 > dir_cap || strlen(name) + 1 > base_cap)
        return rt_fail(RT_ERR_ARGS, "%s: path too long", path);
    if (slash)
        memcpy(dir, path, dlen);
    else
        dir[0] = '.';
    dir[dlen] = '\0';
    snprintf(base, base_cap, "%s", name);
    return RT_OK;
}

rt_status data_tmp_path(char *dst, size_t cap, const char *path) {
    char dir[DATA_PATH_MAX], base[DATA_PATH_MAX];
    RT_TRY(split_path(path, dir, sizeof dir, base, sizeof base));
    int n = snprintf(dst, cap, "%s/.%s.tmp.%ld", dir, base, (long)getpid());
    if (n < 0 || (size_t)n >= cap) return rt_fail(RT_ERR_ARGS, "%s: path too long", path);
    return RT_OK;
}

/* fsync of a file or folder by name. Some file systems refuse fsync on a
 * folder (EINVAL); the rename is then as durable as they can make it. */
static rt_status fsync_path(const char *p, int is_dir, const char *msg_path) {
    int fd = open(p, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return rt_fail(RT_ERR_IO, "%s: cannot open %s for fsync (%s)", msg_path, p,
                       strerror(errno));
    int rc = fsync(fd), err = errno;
    close(fd);
    if (rc != 0 && !(is_dir && (err == EINVAL || err == EROFS)))
        return rt_fail(RT_ERR_IO, "%s: fsync of %s failed (%s)", msg_path, p, strerror(err));
    return RT_OK;
}

rt_status data_commit_tmp(const char *tmp, const char *path) {
    char dir[DATA_PATH_MAX], base[DATA_PATH_MAX];
    rt_status st = split_path(path, dir, sizeof dir, base, sizeof base);
    if (st == RT_OK) st = fsync_path(tmp, 0, path);
    if (st == RT_OK && rename(tmp, path) != 0)
        st = rt_fail(RT_ERR_IO, "%s: cannot rename the finished temporary file %s over it (%s)",
                     path, tmp, strerror(errno));
    if (st != RT_OK) {
        unlink(tmp);
        return st;
    }
    /* The rename is only durable once the folder entry is on disk. */
    return fsync_path(dir, 1, path);
}

rt_status data_tmp_open(char *tmp, size_t cap, const char *path, FILE **f) {
    *f = NULL;
    rt_status st = data_tmp_path(tmp, cap, path);
    if (st == RT_OK && !(*f = fopen(tmp, "wb")))
        st = rt_fail(RT_ERR_IO, "%s: cannot create %s (%s)", path, tmp, strerror(errno));
    if (st != RT_OK) {
        tmp[0] = '\0'; /* nothing for the caller to remove */
        return st;
    }
    errno = 0;
    return RT_OK;
}

rt_status data_tmp_finish(FILE *f, const char *tmp, const char *path) {
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        const int e = errno ? errno : EIO;
        unlink(tmp);
        return rt_fail(RT_ERR_IO, "%s: writing %s failed (%s)", path, tmp, strerror(e));
    }
    return data_commit_tmp(tmp, path);
}

rt_status data_write_atomic(const char *path, void (*body)(FILE *f, const void *ctx),
                            const void *ctx) {
    char tmp[DATA_PATH_MAX];
    FILE *f = NULL;
    RT_TRY(data_tmp_open(tmp, sizeof tmp, path, &f));
    body(f, ctx);
    return data_tmp_finish(f, tmp, path);
}

static void put_text(FILE *f, const void *text) { fputs(text, f); }

rt_status data_write_text(const char *path, const char *text) {
    return data_write_atomic(path, put_text, text);
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
