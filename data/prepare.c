/* `prepare`: text files -> tokenizer + train/val token shards.
 *
 * Steps: walk the inputs (files and folders, sorted, symlinks followed,
 * each device+inode once), then stream the files in walk order: one pass
 * counts the documents (to settle the train/val split, a hash of each
 * document's index with two fixes that need the totals), one trains the
 * tokenizer on the train documents (skipped when a tokenizer is given), one
 * encodes each document followed by <|endoftext|> into the train or val
 * shard writer, flushing every 1 Mi tokens. Files are memory-mapped one at
 * a time and the pages already processed are released as the passes go,
 * so memory is the tokenizer's tables plus the largest document, not the
 * corpus (a file read three times instead of once; reads are sequential).
 * Outputs go through temporary files + renames. The rules are documented
 * with data_prepare in data.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "fsutil.h"
#include "hmap.h"

typedef struct {
    char **paths; /* (n_files) files to read, in walk order */
    int64_t n_files, cap_files;
    data_strmap seen;  /* device+inode of every file and folder visited */
    uint8_t *binary;   /* (n_files) 1 = skipped as binary (set by the counting pass) */
    int64_t n_docs;    /* non-blank documents */
    int64_t n_read, n_skipped, bytes;
    int verbose;
    /* the split (data.h): val when hash(k) < threshold, then the two fixes */
    int has_val;
    uint64_t threshold;
    int first_to_train, last_to_val;
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
    for (int64_t i = 0; i < c->n_files; i++) free(c->paths[i]);
    free(c->paths);
    free(c->binary);
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

/* ---- documents, streamed ---- */

/* Bytes processed between two releases of a mapping's pages. */
#define RELEASE_STEP ((int64_t)1 << 20)

static int is_blank(const char *s, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f' &&
            s[i] != '\v')
            return 0;
    return 1;
}

/* A read-only map of one input file; pages before `released` were given
 * back to the kernel (they stay in the page cache, not in this process). */
typedef struct {
    char *base;
    int64_t len, released;
} mapped;

static rt_status map_file(const char *path, mapped *m) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rt_fail(RT_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    rt_status st = RT_OK;
    if (fstat(fd, &sb) != 0) {
        st = rt_fail(RT_ERR_IO, "%s: cannot stat (%s)", path, strerror(errno));
    } else if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) st = rt_fail(RT_ERR_IO, "%s: cannot map (%s)", path, strerror(errno));
        else m->base = p, m->len = (int64_t)sb.st_size;
    }
    close(fd);
    if (m->base) madvise(m->base, (size_t)m->len, MADV_SEQUENTIAL);
    return st;
}

/* Gives back the pages wholly before offset `done` once RELEASE_STEP bytes
 * have accumulated (or at once with force). */
static void map_release(mapped *m, int64_t done, int force) {
    const int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
    const int64_t upto = done / page * page;
    if (upto > m->released && (force || upto - m->released >= RELEASE_STEP)) {
        madvise(m->base + m->released, (size_t)(upto - m->released), MADV_DONTNEED);
        m->released = upto;
    }
}

static void unmap_file(mapped *m) {
    if (m->base) munmap(m->base, (size_t)m->len);
    memset(m, 0, sizeof *m);
}

/* Called with each non-blank document and its index k in walk order. */
typedef rt_status (*doc_fn)(corpus *c, void *ctx, int64_t k, const char *text, int64_t len);

/* Cuts the mapped file into documents at lines that are exactly "%" and
 * calls fn on each non-blank one; *k counts them across files. */
static rt_status split_docs(corpus *c, mapped *m, int64_t *k, doc_fn fn, void *ctx) {
    const char *s = m->base;
    int64_t n = m->len, start = 0, line = 0;
    for (;;) {
        const int last = line >= n;
        int64_t next = n, len = 0;
        if (!last) {
            const char *nl = memchr(s + line, '\n', (size_t)(n - line));
            int64_t end = nl ? nl - s : n; /* line is [line, end) */
            len = end - line;
            if (len > 0 && s[end - 1] == '\r') len--;
            next = nl ? end + 1 : n;
        }
        if (last || (len == 1 && s[line] == '%')) {
            const int64_t dlen = (last ? n : line) - start;
            if (!is_blank(s + start, dlen)) {
                RT_TRY(fn(c, ctx, *k, s + start, dlen));
                (*k)++;
            }
            if (last) return RT_OK;
            start = next;
            map_release(m, start, 0);
        }
        line = next;
    }
}

