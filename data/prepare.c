/* `prepare`: text files -> tokenizer + train/val token shards.
 *
 * Steps: walk the inputs (files and folders, sorted, symlinks followed,
 * each device+inode once), read the text files whole and cut them into
 * documents, split documents into train and val by a hash of their index,
 * train (or load) the tokenizer on the train documents, encode each
 * document followed by <|endoftext|>, and write everything through
 * temporary files + renames. The rules are documented with data_prepare in
 * data.h. The whole corpus is held in memory: prepare targets corpora of
 * megabytes to a few gigabytes, which fit a training node. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data.h"
#include "fsutil.h"
#include "hmap.h"

typedef struct {
    int32_t file;
    int64_t off, len;
    int is_val;
} doc;

typedef struct {
    char **paths; /* (n_files) files to read, in walk order */
    int64_t n_files, cap_files;
    data_strmap seen; /* device+inode of every file and folder visited */
    char **texts;     /* (n_files) contents, NULL for skipped files */
    size_t *lens;
    doc *docs;
    int64_t n_docs, cap_docs;
    int64_t n_read, n_skipped, bytes;
    int verbose;
} corpus;

data_prepare_opts data_prepare_defaults(void) {
    data_prepare_opts o;
    memset(&o, 0, sizeof o);
    o.vocab_size = 8192;
    o.val_fraction = 0.05;
    o.verbose = 1;
    return o;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void corpus_free(corpus *c) {
    for (int64_t i = 0; i < c->n_files; i++) {
        free(c->paths[i]);
        if (c->texts) free(c->texts[i]);
    }
    free(c->paths);
    free(c->texts);
    free(c->lens);
    free(c->docs);
    data_strmap_free(&c->seen);
}

/* ---- walking the inputs ---- */

/* 1 if (dev, ino) of sb was already visited, else records it and 0. */
static rt_status visit_once(corpus *c, const struct stat *sb, int *seen_before) {
    uint64_t key[2] = {(uint64_t)sb->st_dev, (uint64_t)sb->st_ino};
    int64_t idx;
    int inserted;
    RT_TRY(data_strmap_insert(&c->seen, key, sizeof key, &idx, &inserted));
    *seen_before = !inserted;
    return RT_OK;
}

static rt_status add_file(corpus *c, const char *path) {
    if (c->n_files == c->cap_files) {
        int64_t cap = c->cap_files ? c->cap_files * 2 : 64;
        char **p = realloc(c->paths, (size_t)cap * sizeof *p);
        if (!p) return rt_fail(RT_ERR_NOMEM, "out of memory listing input files");
        c->paths = p;
        c->cap_files = cap;
    }
    c->paths[c->n_files] = strdup(path);
    if (!c->paths[c->n_files]) return rt_fail(RT_ERR_NOMEM, "out of memory listing input files");
    c->n_files++;
    return RT_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static rt_status walk(corpus *c, const char *path, int top);

/* Sorted names of dir's entries, minus hidden ones and "*.dat". */
static rt_status list_dir(corpus *c, const char *path, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(path);
    if (!d) return rt_fail(RT_ERR_IO, "%s: cannot read folder (%s)", path, strerror(errno));
    rt_status st = RT_OK;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden files such as .git */
        if (ends_with(e->d_name, ".dat")) { /* fortune(6) index files, binary */
            c->n_skipped++;
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(*names, cap * sizeof *p);
            if (!p) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory listing the folder", path);
                break;
            }
            *names = p;
        }
        if (!((*names)[*n] = strdup(e->d_name))) {
            st = rt_fail(RT_ERR_NOMEM, "%s: out of memory listing the folder", path);
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*names) qsort(*names, *n, sizeof **names, name_cmp);
    return st;
}

static rt_status walk_dir(corpus *c, const char *path) {
    char **names;
    size_t n;
    rt_status st = list_dir(c, path, &names, &n);
    char child[DATA_PATH_MAX];
    for (size_t i = 0; st == RT_OK && i < n; i++) {
        st = data_path_join(child, sizeof child, path, names[i]);
        if (st == RT_OK) st = walk(c, child, 0);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

static rt_status walk(corpus *c, const char *path, int top) {
    struct stat sb;
    if (stat(path, &sb) != 0) { /* stat follows symlinks */
        if (top) return rt_fail(RT_ERR_IO, "input %s: %s", path, strerror(errno));
        if (c->verbose) fprintf(stderr, "prepare: skipping %s (%s)\n", path, strerror(errno));
        c->n_skipped++;
        return RT_OK;
    }
    int seen;
    RT_TRY(visit_once(c, &sb, &seen));
    if (seen) return RT_OK; /* e.g. fortunes' "name.u8 -> name" symlinks, or a loop */
    if (S_ISDIR(sb.st_mode)) return walk_dir(c, path);
    if (S_ISREG(sb.st_mode)) return add_file(c, path);
    if (top) return rt_fail(RT_ERR_IO, "input %s: not a regular file or folder", path);
    c->n_skipped++;
    return RT_OK;
}

/* ---- documents ---- */

static int is_blank(const char *s, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f' &&
            s[i] != '\v')
            return 0;
    return 1;
}

static rt_status add_doc(corpus *c, int32_t file, int64_t off, int64_t len) {
    if (is_blank(c->texts[file] + off, len)) return RT_OK;
    if (c->n_docs == c->cap_docs) {
        int64_t cap = c->cap_docs ? c->cap_docs * 2 : 1024;
        doc *d = realloc(c->docs, (size_t)cap * sizeof *d);
        if (!d) return rt_fail(RT_ERR_NOMEM, "out of memory for %lld documents", (long long)cap);
        c->docs = d;
        c->cap_docs = cap;
    }
    c->docs[c->n_docs++] = (doc){file, off, len, 0};
    return RT_OK;
}

/* Cuts file `f` into documents at lines that are exactly "%". */
static rt_status split_docs(corpus *c, int32_t f) {
    const char *s = c->texts[f];
    int64_t n = (int64_t)c->lens[f], start = 0, line = 0;
    while (line < n) {
        const char *nl = memchr(s + line, '\n', (size_t)(n - line));
        int64_t end = nl ? nl - s : n; /* line is [line, end) */
        int64_t len = end - line;
        if (len > 0 && s[end - 1] == '\r') len--;
        int64_t next = nl ? end + 1 : n;
        if (len == 1 && s[line] == '%') {
            RT_TRY(add_doc(c, f, start, line - start));
            start = next;
        }
        line = next;
    }
    return add_doc(c, f, start, n - start);
}

static rt_status read_files(corpus *c) {
    c->texts = calloc((size_t)c->n_files + 1, sizeof *c->texts);
    c->lens = calloc((size_t)c->n_files + 1, sizeof *c->lens);
    if (!c->texts || !c->lens) return rt_fail(RT_ERR_NOMEM, "out of memory reading inputs");
    for (int64_t f = 0; f < c->n_files; f++) {
        RT_TRY(data_read_file(c->paths[f], &c->texts[f], &c->lens[f]));
        if (memchr(c->texts[f], '\0', c->lens[f])) { /* binary-looking */
            if (c->verbose) fprintf(stderr, "prepare: skipping %s (binary)\n", c->paths[f]);
            free(c->texts[f]);
            c->texts[f] = NULL;
            c->n_skipped++;
            continue;
        }
        c->n_read++;
        c->bytes += (int64_t)c->lens[f];
        RT_TRY(split_docs(c, (int32_t)f));
    }
    return RT_OK;
}

/* Hash split (data.h): val when splitmix64(k) < val_fraction * 2^64. */
static void assign_splits(corpus *c, double val_fraction, int64_t *n_train, int64_t *n_val) {
    uint64_t threshold = (uint64_t)(val_fraction * 18446744073709551616.0);
    *n_train = *n_val = 0;
    for (int64_t k = 0; k < c->n_docs; k++) {
        uint64_t h = data_hash_u64((uint64_t)k + 0x9E3779B97F4A7C15ULL); /* splitmix64(k) */
        c->docs[k].is_val = val_fraction > 0 && h < threshold;
        if (c->docs[k].is_val) (*n_val)++;
    }
    *n_train = c->n_docs - *n_val;
    if (*n_train == 0 && c->n_docs > 0) {
        c->docs[0].is_val = 0;
        *n_train += 1;
        *n_val -= 1;
    }
    if (val_fraction > 0 && *n_val == 0 && c->n_docs >= 2) {
        c->docs[c->n_docs - 1].is_val = 1;
        *n_train -= 1;
        *n_val += 1;
    }
}

/* ---- tokenizer and encoding ---- */

static rt_status train_tokenizer(const corpus *c, int64_t vocab_size, int verbose,
                                 data_tokenizer **out) {
    data_bpe_trainer *b = NULL;
    RT_TRY(data_bpe_trainer_create(&b));
    rt_status st = RT_OK;
    for (int64_t k = 0; st == RT_OK && k < c->n_docs; k++) {
        const doc *d = &c->docs[k];
        if (!d->is_val) st = data_bpe_trainer_add(b, c->texts[d->file] + d->off, (size_t)d->len);
    }
    if (st == RT_OK) st = data_bpe_trainer_finish(b, vocab_size, verbose, out);
    data_bpe_trainer_destroy(b);
    return st;
}

static rt_status encode_split(const corpus *c, data_tokenizer *t, int want_val, int verbose,
                              data_ids *out) {
    const char *name = want_val ? "val" : "train";
    int64_t report = 1 << 20;
    for (int64_t k = 0; k < c->n_docs; k++) {
        const doc *d = &c->docs[k];
        if (d->is_val != want_val) continue;
        RT_TRY(data_tokenizer_encode(t, c->texts[d->file] + d->off, (size_t)d->len, out));
        RT_TRY(data_ids_push(out, data_tokenizer_eot(t)));
        if (verbose && (int64_t)out->n >= report) {
            fprintf(stderr, "prepare: encoded %zu %s tokens\n", out->n, name);
            report *= 2;
        }
    }
    if (verbose) fprintf(stderr, "prepare: encoded %zu %s tokens (done)\n", out->n, name);
    return RT_OK;
}

static rt_status write_shard(const char *dir, const char *name, const data_ids *ids,
                             int32_t vocab, const char *source) {
    char path[DATA_PATH_MAX];
    RT_TRY(data_path_join(path, sizeof path, dir, name));
    return data_shard_write(path, ids->ids, (int64_t)ids->n, vocab, source);
}

/* ---- the pipeline ---- */

static rt_status check_opts(const data_prepare_opts *o) {
    if (!o->inputs || o->n_inputs < 1) return rt_fail(RT_ERR_ARGS, "prepare: no input given");
    if (!o->out_dir || !o->out_dir[0]) return rt_fail(RT_ERR_ARGS, "prepare: no output folder");
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return rt_fail(RT_ERR_ARGS, "val_fraction %g is outside [0, 1)", o->val_fraction);
    if (!o->tokenizer_dir && o->vocab_size < DATA_MIN_VOCAB)
        return rt_fail(RT_ERR_ARGS,
                       "vocab size %lld is below the minimum %d (256 byte tokens + %s)",
                       (long long)o->vocab_size, DATA_MIN_VOCAB, DATA_EOT_TEXT);
    return RT_OK;
}

static rt_status gather(const data_prepare_opts *o, corpus *c) {
    RT_TRY(data_strmap_init(&c->seen, 1024));
    for (int i = 0; i < o->n_inputs; i++) RT_TRY(walk(c, o->inputs[i], 1));
    RT_TRY(read_files(c));
    if (o->verbose)
        fprintf(stderr, "prepare: read %lld files, %.1f MB, %lld documents (skipped %lld "
                "non-text files)\n", (long long)c->n_read, (double)c->bytes / 1e6,
                (long long)c->n_docs, (long long)c->n_skipped);
    if (c->n_docs == 0)
        return rt_fail(RT_ERR_ARGS, "no text in the inputs (%s%s): every file is empty, "
                       "whitespace, binary or skipped", o->inputs[0],
                       o->n_inputs > 1 ? ", ..." : "");
    return RT_OK;
}

rt_status data_prepare(const data_prepare_opts *o, data_prepare_summary *summary) {
    double t0 = now_seconds();
    RT_TRY(check_opts(o));
    RT_TRY(data_mkdir_p(o->out_dir));
    rt_status st = RT_OK;
    corpus c;
    memset(&c, 0, sizeof c);
    c.verbose = o->verbose;
    data_tokenizer *tok = NULL;
    data_ids train = {0}, val = {0};
    char source[1024];
    int64_t n_train = 0, n_val = 0;
    if ((st = gather(o, &c)) != RT_OK) goto cleanup;
    assign_splits(&c, o->val_fraction, &n_train, &n_val);
    if (o->verbose)
        fprintf(stderr, "prepare: %lld train / %lld val documents\n", (long long)n_train,
                (long long)n_val);
    st = o->tokenizer_dir ? data_tokenizer_load(o->tokenizer_dir, &tok)
                          : train_tokenizer(&c, o->vocab_size, o->verbose, &tok);
    if (st != RT_OK) goto cleanup;
    if (o->verbose)
        fprintf(stderr, "prepare: tokenizer %s (%d tokens) at %.2f s\n",
                o->tokenizer_dir ? "loaded" : "trained", data_tokenizer_vocab_size(tok),
                now_seconds() - t0);
    if ((st = encode_split(&c, tok, 0, o->verbose, &train)) != RT_OK) goto cleanup;
    if ((st = encode_split(&c, tok, 1, o->verbose, &val)) != RT_OK) goto cleanup;
    if ((st = data_tokenizer_save(tok, o->out_dir)) != RT_OK) goto cleanup;
    int32_t vocab = data_tokenizer_vocab_size(tok);
    snprintf(source, sizeof source, "retort prepare: %s%s (%lld files, %lld documents), "
             "val_fraction %g, vocab %d", o->inputs[0], o->n_inputs > 1 ? " and more" : "",
             (long long)c.n_read, (long long)c.n_docs, o->val_fraction, vocab);
    if ((st = write_shard(o->out_dir, "train.h5", &train, vocab, source)) != RT_OK) goto cleanup;
    if ((st = write_shard(o->out_dir, "val.h5", &val, vocab, source)) != RT_OK) goto cleanup;
    double secs = now_seconds() - t0;
    if (o->verbose)
        fprintf(stderr, "prepare: %s: train %zu tokens, val %zu tokens, vocab %d, %.2f s\n",
                o->out_dir, train.n, val.n, vocab, secs);
    if (summary) {
        *summary = (data_prepare_summary){c.n_read, c.n_docs, n_train, n_val, (int64_t)train.n,
                                          (int64_t)val.n, vocab, secs};
    }
cleanup:
    data_ids_free(&train);
    data_ids_free(&val);
    data_tokenizer_destroy(tok);
    corpus_free(&c);
    return st;
}
