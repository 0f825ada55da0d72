/* Offline soft-label caches: see labels_cache.h. */
#include "labels_cache.h"

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ckpt.h"
#include "ckpt_hf.h"
#include "fsutil.h"

#define CHUNK_MAGIC "RTLABEL1"
#define CHUNK_HEADER_BYTES 48

/* ------------------------------------------------------------ identity */

static const char *const scheme_names[] = {"topk", "sample", "topk+sample", "hidden"};
#define N_SCHEMES (int)(sizeof scheme_names / sizeof scheme_names[0])

const char *trainer_labels_scheme_name(int labels) {
    return labels >= 0 && labels < N_SCHEMES ? scheme_names[labels] : "?";
}

typedef enum { F_STR, F_CRC, F_INT, F_I64, F_DBL, F_SCHEME } field_type;
/* how a training run compares the field: always, only when the run names a
 * teacher, the cache must cover at least the run's value, or not at all
 * (how the cache was made, not what its labels are) */
typedef enum { M_ALWAYS, M_TEACHER, M_AT_LEAST, M_NEVER } field_match;

static const struct {
    const char *key;     /* in index.json */
    const char *cfg_key; /* what a message names */
    field_type type;
    size_t off;
    field_match match;
    int hashed; /* part of the identity that chunks carry */
} fields[] = {
#define F(k, ck, t, m, h) {#k, ck, t, offsetof(trainer_labels_meta, k), m, h}
    F(teacher, "distill.teacher", F_STR, M_NEVER, 0),
    F(teacher_crc32c, "distill.teacher (its CRC-32C)", F_CRC, M_TEACHER, 1),
    F(train, "data.train", F_STR, M_NEVER, 0),
    F(train_crc32c, "data.train (its CRC-32C)", F_CRC, M_ALWAYS, 1),
    F(seq_len, "model.seq_len", F_INT, M_ALWAYS, 1),
    F(vocab, "the vocabulary size", F_INT, M_ALWAYS, 1),
    F(batch, "train.batch", F_INT, M_ALWAYS, 1),
    F(micro_batch, "the teacher's rows per forward", F_INT, M_NEVER, 1),
    F(seed, "train.seed", F_I64, M_ALWAYS, 1),
    F(steps, "train.steps", F_I64, M_AT_LEAST, 1),
    F(temperature, "distill.temperature", F_DBL, M_ALWAYS, 1),
    F(labels, "distill.labels", F_SCHEME, M_ALWAYS, 1),
    F(topk, "distill.topk", F_INT, M_ALWAYS, 1),
    F(samples, "distill.samples", F_INT, M_ALWAYS, 1),
    F(width, "the label width", F_INT, M_ALWAYS, 1),
    F(hidden, "distill.hidden (1 int8, 2 bf16)", F_INT, M_ALWAYS, 1),
    F(hidden_width, "the teacher's d_model (hidden-state width)", F_INT, M_ALWAYS, 1),
    F(teacher_precision, "distill.teacher_precision", F_INT, M_NEVER, 1),
    F(chunk_steps, "chunk_steps", F_INT, M_NEVER, 1),
#undef F
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

#define FIELD(m, i, T) ((T *)((char *)(m) + fields[i].off))
#define CFIELD(m, i, T) ((const T *)((const char *)(m) + fields[i].off))

rt_status trainer_file_crc32c(const char *path, uint32_t *crc) {
    if (ckpt_hf_is_folder(path)) return ckpt_hf_crc32c(path, crc); /* its model files */
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(RT_ERR_IO, "%s: cannot open for checksumming", path);
    static char buf[1 << 16];
    uint32_t c = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) c = ckpt_crc32c(c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return rt_fail(RT_ERR_IO, "%s: read error while checksumming", path);
    *crc = c;
    return RT_OK;
}

rt_status trainer_labels_meta_make(const trainer_config *cfg, const teacher_config *tc, int T,
                                   trainer_labels_meta *m) {
    memset(m, 0, sizeof *m);
    if (cfg->distill.teacher[0]) {
        snprintf(m->teacher, sizeof m->teacher, "%s", cfg->distill.teacher);
        RT_TRY(trainer_file_crc32c(cfg->distill.teacher, &m->teacher_crc32c));
    }
    snprintf(m->train, sizeof m->train, "%s", cfg->data.train);
    RT_TRY(trainer_file_crc32c(cfg->data.train, &m->train_crc32c));
    m->seq_len = T; /* the student's windows (a teacher may have more positions) */
    m->vocab = tc->model.vocab_size;
    m->batch = cfg->train.batch;
    m->micro_batch = tc->batch;
    m->seed = cfg->train.seed;
    m->steps = cfg->train.steps;
    m->temperature = cfg->distill.temperature;
    m->labels = (int)tc->labels;
    const int sampled =
        tc->labels == TEACHER_LABELS_SAMPLE || tc->labels == TEACHER_LABELS_TOPK_SAMPLE;
    m->topk = tc->labels == TEACHER_LABELS_TOPK || tc->labels == TEACHER_LABELS_TOPK_SAMPLE
                  ? tc->topk : 0;
    m->samples = sampled ? tc->samples : 0;
    m->width = teacher_label_width(tc);
    if (tc->labels == TEACHER_LABELS_HIDDEN) {
        m->hidden = tc->hidden_bf16 ? COMM_HIDDEN_BF16 : COMM_HIDDEN_INT8;
        m->hidden_width = tc->model.d_model;
    }
    m->teacher_precision = (int)tc->precision;
    return RT_OK;
}

/* The meta as a JSON object (all fields, or only the hashed ones). */
static json_t *meta_json(const trainer_labels_meta *m, int hashed_only) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < N_FIELDS; i++) {
        if (hashed_only && !fields[i].hashed) continue;
        json_t *v = NULL;
        char hex[16];
        switch (fields[i].type) {
        case F_STR: v = json_string(CFIELD(m, i, char)); break;
        case F_CRC:
            snprintf(hex, sizeof hex, "%08x", *CFIELD(m, i, uint32_t));
            v = json_string(hex);
            break;
        case F_INT: v = json_integer(*CFIELD(m, i, int)); break;
        case F_I64: v = json_integer(*CFIELD(m, i, int64_t)); break;
        case F_DBL: v = json_real(*CFIELD(m, i, double)); break;
        case F_SCHEME: {
            const int s = *CFIELD(m, i, int);
            v = json_string(trainer_labels_scheme_name(s));
            break;
        }
        }
        json_object_set_new(o, fields[i].key, v);
    }
    return o;
}

