/* HDF5 checkpoints that never lose work: atomic, durable writes, rotation
 * with a `latest` pointer, and reads that validate everything (format,
 * version, model shape, dataset shapes, per-dataset checksums) and fail with
 * one line naming the file and the dataset instead of crashing or returning
 * silently wrong weights.
 *
 * The module works on plain float blocks laid out by the parameter table of
 * student/student.h (student_tensor_info), so it needs no model handle.
 *
 * File layout (docs: ARCHITECTURE.md, "Checkpoint layout"):
 *   /                root attributes format="retort", version=1, kind
 *                    ("train" | "deploy"), step, tokens_seen
 *   /config          attributes n_layer n_head d_model d_ff vocab_size seq_len
 *   /model/<name>    one float32 dataset per tensor of the parameter table,
 *                    named and shaped as in a Hugging Face GPT-2 state dict
 *   /optimizer       attribute step; /optimizer/m/<name>, /optimizer/v/<name>
 *   /state, /distill, /qat, /prune, ...   caller-defined arrays (ckpt_array)
 *   /meta            attributes config (resolved INI text), provenance (JSON),
 *                    retort_version
 * Every dataset retort writes carries a uint32 attribute `checksum`: the
 * CRC-32C (Castagnoli) of its raw little-endian bytes, verified on every
 * read, because HDF5 does not checksum raw data. The long /meta strings
 * carry `<name>_checksum` (CRC-32C of the UTF-8 bytes) for the same reason.
 * Metadata (object headers, superblock) is written in the HDF5 1.8+ format,
 * whose structures HDF5 itself checksums. Files written by other tools
 * without `checksum` attributes are read unverified. */
#ifndef CKPT_H
#define CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rt_status.h"
#include "student.h"

/* The layout version this code writes and the newest it reads. */
#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_DIMS 4

#ifndef RETORT_VERSION
#define RETORT_VERSION "0.1.0" /* keep equal to project(VERSION) in CMakeLists.txt */
#endif

/* Element types of caller-defined arrays; stored little-endian. */
typedef enum { CKPT_F32, CKPT_F64, CKPT_I8, CKPT_U8, CKPT_I32, CKPT_I64, CKPT_U64 } ckpt_dtype;

size_t ckpt_dtype_size(ckpt_dtype t);
/* numpy's name of the type: "float32", "int8", ... */
const char *ckpt_dtype_name(ckpt_dtype t);

/* One caller-owned array stored at an absolute path in the file; missing
 * intermediate groups are created. */
typedef struct {
    const char *path;             /* e.g. "/state/sampler_cursor" */
    ckpt_dtype dtype;
    int ndim;                     /* 0 (a scalar) .. CKPT_MAX_DIMS */
    int64_t shape[CKPT_MAX_DIMS];
    const void *data;             /* prod(shape) elements, row-major */
} ckpt_array;

/* What one checkpoint holds; everything is owned by the caller and only
 * read during ckpt_save. */
typedef struct {
    const char *kind;             /* "train" | "deploy" */
    int64_t step, tokens_seen;
    student_config cfg;
    const float *params;          /* student_block_floats(&cfg) floats laid out per
                                     student_tensor_info; NULL only for kind "deploy"
                                     (whose weights then come as extras) */
    const float *adam_m, *adam_v; /* same layout; both NULL = no optimizer state */
    int64_t adam_step;            /* AdamW steps taken (stored as /optimizer step) */
    const ckpt_array *extras;     /* /state, /distill, /qat, /prune, ...; may not go
                                     inside /config, /meta, or /model and /optimizer
                                     when those are written from params / adam_* */
    int n_extras;
    const char *config_text;      /* full resolved config (INI text); NULL = "" */
    const char *provenance_json;  /* NULL = "" */
} ckpt_contents;

/* ------------------------------------------------------------- writing */

/* Writes `c` to `path` atomically and durably: the file is built as
 * <dir>/.<name>.tmp.<pid>, flushed and closed, fsync'ed, renamed over
 * `path`, and the folder is fsync'ed. On any failure the temporary file is
 * removed and an existing `path` is left untouched. RT_ERR_ARGS for bad
 * contents (message names the field), RT_ERR_IO for file system failures. */