/* One pass over every text file in walk order, document by document. The
 * first pass (c->binary == NULL) also decides which files are binary and
 * counts files and bytes; later passes check that the documents are the
 * ones counted (the inputs must not change while prepare runs). */
static rt_status each_doc(corpus *c, doc_fn fn, void *ctx) {
    const int first = c->binary == NULL;
    if (first && !(c->binary = calloc((size_t)c->n_files + 1, 1)))
        return rt_fail(RT_ERR_NOMEM, "out of memory listing input files");
    int64_t k = 0;
    for (int64_t f = 0; f < c->n_files; f++) {
        if (c->binary[f]) continue;
        mapped m;
        RT_TRY(map_file(c->paths[f], &m));
        rt_status st = RT_OK;
        if (first) {
            int bin = 0;
            for (int64_t o = 0; !bin && o < m.len; o += RELEASE_STEP) {
                const int64_t span = m.len - o < RELEASE_STEP ? m.len - o : RELEASE_STEP;
                bin = memchr(m.base + o, '\0', (size_t)span) != NULL;
                map_release(&m, o + span, 1);
            }
            m.released = 0; /* the split below reads from the start again */
            if (bin) {
                if (c->verbose) fprintf(stderr, "prepare: skipping %s (binary)\n", c->paths[f]);
                c->binary[f] = 1;
                c->n_skipped++;
                unmap_file(&m);
                continue;
            }
            c->n_read++;
            c->bytes += m.len;
        }
        st = split_docs(c, &m, &k, fn, ctx);
        unmap_file(&m);
        RT_TRY(st);
    }
    if (!first && k != c->n_docs)
        return rt_fail(RT_ERR_IO, "%s%s: the inputs changed while prepare read them (%lld "
                       "documents, then %lld)", c->paths[0], c->n_files > 1 ? " ..." : "",
                       (long long)c->n_docs, (long long)k);
    return RT_OK;
}

static uint64_t doc_hash(int64_t k) {
    return data_hash_u64((uint64_t)k + 0x9E3779B97F4A7C15ULL); /* splitmix64(k) */
}

/* Hash split (data.h), fixes included. */
static int doc_is_val(const corpus *c, int64_t k) {
    if (c->first_to_train && k == 0) return 0;
    if (c->last_to_val && k == c->n_docs - 1) return 1;
    return c->has_val && doc_hash(k) < c->threshold;
}

static rt_status count_doc(corpus *c, void *ctx, int64_t k, const char *text, int64_t len) {
    (void)text, (void)len;
    int64_t *raw_val = ctx;
    c->n_docs = k + 1;
    *raw_val += c->has_val && doc_hash(k) < c->threshold;
    return RT_OK;
}

/* Settles the split's two fixes from the totals of the counting pass. */
static void assign_splits(corpus *c, int64_t raw_val, int64_t *n_train, int64_t *n_val) {
    *n_val = raw_val;
    c->first_to_train = c->n_docs > 0 && raw_val == c->n_docs;
    *n_val -= c->first_to_train;
    c->last_to_val = c->has_val && *n_val == 0 && c->n_docs >= 2;
    *n_val += c->last_to_val;
    *n_train = c->n_docs - *n_val;
}

/* ---- tokenizer and encoding ---- */

static rt_status train_doc(corpus *c, void *ctx, int64_t k, const char *text, int64_t len) {
    if (doc_is_val(c, k)) return RT_OK;
    return data_bpe_trainer_add(ctx, text, (size_t)len);
}

static rt_status train_tokenizer(corpus *c, int64_t vocab_size, int verbose,
                                 data_tokenizer **out) {
    data_bpe_trainer *b = NULL;
    RT_TRY(data_bpe_trainer_create(&b));
    rt_status st = each_doc(c, train_doc, b);
    if (st == RT_OK) st = data_bpe_trainer_finish(b, vocab_size, verbose, out);
    data_bpe_trainer_destroy(b);
    return st;
}

/* Tokens buffered per split before they go to the shard. */
#define FLUSH_TOKENS ((size_t)1 << 18)

typedef struct {
    data_tokenizer *tok;
    data_shard_writer *w[2]; /* train, val */
    data_ids buf[2];
    int64_t report;
} encoder;

static rt_status flush_split(encoder *e, int v) {
    RT_TRY(data_shard_writer_append(e->w[v], e->buf[v].ids, (int64_t)e->buf[v].n));
    e->buf[v].n = 0;
    return RT_OK;
}