/* FNV-1a of the hashed fields' canonical JSON: what every chunk carries. */
static uint64_t meta_hash(const trainer_labels_meta *m) {
    json_t *o = meta_json(m, 1);
    char *s = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    const uint64_t h = s ? comm_fnv1a64(COMM_FNV1A64_INIT, s, strlen(s)) : 0;
    free(s);
    json_decref(o);
    return h;
}

static rt_status meta_from_json(const json_t *o, const char *path, trainer_labels_meta *m) {
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < N_FIELDS; i++) {
        const json_t *v = json_object_get(o, fields[i].key);
        const char *k = fields[i].key;
        switch (fields[i].type) {
        case F_STR:
        case F_CRC:
        case F_SCHEME: {
            if (!json_is_string(v))
                return rt_fail(RT_ERR_FORMAT, "%s: meta.%s is missing or not a string", path, k);
            const char *s = json_string_value(v);
            if (fields[i].type == F_STR) {
                if (strlen(s) >= TRAINER_STR_MAX)
                    return rt_fail(RT_ERR_FORMAT, "%s: meta.%s is too long", path, k);
                strcpy(FIELD(m, i, char), s);
            } else if (fields[i].type == F_CRC) {
                char *end = NULL;
                const unsigned long x = strtoul(s, &end, 16);
                if (strlen(s) != 8 || *end || x > 0xFFFFFFFFul)
                    return rt_fail(RT_ERR_FORMAT, "%s: meta.%s is not 8 hex digits", path, k);
                *FIELD(m, i, uint32_t) = (uint32_t)x;
            } else {
                int found = -1;
                for (int j = 0; j < N_SCHEMES; j++)
                    if (strcmp(s, scheme_names[j]) == 0) found = j;
                if (found < 0)
                    return rt_fail(RT_ERR_FORMAT, "%s: meta.%s: unknown scheme '%s'", path, k, s);
                *FIELD(m, i, int) = found;
            }
            break;
        }
        case F_INT:
        case F_I64: {
            if (!json_is_integer(v))
                return rt_fail(RT_ERR_FORMAT, "%s: meta.%s is missing or not an integer", path,
                               k);
            const json_int_t x = json_integer_value(v);
            if (x < 0 || (fields[i].type == F_INT && x > 1 << 30))
                return rt_fail(RT_ERR_FORMAT, "%s: meta.%s = %lld is out of range", path, k,
                               (long long)x);
            if (fields[i].type == F_INT) *FIELD(m, i, int) = (int)x;
            else *FIELD(m, i, int64_t) = (int64_t)x;
            break;
        }
        case F_DBL:
            if (!json_is_number(v))
                return rt_fail(RT_ERR_FORMAT, "%s: meta.%s is missing or not a number", path, k);
            *FIELD(m, i, double) = json_number_value(v);
            break;
        }
    }
    const int hidden = m->labels == TEACHER_LABELS_HIDDEN;
    if (m->seq_len < 1 || m->vocab < 1 || m->batch < 1 || m->micro_batch < 1 || m->steps < 1 ||
        m->chunk_steps < 1 || m->width > m->vocab || (!hidden && m->width < 1))
        return rt_fail(RT_ERR_FORMAT, "%s: meta has a zero size or a width above the vocabulary",
                       path);
    if (hidden ? (m->width != 0 || (m->hidden != COMM_HIDDEN_INT8 && m->hidden != COMM_HIDDEN_BF16) ||
                  m->hidden_width < 1 || m->hidden_width > COMM_MAX_HIDDEN_WIDTH)
               : (m->hidden != 0 || m->hidden_width != 0))
        return rt_fail(RT_ERR_FORMAT,
                       "%s: meta.hidden = %d, hidden_width = %d, width = %d do not fit the "
                       "scheme %s",
                       path, m->hidden, m->hidden_width, m->width, scheme_names[m->labels]);
    return RT_OK;
}

