/* `retort report`: models side by side, from real measurements.
 *
 *   retort report --out DIR --data VAL_SHARD [--teacher CKPT]
 *                 --model NAME=FILE [--model ...] [--curve NAME=RUN_DIR ...]
 *                 [--no-bench] [--max-tokens N] [--batch N] [--json]
 *
 * writes DIR/report.md (one table row per model: parameters, size on disk,
 * validation loss and perplexity, top-1 agreement with the teacher, ECE,
 * inference tokens/s), DIR/val_loss.svg (validation loss vs tokens of each
 * --curve run, from RUN_DIR/metrics.jsonl), DIR/size_ppl.svg (size on disk
 * vs perplexity, the Pareto front dashed) and DIR/report.json (everything, machine-readable; also
 * printed with --json).
 *
 * Every number is measured while the report is made: the quality columns by
 * trainer_eval (the code behind `retort eval`) on the same shard, the speed
 * column by running `retort bench infer --model FILE --json` as a child of
 * this very binary (/proc/self/exe), so the report never mixes builds. A
 * bench that is missing or fails leaves "n/a" with the reason in the notes;
 * with --no-bench the column is "n/a" (not measured). The teacher is the
 * reference of the agreement column only; to show it as a row, pass it as
 * a --model too (its agreement is then 1 for the same weights, a check). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "cli.h"
#include "cmds.h"
#include "data.h"
#include "fsutil.h"
#include "eval.h"
#include "pairs.h"
#include "svg.h"

typedef struct {
    char name[128];
    const char *file;
    trainer_eval_result r;
    double bench_tps;      /* NAN = n/a */
    double bias;           /* bias probe score (--pairs); NAN = not measured */
    char bench_note[512];  /* why n/a */
} report_row;

typedef struct {
    char name[128];
    const char *run_dir;
    double *tokens, *loss; /* (n) */
    int n, cap, bad_lines;
    /* soft-label bytes per token of a distillation run (last record):
     * wire (teacher ranks) or disk (label cache); NAN when none */
    double label_bytes, dense_bytes;
    const char *label_where;
} report_curve;

/* ------------------------------------------------------------ helpers */

/* NAME=VALUE into name (truncated to cap) and *value (points into arg). */
static rt_status split_named(const char *flag, const char *arg, char *name, size_t cap,
                             const char **value) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return rt_fail(RT_ERR_ARGS, "--%s '%s': expected NAME=PATH", flag, arg);
    size_t n = (size_t)(eq - arg);
    if (n >= cap) return rt_fail(RT_ERR_ARGS, "--%s '%s': NAME is too long", flag, arg);
    memcpy(name, arg, n);
    name[n] = '\0';
    *value = eq + 1;
    return RT_OK;
}

static rt_status mkdir_p(const char *dir) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return rt_fail(RT_ERR_ARGS, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        const int end = *s == '\0';
        if (*s == '/' || end) {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return rt_fail(RT_ERR_IO, "%s: cannot create folder (%s)", p, strerror(errno));
            if (end) break;
            *s = '/';
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rt_fail(RT_ERR_IO, "%s: not a folder", dir);
    return RT_OK;
}

/* Writes text to DIR/name atomically (data_write_text), so a failed report
 * never leaves a half-written file under the final name. */
static rt_status write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    RT_TRY(data_path_join(path, sizeof path, dir, name));
    return data_write_text(path, text);
}

static void human_bytes(char *buf, size_t cap, double b) {
    if (b < 0)
        snprintf(buf, cap, "?");
    else if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, cap, "%.2f MiB", b / (1024.0 * 1024));
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", b / 1024);
    else
        snprintf(buf, cap, "%.0f B", b);
}