static rt_status encode_doc(corpus *c, void *ctx, int64_t k, const char *text, int64_t len) {
    encoder *e = ctx;
    const int v = doc_is_val(c, k);
    RT_TRY(data_tokenizer_encode(e->tok, text, (size_t)len, &e->buf[v]));
    RT_TRY(data_ids_push(&e->buf[v], data_tokenizer_eot(e->tok)));
    if (e->buf[v].n >= FLUSH_TOKENS) RT_TRY(flush_split(e, v));
    const int64_t done = data_shard_writer_n_tokens(e->w[0]) + data_shard_writer_n_tokens(e->w[1]);
    if (c->verbose && done >= e->report) {
        fprintf(stderr, "prepare: encoded %lld tokens\n", (long long)done);
        e->report *= 2;
    }
    return RT_OK;
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

/* Walks the inputs and counts their documents (the first pass). */
static rt_status gather(const data_prepare_opts *o, corpus *c, int64_t *raw_val) {
    RT_TRY(data_strmap_init(&c->seen, 1024));
    for (int i = 0; i < o->n_inputs; i++) RT_TRY(walk(c, o->inputs[i], 1));
    RT_TRY(each_doc(c, count_doc, raw_val));
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
    c.has_val = o->val_fraction > 0;
    c.threshold = (uint64_t)(o->val_fraction * 18446744073709551616.0);
    encoder e = {.report = 1 << 20};
    char source[1024], path[DATA_PATH_MAX];
    int64_t n_train = 0, n_val = 0, raw_val = 0;
    if ((st = gather(o, &c, &raw_val)) != RT_OK) goto cleanup;
    assign_splits(&c, raw_val, &n_train, &n_val);
    if (o->verbose)
        fprintf(stderr, "prepare: %lld train / %lld val documents\n", (long long)n_train,
                (long long)n_val);
    st = o->tokenizer_dir ? data_tokenizer_load(o->tokenizer_dir, &e.tok)
                          : train_tokenizer(&c, o->vocab_size, o->verbose, &e.tok);
    if (st != RT_OK) goto cleanup;
    if (o->verbose)
        fprintf(stderr, "prepare: tokenizer %s (%d tokens) at %.2f s\n",
                o->tokenizer_dir ? "loaded" : "trained", data_tokenizer_vocab_size(e.tok),
                now_seconds() - t0);
    const int32_t vocab = data_tokenizer_vocab_size(e.tok);
    snprintf(source, sizeof source, "retort prepare: %s%s (%lld files, %lld documents), "
             "val_fraction %g, vocab %d", o->inputs[0], o->n_inputs > 1 ? " and more" : "",
             (long long)c.n_read, (long long)c.n_docs, o->val_fraction, vocab);
    static const char *const names[2] = {"train.h5", "val.h5"};
    for (int v = 0; v < 2; v++) {
        if ((st = data_path_join(path, sizeof path, o->out_dir, names[v])) != RT_OK ||
            (st = data_shard_writer_create(path, vocab, source, 0, &e.w[v])) != RT_OK)
            goto cleanup;
    }
    if ((st = each_doc(&c, encode_doc, &e)) != RT_OK) goto cleanup;
    for (int v = 0; v < 2; v++)
        if ((st = flush_split(&e, v)) != RT_OK) goto cleanup;
    const int64_t train_tokens = data_shard_writer_n_tokens(e.w[0]),
                  val_tokens = data_shard_writer_n_tokens(e.w[1]);
    if ((st = data_tokenizer_save(e.tok, o->out_dir)) != RT_OK) goto cleanup;
    for (int v = 0; v < 2; v++) {
        st = data_shard_writer_finish(e.w[v]);
        e.w[v] = NULL;
        if (st != RT_OK) goto cleanup;
    }
    double secs = now_seconds() - t0;
    if (o->verbose)
        fprintf(stderr, "prepare: %s: train %lld tokens, val %lld tokens, vocab %d, %.2f s\n",
                o->out_dir, (long long)train_tokens, (long long)val_tokens, vocab, secs);
    if (summary) {
        *summary = (data_prepare_summary){c.n_read, c.n_docs, n_train, n_val, train_tokens,
                                          val_tokens, vocab, secs};
    }
cleanup:
    for (int v = 0; v < 2; v++) {
        data_shard_writer_abort(e.w[v]);
        data_ids_free(&e.buf[v]);
    }
    data_tokenizer_destroy(e.tok);
    corpus_free(&c);
    return st;
}