/* The value of field i as text, for messages. */
static void field_text(const trainer_labels_meta *m, size_t i, char *buf, size_t cap) {
    switch (fields[i].type) {
    case F_STR: snprintf(buf, cap, "%s", CFIELD(m, i, char)); break;
    case F_CRC: snprintf(buf, cap, "%08x", *CFIELD(m, i, uint32_t)); break;
    case F_INT: snprintf(buf, cap, "%d", *CFIELD(m, i, int)); break;
    case F_I64: snprintf(buf, cap, "%lld", (long long)*CFIELD(m, i, int64_t)); break;
    case F_DBL: snprintf(buf, cap, "%g", *CFIELD(m, i, double)); break;
    case F_SCHEME: {
        const int s = *CFIELD(m, i, int);
        snprintf(buf, cap, "%s", trainer_labels_scheme_name(s));
        break;
    }
    }
}

/* Compares the cache's identity with the run's. exact = 1 (resuming
 * `retort label`): every hashed field; otherwise the match rules above. */
static rt_status meta_check(const trainer_labels_meta *cache, const trainer_labels_meta *run,
                            int exact, const char *dir) {
    for (size_t i = 0; i < N_FIELDS; i++) {
        field_match mm = fields[i].match;
        if (exact) mm = fields[i].hashed ? M_ALWAYS : M_NEVER;
        if (mm == M_NEVER || (mm == M_TEACHER && !run->teacher[0])) continue;
        char a[64], b[64];
        field_text(cache, i, a, sizeof a);
        field_text(run, i, b, sizeof b);
        int same;
        if (fields[i].type == F_I64 && mm == M_AT_LEAST)
            same = *CFIELD(cache, i, int64_t) >= *CFIELD(run, i, int64_t);
        else if (fields[i].type == F_DBL)
            same = *CFIELD(cache, i, double) == *CFIELD(run, i, double);
        else
            same = strcmp(a, b) == 0;
        if (!same)
            return rt_fail(RT_ERR_MISMATCH,
                           "%s: the label cache was made with %s = %s, this run has %s%s", dir,
                           fields[i].cfg_key, a, b,
                           exact                ? " (label into another --out folder)"
                           : mm == M_AT_LEAST ? " (it holds too few steps)"
                                              : " (make a cache for this run with `retort label`)");
    }
    return RT_OK;
}

