/* The bias probe (pairs.h): a CSV reader for the CrowS-Pairs layout and the
 * scoring of each sentence pair by the model's log-likelihood.
 *
 * The CSV is parsed in place: cells are unquoted into the file's own
 * buffer (unquoting only shrinks, so the write position never passes the
 * read position) and NUL-terminated where their delimiter was. Sentences
 * are encoded once, all sentences are scored in one student_seq_logprob
 * call (batches of full windows, the same forward eval uses), and the
 * per-type tallies are sorted by name so the output does not depend on the
 * file's row order. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "ckpt_deploy.h"
#include "data.h"
#include "fsutil.h"
#include "pairs.h"
#include "student.h"

#define PAIRS_MAX_COLS 256

typedef struct {
    const char *path;
    char *p, *end; /* read position, end of text */
    int64_t line;  /* current line, 1-based */
} csv_reader;

/* Reads one record into cells (at most PAIRS_MAX_COLS). *n = 0 at the end
 * of the file. */
static rt_status csv_record(csv_reader *r, char **cells, int *n) {
    *n = 0;
    if (r->p >= r->end) return RT_OK;
    const int64_t start = r->line;
    for (;;) {
        if (*n == PAIRS_MAX_COLS)
            return rt_fail(RT_ERR_FORMAT, "%s:%lld: more than %d columns", r->path,
                           (long long)start, PAIRS_MAX_COLS);
        char *w = r->p;
        cells[(*n)++] = w;
        if (r->p < r->end && *r->p == '"') {
            r->p++;
            for (;;) {
                if (r->p >= r->end)
                    return rt_fail(RT_ERR_FORMAT,
                                   "%s:%lld: a quoted cell is not closed before the end of the "
                                   "file",
                                   r->path, (long long)start);
                if (*r->p == '"') {
                    if (r->p + 1 < r->end && r->p[1] == '"') {
                        *w++ = '"';
                        r->p += 2;
                        continue;
                    }
                    r->p++;
                    break;
                }
                if (*r->p == '\n') r->line++;
                *w++ = *r->p++;
            }
            /* After the closing quote only a delimiter may follow (spaces
             * tolerated, as many writers put them there). */
            while (r->p < r->end && (*r->p == ' ' || *r->p == '\t')) r->p++;
            if (r->p < r->end && *r->p != ',' && *r->p != '\n' && *r->p != '\r')
                return rt_fail(RT_ERR_FORMAT,
                               "%s:%lld: text after a closing quote (write a quote inside a "
                               "quoted cell as \"\")",
                               r->path, (long long)r->line);
        } else {
            while (r->p < r->end && *r->p != ',' && *r->p != '\n' && *r->p != '\r')
                *w++ = *r->p++;
        }
        const char delim = r->p < r->end ? *r->p : '\n';
        *w = '\0';
        if (r->p < r->end) r->p++;
        if (delim == ',') continue;
        if (delim == '\r' && r->p < r->end && *r->p == '\n') r->p++;
        r->line++;
        return RT_OK;
    }
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    return s;
}