static void grouped(char *buf, size_t cap, int64_t v) { /* 1234567 -> "1,234,567" */
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%lld", (long long)v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)cap; i++) {
        if (i > 0 && raw[i - 1] != '-' && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
}

/* Markdown table cells: '|' would end the cell, newlines the row. */
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

/* Opens every file the evaluations will read and checks what can be
 * checked from metadata (format, shapes, vocabularies), so that a typo in
 * the last --model fails in a second, not after the other evaluations. */
static rt_status check_inputs(const char *data, const char *teacher, const report_row *rows,
                              int n_rows) {
    data_shard *sh = NULL;
    ckpt_reader *t = NULL, *r = NULL;
    rt_status st = data_shard_open(data, &sh);
    if (st == RT_OK && teacher) st = ckpt_open(teacher, &t);
    for (int i = 0; st == RT_OK && i < n_rows; i++) {
        if ((st = ckpt_open(rows[i].file, &r)) != RT_OK) break;
        const student_config *c = ckpt_reader_config(r);
        if (c->vocab_size != data_shard_vocab_size(sh))
            st = rt_fail(RT_ERR_MISMATCH,
                         "%s has vocab_size %lld but the model %s has vocab_size %d (use the "
                         "shard made with the model's tokenizer)",
                         data, (long long)data_shard_vocab_size(sh), rows[i].file, c->vocab_size);
        else if (t &&
                 (ckpt_reader_config(t)->vocab_size != c->vocab_size ||
                  ckpt_reader_config(t)->seq_len < c->seq_len))
            st = rt_fail(RT_ERR_MISMATCH,
                         "teacher %s has vocab_size %d, seq_len %d but the model %s has "
                         "vocab_size %d, seq_len %d (agreement needs the same vocabulary and "
                         "at least as many teacher positions)",
                         teacher, ckpt_reader_config(t)->vocab_size,
                         ckpt_reader_config(t)->seq_len, rows[i].file, c->vocab_size, c->seq_len);
        ckpt_reader_close(r);
        r = NULL;
    }
    ckpt_reader_close(t);
    data_shard_close(sh);
    return st;
}

/* ---------------------------------------------------------------- bench */

/* `retort bench infer --model FILE --json` as a child of this binary:
 * its tokens_per_s, or NAN with the reason in note. */
static double run_bench(const char *file, char *note, size_t cap) {
    int out[2] = {-1, -1};
    FILE *err = tmpfile();
    if (!err || pipe(out) != 0) {
        snprintf(note, cap, "cannot start `retort bench infer` (%s)", strerror(errno));
        if (err) fclose(err);
        return NAN;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(fileno(err), STDERR_FILENO);
        close(out[0]);
        close(out[1]);
        char *argv[] = {"retort", "bench", "infer", "--model", (char *)file, "--json", NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(out[1]);
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    if (pid > 0) {
        for (;;) {
            if (len + 4096 + 1 > bcap) {
                char *nb = realloc(buf, bcap = 2 * bcap + 8192);
                if (!nb) break;
                buf = nb;
            }
            ssize_t k = read(out[0], buf + len, bcap - len - 1);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            len += (size_t)k;
        }
    }
    close(out[0]);
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    double tps = NAN;
    if (pid < 0) {
        snprintf(note, cap, "cannot start `retort bench infer` (%s)", strerror(errno));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char line[400] = "";
        rewind(err);
        if (!fgets(line, sizeof line, err)) line[0] = '\0';
        line[strcspn(line, "\n")] = '\0';
        snprintf(note, cap, "`retort bench infer` exited %d%s%s",
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128, line[0] ? ": " : "", line);
    } else {
        /* The JSON object is the last line that parses as one. */
        if (buf) buf[len] = '\0';
        for (char *line = buf ? strtok(buf, "\n") : NULL; line; line = strtok(NULL, "\n")) {
            json_t *j = json_loads(line, 0, NULL);
            const json_t *v = json_object_get(j, "tokens_per_s");
            if (json_is_number(v)) tps = json_number_value(v);
            json_decref(j);
        }
        if (!isfinite(tps))
            snprintf(note, cap, "`retort bench infer --json` printed no tokens_per_s");
    }
    free(buf);
    fclose(err);
    return tps;
}

/* --------------------------------------------------------------- curves */

static rt_status read_curve(report_curve *c) {
    char path[4096], *line = NULL;
    size_t lcap = 0;
    rt_status st = RT_OK;
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return rt_fail(RT_ERR_IO, "%s: cannot open (%s); --curve wants a run folder of "
                                  "`retort train`", path, strerror(errno));
    c->label_bytes = c->dense_bytes = NAN;
    c->label_where = NULL;
    while (getline(&line, &lcap, f) > 0) {
        if (line[strspn(line, " \t\r\n")] == '\0') continue;
        json_t *j = json_loads(line, 0, NULL);
        if (!json_is_object(j)) {
            c->bad_lines++; /* e.g. the last line of a run still being written */
            json_decref(j);
            continue;
        }
        const json_t *wb = json_object_get(j, "wire_bytes_per_token"),
                     *db = json_object_get(j, "disk_bytes_per_token"),
                     *dd = json_object_get(j, "dense_bytes_per_token");
        if (json_is_number(wb) || json_is_number(db)) {
            c->label_bytes = json_number_value(json_is_number(wb) ? wb : db);
            c->label_where = json_is_number(wb) ? "wire" : "disk";
        }
        if (json_is_number(dd)) c->dense_bytes = json_number_value(dd);
        const json_t *vl = json_object_get(j, "val_loss"), *tk = json_object_get(j, "tokens");
        if (json_is_number(vl) && json_is_number(tk)) {
            if (c->n == c->cap) {
                int ncap = c->cap ? 2 * c->cap : 64;
                double *a = realloc(c->tokens, (size_t)ncap * sizeof *a);
                if (a) c->tokens = a;
                double *b = a ? realloc(c->loss, (size_t)ncap * sizeof *b) : NULL;
                if (b) c->loss = b;
                if (!a || !b) {
                    json_decref(j);
                    st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading the curve", path);
                    break;
                }
                c->cap = ncap;
            }
            c->tokens[c->n] = json_number_value(tk);
            c->loss[c->n] = json_number_value(vl);
            c->n++;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return st;
}

/* --------------------------------------------------------------- output */

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *report_json(const char *out_dir, const char *data, const char *teacher,
                           const char *pairs, double teacher_bias, const report_row *rows,
                           int n_rows, const report_curve *curves, int n_curves) {
    json_t *o = json_object(), *models = json_array(), *cs = json_array(), *files = json_array();
    json_object_set_new(o, "out", json_string(out_dir));
    json_object_set_new(o, "data", json_string(data));
    json_object_set_new(o, "teacher", teacher ? json_string(teacher) : json_null());
    json_object_set_new(o, "pairs", pairs ? json_string(pairs) : json_null());
    json_object_set_new(o, "teacher_bias_score", num_or_null(teacher_bias));
    for (int i = 0; i < n_rows; i++) {
        const report_row *w = &rows[i];
        json_t *m = json_object();
        json_object_set_new(m, "name", json_string(w->name));
        json_object_set_new(m, "file", json_string(w->file));
        json_object_set_new(m, "params", json_integer(w->r.params));
        json_object_set_new(m, "file_bytes", json_integer(w->r.file_bytes));
        json_object_set_new(m, "loss", json_real(w->r.loss));
        json_object_set_new(m, "perplexity", json_real(w->r.perplexity));
        json_object_set_new(m, "agreement", num_or_null(w->r.agreement));
        json_object_set_new(m, "ece", json_real(w->r.ece));
        json_object_set_new(m, "tokens", json_integer(w->r.tokens));
        json_object_set_new(m, "windows", json_integer(w->r.windows));
        json_object_set_new(m, "eval_tokens_per_s", json_real(w->r.tokens_per_s));
        json_object_set_new(m, "tokens_per_s", num_or_null(w->bench_tps));
        if (!isfinite(w->bench_tps)) json_object_set_new(m, "bench_note", json_string(w->bench_note));
        json_object_set_new(m, "bias_score", num_or_null(w->bias));
        json_object_set_new(m, "bias_shift", num_or_null(w->bias - teacher_bias));
        json_array_append_new(models, m);
    }
    for (int i = 0; i < n_curves; i++) {
        json_t *c = json_object(), *pts = json_array();
        for (int k = 0; k < curves[i].n; k++)
            json_array_append_new(pts, json_pack("[f,f]", curves[i].tokens[k], curves[i].loss[k]));
        json_object_set_new(c, "name", json_string(curves[i].name));
        json_object_set_new(c, "run_dir", json_string(curves[i].run_dir));
        json_object_set_new(c, "label_bytes_per_token", num_or_null(curves[i].label_bytes));
        json_object_set_new(c, "label_bytes_on",
                            curves[i].label_where ? json_string(curves[i].label_where)
                                                  : json_null());
        json_object_set_new(c, "dense_bytes_per_token", num_or_null(curves[i].dense_bytes));
        json_object_set_new(c, "points", pts);
        json_array_append_new(cs, c);
    }
    json_object_set_new(o, "models", models);
    json_object_set_new(o, "curves", cs);
    static const char *const names[] = {"report.md", "report.json", "val_loss.svg", "size_ppl.svg"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        json_array_append_new(files, json_string(names[i]));
    json_object_set_new(o, "files", files);
    return o;
}

/* The table as Markdown (also what a text-mode report prints to stdout). */
static void write_table(FILE *f, const report_row *rows, int n_rows, int pairs,
                        double teacher_bias) {
    fprintf(f, "| model | file | parameters | size on disk | val loss | val perplexity | "
               "top-1 agreement with teacher | ECE (%d bins) | inference tokens/s |%s\n"
               "|---|---|--:|--:|--:|--:|--:|--:|--:|%s\n", TRAINER_ECE_BINS,
            pairs ? (isfinite(teacher_bias) ? " bias score (shift vs teacher) |" : " bias score |")
                  : "",
            pairs ? "--:|" : "");
    for (int i = 0; i < n_rows; i++) {
        const report_row *w = &rows[i];
        char p[40], sz[40], agree[40], tps[40];
        grouped(p, sizeof p, w->r.params);
        human_bytes(sz, sizeof sz, (double)w->r.file_bytes);
        if (isfinite(w->r.agreement))
            snprintf(agree, sizeof agree, "%.4f", w->r.agreement);
        else
            snprintf(agree, sizeof agree, "n/a");
        if (isfinite(w->bench_tps))
            snprintf(tps, sizeof tps, "%.1f", w->bench_tps);
        else
            snprintf(tps, sizeof tps, "n/a");
        fputs("| ", f);
        md_cell(f, w->name);
        fputs(" | `", f);
        md_cell(f, w->file);
        fprintf(f, "` | %s | %s | %.4f | %.3f | %s | %.4f | %s |", p, sz, w->r.loss,
                w->r.perplexity, agree, w->r.ece, tps);
        if (pairs && isfinite(teacher_bias))
            fprintf(f, " %.4f (%+.4f) |", w->bias, w->bias - teacher_bias);
        else if (pairs)
            fprintf(f, " %.4f |", w->bias);
        fputc('\n', f);
    }
}

static rt_status write_markdown(const char *out_dir, int argc, char **argv, const char *data,
                                const char *teacher, const char *pairs, double teacher_bias,
                                int bench, const report_row *rows,
                                int n_rows, const report_curve *curves, int n_curves,
                                int val_points) {
    char *md = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&md, &len);
    if (!f) return rt_fail(RT_ERR_NOMEM, "report: out of memory for report.md");
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    fprintf(f, "# retort report\n\nMade on %s by\n\n```\nretort", when);
    for (int i = 0; i < argc; i++) { /* quoted so that the line can be pasted back */
        const char *s = argv[i];
        const int plain = s[0] && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789_./=:,+-@%") == strlen(s);
        if (plain) {
            fprintf(f, " %s", s);
            continue;
        }
        fputs(" '", f);
        for (; *s; s++) *s == '\'' ? fputs("'\\''", f) : fputc(*s, f);
        fputc('\'', f);
    }
    fprintf(f, "\n```\n\nValidation data: `%s`", data);
    if (teacher) fprintf(f, "; teacher: `%s`", teacher);
    fprintf(f, ".\n\n");
    write_table(f, rows, n_rows, pairs != NULL, teacher_bias);

    fprintf(f, "\nHow each column was measured, in this run:\n\n");
    int64_t tok0 = n_rows ? rows[0].r.tokens : 0, same = 1;
    for (int i = 1; i < n_rows; i++) same &= rows[i].r.tokens == tok0;
    fprintf(f, "- **val loss / perplexity**: `retort eval` on the shard: mean next-token "
               "cross-entropy (nats) over consecutive, non-overlapping windows of seq_len "
               "tokens, perplexity = exp(loss); ");
    if (same)
        fprintf(f, "%lld predicted tokens per model.\n", (long long)tok0);
    else
        fprintf(f, "the models' seq_len differ, so the predicted tokens do: see report.json.\n");
    fprintf(f, "- **parameters**: trainable parameters of the model shape; **size on disk**: "
               "the file's bytes: a training checkpoint also holds its AdamW state (about 3x the "
               "weights), so compare deploy files (`retort export`) for what ships; int8 ones "
               "are smaller again for the same parameters.\n");
    if (teacher)
        fprintf(f, "- **top-1 agreement**: share of the predicted positions where the model's "
                   "most likely token equals the teacher's, on the same windows.\n");
    else
        fprintf(f, "- **top-1 agreement**: n/a, no --teacher given.\n");
    fprintf(f, "- **ECE**: expected calibration error of the top-1 prediction: %d "
               "equal-width bins of its softmax probability, the count-weighted mean of "
               "|accuracy - mean confidence| per bin.\n", TRAINER_ECE_BINS);
    if (pairs) {
        fprintf(f, "- **bias score**: `retort eval --pairs %s`: the share of sentence pairs "
                   "where the model gives sent_more a higher log-likelihood than sent_less "
                   "(0.5 = no preference)", pairs);
        if (isfinite(teacher_bias))
            fprintf(f, "; the shift is the model's score minus the teacher's (%.4f)",
                    teacher_bias);
        fprintf(f, ".\n");
    }
    if (!bench) {
        fprintf(f, "- **inference tokens/s**: n/a, not measured (--no-bench; without it the "
                   "report runs `retort bench infer --model FILE --json` per model).\n");
    } else {
        fprintf(f, "- **inference tokens/s**: `retort bench infer --model FILE --json` "
                   "(tokens_per_s), run by this same binary.");
        int na = 0;
        for (int i = 0; i < n_rows; i++) na += !isfinite(rows[i].bench_tps);
        if (na) {
            fprintf(f, " n/a for %d model%s:\n", na, na == 1 ? "" : "s");
            for (int i = 0; i < n_rows; i++)
                if (!isfinite(rows[i].bench_tps)) {
                    fprintf(f, "  - %s: ", rows[i].name);
                    md_cell(f, rows[i].bench_note);
                    fprintf(f, "\n");
                }
        } else {
            fprintf(f, "\n");
        }
    }

    fprintf(f, "\n## Validation loss during training\n\n");
    if (n_curves == 0) {
        fprintf(f, "No runs given (--curve NAME=RUN_DIR).\n");
    } else {
        if (val_points) fprintf(f, "![validation loss vs tokens](val_loss.svg)\n\n");
        fprintf(f, "| run | folder | val_loss records | last tokens | last val loss | soft-label "
                   "bytes/token (dense f32) |\n"
                   "|---|---|--:|--:|--:|--:|\n");
        for (int i = 0; i < n_curves; i++) {
            const report_curve *c = &curves[i];
            fputs("| ", f);
            md_cell(f, c->name);
            fputs(" | `", f);
            md_cell(f, c->run_dir);
            if (c->n)
                fprintf(f, "` | %d | %.0f | %.4f | ", c->n, c->tokens[c->n - 1],
                        c->loss[c->n - 1]);
            else
                fprintf(f, "` | 0 | n/a | n/a | ");
            if (c->label_where)
                fprintf(f, "%.1f on %s (%.0f) |\n", c->label_bytes, c->label_where,
                        c->dense_bytes);
            else
                fprintf(f, "– |\n");
        }
        fprintf(f, "\nPoints are the records of RUN_DIR/metrics.jsonl that have both "
                   "\"val_loss\" and \"tokens\". Soft-label bytes per token are the run's "
                   "last record of the teacher's labels on the MPI wire (zstd) or read from "
                   "a label cache on disk, beside what dense f32 labels would take.");
        for (int i = 0; i < n_curves; i++)
            if (curves[i].bad_lines)
                fprintf(f, " %s: %d line%s that %s not a JSON object skipped.", curves[i].name,
                        curves[i].bad_lines, curves[i].bad_lines == 1 ? "" : "s",
                        curves[i].bad_lines == 1 ? "is" : "are");
        fprintf(f, "\n");
    }
    fprintf(f, "\n## Size on disk vs validation perplexity\n\n"
               "![size vs perplexity](size_ppl.svg)\n\n"
               "The dashed line joins the Pareto front: the models that no other model beats "
               "on both size on disk and perplexity.\n");
    const int bad = ferror(f);
    fclose(f);
    rt_status st = bad ? rt_fail(RT_ERR_NOMEM, "report: out of memory for report.md")
                       : write_file(out_dir, "report.md", md);
    free(md);
    return st;
}

/* The Pareto front of (file size, perplexity): the rows no other row
 * beats on both (at most as large and at most as perplex, one strictly),
 * as points sorted by size into x, y. Rows without both numbers are out.
 * Returns their count. */
static int report_pareto(const report_row *rows, int n, double *x, double *y) {
    int nf = 0;
    for (int i = 0; i < n; i++) {
        const double si = (double)rows[i].r.file_bytes, pi = rows[i].r.perplexity;
        if (!(si > 0) || !isfinite(pi)) continue;
        int beaten = 0;
        for (int j = 0; j < n && !beaten; j++) {
            const double sj = (double)rows[j].r.file_bytes, pj = rows[j].r.perplexity;
            if (j == i || !(sj > 0) || !isfinite(pj)) continue;
            beaten = sj <= si && pj <= pi && (sj < si || pj < pi);
        }
        if (beaten) continue;
        int k = nf++; /* insertion by size; equal points (two copies) once */
        while (k > 0 && x[k - 1] > si) x[k] = x[k - 1], y[k] = y[k - 1], k--;
        x[k] = si, y[k] = pi;
        if (k > 0 && x[k - 1] == si && y[k - 1] == pi) {
            memmove(x + k, x + k + 1, (size_t)(nf - k - 1) * sizeof *x);
            memmove(y + k, y + k + 1, (size_t)(nf - k - 1) * sizeof *y);
            nf--;
        }
    }
    return nf;
}

static rt_status write_plots(const char *out_dir, const report_row *rows, int n_rows,
                             const report_curve *curves, int n_curves, int *val_points) {
    trainer_svg *p = NULL;
    char path[4096];
    rt_status st;
    *val_points = 0;
    if ((st = trainer_svg_create("Validation loss during training", "tokens seen",
                                 "validation loss (nats)", 0, &p)) != RT_OK)
        return st;
    for (int i = 0; i < n_curves && st == RT_OK; i++)
        st = trainer_svg_series(p, curves[i].name, curves[i].tokens, curves[i].loss,
                                curves[i].n, 1, NULL);
    snprintf(path, sizeof path, "%s/val_loss.svg", out_dir);
    if (st == RT_OK) {
        *val_points = trainer_svg_n_drawn(p);
        st = trainer_svg_write(p, path);
    }
    trainer_svg_destroy(p);
    p = NULL;
    if (st != RT_OK) return st;

    if ((st = trainer_svg_create("Size on disk vs validation perplexity", "file size (bytes, log)",
                                 "validation perplexity", 1, &p)) != RT_OK)
        return st;
    for (int i = 0; i < n_rows && st == RT_OK; i++) {
        const double x = (double)rows[i].r.file_bytes, y = rows[i].r.perplexity;
        const char *label = rows[i].name;
        st = trainer_svg_series(p, rows[i].name, &x, &y, 1, 0, &label);
    }
    double *fx = malloc((size_t)(n_rows > 0 ? n_rows : 1) * sizeof *fx);
    double *fy = malloc((size_t)(n_rows > 0 ? n_rows : 1) * sizeof *fy);
    if (st == RT_OK && (!fx || !fy)) st = rt_fail(RT_ERR_NOMEM, "report: out of memory");
    if (st == RT_OK) {
        const int nf = report_pareto(rows, n_rows, fx, fy);
        if (nf >= 2) st = trainer_svg_series(p, "Pareto front", fx, fy, nf, 2, NULL);
    }
    free(fx);
    free(fy);
    snprintf(path, sizeof path, "%s/size_ppl.svg", out_dir);
    if (st == RT_OK) st = trainer_svg_write(p, path);
    trainer_svg_destroy(p);
    return st;
}

/* -------------------------------------------------------------- command */

int trainer_cmd_report(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_report, argc, argv, &a);
    if (rc >= 0) return rc;
    const char *out_dir = cli_str(a, "out"), *data = cli_str(a, "data");
    const char *teacher = cli_str(a, "teacher"), *pairs = cli_str(a, "pairs");
    const char *tokenizer = cli_str(a, "tokenizer");
    double teacher_bias = NAN;
    const int bench = !cli_flag(a, "no-bench"), json = cli_flag(a, "json");
    int n_models = 0, n_curve_args = 0;
    const char *const *models = cli_list(a, "model", &n_models);
    const char *const *curve_args = cli_list(a, "curve", &n_curve_args);
    const int n_rows = n_models;
    report_row *rows = calloc((size_t)n_rows + 1, sizeof *rows);
    report_curve *curves = calloc((size_t)n_curve_args + 1, sizeof *curves);
    json_t *j = NULL;
    char *js = NULL;
    rt_status st = RT_OK;
    if (!rows || !curves) {
        st = rt_fail(RT_ERR_NOMEM, "report: out of memory for %d models", n_rows);
        goto cleanup;
    }
    /* Check every argument before the first (slow) evaluation. */
    for (int i = 0; i < n_models; i++)
        if ((st = split_named("model", models[i], rows[i].name, sizeof rows[i].name,
                              &rows[i].file)) != RT_OK)
            goto cleanup;
    for (int i = 0; i < n_curve_args; i++)
        if ((st = split_named("curve", curve_args[i], curves[i].name, sizeof curves[i].name,
                              &curves[i].run_dir)) != RT_OK)
            goto cleanup;
    for (int i = 0; i < n_curve_args; i++)
        if ((st = read_curve(&curves[i])) != RT_OK) goto cleanup;
    if ((st = check_inputs(data, teacher, rows, n_rows)) != RT_OK) goto cleanup;
    if ((st = mkdir_p(out_dir)) != RT_OK) goto cleanup;
    if (pairs && teacher) {
        trainer_bias_result b;
        fprintf(stderr, "report: bias probe of the teacher (%s)\n", teacher);
        if ((st = trainer_bias_probe(teacher, pairs, tokenizer, (int)cli_int(a, "batch"), &b)) !=
            RT_OK)
            goto cleanup;
        teacher_bias = b.score;
        trainer_bias_result_free(&b);
    }

    for (int i = 0; i < n_rows; i++) {
        report_row *w = &rows[i];
        trainer_eval_opts o = {.model = w->file,
                               .data = data,
                               .teacher = teacher,
                               .max_tokens = cli_int(a, "max-tokens"),
                               .batch = (int)cli_int(a, "batch"),
                               .progress = 1};
        fprintf(stderr, "report: evaluating %s (%s)\n", w->name, w->file);
        if ((st = trainer_eval(&o, &w->r)) != RT_OK) goto cleanup;
        w->bias = NAN;
        if (pairs) {
            trainer_bias_result b;
            if ((st = trainer_bias_probe(w->file, pairs, tokenizer, o.batch, &b)) != RT_OK)
                goto cleanup;
            w->bias = b.score;
            trainer_bias_result_free(&b);
        }
        w->bench_tps = NAN;
        if (bench) {
            w->bench_tps = run_bench(w->file, w->bench_note, sizeof w->bench_note);
            if (!isfinite(w->bench_tps))
                fprintf(stderr, "report: inference tokens/s of %s is n/a: %s\n", w->name,
                        w->bench_note);
        } else {
            snprintf(w->bench_note, sizeof w->bench_note, "not measured (--no-bench)");
        }
    }

    int val_points = 0;
    if ((st = write_plots(out_dir, rows, n_rows, curves, n_curve_args, &val_points)) != RT_OK)
        goto cleanup;
    if ((st = write_markdown(out_dir, argc, argv, data, teacher, pairs, teacher_bias, bench, rows,
                             n_rows, curves, n_curve_args, val_points)) != RT_OK)
        goto cleanup;
    j = report_json(out_dir, data, teacher, pairs, teacher_bias, rows, n_rows, curves,
                    n_curve_args);
    js = j ? json_dumps(j, JSON_PRESERVE_ORDER | JSON_INDENT(1) | JSON_REAL_PRECISION(10)) : NULL;
    if (!js) {
        st = rt_fail(RT_ERR_NOMEM, "report: out of memory for report.json");
        goto cleanup;
    }
    if ((st = write_file(out_dir, "report.json", js)) != RT_OK) goto cleanup;
    if (json) {
        free(js);
        js = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
        if (js) printf("%s\n", js);
    } else {
        write_table(stdout, rows, n_rows, pairs != NULL, teacher_bias);
    }
    fprintf(stderr, "report: wrote %s/report.md, report.json, val_loss.svg, size_ppl.svg\n",
            out_dir);

cleanup:
    for (int i = 0; curves && i < n_curve_args; i++) {
        free(curves[i].tokens);
        free(curves[i].loss);
    }
    free(curves);
    free(rows);
    free(js);
    json_decref(j);
    cli_args_free(a);
    return rt_report(st);
}