int64_t trainer_labels_n_chunks(const trainer_labels_meta *m) {
    return (m->steps + m->chunk_steps - 1) / m->chunk_steps;
}

static int64_t chunk_steps_of(const trainer_labels_meta *m, int64_t c) {
    const int64_t first = c * m->chunk_steps, left = m->steps - first;
    return left < m->chunk_steps ? left : m->chunk_steps;
}

static rt_status chunk_path(const char *dir, int64_t c, char *buf, size_t cap) {
    char name[64];
    snprintf(name, sizeof name, "chunk_%06lld.bin", (long long)c);
    return data_path_join(buf, cap, dir, name);
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

/* Reads chunk c of the cache and verifies its header, size and checksum
 * (and the per-step lengths); on success *buf (free()) holds the file and
 * *crc its payload CRC-32C. */
static rt_status chunk_load(const char *dir, const trainer_labels_meta *m, uint64_t hash,
                            int64_t c, unsigned char **buf, size_t *len, uint32_t *crc) {
    char path[DATA_PATH_MAX];
    RT_TRY(chunk_path(dir, c, path, sizeof path));
    char *b = NULL;
    size_t n = 0;
    RT_TRY(data_read_file(path, &b, &n));
    const unsigned char *p = (const unsigned char *)b;
    const char *why = NULL;
    if (n < CHUNK_HEADER_BYTES) why = "shorter than its header (truncated)";
    else if (memcmp(p, CHUNK_MAGIC, 8) != 0) why = "not a label chunk (bad magic)";
    else if (get32(p + 44) != ckpt_crc32c(0, p, 44)) why = "header checksum mismatch";
    else if (get64(p + 8) != hash) why = "made for another cache identity";
    else if ((int64_t)get64(p + 16) != c * m->chunk_steps ||
             (int64_t)get64(p + 24) != chunk_steps_of(m, c))
        why = "holds other steps than its name says";
    else if (get64(p + 32) != n - CHUNK_HEADER_BYTES) why = "size mismatch (truncated or extended)";
    else if (get32(p + 40) != ckpt_crc32c(0, p + CHUNK_HEADER_BYTES, n - CHUNK_HEADER_BYTES))
        why = "payload checksum mismatch (corrupt)";
    if (!why) {
        /* the step records tile the payload exactly */
        size_t off = CHUNK_HEADER_BYTES;
        for (int64_t s = 0; s < chunk_steps_of(m, c) && !why; s++) {
            if (n - off < 8) {
                why = "step records overrun the payload";
                break;
            }
            const uint64_t l = get64(p + off);
            if (l > n - off - 8) why = "step records overrun the payload";
            off += 8 + (size_t)(why ? 0 : l);
        }
        if (!why && off != n) why = "trailing bytes after the step records";
    }
    if (why) {
        free(b);
        return rt_fail(RT_ERR_FORMAT, "%s: %s", path, why);
    }
    *buf = (unsigned char *)b;
    *len = n;
    *crc = get32(p + 40);
    return RT_OK;
}

static rt_status index_path(const char *dir, char *buf, size_t cap) {
    return data_path_join(buf, cap, dir, "index.json");
}

static void write_json_body(FILE *f, const void *ctx) {
    json_dumpf((const json_t *)ctx, f, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    fputc('\n', f);
}

/* Reads DIR/index.json into its meta (and the root object when root is
 * not NULL, for the chunk list). RT_ERR_IO when it does not exist. */
static rt_status index_read(const char *dir, trainer_labels_meta *m, json_t **root) {
    char path[DATA_PATH_MAX];
    RT_TRY(index_path(dir, path, sizeof path));
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    if (!o) {
        FILE *f = fopen(path, "rb");
        if (!f) return rt_fail(RT_ERR_IO, "%s: no label cache index (run `retort label` first)", path);
        fclose(f);
        return rt_fail(RT_ERR_FORMAT, "%s: not JSON (%s, line %d)", path, err.text, err.line);
    }
    rt_status st = RT_OK;
    const json_t *fmt = json_object_get(o, "format"), *ver = json_object_get(o, "version");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "retort-labels") != 0)
        st = rt_fail(RT_ERR_FORMAT, "%s: not a retort label cache index", path);
    else if (!json_is_integer(ver) || json_integer_value(ver) != TRAINER_LABELS_VERSION)
        st = rt_fail(RT_ERR_FORMAT, "%s: label cache version %lld, this build reads %d", path,
                     json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL,
                     TRAINER_LABELS_VERSION);
    else
        st = meta_from_json(json_object_get(o, "meta"), path, m);
    if (st == RT_OK && root) *root = o;
    else json_decref(o);
    return st;
}