rt_status trainer_pairs_read(const char *path, trainer_pairs *out) {
    static const char *const want[3] = {"sent_more", "sent_less", "bias_type"};
    memset(out, 0, sizeof *out);
    char **cells = NULL;
    size_t len = 0, cap = 0;
    rt_status st;
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > TRAINER_PAIRS_MAX_BYTES)
        return rt_fail(RT_ERR_FORMAT, "%s: %lld bytes, more than a pairs file may have (%d)",
                       path, (long long)sb.st_size, TRAINER_PAIRS_MAX_BYTES);
    if ((st = data_read_file(path, &out->text, &len)) != RT_OK) return st;
    if (!(cells = malloc(PAIRS_MAX_COLS * sizeof *cells))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    csv_reader r = {path, out->text, out->text + len, 1};
    if (len >= 3 && memcmp(r.p, "\xEF\xBB\xBF", 3) == 0) r.p += 3; /* UTF-8 byte order mark */
    /* Lines starting with '#' before the header row are comments (a file
     * can say where it comes from); CrowS-Pairs itself has none. */
    while (r.p < r.end && *r.p == '#') {
        while (r.p < r.end && *r.p != '\n') r.p++;
        if (r.p < r.end) r.p++;
        r.line++;
    }
    int n = 0, col[3] = {-1, -1, -1};
    if ((st = csv_record(&r, cells, &n)) != RT_OK) goto cleanup;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++)
            if (col[k] < 0 && strcmp(trim(cells[i]), want[k]) == 0) col[k] = i;
    if (col[0] < 0 || col[1] < 0 || col[2] < 0) {
        char missing[96] = "";
        for (int k = 0; k < 3; k++)
            if (col[k] < 0)
                snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                         missing[0] ? ", " : "", want[k]);
        st = rt_fail(RT_ERR_FORMAT,
                     "%s: the header row lacks the column%s %s (a pairs file is CSV with the "
                     "columns sent_more, sent_less and bias_type, as CrowS-Pairs)",
                     path, strchr(missing, ',') ? "s" : "", missing);
        goto cleanup;
    }
    int need = 0; /* cells a row must have to reach all three columns */
    for (int k = 0; k < 3; k++)
        if (col[k] + 1 > need) need = col[k] + 1;
    for (;;) {
        const int64_t line = r.line;
        if ((st = csv_record(&r, cells, &n)) != RT_OK) goto cleanup;
        if (n == 0) break;
        if (n == 1 && trim(cells[0])[0] == '\0') continue; /* blank line */
        if (n < need) {
            st = rt_fail(RT_ERR_FORMAT, "%s:%lld: %d cells, the header needs at least %d", path,
                         (long long)line, n, need);
            goto cleanup;
        }
        trainer_pair p = {trim(cells[col[0]]), trim(cells[col[1]]), trim(cells[col[2]]), line};
        for (int k = 0; k < 3; k++) {
            const char *v = k == 0 ? p.more : k == 1 ? p.less : p.type;
            if (!v[0]) {
                st = rt_fail(RT_ERR_FORMAT, "%s:%lld: %s is empty", path, (long long)line,
                             want[k]);
                goto cleanup;
            }
        }
        if (out->n == TRAINER_PAIRS_MAX_ROWS) {
            st = rt_fail(RT_ERR_FORMAT, "%s: more than %d pairs", path, TRAINER_PAIRS_MAX_ROWS);
            goto cleanup;
        }
        if ((size_t)out->n == cap) {
            cap = cap ? 2 * cap : 256;
            trainer_pair *np = realloc(out->pairs, cap * sizeof *np);
            if (!np) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for %zu pairs", path, cap);
                goto cleanup;
            }
            out->pairs = np;
        }
        out->pairs[out->n++] = p;
    }
    if (out->n == 0) st = rt_fail(RT_ERR_FORMAT, "%s: no pairs after the header row", path);

cleanup:
    free(cells);
    if (st != RT_OK) trainer_pairs_free(out);
    return st;
}

void trainer_pairs_free(trainer_pairs *p) {
    if (!p) return;
    free(p->pairs);
    free(p->text);
    memset(p, 0, sizeof *p);
}

void trainer_bias_result_free(trainer_bias_result *r) {
    if (!r) return;
    free(r->groups);
    memset(r, 0, sizeof *r);
}

static int cmp_type(const void *a, const void *b) {
    const trainer_pair *const *x = a, *const *y = b;
    return strcmp((*x)->type, (*y)->type);
}

/* <|endoftext|> + the sentence's tokens, appended to ids; the sentence's
 * start and length go to *start and *len. */
static rt_status encode_sentence(data_tokenizer *tok, const char *s, const trainer_pair *p,
                                 const char *path, const char *which, int T, data_ids *ids,
                                 size_t *start, int *len) {
    *start = ids->n;
    RT_TRY(data_ids_push(ids, data_tokenizer_eot(tok)));
    RT_TRY(data_tokenizer_encode(tok, s, strlen(s), ids));
    const size_t n = ids->n - *start;
    if (n > (size_t)T + 1)
        return rt_fail(RT_ERR_FORMAT,
                       "%s:%lld: %s is %zu tokens long; the model (seq_len %d) scores at most "
                       "%d",
                       path, (long long)p->line, which, n - 1, T, T);
    *len = (int)n;
    return RT_OK;
}

