/* Shared pieces of checkpoints/: element types and their HDF5 mapping, the
 * HDF5 error message helper, file access properties, and the file-system
 * steps that make a write atomic and durable (temporary name in the same
 * folder, fsync, rename, fsync of the folder). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_internal.h"

/* Checksums are computed over the in-memory bytes and the file holds
 * little-endian data; on a big-endian host the two would differ. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints/ assumes a little-endian host (checksums cover the file's little-endian bytes)"
#endif

int ckpt_config_has_d_head(const student_config *c) {
    return c->d_head > 0 && (c->d_model % c->n_head != 0 || c->d_head != c->d_model / c->n_head);
}

size_t ckpt_dtype_size(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return 4;
    case CKPT_F64: return 8;
    case CKPT_I8: return 1;
    case CKPT_U8: return 1;
    case CKPT_I32: return 4;
    case CKPT_I64: return 8;
    case CKPT_U64: return 8;
    }
    return 0;
}

const char *ckpt_dtype_name(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return "float32";
    case CKPT_F64: return "float64";
    case CKPT_I8: return "int8";
    case CKPT_U8: return "uint8";
    case CKPT_I32: return "int32";
    case CKPT_I64: return "int64";
    case CKPT_U64: return "uint64";
    }
    return "unknown";
}

hid_t ckpt_file_type(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return H5T_IEEE_F32LE;
    case CKPT_F64: return H5T_IEEE_F64LE;
    case CKPT_I8: return H5T_STD_I8LE;
    case CKPT_U8: return H5T_STD_U8LE;
    case CKPT_I32: return H5T_STD_I32LE;
    case CKPT_I64: return H5T_STD_I64LE;
    case CKPT_U64: return H5T_STD_U64LE;
    }
    return H5I_INVALID_HID;
}

hid_t ckpt_mem_type(ckpt_dtype t) {
    switch (t) {
    case CKPT_F32: return H5T_NATIVE_FLOAT;
    case CKPT_F64: return H5T_NATIVE_DOUBLE;
    case CKPT_I8: return H5T_NATIVE_INT8;
    case CKPT_U8: return H5T_NATIVE_UINT8;
    case CKPT_I32: return H5T_NATIVE_INT32;
    case CKPT_I64: return H5T_NATIVE_INT64;
    case CKPT_U64: return H5T_NATIVE_UINT64;
    }
    return H5I_INVALID_HID;
}

int ckpt_dtype_of(hid_t type) {
    static const ckpt_dtype all[] = {CKPT_F32, CKPT_F64, CKPT_I8, CKPT_U8,
                                     CKPT_I32, CKPT_I64, CKPT_U64};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (H5Tequal(type, ckpt_file_type(all[i])) > 0) return (int)all[i];
    return -1;
}

/* Keeps the innermost HDF5 message (the first one walking upward), as
 * rt_h5_fail does, but flattened to one line: some of HDF5's messages
 * (the sec2 driver's write errors) embed a newline. */
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    char *out = data;
    if (out[0] == '\0' && e->desc) snprintf(out, 512, "%s", e->desc);
    return 0;
}

void ckpt_h5_message(char *msg, size_t cap) {
    char buf[512] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, buf);
    H5Eclear2(H5E_DEFAULT);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    snprintf(msg, cap, "%s", buf);
}

rt_status ckpt_h5_fail(rt_status s, const char *path, const char *fmt, ...) {
    char what[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    ckpt_h5_message(msg, sizeof msg);
    if (msg[0]) return rt_fail(s, "%s: %s failed (hdf5: %s)", path, what, msg);
    return rt_fail(s, "%s: %s failed", path, what);
}

hid_t ckpt_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    /* 1.8+ structures: superblock v2 and object header v2 carry checksums,
     * so a flipped metadata byte is an error instead of garbage. */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_file_locking(fapl, 0, 1) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

rt_status ckpt_fs_split(const char *path, char *dir, size_t dir_cap, char *base, size_t base_cap) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (name[0] == '\0')
        return rt_fail(RT_ERR_ARGS, "%s: names a folder, not a file", path);
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

rt_status ckpt_fs_tmp_path(const char *path, char *out, size_t cap) {
    char dir[CKPT_PATH_MAX], base[CKPT_PATH_MAX];
    RT_TRY(ckpt_fs_split(path, dir, sizeof dir, base, sizeof base));
    int n = snprintf(out, cap, "%s/.%s.tmp.%ld", dir, base, (long)getpid());
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

rt_status ckpt_fs_commit(const char *tmp, const char *path) {
    char dir[CKPT_PATH_MAX], base[CKPT_PATH_MAX];
    rt_status st = ckpt_fs_split(path, dir, sizeof dir, base, sizeof base);
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

rt_status ckpt_fs_write_text(const char *path, const char *text) {
    char tmp[CKPT_PATH_MAX];
    RT_TRY(ckpt_fs_tmp_path(path, tmp, sizeof tmp));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rt_fail(RT_ERR_IO, "%s: cannot create %s (%s)", path, tmp, strerror(errno));
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = w < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return rt_fail(RT_ERR_IO, "%s: writing %s failed (%s)", path, tmp, strerror(err));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        int err = errno;
        unlink(tmp);
        return rt_fail(RT_ERR_IO, "%s: closing %s failed (%s)", path, tmp, strerror(err));
    }
    return ckpt_fs_commit(tmp, path);
}