static rt_status index_write(const char *dir, const trainer_labels_meta *m, json_t *chunks,
                             int64_t bytes) {
    char path[DATA_PATH_MAX];
    RT_TRY(index_path(dir, path, sizeof path));
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string("retort-labels"));
    json_object_set_new(o, "version", json_integer(TRAINER_LABELS_VERSION));
    json_object_set_new(o, "complete", json_boolean(chunks != NULL));
    json_object_set_new(o, "meta", meta_json(m, 0));
    if (chunks) {
        const double pos = (double)m->steps * m->batch * m->seq_len;
        json_object_set_new(o, "bytes", json_integer(bytes));
        json_object_set_new(o, "bytes_per_token", json_real((double)bytes / pos));
        json_object_set_new(o, "dense_f32_bytes_per_token", json_integer(4 * (int64_t)m->vocab));
        json_object_set(o, "chunks", chunks);
    }
    rt_status st = data_write_atomic(path, write_json_body, o);
    json_decref(o);
    return st;
}

/* ------------------------------------------------------------ writing */

/* Removes the temporaries (data_tmp_path names) a killed run left. */
static void remove_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        char p[DATA_PATH_MAX];
        if ((strncmp(e->d_name, "chunk_", 6) == 0 || strncmp(e->d_name, "index.json", 10) == 0) &&
            strstr(e->d_name, ".tmp.") &&
            data_path_join(p, sizeof p, dir, e->d_name) == RT_OK)
            unlink(p);
    }
    closedir(d);
}

struct trainer_labels_writer {
    char dir[DATA_PATH_MAX];
    trainer_labels_meta meta;
    uint64_t hash;
    comm_codec *codec;
    unsigned char *buf; /* header + the chunk's step records so far */
    size_t len, cap;
    int64_t n_steps;
};

rt_status trainer_labels_writer_open(const char *dir, const trainer_labels_meta *meta, int create,
                                     int zstd_level, trainer_labels_writer **out) {
    *out = NULL;
    if (meta->chunk_steps < 1 || meta->steps < 1)
        return rt_fail(RT_ERR_ARGS, "label cache: chunk_steps and steps must be >= 1");
    if (strlen(dir) >= DATA_PATH_MAX - 64)
        return rt_fail(RT_ERR_ARGS, "%s: label cache path too long", dir);
    if (create) {
        trainer_labels_meta old;
        rt_status st = index_read(dir, &old, NULL);
        if (st == RT_OK) {
            RT_TRY(meta_check(&old, meta, 1, dir));
            remove_temporaries(dir);
        } else if (st == RT_ERR_IO) {
            RT_TRY(data_mkdir_p(dir));
            RT_TRY(index_write(dir, meta, NULL, 0));
        } else {
            return st;
        }
    }
    trainer_labels_writer *w = calloc(1, sizeof *w);
    if (!w) return rt_fail(RT_ERR_NOMEM, "out of memory");
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->meta = *meta;
    w->hash = meta_hash(meta);
    w->len = CHUNK_HEADER_BYTES;
    rt_status st = comm_codec_create(zstd_level, &w->codec);
    if (st != RT_OK) {
        free(w);
        return st;
    }
    *out = w;
    return RT_OK;
}