rt_status ckpt_save(const char *path, const ckpt_contents *c);

/* `<run_dir>/step_<%08lld>.h5` into out (RT_ERR_ARGS if it does not fit). */
rt_status ckpt_step_path(const char *run_dir, int64_t step, char *out, size_t n);

/* Saves `c` as ckpt_step_path(run_dir, step) (run_dir must exist; step must
 * equal c->step), then,
 * only once that file is complete, points `<run_dir>/latest` (a one-line
 * text file holding the file name, itself replaced atomically) at it, then
 * deletes the oldest step_*.h5 with a step below `step` so that `keep`
 * files remain (keep <= 0 keeps all). Never deleted: the file `latest`
 * names and any step_*.h5 with a step above `step` (a later timeline the
 * user resumed away from). Temporary files of dead writers (pid gone on
 * this host, untouched for 10 minutes) are removed too. A failed deletion
 * is a warning on stderr, not an error: the checkpoint itself is safe. */
rt_status ckpt_save_rotating(const char *run_dir, int64_t step, const ckpt_contents *c, int keep);

/* Turns a user's checkpoint argument into a file path (into out, n bytes):
 * "latest" or NULL -> what <run_dir>/latest names; a folder -> what its
 * `latest` names; a file path -> itself. Without a `latest` file the
 * highest step_*.h5 of the folder is taken. RT_ERR_IO naming what is
 * missing when there is no such file or no checkpoint; RT_ERR_ARGS for
 * "latest" without a run_dir. The file is not opened: ckpt_open validates. */
rt_status ckpt_resolve(const char *arg, const char *run_dir, char *out, size_t n);

/* Exclusive hold on a run folder (which must exist) for one training run:
 * flock on <run_dir>/.lock, which records "PID HOST" of the holder. Held
 * until ckpt_run_lock_release or the process's end (kill -9 included: the
 * kernel drops the lock). A second run fails RT_ERR_ARGS naming the
 * holder's pid and host. Once held, the temporary files of earlier writers
 * (killed saves) are removed; *n_removed (may be NULL) says how many. On
 * NFS, flock is mapped to the server's byte-range locks (Linux >= 2.6.12),
 * so two hosts exclude each other too. */
typedef struct ckpt_run_lock ckpt_run_lock;
rt_status ckpt_run_lock_take(const char *run_dir, ckpt_run_lock **out, int *n_removed);
void ckpt_run_lock_release(ckpt_run_lock *l); /* NULL is fine */

/* ------------------------------------------------------------- reading */

typedef struct ckpt_reader ckpt_reader;

/* Opens and validates a checkpoint: a Hugging Face GPT-2 folder (kind "hf",
 * ckpt_hf.h: weights only, no other dataset), or an HDF5 file that exists, is HDF5, opens (truncated or
 * corrupt files are refused), format="retort", a supported version, kind
 * "train" or "deploy", step and tokens_seen, and a complete, valid /config.
 * Errors (RT_ERR_IO missing/unreadable, RT_ERR_FORMAT wrong contents,
 * RT_ERR_UNSUPPORTED newer version) name the path. *out is NULL on error. */
rt_status ckpt_open(const char *path, ckpt_reader **out);
void ckpt_reader_close(ckpt_reader *r); /* NULL-safe */

const char *ckpt_reader_path(const ckpt_reader *r);
const student_config *ckpt_reader_config(const ckpt_reader *r);
const char *ckpt_reader_kind(const ckpt_reader *r); /* "train" | "deploy" */
int64_t ckpt_reader_step(const ckpt_reader *r);
int64_t ckpt_reader_tokens_seen(const ckpt_reader *r);

/* RT_ERR_FORMAT unless the file's kind is `kind`; the message names the
 * path, both kinds and `purpose` (e.g. "resuming training"). */
rt_status ckpt_require_kind(const ckpt_reader *r, const char *kind, const char *purpose);

/* RT_ERR_MISMATCH naming the first differing field when the file's model
 * shape is not `want`: "PATH: d_model is 128, expected 256 (WHAT)";
 * `what` (may be NULL) says where the expectation comes from. */
rt_status ckpt_check_config(const ckpt_reader *r, const student_config *want, const char *what);

