/* Training configuration: INI files (inih) into a typed struct.
 *
 * One schema table (trainer_config_keys) lists every key with its section,
 * type, place in the struct, default, bounds or allowed values and help.
 * The same table drives parsing, validation, `retort train --help`, and
 * dumping the resolved config back to INI (stored in checkpoints) and JSON.
 * Defaults are written as text in the table and go through the same parser
 * as a file, so they obey the same checks.
 *
 * Resolution order: defaults, then the file, then each `--set
 * section.key=value` in command-line order, then checks that span several
 * keys. Every error is RT_ERR_ARGS with one line naming FILE:LINE (or the
 * --set), section.key and what was expected, except a config file that
 * cannot be opened: RT_ERR_IO naming the path. */
#ifndef TRAINER_CONFIG_H
#define TRAINER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "rt_status.h"

#define TRAINER_STR_MAX 1024        /* capacity of path-like strings, NUL included */
#define TRAINER_MAX_FEATURE_PAIRS 64 /* entries of distill.feature_map */

typedef enum { TRAINER_PRECISION_F32, TRAINER_PRECISION_BF16 } trainer_precision;
typedef enum { TRAINER_FEATURE_MSE, TRAINER_FEATURE_COSINE } trainer_feature_loss;
typedef enum { TRAINER_DIV_KL, TRAINER_DIV_REVERSE_KL, TRAINER_DIV_JSD } trainer_divergence;
typedef enum { TRAINER_QAT_SYMMETRIC, TRAINER_QAT_ASYMMETRIC } trainer_qat_act;
typedef enum {
    TRAINER_PRUNE_NONE,
    TRAINER_PRUNE_MAGNITUDE,
    TRAINER_PRUNE_WANDA,
    TRAINER_PRUNE_NM,
    TRAINER_PRUNE_HEADS,
    TRAINER_PRUNE_FFN,
} trainer_prune_method;
typedef enum { TRAINER_PRUNE_SCHEDULE_NONE, TRAINER_PRUNE_SCHEDULE_GRADUAL } trainer_prune_schedule;

/* A resolved configuration. A plain value: copy it with `=`, nothing to
 * free. Fields marked "derived" are computed from other keys by
 * trainer_config_load and are not keys themselves. */
typedef struct {
    struct {
        int n_layer, n_head, d_model, d_ff, seq_len; /* vocab_size comes from the data */
    } model;
    struct {
        char train[TRAINER_STR_MAX];     /* token shard for training */
        char val[TRAINER_STR_MAX];       /* token shard for evaluation */
        char tokenizer[TRAINER_STR_MAX]; /* folder with vocab.json + merges.txt */
    } data;
    struct {
        char run_dir[TRAINER_STR_MAX];
        int64_t steps;
        int batch;       /* global batch in sequences, split evenly over student ranks */
        int micro_batch; /* sequences per forward/backward; 0 = batch / ranks */
        double lr, min_lr_ratio;
        int64_t warmup;
        double weight_decay, beta1, beta2, eps, grad_clip;
        int64_t seed;
        trainer_precision precision;
        int64_t eval_every, eval_tokens, checkpoint_every;
        int keep_checkpoints;
        int64_t log_every;
        char init[TRAINER_STR_MAX]; /* "" = random init, else a checkpoint to start from */
        bool shared_weights;        /* keep each linear weight's equal values equal */
        bool recompute;             /* recompute each block's activations in backward */
    } train;
    struct {
        int teachers;                  /* teacher ranks; 0 = plain training */
        char teacher[TRAINER_STR_MAX]; /* teacher checkpoint */
        double temperature, alpha;
        int labels;  /* teacher_labels: topk | sample | topk+sample | hidden */
        int topk;
        int samples; /* draws per position of the sampled schemes */
        int hidden;  /* labels = hidden: 0 int8 + scales, 1 bf16 */
        char labels_dir[TRAINER_STR_MAX]; /* label cache to train from, "" = online */
        double beta;
        char feature_map[TRAINER_STR_MAX]; /* "s1:t2,s3:t5" or "" */
        trainer_feature_loss feature_loss;
        trainer_divergence divergence;
        int depth;      /* teacher records in flight per student */
        int zstd_level;
        double timeout; /* seconds without a record before a teacher counts as dead */
        trainer_precision teacher_precision;
        /* derived from feature_map: pairs (student hidden state, teacher hidden state) */
        int n_feature_pairs;
        int feature_pairs[TRAINER_MAX_FEATURE_PAIRS][2];
    } distill;
    struct {
        bool enabled;
        int64_t start_step;
        int calib_steps;
        trainer_qat_act act;
        bool freeze_scales;
    } qat;
    struct {
        trainer_prune_method method;
        double sparsity;
        char nm[32];    /* "2:4" */
        int nm_n, nm_m; /* derived from nm */
        trainer_prune_schedule schedule;
        int64_t start_step, end_step, every; /* schedule = gradual */
    } prune;
} trainer_config;

