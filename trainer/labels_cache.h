/* Offline soft-label caches: the teacher's labels of a run's training
 * windows, computed once by `retort label` and read back by `retort train`
 * with distill.labels_dir instead of teacher ranks.
 *
 * A cache is a folder:
 *   index.json         the cache's identity (trainer_labels_meta: teacher
 *                      and shard checksums, seq_len, vocab, seed, global
 *                      batch, steps, temperature, scheme), "complete", and
 *                      once complete one entry per chunk (file, first step,
 *                      steps, bytes, CRC-32C);
 *   chunk_NNNNNN.bin   the records of chunk_steps consecutive steps: a
 *                      header (magic, FNV-1a of the identity, first step,
 *                      steps, payload bytes, payload CRC-32C, header CRC-32C)
 *                      then per step a u64 length and one comm/ wire record
 *                      (zstd, checksummed) holding the step's G rows in
 *                      global order (data_sampler_global_windows).
 * Chunks are written to a temporary name and renamed, so a chunk file that
 * exists is whole; a killed `retort label` restarts and keeps every chunk
 * that verifies. Training refuses a cache whose identity differs from its
 * run (naming the key), an incomplete one, and a chunk whose size or
 * checksum is wrong (naming the file). Integers are little-endian. */
#ifndef TRAINER_LABELS_CACHE_H
#define TRAINER_LABELS_CACHE_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "rt_status.h"
#include "teacher.h"

#define TRAINER_LABELS_VERSION 2 /* 2: hidden-state labels (hidden, hidden_width) */

/* What a cache's labels are a function of. */
typedef struct {
    char teacher[TRAINER_STR_MAX]; /* as given to `retort label` */
    uint32_t teacher_crc32c;
    char train[TRAINER_STR_MAX];
    uint32_t train_crc32c;
    int seq_len, vocab;
    int batch;       /* global batch G: rows per step */
    int micro_batch; /* rows per teacher forward (a 1-student run's) */
    int64_t seed, steps;
    double temperature;
    int labels, topk, samples; /* teacher_labels scheme and its sizes */
    int width;                 /* entries per position (0 for hidden) */
    int hidden;                /* comm_hidden of labels = hidden, else 0 */
    int hidden_width;          /* the teacher's d_model for labels = hidden, else 0 */
    int teacher_precision;     /* trainer_precision of the forward */
    int chunk_steps;
} trainer_labels_meta;

/* "topk", "sample", "topk+sample" or "hidden" (teacher_labels), "?" else. */
const char *trainer_labels_scheme_name(int labels);

/* CRC-32C of a whole file, or of a Hugging Face folder's model files (the
 * identity of teachers and shards). */
rt_status trainer_file_crc32c(const char *path, uint32_t *crc);

/* The identity of the labels a run with config cfg, teacher settings tc
 * and windows of T positions (the student's seq_len) needs (checksums
 * included; the teacher's only when distill.teacher is set). Sizes a
 * scheme does not use are 0. chunk_steps is left 0. */
rt_status trainer_labels_meta_make(const trainer_config *cfg, const teacher_config *tc, int T,
                                   trainer_labels_meta *m);

/* --------------------------------------------------------- writing */

typedef struct trainer_labels_writer trainer_labels_writer;

/* Opens DIR for `meta` (chunk_steps >= 1). Call on one process first with
 * create = 1: creates DIR and an incomplete index.json, or, when DIR
 * already holds a cache, checks that it was made for the same identity
 * (RT_ERR_MISMATCH naming the first differing key). Other processes then
 * open it with create = 0. */
rt_status trainer_labels_writer_open(const char *dir, const trainer_labels_meta *meta, int create,
                                     int zstd_level, trainer_labels_writer **out);
void trainer_labels_writer_close(trainer_labels_writer *w);
int64_t trainer_labels_n_chunks(const trainer_labels_meta *meta);
/* 1 when chunk c is already on disk and verifies (a resumed run skips it). */
int trainer_labels_chunk_done(trainer_labels_writer *w, int64_t c);
/* Appends the record of the next step of the chunk being built (steps in
 * order from the chunk's first), zstd-compressed by comm/'s codec. */
rt_status trainer_labels_append(trainer_labels_writer *w, const comm_record *rec);
/* Writes the chunk of the appended steps as chunk c (atomically). */
rt_status trainer_labels_commit_chunk(trainer_labels_writer *w, int64_t c);
/* Verifies every chunk and rewrites index.json as complete, with the chunk
 * list; *bytes = the chunks' total size. */
rt_status trainer_labels_finish(const char *dir, const trainer_labels_meta *meta, int64_t *bytes);

/* --------------------------------------------------------- reading */

typedef struct trainer_labels_reader trainer_labels_reader;

/* Opens the complete cache in DIR for a run with identity `run`: every key
 * must match, except that the teacher is only compared when run->teacher is
 * set (its checksum) and the cache may hold more steps than the run needs.
 * RT_ERR_MISMATCH naming the key otherwise. */
rt_status trainer_labels_open(const char *dir, const trainer_labels_meta *run,
                              trainer_labels_reader **out);
void trainer_labels_close(trainer_labels_reader *r);
/* Decodes the record of `step` (all G rows) into rec. A chunk is read and
 * its size and CRC-32C verified against the index when first needed. */
rt_status trainer_labels_read(trainer_labels_reader *r, int64_t step, comm_record *rec);
/* Bytes on disk of the records read so far, and their token positions. */
void trainer_labels_stats(const trainer_labels_reader *r, int64_t *bytes, int64_t *positions);

#endif