/* Reads every tensor of /model into `block`, which holds
 * student_block_floats(ckpt_reader_config(r)) floats (call
 * ckpt_check_config first when it was sized from another config); layout
 * per student_tensor_info, padding between tensors is not written. Checks
 * each dataset's presence, type (float32), shape and checksum; the message
 * names the dataset. */
rt_status ckpt_read_params(ckpt_reader *r, float *block);

/* Checks, without reading or allocating anything sized by the file, that
 * /model holds every tensor /config implies with its shape (float32, or
 * int8 in a deploy file) and that the file stores the bytes each declares.
 * Run it before building a model from the file's /config: a file that lies
 * about its shape is then one error naming the dataset, not an allocation
 * of whatever it claims. ckpt_load_model does. */
rt_status ckpt_check_model(ckpt_reader *r);

/* Checks n floats read from dataset `dpath`: each finite and within
 * [lo, hi]; RT_ERR_FORMAT naming the file, the dataset, the index and the
 * value otherwise. Every float a reader hands to a model goes through it
 * (weights, optimizer moments with lo = 0 for v, int8 scales), so a NaN
 * with a valid checksum is an error at load, not undefined behaviour in
 * a kernel. */
rt_status ckpt_check_floats(const ckpt_reader *r, const char *dpath, const float *x, size_t n,
                            float lo, float hi);
/* The same for floats of `what` in a file that is not HDF5 (a safetensors
 * tensor of a Hugging Face folder): the message names `file` and `what`. */
rt_status ckpt_check_floats_in(const char *file, const char *what, const float *x, size_t n,
                               float lo, float hi);

/* Reads /optimizer/m and /optimizer/v (same layout as params) and the
 * optimizer step; RT_ERR_FORMAT when the file has no optimizer state. */
rt_status ckpt_read_optimizer(ckpt_reader *r, float *adam_m, float *adam_v, int64_t *step);

/* 1 if a group or dataset exists at the absolute path `path`, else 0. */
int ckpt_has(ckpt_reader *r, const char *path);

/* Type and shape of the dataset at `path` (shape may be NULL); RT_ERR_FORMAT
 * when it is missing, not a dataset, of more than CKPT_MAX_DIMS dimensions
 * or of a type outside ckpt_dtype. */
rt_status ckpt_array_info(ckpt_reader *r, const char *path, ckpt_dtype *dtype, int *ndim,
                          int64_t *shape);

/* Reads the dataset at `path` into out (numel elements of dtype), checking
 * the stored type equals dtype, the element count equals numel and the
 * checksum. Errors name the path and the dataset. */
rt_status ckpt_read_array(ckpt_reader *r, const char *path, ckpt_dtype dtype, size_t numel,
                          void *out);

/* Reads the string attribute `name` of the object at `obj` ("/", "/meta")
 * into a new NUL-terminated string (free with free()), verifying
 * `<name>_checksum` when the file has one. RT_ERR_FORMAT when missing. */
rt_status ckpt_read_string_attr(ckpt_reader *r, const char *obj, const char *name, char **out);

/* Reads every dataset of the file and checks every stored checksum (what
 * `retort info --verify` does); RT_ERR_FORMAT names the first bad one, and
 * also the first dataset that has no checksum (nothing to verify it by). */
rt_status ckpt_verify(ckpt_reader *r);

/* Calls fn(r, "/group/dataset", ctx) for every dataset reachable by hard
 * links, group by group in storage order, stopping at the first non-OK
 * status, which it returns. Bounded in depth and link count; never uses
 * H5Lvisit nor name order (which crash HDF5 1.10.8 on some corrupt files). */
typedef rt_status (*ckpt_dataset_fn)(ckpt_reader *r, const char *dpath, void *ctx);
rt_status ckpt_walk_datasets(ckpt_reader *r, ckpt_dataset_fn fn, void *ctx);

/* ------------------------------------------------------------ models */

/* Opens and validates `path` (ckpt_open), creates a student_model of the
 * file's shape for up to `batch` rows in precision p (training as in
 * student_create) and reads its weights. On success *model_out is the
 * caller's; *reader_out (when reader_out != NULL) is the still-open reader
 * for further reads (optimizer, /state, /prune, ...), else it is closed.
 * Errors name the file; nothing is returned on error. */
