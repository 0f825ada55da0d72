/* The training configuration: schema table, INI parsing (inih), --set
 * overrides, validation, and dumping to INI / JSON / help text.
 *
 * Everything about a key (where it lives, its type, default, bounds and
 * help) is in one row of `keys` below, so adding a key is one line there
 * plus the field in trainer_config; parsing, checks, help, the INI stored
 * in checkpoints and the JSON all follow. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "cli_text.h"
#include "student.h"

#define K_INT(s, k, f, d, lo, hi, h)                                                       \
    {.section = s, .key = k, .type = TRAINER_KEY_INT, FIELD_(f), .def = d, .min = lo,        \
     .max = hi, .help = h}
#define K_INT64(s, k, f, d, lo, hi, h)                                                     \
    {.section = s, .key = k, .type = TRAINER_KEY_INT64, FIELD_(f), .def = d, .min = lo,      \
     .max = hi, .help = h}
/* lo_open / hi_open: the bound itself is excluded ("(0, 1]"). */
#define K_FLOAT(s, k, f, d, lo, lo_open, hi, hi_open, h)                                   \
    {.section = s, .key = k, .type = TRAINER_KEY_FLOAT, FIELD_(f), .def = d, .min = lo,      \
     .min_open = lo_open, .max = hi, .max_open = hi_open, .help = h}
#define K_BOOL(s, k, f, d, h)                                                              \
    {.section = s, .key = k, .type = TRAINER_KEY_BOOL, FIELD_(f), .def = d, .help = h}
#define K_STR(s, k, f, d, chk, h)                                                          \
    {.section = s, .key = k, .type = TRAINER_KEY_STRING, FIELD_(f), .def = d, .check = chk,   \
     .help = h}
#define K_ENUM(s, k, f, d, ch, h)                                                          \
    {.section = s, .key = k, .type = TRAINER_KEY_ENUM, FIELD_(f), .def = d, .choices = ch,    \
     .help = h}
#define FIELD_(f) .offset = offsetof(trainer_config, f), .size = sizeof(((trainer_config *)0)->f)

static rt_status check_feature_map(const char *v);
static rt_status check_nm(const char *v);
static rt_status check_run_dir(const char *v);

/* Enum fields are stored as int: the index of the value in `choices`. */
_Static_assert(sizeof(trainer_precision) == sizeof(int), "enum fields are read as int");