void trainer_labels_writer_close(trainer_labels_writer *w) {
    if (!w) return;
    comm_codec_destroy(w->codec);
    free(w->buf);
    free(w);
}

int trainer_labels_chunk_done(trainer_labels_writer *w, int64_t c) {
    unsigned char *b = NULL;
    size_t n = 0;
    uint32_t crc = 0;
    if (chunk_load(w->dir, &w->meta, w->hash, c, &b, &n, &crc) != RT_OK) return 0;
    free(b);
    return 1;
}

rt_status trainer_labels_append(trainer_labels_writer *w, const comm_record *rec) {
    const void *wire = NULL;
    size_t n = 0;
    RT_TRY(comm_codec_encode(w->codec, rec, &wire, &n));
    if (w->len + 8 + n > w->cap) {
        size_t cap = w->cap ? w->cap : 1 << 20;
        while (cap < w->len + 8 + n) cap *= 2;
        unsigned char *b = realloc(w->buf, cap);
        if (!b) return rt_fail(RT_ERR_NOMEM, "out of memory for a label chunk of %zu bytes", cap);
        w->buf = b, w->cap = cap;
    }
    put64(w->buf + w->len, n);
    memcpy(w->buf + w->len + 8, wire, n);
    w->len += 8 + n;
    w->n_steps++;
    return RT_OK;
}

typedef struct {
    const unsigned char *p;
    size_t n;
} bytes_ctx;

static void write_bytes_body(FILE *f, const void *ctx) {
    const bytes_ctx *b = ctx;
    fwrite(b->p, 1, b->n, f);
}

rt_status trainer_labels_commit_chunk(trainer_labels_writer *w, int64_t c) {
    const trainer_labels_meta *m = &w->meta;
    if (w->n_steps != chunk_steps_of(m, c) || !w->buf)
        return rt_fail(RT_ERR_INTERNAL, "label chunk %lld: %lld steps appended, %lld expected",
                       (long long)c, (long long)w->n_steps, (long long)chunk_steps_of(m, c));
    unsigned char *h = w->buf;
    memcpy(h, CHUNK_MAGIC, 8);
    put64(h + 8, w->hash);
    put64(h + 16, (uint64_t)(c * m->chunk_steps));
    put64(h + 24, (uint64_t)w->n_steps);
    put64(h + 32, w->len - CHUNK_HEADER_BYTES);
    put32(h + 40, ckpt_crc32c(0, h + CHUNK_HEADER_BYTES, w->len - CHUNK_HEADER_BYTES));
    put32(h + 44, ckpt_crc32c(0, h, 44));
    char path[DATA_PATH_MAX];
    RT_TRY(chunk_path(w->dir, c, path, sizeof path));
    const bytes_ctx b = {w->buf, w->len};
    RT_TRY(data_write_atomic(path, write_bytes_body, &b));
    w->len = CHUNK_HEADER_BYTES;
    w->n_steps = 0;
    return RT_OK;
}