rt_status ckpt_load_model(const char *path, int batch, student_precision p, int training,
                          student_model **model_out, ckpt_reader **reader_out);

/* ckpt_load_model for windows of `seq_len` positions (0: the file's). A
 * file with more positions (a teacher with GPT-2's 1024 for a student of
 * 256) gives a model of seq_len positions from the first seq_len rows of
 * wpe, which computes exactly what the full model computes on the first
 * seq_len tokens (attention is causal); fewer is RT_ERR_MISMATCH. */
rt_status ckpt_load_model_window(const char *path, int seq_len, int batch, student_precision p,
                                 int training, student_model **model_out,
                                 ckpt_reader **reader_out);

/* The parameters to export to a format without a head width of its own
 * (Hugging Face, GGUF): when heads were removed (d_head set), *c gets
 * n_head = d_model / d_head and *padded a new block (rt_free_aligned) with
 * the removed heads back as zeros (student_heads_pad: exactly the same
 * function); a low-rank model (cfg.rank set) gets its factors multiplied
 * back into dense weights first (student_lowrank_merge, ranks 0 in *c);
 * otherwise *c = *c0 and *padded = NULL (export params0). */
rt_status ckpt_export_params(const student_config *c0, const float *params0, student_config *c,
                             float **padded);

/* Bytes a model takes on disk: the file's size, or for a Hugging Face
 * folder the sum of config.json and its safetensors files; -1 when it
 * cannot be read. */
int64_t ckpt_model_bytes(const char *path);

/* Reads the file's weights into an existing model after checking that the
 * shapes agree (RT_ERR_MISMATCH naming the field otherwise). */
rt_status ckpt_read_model(ckpt_reader *r, student_model *m);

/* ---------------------------------------------------------------- info */

/* Optional state groups of a training checkpoint, in `retort info`'s
 * order: /optimizer, /state, /distill, /qat, /prune. */
#define CKPT_SUMMARY_N_GROUPS 5
extern const char *const ckpt_summary_groups[CKPT_SUMMARY_N_GROUPS];
/* Dataset bytes are counted per ckpt_dtype plus one slot for any other
 * type (ckpt_summary_type_name gives "other" for it). */
#define CKPT_SUMMARY_N_TYPES (CKPT_U64 + 2)
const char *ckpt_summary_type_name(int slot);

/* What a model file or folder holds, from its metadata alone (no data
 * pass; see ckpt_verify): `retort info` prints it. Owns its strings. */
typedef struct {
    char *path;
    char kind[16];           /* "train", "deploy" or "hf" */
    student_config cfg;
    size_t params;           /* student_param_count(&cfg) */
    long long file_bytes;    /* -1 when the file cannot be stat'ed */
    /* HDF5 files (kind train/deploy) */
    int64_t step, tokens_seen;
    int d_head_stored;       /* /config holds d_head: heads were removed */
    unsigned long long type_bytes[CKPT_SUMMARY_N_TYPES]; /* storage bytes by dtype */
    long long type_count[CKPT_SUMMARY_N_TYPES];          /* datasets by dtype */
    char *config, *provenance, *version; /* /meta attributes; NULL when absent */
    int has_group[CKPT_SUMMARY_N_GROUPS];
    int has_opt_step;        /* /optimizer has a step attribute: opt_step */
    int64_t opt_step;
    /* Hugging Face folders (kind hf) */
    const char *hf_dtype;    /* of the first tensor: "F32", "F16", "BF16" */
    int hf_files;            /* safetensors files */
    int hf_key_prefix;       /* names carry "transformer." */
    int hf_head_stored;      /* lm_head.weight stored (checked equal to wte) */
} ckpt_summary;

/* Fills *s (zeroed first) for the file or folder at path; errors as
 * ckpt_open's, naming the file. Free with ckpt_summary_free (also after a
 * failure; NULL-safe). */
rt_status ckpt_summarize(const char *path, ckpt_summary *s);
void ckpt_summary_free(ckpt_summary *s);

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes, chained
 * like zlib's crc32: start with crc = 0, pass the previous result to
 * continue. ckpt_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t ckpt_crc32c(uint32_t crc, const void *data, size_t n);

#endif