static const trainer_config_key keys[] = {
    K_INT("model", "n_layer", model.n_layer, "4", 1, STUDENT_MAX_LAYERS, "Transformer blocks."),
    K_INT("model", "n_head", model.n_head, "4", 1, STUDENT_MAX_HEADS,
          "Attention heads; d_model must be divisible by n_head."),
    K_INT("model", "d_model", model.d_model, "256", 1, STUDENT_MAX_D_MODEL, "Residual stream width."),
    K_INT("model", "d_ff", model.d_ff, "1024", 1, STUDENT_MAX_D_FF,
          "MLP hidden width (GPT-2 uses 4 * d_model)."),
    K_INT("model", "seq_len", model.seq_len, "128", 1, STUDENT_MAX_SEQ_LEN,
          "Context length in tokens (rows of the position embedding). The vocabulary size "
          "is not a key: it comes from the data."),

    K_STR("data", "train", data.train, "data/train.h5", NULL,
          "Token shard to train on (written by retort prepare)."),
    K_STR("data", "val", data.val, "data/val.h5", NULL, "Token shard for evaluation."),
    K_STR("data", "tokenizer", data.tokenizer, "data/", NULL,
          "Folder with vocab.json and merges.txt of the shards' tokenizer."),

    K_STR("train", "run_dir", train.run_dir, "runs/default", check_run_dir,
          "Folder for checkpoints and metrics.jsonl (created if missing; not empty, not /). "
          "One run at a time: a second run on the same folder is refused, naming the "
          "holder of <run_dir>/.lock."),
    K_INT64("train", "steps", train.steps, "1000", 1, INFINITY, "Optimizer steps in total."),
    K_INT("train", "batch", train.batch, "8", 1, 1048576,
          "Global batch in sequences, split evenly over the student ranks."),
    K_INT("train", "micro_batch", train.micro_batch, "0", 0, 1048576,
          "Sequences per forward/backward pass on a rank; gradients of a rank's share of "
          "the batch are accumulated in micro-batches of this size. 0 = batch / ranks (no "
          "accumulation)."),
    K_FLOAT("train", "lr", train.lr, "6e-4", 0, false, 10, false,
            "Peak learning rate, reached after warmup steps, then cosine decay."),
    K_FLOAT("train", "min_lr_ratio", train.min_lr_ratio, "0.1", 0, false, 1, false,
            "Final learning rate as a fraction of lr (end of the cosine)."),
    K_INT64("train", "warmup", train.warmup, "100", 0, INFINITY, "Linear warmup steps."),
    K_FLOAT("train", "weight_decay", train.weight_decay, "0.1", 0, false, 10, false,
            "AdamW decoupled weight decay, on matmul weights only."),
    K_FLOAT("train", "beta1", train.beta1, "0.9", 0, false, 1, true, "AdamW beta1."),
    K_FLOAT("train", "beta2", train.beta2, "0.95", 0, false, 1, true, "AdamW beta2."),
    K_FLOAT("train", "eps", train.eps, "1e-8", 0, true, 1, false, "AdamW epsilon."),
    K_FLOAT("train", "grad_clip", train.grad_clip, "1.0", 0, false, 1e6, false,
            "Clip the global gradient norm to this value; 0 = no clipping."),
    K_INT64("train", "seed", train.seed, "1234", 0, INFINITY,
            "Seed of initialization and data order."),
    K_ENUM("train", "precision", train.precision, "f32", "f32|bf16",
           "Matmul precision of the student (bf16: bf16 inputs, f32 accumulation and "
           "master weights)."),
    K_INT64("train", "eval_every", train.eval_every, "100", 0, INFINITY,
            "Evaluate on data.val every N steps; 0 = only at the end."),
    K_INT64("train", "eval_tokens", train.eval_tokens, "65536", 0, INFINITY,
            "Tokens of data.val per evaluation; 0 = the whole shard."),
    K_INT64("train", "checkpoint_every", train.checkpoint_every, "200", 0, INFINITY,
            "Write a checkpoint every N steps; 0 = only the final one."),
    K_INT("train", "keep_checkpoints", train.keep_checkpoints, "3", 0, 1000000,
          "Keep the newest N step checkpoints (final.h5 is always kept); 0 = keep all."),
    K_INT64("train", "log_every", train.log_every, "10", 1, INFINITY,
            "Print progress and append to metrics.jsonl every N steps."),
    K_STR("train", "init", train.init, "", NULL,
          "Checkpoint to take the starting weights from (e.g. a pruned model to "
          "fine-tune); empty = random initialization."),
    K_BOOL("train", "shared_weights", train.shared_weights, "false",
           "Fine-tune with shared weights (Deep Compression): the weights of one linear "
           "tensor that hold the same value (train.init from `retort export --codebook`) "
           "form a cluster whose members all get the sum of their gradients, so they move "
           "together and the model stays a codebook of at most as many values."),
    K_BOOL("train", "recompute", train.recompute, "false",
           "Activation recomputation (gradient checkpointing per block): the forward keeps "
           "only each block's output and the activations of one block, and the backward "
           "recomputes each block's forward right before its backward. Same results bit for "
           "bit, for most of the activation memory at the cost of about one more forward per "
           "step. Not with prune.method = wanda and prune.schedule = gradual."),

    K_INT("distill", "teachers", distill.teachers, "0", 0, 65536,
          "Teacher ranks (the first world ranks); 0 = plain training without a teacher."),
    K_STR("distill", "teacher", distill.teacher, "", NULL,
          "Teacher checkpoint; needed when teachers > 0."),
    K_FLOAT("distill", "temperature", distill.temperature, "2.0", 0, true, 100, false,
            "Softmax temperature T of the soft labels; the KL term is scaled by T^2."),
    K_FLOAT("distill", "alpha", distill.alpha, "0.5", 0, false, 1, false,
            "Weight of the soft-label term; the hard-label cross-entropy gets 1 - alpha."),
    K_ENUM("distill", "labels", distill.labels, "sample", "topk|sample|topk+sample|hidden",
           "Soft-label scheme: topk = the top k probabilities plus the tail mass (biased "
           "unless k >= vocab); sample = the distinct tokens of `samples` draws from the "
           "teacher's distribution with their counts (unbiased); topk+sample = the exact "
           "top k plus `samples` draws from the tail with its mass (unbiased); hidden = the "
           "teacher's final normalized hidden state per position (see distill.hidden), from "
           "which the student rank rebuilds all of the teacher's logits with the teacher's "
           "output matrix (loaded once from distill.teacher, which it needs; one extra "
           "d_model x vocab matmul per position) and learns from the dense distribution."),
    K_ENUM("distill", "hidden", distill.hidden, "int8", "int8|bf16",
           "Encoding of the hidden states with labels = hidden: int8 = one byte per entry "
           "and one f32 scale per position (d_model + 4 bytes per token before zstd), "
           "bf16 = two bytes per entry."),
    K_INT("distill", "topk", distill.topk, "64", 1, 16777216,
          "Teacher probabilities sent per position: the top k plus the tail mass; k >= "
          "vocab size sends them all (exact). With labels = topk+sample, the exact part."),
    K_INT("distill", "samples", distill.samples, "128", 1, 65536,
          "Draws per position from the teacher's temperature-T distribution (labels = "
          "sample), or from its tail outside the top k (topk+sample); seeded from "
          "(train.seed, step, window, position)."),
    K_STR("distill", "labels_dir", distill.labels_dir, "", NULL,
          "Folder of a label cache written by `retort label` with this config: train from "
          "its soft labels with no teacher ranks (distill.teachers = 0). The cache must match "
          "the run (shard, seq_len, seed, batch, temperature, scheme; the teacher's checksum "
          "when distill.teacher is set)."),
    K_FLOAT("distill", "beta", distill.beta, "0.0", 0, false, 1e6, false,
            "Weight of the feature-map loss (needs feature_map)."),
    K_STR("distill", "feature_map", distill.feature_map, "", check_feature_map,
          "Student:teacher hidden-state pairs for the feature loss, e.g. \"s1:t2,s3:t5\" "
          "(s/t prefixes optional). Index i is the hidden state after block i, from 1 to "
          "n_layer, as in Hugging Face output_hidden_states."),
    K_ENUM("distill", "feature_loss", distill.feature_loss, "mse", "mse|cosine",
           "Distance between projected student and teacher feature maps."),
    K_ENUM("distill", "divergence", distill.divergence, "kl", "kl|reverse_kl|jsd",
           "Soft-label divergence: kl = KL(teacher || student), reverse_kl = "
           "KL(student || teacher), jsd = Jensen-Shannon."),
    K_INT("distill", "depth", distill.depth, "4", 1, 1024,
          "Teacher records in flight per student (back-pressure window)."),
    K_INT("distill", "zstd_level", distill.zstd_level, "3", -7, 22,
          "zstd level of the teacher records (negative = faster, larger)."),
    K_FLOAT("distill", "timeout", distill.timeout, "60", 0, true, 86400, false,
            "Seconds of silence after which a rank declares a peer dead: bounds every wait "
            "for a teacher record, a credit, a collective or the end of the stream. A wait "
            "restarts its clock while the checkpoint writer reports that it is still "
            "writing, so a slow checkpoint write never trips it."),
    K_ENUM("distill", "teacher_precision", distill.teacher_precision, "f32",
           "f32|bf16",
           "Matmul precision of the teacher's forward pass."),

    K_BOOL("qat", "enabled", qat.enabled, "false", "Quantization-aware training (int8 fake "
           "quantization of weights and activations); needs train.precision = f32."),
    K_INT64("qat", "start_step", qat.start_step, "0", 0, INFINITY,
            "Step at which fake quantization starts."),
    K_INT("qat", "calib_steps", qat.calib_steps, "8", 0, 1000000,
          "Steps whose training micro-batches set the activation ranges (evaluation "
          "forwards never do) before the scales are frozen."),
    K_ENUM("qat", "act", qat.act, "symmetric", "symmetric|asymmetric",
           "Activation quantization: symmetric (scale) or asymmetric (scale + zero point)."),
    K_BOOL("qat", "freeze_scales", qat.freeze_scales, "true",
           "Keep activation scales fixed after calibration (else keep tracking ranges)."),

    K_ENUM("prune", "method", prune.method, "none",
           "none|magnitude|wanda|nm|heads|ffn",
           "Pruning during training, with schedule = gradual (magnitude, wanda: |w| times the "
           "input norms of the step's last forward, summed over the students; nm: N of M "
           "reached along the schedule). One-shot pruning is `retort prune` after training, "
           "then fine-tuning with train.init."),
    K_FLOAT("prune", "sparsity", prune.sparsity, "0.5", 0, false, 1, true,
            "Fraction of weights (or heads / MLP units) removed."),
    K_STR("prune", "nm", prune.nm, "2:4", check_nm,
          "N:M pattern for method = nm: keep N of every M consecutive weights."),
    K_ENUM("prune", "schedule", prune.schedule, "none", "none|gradual",
           "gradual: prune while training (Zhu & Gupta 2017): sparsity rises from 0 to "
           "prune.sparsity along s(t) = sparsity * (1 - (1 - (t - start_step) / (end_step - "
           "start_step))^3) (for nm: to 1 - N/M), masks recomputed by prune.method every "
           "prune.every steps and fixed after end_step; saved with every checkpoint."),
    K_INT64("prune", "start_step", prune.start_step, "0", 0, INFINITY,
            "Gradual pruning: the first step whose masks are computed (at sparsity 0)."),
    K_INT64("prune", "end_step", prune.end_step, "0", 0, INFINITY,
            "Gradual pruning: the step at which prune.sparsity is reached; above start_step "
            "and at most train.steps."),
    K_INT64("prune", "every", prune.every, "100", 1, INFINITY,
            "Gradual pruning: steps between two mask updates."),
};