typedef enum {
    TRAINER_KEY_INT,    /* int */
    TRAINER_KEY_INT64,  /* int64_t */
    TRAINER_KEY_FLOAT,  /* double */
    TRAINER_KEY_BOOL,   /* bool: true/false, yes/no, on/off, 1/0 */
    TRAINER_KEY_STRING, /* char[size]; surrounding double quotes are stripped */
    TRAINER_KEY_ENUM,   /* an enum stored as int; the value is the index in `choices` */
} trainer_key_type;

/* One key of the schema. */
typedef struct {
    const char *section, *key;
    trainer_key_type type;
    size_t offset;       /* of the field in trainer_config */
    size_t size;         /* of the field (capacity for strings) */
    const char *def;     /* default, as it would be written in a file */
    double min, max;     /* numeric bounds (±INFINITY = none) */
    bool min_open, max_open; /* bound excluded */
    const char *choices; /* enum: "f32|bf16" */
    const char *help;
    /* Strings: extra syntax check of a value (feature_map, nm), or NULL.
     * Returns RT_ERR_ARGS with an rt_fail message saying what was expected. */
    rt_status (*check)(const char *value);
} trainer_config_key;

/* The schema, in file order (sections model, data, train, distill, qat, prune). */
const trainer_config_key *trainer_config_keys(int *n);

/* Resolves a configuration: defaults, then the INI file at `path` (NULL =
 * defaults only), then `sets` ("section.key=value", applied in order), then
 * the cross-key checks. On error *out is unspecified. */
rt_status trainer_config_load(const char *path, const char *const *sets, int n_sets,
                              trainer_config *out);

/* The same with the INI text in memory (e.g. read back from a checkpoint);
 * `origin` names it in messages ("<ckpt>:/config/ini"). */
rt_status trainer_config_load_string(const char *ini, const char *origin, const char *const *sets,
                                     int n_sets, trainer_config *out);

/* Every key at its default (the derived fields filled in). */
void trainer_config_defaults(trainer_config *out);

/* Sets one key from text, as a file line would. `origin` prefixes error
 * messages (e.g. "--set train.lr=x"). Derived fields and cross-key checks
 * are not updated: call trainer_config_validate afterwards. */
rt_status trainer_config_set(trainer_config *c, const char *section, const char *key,
                             const char *value, const char *origin);

/* Applies one "section.key=value" override. */
rt_status trainer_config_apply_set(trainer_config *c, const char *set);

/* Checks that span several keys (d_model divisible by n_head, micro_batch
 * at most batch, distill.beta > 0 needs a feature_map, teachers > 0 needs a
 * teacher, ...) and recomputes the derived fields. */
rt_status trainer_config_validate(trainer_config *c);

/* The resolved configuration as INI text, every key, in schema order, that
 * trainer_config_load_string reads back to an equal config (checked before
 * returning: RT_ERR_INTERNAL, or the reader's error, when it would not).
 * *out is malloc'd (caller frees). */
rt_status trainer_config_to_ini(const trainer_config *c, char **out);

/* The configuration as a JSON object {section: {key: value}} (new
 * reference; NULL only when out of memory). */
json_t *trainer_config_to_json(const trainer_config *c);

/* True when every key holds the same value in a and b (trainer_config_to_ini
 * checks its round trip with it). */
bool trainer_config_equal(const trainer_config *a, const trainer_config *b);

/* Documents every key (section, type, default, bounds/choices, help) for
 * `retort train --help`. */
void trainer_config_print_help(FILE *f);

/* Parses an N:M sparsity pattern "N:M" (keep N of every M consecutive
 * weights, as in 2:4) with 0 < N < M <= 64. RT_ERR_ARGS names the text. */
rt_status trainer_parse_nm(const char *s, int *n, int *m);

/* Parses a feature map "s1:t2,s3:t5" (the s/t prefixes are optional) into
 * up to `cap` pairs of non-negative ints; "" gives 0 pairs. */
rt_status trainer_parse_feature_map(const char *s, int (*pairs)[2], int cap, int *n);

#endif
