/* File helpers of data/ (also used by trainer/'s report writers): whole-file
 * reads, path joins, creating folders, and the write-to-temporary-then-rename
 * pattern that keeps a failed write from leaving a half-written file under
 * its final name. */
#ifndef DATA_FSUTIL_H
#define DATA_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "rt_status.h"

/* Longest path data/ builds (joined folder + name, temporary names). */
#define DATA_PATH_MAX 4096

/* Reads the whole file into a new NUL-terminated buffer (free with free()).
 * RT_ERR_IO naming the path when it cannot be opened or read. */
rt_status data_read_file(const char *path, char **buf, size_t *len);

/* dst = dir + "/" + name; RT_ERR_ARGS when it does not fit in cap. */
rt_status data_path_join(char *dst, size_t cap, const char *dir, const char *name);

/* dst = path + ".tmp.<pid>": where a file is written before the rename. */
rt_status data_tmp_path(char *dst, size_t cap, const char *path);

/* Renames tmp to path; on failure removes tmp and names path. */
rt_status data_commit_tmp(const char *tmp, const char *path);

/* Writes `path` as a whole: body(f, ctx) writes the contents into a
 * temporary file next to it, which is renamed over `path` only when every
 * write and the close succeeded. RT_ERR_IO naming the file otherwise. */
rt_status data_write_atomic(const char *path, void (*body)(FILE *f, const void *ctx),
                            const void *ctx);

/* Creates dir and its missing parents (like mkdir -p) and checks that files
 * can be created in it. Errors name dir. */
rt_status data_mkdir_p(const char *dir);

#endif