enum { N_KEYS = (int)(sizeof keys / sizeof keys[0]) };
static const char *const sections[] = {"model", "data", "train", "distill", "qat", "prune"};
enum { N_SECTIONS = (int)(sizeof sections / sizeof sections[0]) };

const trainer_config_key *trainer_config_keys(int *n) {
    *n = N_KEYS;
    return keys;
}

/* ------------------------------------------------------------ syntax */

static bool parse_uint(const char **p, int *out) {
    const char *s = *p;
    if (*s < '0' || *s > '9') return false;
    long v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        if (v > 1000000) return false;
        s++;
    }
    *out = (int)v;
    *p = s;
    return true;
}

rt_status trainer_parse_nm(const char *s, int *n, int *m) {
    const char *p = s;
    bool ok = parse_uint(&p, n) && *p == ':';
    if (ok) p++;
    if (!ok || !parse_uint(&p, m) || *p != '\0')
        return rt_fail(RT_ERR_ARGS,
                       "expected N:M with integers 0 < N < M <= 64 (e.g. 2:4), got '%s'", s);
    if (!(*n > 0 && *n < *m && *m <= 64))
        return rt_fail(RT_ERR_ARGS, "expected N:M with 0 < N < M <= 64 (e.g. 2:4), got '%s'", s);
    return RT_OK;
}

rt_status trainer_parse_feature_map(const char *s, int (*pairs)[2], int cap, int *n) {
    *n = 0;
    const char *p = s;
    while (*p == ' ') p++;
    if (*p == '\0') return RT_OK;
    for (;;) {
        int a, b;
        while (*p == ' ') p++;
        if (*p == 's') p++;
        if (!parse_uint(&p, &a)) goto bad;
        while (*p == ' ') p++;
        if (*p++ != ':') goto bad;
        while (*p == ' ') p++;
        if (*p == 't') p++;
        if (!parse_uint(&p, &b)) goto bad;
        if (*n >= cap)
            return rt_fail(RT_ERR_ARGS, "at most %d feature pairs are supported, got more in '%s'",
                           cap, s);
        for (int i = 0; i < *n; i++)
            if (pairs[i][0] == a && pairs[i][1] == b)
                return rt_fail(RT_ERR_ARGS, "pair s%d:t%d appears twice in '%s'", a, b, s);
        pairs[*n][0] = a;
        pairs[*n][1] = b;
        (*n)++;
        while (*p == ' ') p++;
        if (*p == '\0') return RT_OK;
        if (*p++ != ',') goto bad;
    }
bad:
    return rt_fail(RT_ERR_ARGS,
                   "expected comma-separated student:teacher pairs of non-negative integers "
                   "like \"s1:t2,s3:t5\", got '%s'",
                   s);
}

