/* File helpers of data/, used by every library above it: whole-file reads,
 * path joins, creating folders, and retort's one durable atomic write
 * (temporary file in the same folder, fsync, rename, fsync of the folder),
 * which shards, tokenizer files, reports, checkpoints and `latest` all go
 * through, so a crash or a full disk never leaves a half-written file under
 * its final name and a finished one survives a power cut. */
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

/* The same, refusing (RT_ERR_FORMAT naming the path and `what`) a file of
 * more than `max` bytes before reading past max + 1 of them: a file that
 * should be small (a tokenizer) pointed at /dev/zero or a huge corpus
 * fails at once instead of filling memory. */
rt_status data_read_file_max(const char *path, size_t max, const char *what, char **buf,
                             size_t *len);

/* dst = dir + "/" + name; RT_ERR_ARGS when it does not fit in cap. */
rt_status data_path_join(char *dst, size_t cap, const char *dir, const char *name);

/* dst = <folder of path>/.<name>.tmp.<pid>: where `path` is written before
 * the rename (same folder, so the rename is atomic; hidden; the writer's PID
 * lets checkpoints/rotate.c remove the leftovers of a dead writer).
 * RT_ERR_ARGS when path names a folder or the result does not fit in cap. */
rt_status data_tmp_path(char *dst, size_t cap, const char *path);

/* Puts a finished temporary file in place durably: fsync(tmp), rename(tmp,
 * path), fsync of the folder (a file system that refuses fsync on a folder
 * gets the rename as durable as it can make it). On failure removes tmp and
 * returns RT_ERR_IO naming path. */
rt_status data_commit_tmp(const char *tmp, const char *path);

/* The two ends of writing `path` by hand: data_tmp_open creates
 * data_tmp_path's file (its name into tmp[cap]) for writing; data_tmp_finish
 * closes it and, when every write and the close succeeded, puts it in place
 * (data_commit_tmp); otherwise it removes it. Both RT_ERR_IO naming path. */
rt_status data_tmp_open(char *tmp, size_t cap, const char *path, FILE **f);
rt_status data_tmp_finish(FILE *f, const char *tmp, const char *path);

/* Writes `path` as a whole: body(f, ctx) writes the contents into
 * data_tmp_path's file, which data_commit_tmp puts in place only when every
 * write and the close succeeded. RT_ERR_IO naming the file otherwise. */
rt_status data_write_atomic(const char *path, void (*body)(FILE *f, const void *ctx),
                            const void *ctx);

/* data_write_atomic of a NUL-terminated text. */
rt_status data_write_text(const char *path, const char *text);

/* Creates dir and its missing parents (like mkdir -p) and checks that files
 * can be created in it. Errors name dir. */
rt_status data_mkdir_p(const char *dir);

#endif