rt_status trainer_labels_finish(const char *dir, const trainer_labels_meta *meta, int64_t *bytes) {
    const uint64_t hash = meta_hash(meta);
    json_t *chunks = json_array();
    if (!chunks) return rt_fail(RT_ERR_NOMEM, "out of memory");
    int64_t total = 0;
    rt_status st = RT_OK;
    for (int64_t c = 0; c < trainer_labels_n_chunks(meta) && st == RT_OK; c++) {
        unsigned char *b = NULL;
        size_t n = 0;
        uint32_t crc = 0;
        if ((st = chunk_load(dir, meta, hash, c, &b, &n, &crc)) != RT_OK) break;
        free(b);
        char name[64], hex[16];
        snprintf(name, sizeof name, "chunk_%06lld.bin", (long long)c);
        snprintf(hex, sizeof hex, "%08x", crc);
        json_t *e = json_object();
        json_object_set_new(e, "file", json_string(name));
        json_object_set_new(e, "first_step", json_integer(c * meta->chunk_steps));
        json_object_set_new(e, "steps", json_integer(chunk_steps_of(meta, c)));
        json_object_set_new(e, "bytes", json_integer((json_int_t)n));
        json_object_set_new(e, "crc32c", json_string(hex));
        json_array_append_new(chunks, e);
        total += (int64_t)n;
    }
    if (st == RT_OK) st = index_write(dir, meta, chunks, total);
    json_decref(chunks);
    if (st == RT_OK && bytes) *bytes = total;
    return st;
}

/* ------------------------------------------------------------ reading */

struct trainer_labels_reader {
    char dir[DATA_PATH_MAX];
    trainer_labels_meta meta;
    uint64_t hash;
    int64_t n_chunks;
    int64_t *chunk_bytes;
    uint32_t *chunk_crc;
    int64_t loaded; /* chunk in buf, -1 = none */
    unsigned char *buf;
    size_t len;
    size_t *offs; /* (chunk_steps) offset of each step's length word in buf */
    comm_codec *codec;
    int64_t bytes_read, positions_read;
};

void trainer_labels_close(trainer_labels_reader *r) {
    if (!r) return;
    free(r->chunk_bytes);
    free(r->chunk_crc);
    free(r->buf);
    free(r->offs);
    comm_codec_destroy(r->codec);
    free(r);
}

rt_status trainer_labels_open(const char *dir, const trainer_labels_meta *run,
                              trainer_labels_reader **out) {
    *out = NULL;
    if (strlen(dir) >= DATA_PATH_MAX - 64)
        return rt_fail(RT_ERR_ARGS, "%s: label cache path too long", dir);
    trainer_labels_reader *r = calloc(1, sizeof *r);
    if (!r) return rt_fail(RT_ERR_NOMEM, "out of memory");
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    r->loaded = -1;
    json_t *root = NULL;
    char ipath[DATA_PATH_MAX];
    rt_status st = index_path(dir, ipath, sizeof ipath);
    if (st == RT_OK) st = index_read(dir, &r->meta, &root);
    if (st != RT_OK) goto fail;
    if (!json_is_true(json_object_get(root, "complete"))) {
        st = rt_fail(RT_ERR_FORMAT,
                     "%s: the label cache is incomplete (its `retort label` run did not finish: "
                     "run it again to complete it)",
                     dir);
        goto fail;
    }
    if ((st = meta_check(&r->meta, run, 0, dir)) != RT_OK) goto fail;
    r->hash = meta_hash(&r->meta);
    r->n_chunks = trainer_labels_n_chunks(&r->meta);
    const json_t *chunks = json_object_get(root, "chunks");
    if (!json_is_array(chunks) || (int64_t)json_array_size(chunks) != r->n_chunks) {
        st = rt_fail(RT_ERR_FORMAT, "%s: expected %lld chunk entries", ipath,
                     (long long)r->n_chunks);
        goto fail;
    }
    r->chunk_bytes = calloc((size_t)r->n_chunks, sizeof *r->chunk_bytes);
    r->chunk_crc = calloc((size_t)r->n_chunks, sizeof *r->chunk_crc);
    r->offs = calloc((size_t)r->meta.chunk_steps, sizeof *r->offs);
    if (!r->chunk_bytes || !r->chunk_crc || !r->offs) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for the index of %s", dir);
        goto fail;
    }
    for (int64_t c = 0; c < r->n_chunks; c++) {
        const json_t *e = json_array_get(chunks, (size_t)c);
        const json_t *b = json_object_get(e, "bytes"), *h = json_object_get(e, "crc32c");
        char *end = NULL;
        const char *hs = json_is_string(h) ? json_string_value(h) : "";
        const unsigned long x = strtoul(hs, &end, 16);
        if (!json_is_integer(b) || json_integer_value(b) < CHUNK_HEADER_BYTES ||
            strlen(hs) != 8 || *end) {
            st = rt_fail(RT_ERR_FORMAT, "%s: chunk entry %lld is malformed", ipath, (long long)c);
            goto fail;
        }
        r->chunk_bytes[c] = (int64_t)json_integer_value(b);
        r->chunk_crc[c] = (uint32_t)x;
    }
    if ((st = comm_codec_create(3, &r->codec)) != RT_OK) goto fail;
    json_decref(root);
    *out = r;
    return RT_OK;