static rt_status check_feature_map(const char *v) {
    int pairs[TRAINER_MAX_FEATURE_PAIRS][2], n;
    return trainer_parse_feature_map(v, pairs, TRAINER_MAX_FEATURE_PAIRS, &n);
}

/* Everything a run writes goes under run_dir: "" would scatter it over the
 * working folder and "/" over the root. */
static rt_status check_run_dir(const char *v) {
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '/') n--;
    if (v[0] == '\0')
        return rt_fail(RT_ERR_ARGS, "empty: name a folder for the run");
    if (n == 0)
        return rt_fail(RT_ERR_ARGS, "\"%s\" is the root folder: name a folder of its own for "
                       "the run", v);
    return RT_OK;
}

static rt_status check_nm(const char *v) {
    int n, m;
    return trainer_parse_nm(v, &n, &m);
}

/* ----------------------------------------------------------- values */

static int find_key(const char *section, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0) return i;
    return -1;
}

static bool known_section(const char *s) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (strcmp(sections[i], s) == 0) return true;
    return false;
}

/* "an integer in [1, 1024]", "a number in (0, 1]", "one of f32, bf16", ...
 * With `nbsp` the words of a range are joined by CLI_NBSP for the help. */
static void describe(const trainer_config_key *k, char *buf, size_t cap, bool nbsp) {
    char lo[32], hi[32];
    const char *sp = nbsp ? CLI_NBSP : " ";
    cli_fmt_number(lo, sizeof lo, k->min);
    cli_fmt_number(hi, sizeof hi, k->max);
    switch (k->type) {
    case TRAINER_KEY_INT:
    case TRAINER_KEY_INT64:
        if (isinf(k->max))
            snprintf(buf, cap, "an integer >=%s%s", sp, lo);
        else
            snprintf(buf, cap, "an integer in [%s,%s%s]", lo, sp, hi);
        break;
    case TRAINER_KEY_FLOAT:
        snprintf(buf, cap, "a number in %c%s,%s%s%c", k->min_open ? '(' : '[', lo, sp, hi,
                 k->max_open ? ')' : ']');
        break;
    case TRAINER_KEY_BOOL: snprintf(buf, cap, "true or false"); break;
    case TRAINER_KEY_STRING:
        snprintf(buf, cap, "a string of at most %zu bytes", k->size - 1);
        break;
    case TRAINER_KEY_ENUM: {
        size_t j = (size_t)snprintf(buf, cap, "one of ");
        for (const char *p = k->choices; *p && j + 3 < cap; p++) {
            if (*p == '|') {
                buf[j++] = ',';
                buf[j++] = ' ';
            } else {
                buf[j++] = *p;
            }
        }
        buf[j] = '\0';
        break;
    }
    }
}

static bool in_bounds(const trainer_config_key *k, double x) {
    if (x < k->min || (k->min_open && x == k->min)) return false;
    if (x > k->max || (k->max_open && x == k->max)) return false;
    return true;
}

/* Integers may be written plainly or, when exactly integral, as "1e6";
 * nothing else: strtod would also take hex ("0x10"), "inf" and "nan". */
static bool parse_integer(const char *v, int64_t *out) {
    if (v[strspn(v, "+-0123456789.eE")] != '\0') return false;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v != '\0' && *end == '\0' && errno == 0) {
        *out = x;
        return true;
    }
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || d != floor(d) || fabs(d) > 9007199254740992.0)
        return false;
    *out = (int64_t)d;
    return true;
}

static bool parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = true, true;
        if (strcasecmp(v, no[i]) == 0) return *out = false, true;
    }
    return false;
}

static int enum_index(const char *choices, const char *v) {
    size_t len = strlen(v);
    int idx = 0;
    for (const char *p = choices;; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncasecmp(p, v, n) == 0) return idx;
        if (!bar) return -1;
        p = bar + 1;
    }
}

/* Copies `v` without surrounding whitespace and one pair of double quotes. */
static void unquote(const char *v, char *buf, size_t cap) {
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r')) n--;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    if (n >= cap) n = cap - 1;
    memmove(buf, v, n); /* buf may be v itself */
    buf[n] = '\0';
}