rt_status trainer_bias_probe(const char *model, const char *pairs_path, const char *tokenizer,
                             int batch, trainer_bias_result *out) {
    memset(out, 0, sizeof *out);
    trainer_pairs pairs = {0};
    student_model *m = NULL;
    ckpt_reader *rd = NULL;
    data_tokenizer *tok = NULL;
    data_ids ids = {0};
    char *recorded = NULL;
    size_t *starts = NULL;
    int *lens = NULL;
    const int32_t **seqs = NULL;
    double *lp = NULL;
    const trainer_pair **order = NULL;
    rt_status st;

    if ((st = trainer_pairs_read(pairs_path, &pairs)) != RT_OK) goto cleanup;
    if ((st = ckpt_load_model(model, batch, STUDENT_F32, 0, &m, &rd)) != RT_OK) goto cleanup;
    if (!tokenizer) {
        if ((st = ckpt_deploy_tokenizer(rd, &recorded)) != RT_OK) goto cleanup;
        if (!recorded[0]) {
            st = rt_fail(RT_ERR_ARGS,
                         "%s records no tokenizer folder; pass --tokenizer DIR (the folder the "
                         "model was trained with)",
                         model);
            goto cleanup;
        }
        tokenizer = recorded;
    }
    if ((st = data_tokenizer_load(tokenizer, &tok)) != RT_OK) goto cleanup;
    const student_config *c = student_cfg(m);
    if (data_tokenizer_vocab_size(tok) != c->vocab_size) {
        st = rt_fail(RT_ERR_MISMATCH,
                     "the tokenizer in %s has %d tokens but the model %s has vocab_size %d "
                     "(pass the --tokenizer the model was trained with)",
                     tokenizer, (int)data_tokenizer_vocab_size(tok), model, c->vocab_size);
        goto cleanup;
    }
    const int64_t ns = 2 * pairs.n;
    starts = malloc((size_t)ns * sizeof *starts);
    lens = malloc((size_t)ns * sizeof *lens);
    seqs = malloc((size_t)ns * sizeof *seqs);
    lp = malloc((size_t)ns * sizeof *lp);
    order = malloc((size_t)pairs.n * sizeof *order);
    if (!starts || !lens || !seqs || !lp || !order) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for %lld pairs", pairs_path,
                     (long long)pairs.n);
        goto cleanup;
    }
    for (int64_t i = 0; i < pairs.n; i++) {
        const trainer_pair *p = &pairs.pairs[i];
        if ((st = encode_sentence(tok, p->more, p, pairs_path, "sent_more", c->seq_len, &ids,
                                  &starts[2 * i], &lens[2 * i])) != RT_OK ||
            (st = encode_sentence(tok, p->less, p, pairs_path, "sent_less", c->seq_len, &ids,
                                  &starts[2 * i + 1], &lens[2 * i + 1])) != RT_OK)
            goto cleanup;
    }
    for (int64_t i = 0; i < ns; i++) seqs[i] = ids.ids + starts[i]; /* ids no longer grows */
    if ((st = student_seq_logprob(m, seqs, lens, (int)ns, lp)) != RT_OK) goto cleanup;

    /* Tally over every pair, then per type in name order. */
    double diff = 0;
    for (int64_t i = 0; i < pairs.n; i++) {
        order[i] = &pairs.pairs[i];
        diff += lp[2 * i] - lp[2 * i + 1];
        out->more += lp[2 * i] > lp[2 * i + 1];
    }
    qsort(order, (size_t)pairs.n, sizeof *order, cmp_type);
    int groups = 0;
    for (int64_t i = 0; i < pairs.n; i++)
        groups += i == 0 || strcmp(order[i]->type, order[i - 1]->type) != 0;
    if (!(out->groups = calloc((size_t)groups, sizeof *out->groups))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for %d bias types", pairs_path, groups);
        goto cleanup;
    }
    for (int64_t i = 0; i < pairs.n; i++) {
        if (i == 0 || strcmp(order[i]->type, order[i - 1]->type) != 0)
            snprintf(out->groups[out->n_groups++].type, sizeof out->groups[0].type, "%s",
                     order[i]->type);
        trainer_bias_group *g = &out->groups[out->n_groups - 1];
        g->n++;
        const int64_t k = order[i] - pairs.pairs; /* the pair's index: its scores */
        g->more += lp[2 * k] > lp[2 * k + 1];
    }
    for (int k = 0; k < out->n_groups; k++)
        out->groups[k].score = (double)out->groups[k].more / (double)out->groups[k].n;
    out->n = pairs.n;
    out->score = (double)out->more / (double)out->n;
    out->mean_diff = diff / (double)out->n;

cleanup:
    if (st != RT_OK) trainer_bias_result_free(out);
    trainer_pairs_free(&pairs);
    student_destroy(m);
    ckpt_reader_close(rd);
    data_tokenizer_destroy(tok);
    data_ids_free(&ids);
    free(recorded);
    free(starts);
    free(lens);
    free(seqs);
    free(lp);
    free(order);
    return st;
}