fail:
    json_decref(root);
    trainer_labels_close(r);
    return st;
}

rt_status trainer_labels_read(trainer_labels_reader *r, int64_t step, comm_record *rec) {
    const trainer_labels_meta *m = &r->meta;
    if (step < 0 || step >= m->steps)
        return rt_fail(RT_ERR_ARGS, "%s: step %lld is outside the cache's %lld steps", r->dir,
                       (long long)step, (long long)m->steps);
    const int64_t c = step / m->chunk_steps;
    if (r->loaded != c) {
        free(r->buf);
        r->buf = NULL;
        r->loaded = -1;
        uint32_t crc = 0;
        RT_TRY(chunk_load(r->dir, m, r->hash, c, &r->buf, &r->len, &crc));
        if ((int64_t)r->len != r->chunk_bytes[c] || crc != r->chunk_crc[c]) {
            char path[DATA_PATH_MAX];
            RT_TRY(chunk_path(r->dir, c, path, sizeof path));
            return rt_fail(RT_ERR_FORMAT,
                           "%s: %zu bytes with CRC-32C %08x, the index says %lld bytes, %08x "
                           "(replaced or corrupt chunk)",
                           path, r->len, crc, (long long)r->chunk_bytes[c], r->chunk_crc[c]);
        }
        size_t off = CHUNK_HEADER_BYTES; /* lengths were bounded by chunk_load */
        for (int64_t s = 0; s < chunk_steps_of(m, c); s++) {
            r->offs[s] = off;
            off += 8 + (size_t)get64(r->buf + off);
        }
        r->loaded = c;
    }
    const size_t off = r->offs[step - c * m->chunk_steps];
    const size_t n = (size_t)get64(r->buf + off);
    /* each step's record: the G rows of the step, in the index's shape */
    const comm_record_shape want = {
        .b = m->batch,   .T = m->seq_len, .k = m->width, .vocab = m->vocab,
        .hidden = m->hidden, .hidden_width = m->hidden_width,
    };
    if (comm_codec_decode(r->codec, r->buf + off + 8, n, &want, rec) != RT_OK) {
        char why[768], path[DATA_PATH_MAX];
        snprintf(why, sizeof why, "%s", rt_last_error());
        RT_TRY(chunk_path(r->dir, c, path, sizeof path));
        return rt_fail(RT_ERR_FORMAT, "%s: %s", path, why);
    }
    if (rec->step != step || rec->b != m->batch || rec->T != m->seq_len || rec->k != m->width ||
        rec->vocab != m->vocab || rec->n_feat != 0 || rec->hidden != m->hidden ||
        rec->hidden_width != m->hidden_width || rec->temperature != (float)m->temperature)
        return rt_fail(RT_ERR_FORMAT,
                       "%s: the record of step %lld has step %lld, %d rows, T=%d, k=%d, vocab "
                       "%d; the index says %d rows, T=%d, k=%d, vocab %d",
                       r->dir, (long long)step, (long long)rec->step, rec->b, rec->T, rec->k,
                       rec->vocab, m->batch, m->seq_len, m->width, m->vocab);
    r->bytes_read += (int64_t)n + 8;
    r->positions_read += (int64_t)rec->b * rec->T;
    return RT_OK;
}

void trainer_labels_stats(const trainer_labels_reader *r, int64_t *bytes, int64_t *positions) {
    *bytes = r->bytes_read;
    *positions = r->positions_read;
}