static rt_status set_value(trainer_config *c, const trainer_config_key *k, const char *raw,
                           const char *where) {
    char v[TRAINER_STR_MAX + 8], what[256];
    if (strlen(raw) > TRAINER_STR_MAX + 4)
        return rt_fail(RT_ERR_ARGS, "%s: %s.%s: value too long (at most %d bytes)", where,
                       k->section, k->key, TRAINER_STR_MAX - 1);
    unquote(raw, v, sizeof v);
    describe(k, what, sizeof what, false);
    char *field = (char *)c + k->offset;
    switch (k->type) {
    case TRAINER_KEY_INT:
    case TRAINER_KEY_INT64: {
        int64_t x;
        if (!parse_integer(v, &x) || !in_bounds(k, (double)x) ||
            (k->type == TRAINER_KEY_INT && (x < INT_MIN || x > INT_MAX)))
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: expected %s, got '%s'", where, k->section,
                           k->key, what, v);
        if (k->type == TRAINER_KEY_INT)
            *(int *)field = (int)x;
        else
            *(int64_t *)field = x;
        return RT_OK;
    }
    case TRAINER_KEY_FLOAT: {
        char *end = NULL;
        errno = 0;
        double x = strtod(v, &end);
        if (v[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(x) || !in_bounds(k, x))
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: expected %s, got '%s'", where, k->section,
                           k->key, what, v);
        *(double *)field = x;
        return RT_OK;
    }
    case TRAINER_KEY_BOOL: {
        bool b;
        if (!parse_bool(v, &b))
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: expected true or false, got '%s'", where,
                           k->section, k->key, v);
        *(bool *)field = b;
        return RT_OK;
    }
    case TRAINER_KEY_ENUM: {
        int idx = enum_index(k->choices, v);
        if (idx < 0)
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: expected %s, got '%s'", where, k->section,
                           k->key, what, v);
        *(int *)field = idx;
        return RT_OK;
    }
    case TRAINER_KEY_STRING: {
        if (strlen(v) >= k->size)
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: value too long (at most %zu bytes)", where,
                           k->section, k->key, k->size - 1);
        /* The resolved config is saved as INI text, one `key = "value"` line
         * each, and inih reads lines of at most 198 characters: a longer
         * value would not read back (found by tests/fuzz/fuzz_config). */
        if (strlen(k->key) + strlen(v) + 5 > 198)
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: value too long to be saved in the config "
                           "(at most %zu characters for this key)", where, k->section, k->key,
                           198 - 5 - strlen(k->key));
        /* The resolved config is saved as INI text; a value it cannot hold
         * would not read back the same. */
        for (const char *p = v; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return rt_fail(RT_ERR_ARGS, "%s: %s.%s: control characters are not allowed",
                               where, k->section, k->key);
        if (strstr(v, " ;") || strstr(v, "\t;"))
            return rt_fail(RT_ERR_ARGS,
                           "%s: %s.%s: ' ;' would start a comment in an INI file; got '%s'",
                           where, k->section, k->key, v);
        if (k->check && k->check(v) != RT_OK) {
            char why[768];
            snprintf(why, sizeof why, "%s", rt_last_error());
            return rt_fail(RT_ERR_ARGS, "%s: %s.%s: %s", where, k->section, k->key, why);
        }
        memcpy(field, v, strlen(v) + 1);
        return RT_OK;
    }
    }
    RT_ASSERT(0);
    return RT_ERR_INTERNAL;
}

/* The error for an unknown section.key, with a hint when it is a typo or a
 * key that belongs to another section. */
static rt_status unknown_key(const char *where, const char *section, const char *key) {
    if (!known_section(section)) {
        const char *near = cli_closest(section, sections, N_SECTIONS);
        if (near)
            return rt_fail(RT_ERR_ARGS, "%s: unknown section [%s] (did you mean [%s]?)", where,
                           section, near);
        return rt_fail(RT_ERR_ARGS,
                       "%s: unknown section [%s] (sections: model, data, train, distill, qat, "
                       "prune)",
                       where, section);
    }
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, key) == 0)
            return rt_fail(RT_ERR_ARGS, "%s: unknown key %s.%s (%s is in [%s])", where, section,
                           key, key, keys[i].section);
    const char *names[N_KEYS];
    int n = 0;
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0) names[n++] = keys[i].key;
    const char *near = cli_closest(key, names, n);
    if (near)
        return rt_fail(RT_ERR_ARGS, "%s: unknown key %s.%s (did you mean %s.%s?)", where, section,
                       key, section, near);
    return rt_fail(RT_ERR_ARGS, "%s: unknown key %s.%s (see 'retort train --help' for the keys)",
                   where, section, key);
}

rt_status trainer_config_set(trainer_config *c, const char *section, const char *key,
                             const char *value, const char *origin) {
    int i = find_key(section, key);
    if (i < 0) return unknown_key(origin, section, key);
    return set_value(c, &keys[i], value, origin);
}

void trainer_config_defaults(trainer_config *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < N_KEYS; i++) {
        rt_status st = set_value(out, &keys[i], keys[i].def, "default");
        RT_ASSERT(st == RT_OK); /* a default that fails its own schema is a bug */
    }
    rt_status st = trainer_config_validate(out);
    RT_ASSERT(st == RT_OK);
}

rt_status trainer_config_apply_set(trainer_config *c, const char *set) {
    char where[TRAINER_STR_MAX + 64];
    snprintf(where, sizeof where, "--set %s", set);
    const char *eq = strchr(set, '=');
    const char *dot = strchr(set, '.');
    if (!eq || !dot || dot > eq)
        return rt_fail(RT_ERR_ARGS,
                       "--set '%s': expected section.key=value (e.g. --set train.lr=3e-4)", set);
    char section[64], key[64];
    size_t ls = (size_t)(dot - set), lk = (size_t)(eq - dot - 1);
    if (ls == 0 || lk == 0 || ls >= sizeof section || lk >= sizeof key)
        return rt_fail(RT_ERR_ARGS,
                       "--set '%s': expected section.key=value (e.g. --set train.lr=3e-4)", set);
    memcpy(section, set, ls);
    section[ls] = '\0';
    memcpy(key, dot + 1, lk);
    key[lk] = '\0';
    /* Tolerate "--set 'train.lr = 1e-3'". */
    unquote(section, section, sizeof section);
    unquote(key, key, sizeof key);
    return trainer_config_set(c, section, key, eq + 1, where);
}

/* ------------------------------------------------------- INI parsing */

typedef struct {
    const char *origin;   /* file name for messages */
    FILE *fp;             /* source: a file ... */
    const char *text;     /* ... or text in memory */
    int line;             /* number of the line last read */
    bool at_line_start;   /* the next read starts a new line */
    bool indented;        /* the current line starts with whitespace */
    trainer_config *cfg;
    rt_status st;         /* first error */
    int err_line;
    int first_set[N_KEYS]; /* line where each key was set, for duplicates */
} ini_ctx;

static rt_status ctx_fail_line(ini_ctx *x, int line) {
    x->err_line = line;
    x->st = RT_ERR_ARGS;
    return x->st;
}

/* Reads one line for inih, counting lines (inih does not tell its handler
 * the line number) and catching what inih would mis-read: over-long lines
 * (inih splits them) and unknown section headers (inih only reports
 * sections through their keys, so an empty unknown section would pass). */
static char *ini_read(char *str, int num, void *stream) {
    ini_ctx *x = stream;
    char *got = NULL;
    if (x->fp) {
        got = fgets(str, num, x->fp);
    } else if (*x->text) {
        int n = 0;
        while (n < num - 1 && x->text[n] && x->text[n] != '\n') n++;
        if (n < num - 1 && x->text[n] == '\n') n++;
        memcpy(str, x->text, (size_t)n);
        str[n] = '\0';
        x->text += n;
        got = str;
    }
    if (!got) return NULL;
    size_t len = strlen(str);
    bool complete = len > 0 && str[len - 1] == '\n';
    bool more;
    if (x->fp) { /* peek: feof() is not yet set when a line ends exactly at EOF */
        int c = getc(x->fp);
        more = c != EOF;
        if (more) ungetc(c, x->fp);
    } else {
        more = *x->text != '\0';
    }
    if (!x->at_line_start) { /* rest of an over-long line: skip it */
        x->at_line_start = complete || !more;
        snprintf(str, (size_t)num, ";\n");
        return str;
    }
    x->line++;
    x->at_line_start = complete || !more;
    x->indented = str[0] == ' ' || str[0] == '\t';
    if (x->st != RT_OK) return str;
    if (!x->at_line_start) {
        rt_fail(RT_ERR_ARGS, "%s:%d: line longer than %d characters", x->origin, x->line, num - 2);
        ctx_fail_line(x, x->line);
        snprintf(str, (size_t)num, ";\n");
        return str;
    }
    const char *p = str;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close) {
            char section[64];
            size_t n = (size_t)(close - p - 1);
            if (n >= sizeof section) n = sizeof section - 1;
            memcpy(section, p + 1, n);
            section[n] = '\0';
            unquote(section, section, sizeof section);
            if (!known_section(section)) {
                char where[1100];
                snprintf(where, sizeof where, "%s:%d", x->origin, x->line);
                unknown_key(where, section, "");
                ctx_fail_line(x, x->line);
            }
        }
    }
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    ini_ctx *x = user;
    if (x->st != RT_OK) return 1; /* report the first error only */
    char where[1100];
    snprintf(where, sizeof where, "%s:%d", x->origin, x->line);
    if (section[0] == '\0') {
        rt_fail(RT_ERR_ARGS, "%s: key '%s' is outside any section (put it under [model], [data], "
                "[train], [distill], [qat] or [prune])", where, name);
        ctx_fail_line(x, x->line);
        return 0;
    }
    int k = find_key(section, name);
    if (k < 0) {
        unknown_key(where, section, name);
        ctx_fail_line(x, x->line);
        return 0;
    }
    if (x->first_set[k] != 0) {
        if (x->indented)
            rt_fail(RT_ERR_ARGS, "%s: an indented line continues %s.%s from line %d; remove the "
                    "indentation", where, section, name, x->first_set[k]);
        else
            rt_fail(RT_ERR_ARGS, "%s: %s.%s is already set at line %d", where, section, name,
                    x->first_set[k]);
        ctx_fail_line(x, x->line);
        return 0;
    }
    x->first_set[k] = x->line;
    if (set_value(x->cfg, &keys[k], value, where) != RT_OK) {
        ctx_fail_line(x, x->line);
        return 0;
    }
    return 1;
}

static rt_status parse_ini(ini_ctx *x) {
    int r = ini_parse_stream(ini_read, x, on_key, x);
    if (r < 0) return rt_fail(RT_ERR_NOMEM, "%s: out of memory reading the config", x->origin);
    /* inih's own complaint (a line that is neither a section nor key =
     * value) counts when it comes before ours. */
    if (r > 0 && (x->st == RT_OK || r < x->err_line))
        return rt_fail(RT_ERR_ARGS, "%s:%d: expected '[section]' or 'key = value'", x->origin, r);
    return x->st;
}

static rt_status load(FILE *fp, const char *text, const char *origin, const char *const *sets,
                      int n_sets, trainer_config *out) {
    trainer_config_defaults(out);
    if (fp || text) {
        ini_ctx x = {.origin = origin, .fp = fp, .text = text, .at_line_start = true, .cfg = out};
        RT_TRY(parse_ini(&x));
    }
    for (int i = 0; i < n_sets; i++) RT_TRY(trainer_config_apply_set(out, sets[i]));
    return trainer_config_validate(out);
}

rt_status trainer_config_load(const char *path, const char *const *sets, int n_sets,
                              trainer_config *out) {
    FILE *fp = NULL;
    if (path) {
        fp = fopen(path, "r");
        if (!fp)
            return rt_fail(RT_ERR_IO, "cannot open config file %s: %s", path, strerror(errno));
    }
    rt_status st = load(fp, NULL, path, sets, n_sets, out);
    if (fp) fclose(fp);
    return st;
}

rt_status trainer_config_load_string(const char *ini, const char *origin, const char *const *sets,
                                     int n_sets, trainer_config *out) {
    return load(NULL, ini ? ini : "", origin, sets, n_sets, out);
}

/* --------------------------------------------------------- validation */

rt_status trainer_config_validate(trainer_config *c) {
    /* the optimizer runs in float32: a beta just below 1 in the file can
     * round to 1.0f, and 1 - beta = 0 stops the moment it weights */
    const struct { const char *key; double v; } betas[] = {
        {"train.beta1", c->train.beta1}, {"train.beta2", c->train.beta2}};
    for (int i = 0; i < 2; i++)
        if ((float)betas[i].v >= 1.0f)
            return rt_fail(RT_ERR_ARGS, "%s = %.17g rounds to 1 in float32 (the optimizer's "
                           "precision); use at most 0.99999994", betas[i].key, betas[i].v);
    if (c->model.d_model % c->model.n_head != 0)
        return rt_fail(RT_ERR_ARGS, "model.d_model (%d) must be divisible by model.n_head (%d)",
                       c->model.d_model, c->model.n_head);
    if (c->train.micro_batch > c->train.batch)
        return rt_fail(RT_ERR_ARGS,
                       "train.micro_batch (%d) must be at most train.batch (%d), or 0 for "
                       "batch / ranks",
                       c->train.micro_batch, c->train.batch);
    if (c->distill.teachers > 0 && c->distill.teacher[0] == '\0')
        return rt_fail(RT_ERR_ARGS,
                       "distill.teachers = %d but distill.teacher is empty; set it to the "
                       "teacher checkpoint",
                       c->distill.teachers);
    RT_TRY(trainer_parse_feature_map(c->distill.feature_map, c->distill.feature_pairs,
                                     TRAINER_MAX_FEATURE_PAIRS, &c->distill.n_feature_pairs));
    for (int i = 0; i < c->distill.n_feature_pairs; i++)
        if (c->distill.feature_pairs[i][0] > c->model.n_layer)
            return rt_fail(RT_ERR_ARGS,
                           "distill.feature_map pair s%d:t%d: the student's hidden states are "
                           "0..%d (model.n_layer = %d)",
                           c->distill.feature_pairs[i][0], c->distill.feature_pairs[i][1],
                           c->model.n_layer, c->model.n_layer);
    if (c->distill.beta > 0 && c->distill.n_feature_pairs == 0)
        return rt_fail(RT_ERR_ARGS,
                       "distill.beta = %g weights a feature loss but distill.feature_map is "
                       "empty; set feature_map or beta = 0",
                       c->distill.beta);
    RT_TRY(trainer_parse_nm(c->prune.nm, &c->prune.nm_n, &c->prune.nm_m));
    if (c->prune.schedule == TRAINER_PRUNE_SCHEDULE_GRADUAL) {
        if (c->prune.method != TRAINER_PRUNE_MAGNITUDE && c->prune.method != TRAINER_PRUNE_WANDA &&
            c->prune.method != TRAINER_PRUNE_NM)
            return rt_fail(RT_ERR_ARGS, "prune.schedule = gradual prunes by prune.method = "
                           "magnitude, wanda or nm (heads and ffn are `retort prune` after "
                           "training)");
        if (c->prune.method == TRAINER_PRUNE_WANDA && c->train.precision == TRAINER_PRECISION_BF16)
            return rt_fail(RT_ERR_ARGS, "prune.method = wanda with prune.schedule = gradual reads "
                           "the f32 inputs of the linear layers: set train.precision = f32");
        if (c->prune.method == TRAINER_PRUNE_WANDA && c->train.recompute)
            return rt_fail(RT_ERR_ARGS, "prune.method = wanda with prune.schedule = gradual reads "
                           "every layer's linear inputs, which train.recompute = true does not "
                           "keep: set train.recompute = false");
        if (c->prune.end_step <= c->prune.start_step)
            return rt_fail(RT_ERR_ARGS, "prune.end_step = %lld must be above prune.start_step "
                           "= %lld for prune.schedule = gradual",
                           (long long)c->prune.end_step, (long long)c->prune.start_step);
        if (c->prune.end_step > c->train.steps)
            return rt_fail(RT_ERR_ARGS, "prune.end_step = %lld is past train.steps = %lld: "
                           "the run would end before reaching prune.sparsity",
                           (long long)c->prune.end_step, (long long)c->train.steps);
    }
    return RT_OK;
}

/* ----------------------------------------------------------- output */

/* Shortest text that reads back to exactly x. */
static void fmt_double(char *buf, size_t cap, double x) {
    if (x == floor(x) && fabs(x) < 1e15) { /* "60", not "6e+01" */
        snprintf(buf, cap, "%.0f", x);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static const char *choice_name(const char *choices, int idx, char *buf, size_t cap) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    RT_ASSERT(p != NULL);
    size_t n = strcspn(p, "|");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

/* The value of key k in c as INI text (strings unquoted). */
static void value_text(const trainer_config *c, const trainer_config_key *k, char *buf,
                       size_t cap) {
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case TRAINER_KEY_INT: snprintf(buf, cap, "%d", *(const int *)field); break;
    case TRAINER_KEY_INT64: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)field); break;
    case TRAINER_KEY_FLOAT: fmt_double(buf, cap, *(const double *)field); break;
    case TRAINER_KEY_BOOL: snprintf(buf, cap, "%s", *(const bool *)field ? "true" : "false"); break;
    case TRAINER_KEY_STRING: snprintf(buf, cap, "%s", field); break;
    case TRAINER_KEY_ENUM: choice_name(k->choices, *(const int *)field, buf, cap); break;
    }
}

rt_status trainer_config_to_ini(const trainer_config *c, char **out) {
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return rt_fail(RT_ERR_NOMEM, "out of memory writing the config as INI");
    char v[TRAINER_STR_MAX + 8];
    for (int i = 0; i < N_KEYS; i++) {
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
            fprintf(f, "%s[%s]\n", i ? "\n" : "", keys[i].section);
        value_text(c, &keys[i], v, sizeof v);
        size_t n = strlen(v);
        /* Quote strings whose edges inih would strip, and those starting
         * with ';', which after "key = " would read as a comment (found by
         * tests/fuzz/fuzz_config). */
        bool quote = keys[i].type == TRAINER_KEY_STRING &&
                     (n == 0 || v[0] == ' ' || v[0] == '\t' || v[0] == ';' || v[n - 1] == ' ' ||
                      v[n - 1] == '\t' || (v[0] == '"' && v[n - 1] == '"'));
        fprintf(f, quote ? "%s = \"%s\"\n" : "%s = %s\n", keys[i].key, v);
    }
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return rt_fail(RT_ERR_NOMEM, "out of memory writing the config as INI");
    }
    /* The text goes into every checkpoint and is what a resume reads: check
     * here that it reads back as this very config (fuzz_config found values
     * that did not; a new key type or quoting rule could again). */
    trainer_config back;
    rt_status st = trainer_config_load_string(buf, "the config written as INI", NULL, 0, &back);
    if (st == RT_OK && !trainer_config_equal(c, &back))
        st = rt_fail(RT_ERR_INTERNAL, "the config written as INI reads back as a different "
                                      "config (a value that does not survive the round trip)");
    if (st != RT_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return RT_OK;
}

json_t *trainer_config_to_json(const trainer_config *c) {
    json_t *root = json_object();
    if (!root) return NULL;
    char v[TRAINER_STR_MAX + 8];
    for (int i = 0; i < N_KEYS; i++) {
        const trainer_config_key *k = &keys[i];
        json_t *sec = json_object_get(root, k->section);
        if (!sec) {
            sec = json_object();
            if (!sec || json_object_set_new(root, k->section, sec) != 0) goto fail;
        }
        const char *field = (const char *)c + k->offset;
        json_t *val = NULL;
        switch (k->type) {
        case TRAINER_KEY_INT: val = json_integer(*(const int *)field); break;
        case TRAINER_KEY_INT64: val = json_integer(*(const int64_t *)field); break;
        case TRAINER_KEY_FLOAT: val = json_real(*(const double *)field); break;
        case TRAINER_KEY_BOOL: val = json_boolean(*(const bool *)field); break;
        case TRAINER_KEY_STRING:
        case TRAINER_KEY_ENUM:
            value_text(c, k, v, sizeof v);
            val = json_string(v);
            break;
        }
        if (!val || json_object_set_new(sec, k->key, val) != 0) goto fail;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

bool trainer_config_equal(const trainer_config *a, const trainer_config *b) {
    for (int i = 0; i < N_KEYS; i++) {
        const trainer_config_key *k = &keys[i];
        const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        switch (k->type) {
        case TRAINER_KEY_INT:
        case TRAINER_KEY_ENUM:
            if (*(const int *)fa != *(const int *)fb) return false;
            break;
        case TRAINER_KEY_INT64:
            if (*(const int64_t *)fa != *(const int64_t *)fb) return false;
            break;
        case TRAINER_KEY_FLOAT:
            if (*(const double *)fa != *(const double *)fb) return false;
            break;
        case TRAINER_KEY_BOOL:
            if (*(const bool *)fa != *(const bool *)fb) return false;
            break;
        case TRAINER_KEY_STRING:
            if (strcmp(fa, fb) != 0) return false;
            break;
        }
    }
    return true;
}

void trainer_config_print_help(FILE *f) {
    cli_wrap(f, "config keys (INI sections; any key can be overridden with --set "
                "section.key=value):", 0, 0, 80);
    char left[160], what[256], text[1024], def[64];
    for (int i = 0; i < N_KEYS; i++) {
        const trainer_config_key *k = &keys[i];
        if (i == 0 || strcmp(k->section, keys[i - 1].section) != 0)
            fprintf(f, "\n[%s]\n", k->section);
        snprintf(def, sizeof def, "%s", k->def[0] ? k->def : "\"\"");
        describe(k, what, sizeof what, true);
        what[0] = (char)(what[0] - 'a' + 'A');
        if (k->type == TRAINER_KEY_STRING)
            snprintf(text, sizeof text, "%s", k->help);
        else
            snprintf(text, sizeof text, "%s %s.", k->help, what);
        int col = snprintf(left, sizeof left, "  %s = %s", k->key, def);
        fputs(left, f);
        if (col + 2 > 30) {
            fputc('\n', f);
            col = 0;
        }
        cli_wrap(f, text, col, 30, 80);
    }
}
