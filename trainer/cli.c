/* The command-line parser (see cli.h) and the option table of every retort
 * command.
 *
 * The tables live here rather than next to each implementation so that
 * `retort <cmd> --help` and argument checking exist for every command from
 * the first build on, and an implementation that lands later parses with
 * the very table its help was generated from. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "config.h"

enum { HELP_WIDTH = 80, HELP_COL = 26 };

struct cli_args {
    const cli_spec *spec;
    int n_opts;
    int *count;               /* (n_opts) values given per option */
    const char ***values;     /* (n_opts) arrays of up to argc values */
    const char **positionals; /* (n_pos) */
    int n_pos;
};

/* ------------------------------------------------------------ helpers */

static int n_options(const cli_spec *s) {
    int n = 0;
    while (s->options && s->options[n].name) n++;
    return n;
}

static int find_option(const cli_spec *s, const char *name, size_t len) {
    for (int i = 0; s->options && s->options[i].name; i++)
        if (strlen(s->options[i].name) == len && strncmp(s->options[i].name, name, len) == 0)
            return i;
    return -1;
}

static bool bounded(const cli_option *o) { return o->min != 0 || o->max != 0; }

/* "[lo, hi]" or ">= lo" (words joined so the help never splits them). */
static void fmt_range(char *buf, size_t cap, const cli_option *o) {
    char lo[32], hi[32];
    cli_fmt_number(lo, sizeof lo, o->min);
    cli_fmt_number(hi, sizeof hi, o->max);
    if (isinf(o->max))
        snprintf(buf, cap, ">=" CLI_NBSP "%s", lo);
    else
        snprintf(buf, cap, "in [%s," CLI_NBSP "%s]", lo, hi);
}

static bool choice_ok(const char *choices, const char *v) {
    size_t len = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, v, n) == 0) return true;
        p += n + (bar ? 1 : 0);
    }
    return false;
}

/* "a|b|c" -> "a, b, c". */
static void choices_list(char *buf, size_t cap, const char *choices) {
    size_t k = 0;
    for (const char *p = choices; *p && k + 3 < cap; p++) {
        if (*p == '|') {
            buf[k++] = ',';
            buf[k++] = ' ';
        } else {
            buf[k++] = *p;
        }
    }
    buf[k] = '\0';
}

/* Validates one value of option `o`; the message names the command and option. */
static rt_status check_value(const cli_spec *s, const cli_option *o, const char *v) {
    char range[80];
    fmt_range(range, sizeof range, o);
    for (char *p = range; *p; p++)
        if (*p == CLI_NBSP[0]) *p = ' ';
    switch (o->type) {
    case CLI_BOOL:
    case CLI_STRING:
        break;
    case CLI_INT: {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno == ERANGE) {
            if (bounded(o))
                return rt_fail(RT_ERR_ARGS, "%s: --%s expects an integer %s, got '%s'", s->name,
                               o->name, range, v);
            return rt_fail(RT_ERR_ARGS, "%s: --%s expects an integer, got '%s'", s->name,
                           o->name, v);
        }
        if (bounded(o) && ((double)x < o->min || (double)x > o->max))
            return rt_fail(RT_ERR_ARGS, "%s: --%s must be %s, got %s", s->name, o->name, range,
                           v);
        break;
    }
    case CLI_REAL: {
        char *end = NULL;
        errno = 0;
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno == ERANGE || !isfinite(x)) {
            if (bounded(o))
                return rt_fail(RT_ERR_ARGS, "%s: --%s expects a number %s, got '%s'", s->name,
                               o->name, range, v);
            return rt_fail(RT_ERR_ARGS, "%s: --%s expects a number, got '%s'", s->name,
                           o->name, v);
        }
        if (bounded(o) && (x < o->min || x > o->max))
            return rt_fail(RT_ERR_ARGS, "%s: --%s must be %s, got %s", s->name, o->name, range,
                           v);
        break;
    }
    case CLI_CHOICE:
        if (!choice_ok(o->choices, v)) {
            char list[256];
            choices_list(list, sizeof list, o->choices);
            return rt_fail(RT_ERR_ARGS, "%s: --%s must be one of %s, got '%s'", s->name,
                           o->name, list, v);
        }
        break;
    }
    if (o->check && o->check(v) != RT_OK) {
        char why[768];
        snprintf(why, sizeof why, "%s", rt_last_error());
        return rt_fail(RT_ERR_ARGS, "%s: --%s: %s", s->name, o->name, why);
    }
    return RT_OK;
}

static bool is_help(const char *a) { return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0; }

/* "--x" (not the bare "--" terminator) and "-x" look like options; "-" and
 * negative numbers ("-3", "-0.5") are values. */
static bool looks_like_option(const char *a) {
    if (a[0] != '-' || a[1] == '\0') return false;
    if (a[1] == '-') return a[2] != '\0';
    return !(a[1] >= '0' && a[1] <= '9') && a[1] != '.';
}

static rt_status unknown_option(const cli_spec *s, const char *arg, size_t len) {
    const char *names[64];
    int n = 0;
    for (int i = 0; s->options && s->options[i].name && n < 64; i++)
        names[n++] = s->options[i].name;
    char word[128];
    const char *bare = arg + (arg[1] == '-' ? 2 : 1);
    size_t blen = len - (size_t)(bare - arg);
    snprintf(word, sizeof word, "%.*s", (int)(blen < sizeof word ? blen : sizeof word - 1), bare);
    const char *near = cli_closest(word, names, n);
    if (near)
        return rt_fail(RT_ERR_ARGS, "%s: unknown option '%.*s' (did you mean --%s?)", s->name,
                       (int)len, arg, near);
    return rt_fail(RT_ERR_ARGS, "%s: unknown option '%.*s' (see 'retort %s --help')", s->name,
                   (int)len, arg, s->name);
}

/* ------------------------------------------------------------- parser */

void cli_args_free(cli_args *a) {
    if (!a) return;
    if (a->values)
        for (int i = 0; i < a->n_opts; i++) free(a->values[i]);
    free(a->values);
    free(a->count);
    free(a->positionals);
    free(a);
}

static rt_status add_value(cli_args *a, int opt, const char *v, int cap) {
    const cli_option *o = &a->spec->options[opt];
    if (!a->values[opt]) {
        a->values[opt] = calloc((size_t)cap, sizeof(char *));
        if (!a->values[opt]) return rt_fail(RT_ERR_NOMEM, "out of memory parsing arguments");
    }
    if (a->count[opt] > 0 && !(o->flags & (CLI_REPEAT | CLI_MANY)) && o->type != CLI_BOOL)
        return rt_fail(RT_ERR_ARGS, "%s: --%s given twice ('%s' and '%s'); give it once",
                       a->spec->name, o->name, a->values[opt][a->count[opt] - 1], v);
    if (o->type != CLI_BOOL) RT_TRY(check_value(a->spec, o, v));
    RT_ASSERT(a->count[opt] < cap);
    a->values[opt][a->count[opt]++] = v;
    return RT_OK;
}

rt_status cli_parse_args(const cli_spec *spec, int argc, char **argv, cli_args **out,
                         bool *help) {
    rt_status st = RT_OK;
    cli_args *a = NULL;
    *out = NULL;
    *help = false;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (is_help(argv[i])) {
            *help = true;
            return RT_OK;
        }

    const int cap = argc > 1 ? argc : 1;
    a = calloc(1, sizeof *a);
    if (!a) return rt_fail(RT_ERR_NOMEM, "out of memory parsing arguments");
    a->spec = spec;
    a->n_opts = n_options(spec);
    a->count = calloc((size_t)a->n_opts + 1, sizeof(int));
    a->values = calloc((size_t)a->n_opts + 1, sizeof(char **));
    a->positionals = calloc((size_t)cap, sizeof(char *));
    if (!a->count || !a->values || !a->positionals) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory parsing arguments");
        goto cleanup;
    }

    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || !looks_like_option(arg)) {
            if (!only_positional && strcmp(arg, "--") == 0) {
                only_positional = true;
                continue;
            }
            if (spec->max_positional >= 0 && a->n_pos >= spec->max_positional) {
                if (spec->max_positional == 0)
                    st = rt_fail(RT_ERR_ARGS,
                                 "%s: unexpected argument '%s' (it takes options only)",
                                 spec->name, arg);
                else
                    st = rt_fail(RT_ERR_ARGS, "%s: unexpected argument '%s' (takes at most %d %s)",
                                 spec->name, arg, spec->max_positional, spec->positional);
                goto cleanup;
            }
            a->positionals[a->n_pos++] = arg;
            continue;
        }
        if (arg[1] != '-') { /* single-dash options other than -h do not exist */
            st = unknown_option(spec, arg, strlen(arg));
            goto cleanup;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_option(spec, name, len);
        if (k < 0) {
            st = unknown_option(spec, arg, len + 2);
            goto cleanup;
        }
        const cli_option *o = &spec->options[k];
        if (o->type == CLI_BOOL) {
            if (eq) {
                st = rt_fail(RT_ERR_ARGS, "%s: --%s is a flag and takes no value (got '%s')",
                             spec->name, o->name, eq + 1);
                goto cleanup;
            }
            if ((st = add_value(a, k, "true", cap)) != RT_OK) goto cleanup;
            continue;
        }
        if (eq) {
            if ((st = add_value(a, k, eq + 1, cap)) != RT_OK) goto cleanup;
            continue;
        }
        bool next_is_value = i + 1 < argc && !looks_like_option(argv[i + 1]) &&
                             strcmp(argv[i + 1], "--") != 0;
        if (!next_is_value) {
            if (o->flags & CLI_OPTIONAL_VALUE) {
                if ((st = add_value(a, k, o->implicit, cap)) != RT_OK) goto cleanup;
                continue;
            }
            if (i + 1 < argc && strcmp(argv[i + 1], "--") != 0)
                st = rt_fail(RT_ERR_ARGS,
                             "%s: --%s needs a value (%s) but is followed by '%s' "
                             "(write --%s=VALUE for a value that starts with '-')",
                             spec->name, o->name, o->metavar, argv[i + 1], o->name);
            else
                st = rt_fail(RT_ERR_ARGS, "%s: --%s needs a value (%s)", spec->name, o->name,
                             o->metavar);
            goto cleanup;
        }
        if ((st = add_value(a, k, argv[++i], cap)) != RT_OK) goto cleanup;
        if (o->flags & CLI_MANY)
            while (i + 1 < argc && !looks_like_option(argv[i + 1]) &&
                   strcmp(argv[i + 1], "--") != 0)
                if ((st = add_value(a, k, argv[++i], cap)) != RT_OK) goto cleanup;
    }

    for (int k = 0; k < a->n_opts; k++) {
        const cli_option *o = &spec->options[k];
        if ((o->flags & CLI_REQUIRED) && a->count[k] == 0) {
            st = rt_fail(RT_ERR_ARGS,
                         "%s: missing required option --%s %s%s (see 'retort %s --help')",
                         spec->name, o->name, o->metavar ? o->metavar : "",
                         (o->flags & CLI_MANY) ? "..." : "", spec->name);
            goto cleanup;
        }
    }
    if (a->n_pos < spec->min_positional) {
        st = rt_fail(RT_ERR_ARGS, "%s: missing %s (see 'retort %s --help')", spec->name,
                     spec->positional, spec->name);
        goto cleanup;
    }
    *out = a;
    a = NULL;
cleanup:
    cli_args_free(a);
    return st;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args **out) {
    bool help = false;
    rt_status st = cli_parse_args(spec, argc, argv, out, &help);
    if (st != RT_OK) return rt_report(st);
    if (help) {
        cli_print_help(spec, stdout);
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------ getters */

static int option_index(const cli_args *a, const char *name) {
    int k = find_option(a->spec, name, strlen(name));
    RT_ASSERT(k >= 0); /* a command asked for an option its table lacks */
    return k;
}

bool cli_has(const cli_args *a, const char *name) { return a->count[option_index(a, name)] > 0; }

const char *cli_str(const cli_args *a, const char *name) {
    int k = option_index(a, name);
    if (a->count[k] > 0) return a->values[k][a->count[k] - 1];
    return a->spec->options[k].def;
}

int64_t cli_int(const cli_args *a, const char *name) {
    const char *v = cli_str(a, name);
    RT_ASSERT(v != NULL); /* neither given nor defaulted: check cli_has first */
    RT_ASSERT(a->spec->options[option_index(a, name)].type == CLI_INT);
    return strtoll(v, NULL, 10);
}

double cli_real(const cli_args *a, const char *name) {
    const char *v = cli_str(a, name);
    RT_ASSERT(v != NULL);
    RT_ASSERT(a->spec->options[option_index(a, name)].type == CLI_REAL);
    return strtod(v, NULL);
}

bool cli_flag(const cli_args *a, const char *name) {
    int k = option_index(a, name);
    RT_ASSERT(a->spec->options[k].type == CLI_BOOL);
    return a->count[k] > 0;
}

const char *const *cli_list(const cli_args *a, const char *name, int *n) {
    int k = option_index(a, name);
    *n = a->count[k];
    return a->values[k];
}

const char *const *cli_positionals(const cli_args *a, int *n) {
    *n = a->n_pos;
    return a->positionals;
}

/* --------------------------------------------------------------- help */

/* The synopsis word of one option: "--out DIR", "[--json]", "[--set S.K=V]...". */
static void synopsis_word(const cli_option *o, char *buf, size_t cap) {
    char core[160];
    if (o->type == CLI_BOOL)
        snprintf(core, sizeof core, "--%s", o->name);
    else if (o->flags & CLI_OPTIONAL_VALUE)
        snprintf(core, sizeof core, "--%s [%s]", o->name, o->metavar);
    else
        snprintf(core, sizeof core, "--%s %s%s", o->name, o->metavar,
                 (o->flags & CLI_MANY) ? "..." : "");
    if (o->flags & CLI_REQUIRED)
        snprintf(buf, cap, "%s", core);
    else
        snprintf(buf, cap, "[%s]%s", core, (o->flags & CLI_REPEAT) ? "..." : "");
}

static void print_synopsis(const cli_spec *s, FILE *f) {
    char lead[64];
    int col = snprintf(lead, sizeof lead, "usage: retort %s", s->name);
    fputs(lead, f);
    const int indent = col + 1;
    char word[256];
    int n = n_options(s);
    /* Positionals first, then required options, then optional ones. */
    for (int pass = 0; pass < 3; pass++) {
        int count = pass == 0 ? (s->positional ? 1 : 0) : n;
        for (int i = 0; i < count; i++) {
            if (pass == 0) {
                if (s->min_positional > 0)
                    snprintf(word, sizeof word, "%s%s", s->positional,
                             s->max_positional != 1 ? "..." : "");
                else
                    snprintf(word, sizeof word, "[%s]%s", s->positional,
                             s->max_positional != 1 ? "..." : "");
            } else {
                const cli_option *o = &s->options[i];
                if (((o->flags & CLI_REQUIRED) != 0) != (pass == 1)) continue;
                synopsis_word(o, word, sizeof word);
            }
            int len = (int)strlen(word);
            if (col + 1 + len > HELP_WIDTH && col > indent) {
                fprintf(f, "\n%*s", indent - 1, "");
                col = indent - 1;
            }
            fprintf(f, " %s", word);
            col += 1 + len;
        }
    }
    fputc('\n', f);
}

static void print_entry(FILE *f, const char *left, const char *text) {
    int col = fprintf(f, "  %s", left);
    if (col + 2 > HELP_COL) {
        fputc('\n', f);
        col = 0;
    }
    cli_wrap(f, text, col, HELP_COL, HELP_WIDTH);
}

void cli_print_help(const cli_spec *s, FILE *f) {
    print_synopsis(s, f);
    if (s->description) {
        fputc('\n', f);
        cli_wrap(f, s->description, 0, 0, HELP_WIDTH);
    }
    char left[160], text[1536], range[80], list[256];
    if (s->positional && s->positional_help) {
        fprintf(f, "\narguments:\n");
        print_entry(f, s->positional, s->positional_help);
    }
    fprintf(f, "\noptions:\n");
    for (int i = 0; s->options && s->options[i].name; i++) {
        const cli_option *o = &s->options[i];
        if (o->type == CLI_BOOL)
            snprintf(left, sizeof left, "--%s", o->name);
        else if (o->flags & CLI_OPTIONAL_VALUE)
            snprintf(left, sizeof left, "--%s [%s]", o->name, o->metavar);
        else
            snprintf(left, sizeof left, "--%s %s%s", o->name, o->metavar,
                     (o->flags & CLI_MANY) ? "..." : "");
        size_t k = (size_t)snprintf(text, sizeof text, "%s", o->help ? o->help : "");
        fmt_range(range, sizeof range, o);
        if (o->type == CLI_INT && bounded(o) && k < sizeof text)
            k += (size_t)snprintf(text + k, sizeof text - k, " An integer %s.", range);
        if (o->type == CLI_REAL && bounded(o) && k < sizeof text)
            k += (size_t)snprintf(text + k, sizeof text - k, " A number %s.", range);
        if (o->type == CLI_CHOICE && k < sizeof text) {
            choices_list(list, sizeof list, o->choices);
            k += (size_t)snprintf(text + k, sizeof text - k, " One of: %s.", list);
        }
        if ((o->flags & CLI_REPEAT) && !(o->flags & CLI_MANY) && k < sizeof text)
            k += (size_t)snprintf(text + k, sizeof text - k, " Repeatable.");
        if (o->def && k < sizeof text)
            k += (size_t)snprintf(text + k, sizeof text - k, " Default: %s.",
                                  o->def[0] ? o->def : "\"\"");
        if ((o->flags & CLI_REQUIRED) && k < sizeof text)
            snprintf(text + k, sizeof text - k, " Required.");
        print_entry(f, left, text);
    }
    print_entry(f, "-h, --help", "Show this help and exit.");
    if (s->epilog) fprintf(f, "\n%s", s->epilog);
    if (s->extra_help) {
        fputc('\n', f);
        s->extra_help(f);
    }
}

/* ------------------------------------------------ the commands' tables */

static rt_status check_fraction(const char *v) {
    double x = strtod(v, NULL);
    if (!(x >= 0.0 && x < 1.0))
        return rt_fail(RT_ERR_ARGS, "expects a fraction in [0, 1), got %s", v);
    return RT_OK;
}

rt_status trainer_check_prune_method(const char *v) {
    static const char *const named[] = {"magnitude", "wanda", "heads", "ffn", "lowrank"};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(v, named[i]) == 0) return RT_OK;
    int n = 0, m = 0;
    if (strchr(v, ':') && trainer_parse_nm(v, &n, &m) == RT_OK) return RT_OK;
    if (strchr(v, ':')) return RT_ERR_ARGS; /* trainer_parse_nm said what is wrong */
    return rt_fail(RT_ERR_ARGS, "expects magnitude, wanda, heads, ffn, lowrank or N:M (e.g. 2:4), "
                   "got '%s'", v);
}

static const cli_option prepare_options[] = {
    {.name = "input", .type = CLI_STRING, .flags = CLI_REQUIRED | CLI_MANY, .metavar = "PATH",
     .help = "Text files, or folders walked recursively in sorted order (hidden names, *.dat "
             "and files containing NUL bytes are skipped). List several paths after one "
             "--input, or repeat it."},
    {.name = "out", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "DIR",
     .help = "Output folder, created if missing. Each output is written to a temporary file "
             "and renamed, so an interrupted run never leaves a half-written file."},
    {.name = "vocab-size", .type = CLI_INT, .metavar = "N", .def = "4096", .min = 257,
     .max = 1048576,
     .help = "Size of the tokenizer to train: 256 byte tokens, the learned merges and "
             "<|endoftext|>. It may come out smaller when the text has no more pairs to merge. "
             "Ignored with --tokenizer."},
    {.name = "val-fraction", .type = CLI_REAL, .metavar = "F", .def = "0.05",
     .check = check_fraction,
     .help = "Share of documents held out for val.h5, chosen by a fixed hash of each "
             "document's position, so reruns split the same way. A fraction in [0, 1)."},
    {.name = "tokenizer", .type = CLI_STRING, .metavar = "DIR",
     .help = "Encode with the tokenizer in DIR (vocab.json + merges.txt, GPT-2 format) "
             "instead of training one, e.g. to add data for an existing model."},
    {.name = "quiet", .type = CLI_BOOL,
     .help = "Print no progress or summary on stderr (errors are still printed)."},
    {0},
};

const cli_spec trainer_spec_prepare = {
    .name = "prepare",
    .description =
        "Turn text into what training reads: a byte-level BPE tokenizer (DIR/vocab.json and "
        "DIR/merges.txt, the GPT-2 / Hugging Face format) and two token shards, DIR/train.h5 "
        "and DIR/val.h5 (HDF5, dataset /tokens).\n\n"
        "Every file is one document, except that a line holding only \"%\" (the fortune(6) "
        "format) also ends a document; whitespace-only documents are dropped. Each document "
        "is encoded followed by <|endoftext|>. The tokenizer is trained on the train "
        "documents only.",
    .options = prepare_options,
    .max_positional = 0,
    .epilog = "examples:\n"
              "  retort prepare --input /usr/share/games/fortunes --out data/\n"
              "  retort prepare --input corpus/*.txt --out data/ --vocab-size 8192\n"
              "  retort prepare --input more/ --out data2/ --tokenizer data/\n",
};

static const cli_option train_options[] = {
    {.name = "config", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "FILE",
     .help = "INI file with the run's settings (sections and keys below; an unknown key is an "
             "error)."},
    {.name = "set", .type = CLI_STRING, .flags = CLI_REPEAT, .metavar = "S.K=V",
     .help = "Override one key after the file is read, e.g. --set train.lr=3e-4. Applied in "
             "command-line order."},
    {.name = "resume", .type = CLI_STRING, .flags = CLI_OPTIONAL_VALUE, .metavar = "PATH|latest",
     .implicit = "latest",
     .help = "Continue from a training checkpoint: PATH, or latest (what a bare --resume "
             "means) for the newest checkpoint in train.run_dir. Weights, optimizer state, "
             "step, random state and data position are restored, so the run continues as if "
             "never stopped; the student rank count may change if train.batch stays the same."},
    {0},
};

const cli_spec trainer_spec_train = {
    .name = "train",
    .description =
        "Train a model with the settings of an INI config. With distill.teachers = 0 this is "
        "plain next-token training (that is how a teacher is pretrained). With K > 0 teacher "
        "ranks, run it under mpirun: the first K ranks run the frozen teacher distill.teacher "
        "and stream its soft labels (and feature maps) to the other ranks, which train the "
        "student on them; the global batch train.batch is split over the student ranks.\n\n"
        "Rank 0 prints progress (step, loss, tokens/s, ETA) and appends one JSON object per "
        "logged step to RUN_DIR/metrics.jsonl. Checkpoints go to RUN_DIR/step_NNNNNN.h5 and "
        "RUN_DIR/final.h5. One run per RUN_DIR: a second one is refused, naming the pid and "
        "host holding RUN_DIR/.lock.\n\n"
        "SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 on any rank stops the run at the next step "
        "boundary that every student agrees on: a checkpoint of that step is saved, every rank "
        "exits with code 3, and `--resume latest` continues as if never stopped. mpirun turns "
        "its own SIGTERM/SIGINT into a kill within a second, so send mpirun SIGUSR1 (which it "
        "forwards) or use launch/mpirun.sh, which does that for you.",
    .options = train_options,
    .max_positional = 0,
    .epilog = "examples:\n"
              "  mpirun -np 1 retort train --config teacher.ini\n"
              "  mpirun -np 4 retort train --config distill.ini --set distill.teachers=1\n"
              "  retort train --config teacher.ini --set train.steps=50 --set train.lr=1e-3\n"
              "  retort train --config distill.ini --resume\n",
    .extra_help = trainer_config_print_help,
};

static const cli_option label_options[] = {
    {.name = "config", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "FILE",
     .help = "The distillation config the labels are for (the same file `retort train` will "
             "read with distill.labels_dir = DIR)."},
    {.name = "set", .type = CLI_STRING, .flags = CLI_REPEAT, .metavar = "S.K=V",
     .help = "Override one key after the file is read, as for `retort train`."},
    {.name = "out", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "DIR",
     .help = "The cache folder: index.json and chunk_NNNNNN.bin files. Created when missing; "
             "when it holds an unfinished cache for the same config, the chunks already "
             "written are kept and only the rest is computed."},
    {.name = "chunk-steps", .type = CLI_INT, .metavar = "N", .def = "25", .min = 1,
     .max = 1000000, .help = "Training steps per chunk file (the unit of work and of resume)."},
    {0},
};

const cli_spec trainer_spec_label = {
    .name = "label",
    .description =
        "Run the teacher distill.teacher over the training windows of a run (train.steps steps "
        "of train.batch rows, in the order the run's sampler gives them) and write its soft "
        "labels in the configured scheme (distill.labels, topk, samples, temperature) to an "
        "offline cache: zstd-compressed records in chunk files with an index and checksums. "
        "`retort train` with distill.labels_dir = DIR and distill.teachers = 0 then trains "
        "from it with no teacher ranks, and gives the same weights as online distillation "
        "with one student rank. Every rank is a teacher; chunks are dealt round-robin. A "
        "killed run is resumed by running it again.",
    .options = label_options,
    .max_positional = 0,
    .epilog = "examples:\n"
              "  retort label --config distill.ini --out labels/\n"
              "  mpirun -np 4 retort label --config distill.ini --out labels/\n"
              "  retort train --config distill.ini --set distill.teachers=0 "
              "--set distill.labels_dir=labels/\n",
};

static const cli_option eval_options[] = {
    {.name = "model", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "CKPT",
     .help = "Checkpoint to evaluate (training or deploy file)."},
    {.name = "data", .type = CLI_STRING, .metavar = "SHARD",
     .help = "Token shard written by `retort prepare`, e.g. data/val.h5. Its vocabulary size "
             "must match the model's. Needed unless --pairs is given."},
    {.name = "pairs", .type = CLI_STRING, .metavar = "CSV",
     .help = "Bias probe: sentence pairs in the CrowS-Pairs CSV layout (a header row naming "
             "the columns sent_more, sent_less and bias_type; other columns are ignored). "
             "Reports, per bias_type and overall, the share of pairs whose sent_more gets the "
             "higher log-likelihood (the sum of its token log-probs after <|endoftext|>), with "
             "the counts; 0.5 means no preference. To use CrowS-Pairs itself, download "
             "crows_pairs_anonymized.csv from its authors and pass it here; "
             "docs/pairs_illustrative.csv is a small illustrative file, not a benchmark."},
    {.name = "tokenizer", .type = CLI_STRING, .metavar = "DIR",
     .help = "Tokenizer folder for --pairs (default: the one the model file records)."},
    {.name = "max-tokens", .type = CLI_INT, .metavar = "N", .def = "0", .min = 0, .max = INFINITY,
     .help = "Evaluate only the first N tokens of the shard (0 = all of it)."},
    {.name = "json", .type = CLI_BOOL,
     .help = "Print the result as one JSON object on stdout instead of text: model, data, "
             "loss, perplexity, tokens, windows, ece, agreement (with --teacher), params, "
             "file_bytes, seconds, tokens_per_s; with --pairs also bias (pairs, more, score, "
             "mean_logp_diff, and the same per bias type under types)."},
    {.name = "teacher", .type = CLI_STRING, .metavar = "CKPT",
     .help = "Also measure the top-1 agreement with this model (same vocabulary and seq_len; "
             "any other shape) on the same windows."},
    {.name = "batch", .type = CLI_INT, .metavar = "N", .def = "8", .min = 1, .max = 4096,
     .help = "Windows per forward pass (memory: N * seq_len * vocab floats of logits)."},
    {0},
};

const cli_spec trainer_spec_eval = {
    .name = "eval",
    .description =
        "Measure a checkpoint's next-token loss and perplexity on a token shard. The tokens "
        "are cut into consecutive, non-overlapping windows of seq_len tokens; window i "
        "predicts tokens i*T+1 .. i*T+T from tokens i*T .. i*T+T-1, and a final partial "
        "window is dropped. The loss is the mean cross-entropy over all predicted tokens; "
        "perplexity is exp(loss).\n\n"
        "Also reported: the expected calibration error (ECE: 15 equal-width bins of the top-1 "
        "softmax probability, the count-weighted mean of |accuracy - confidence| per bin) and "
        "the speed of the forward passes (loading excluded). Long evaluations print progress "
        "on stderr.",
    .options = eval_options,
    .max_positional = 0,
    .epilog = "examples:\n  retort eval --model runs/s/final.h5 --data data/val.h5 --json\n"
              "  retort eval --model student.int8.h5 --pairs crows_pairs_anonymized.csv\n",
};

static const cli_option generate_options[] = {
    {.name = "model", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "CKPT",
     .help = "Checkpoint to sample from (training or deploy file)."},
    {.name = "prompt", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "TEXT",
     .help = "Text to continue."},
    {.name = "max-new-tokens", .type = CLI_INT, .metavar = "N", .def = "128", .min = 1,
     .max = 1000000, .help = "Tokens to generate (fewer if <|endoftext|> comes first)."},
    {.name = "temperature", .type = CLI_REAL, .metavar = "T", .def = "0.8", .min = 0,
     .max = 100,
     .help = "Divide the logits by T before sampling; 0 means greedy (always the most likely "
             "token)."},
    {.name = "top-k", .type = CLI_INT, .metavar = "K", .def = "40", .min = 0, .max = 16777216,
     .help = "Sample among the K most likely tokens only (0 = the whole vocabulary)."},
    {.name = "seed", .type = CLI_INT, .metavar = "S", .def = "1234",
     .help = "Random seed; the same seed, model and prompt give the same text."},
    {.name = "tokenizer", .type = CLI_STRING, .metavar = "DIR", .def = "data/",
     .help = "Folder with the vocab.json and merges.txt the model was trained with."},
    {.name = "context-shift", .type = CLI_BOOL,
     .help = "When the context (seq_len tokens) is full, go on from its last half (one "
             "prompt step recomputes it) instead of stopping; said on stderr."},
    {.name = "json", .type = CLI_BOOL,
     .help = "Print one JSON object instead of the text: prompt_ids, ids (the new tokens), "
             "logprobs (the model's log-probability of each new token, before temperature) "
             "and text."},
    {0},
};

const cli_spec trainer_spec_generate = {
    .name = "generate",
    .description = "Continue a prompt with text sampled from a checkpoint, printing tokens to "
                   "stdout as they are produced.",
    .options = generate_options,
    .max_positional = 0,
    .epilog = "example:\n"
              "  retort generate --model student.int8.h5 --prompt \"Once upon a time\"\n",
};

static const cli_option prune_options[] = {
    {.name = "model", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "CKPT",
     .help = "Training checkpoint to prune."},
    {.name = "method", .type = CLI_STRING, .flags = CLI_REQUIRED,
     .metavar = "magnitude|wanda|N:M|heads|ffn|lowrank", .check = trainer_check_prune_method,
     .help = "magnitude: zero the smallest |w| in each matmul weight matrix. wanda: zero the "
             "smallest |w| * ||x|| in each output (a column of the stored [in, out] matrix), "
             "with the input norms ||x|| measured on --calib, block by block. N:M (e.g. 2:4): "
             "keep the N largest |w| of every M consecutive inputs of each output. heads: REMOVE "
             "whole attention heads as Hugging Face's prune_heads does (the same count in "
             "every layer: their q/k/v columns and c_attn bias entries and their attn.c_proj "
             "rows go), writing a model with a smaller n_head and the same head_dim (d_head), "
             "so an attention width below d_model. ffn: REMOVE whole MLP hidden units (the same count "
             "in every layer), writing a model with a smaller d_ff that is smaller and faster. "
             "lowrank: REPLACE each linear weight W [in, out] by factors [in, r] x [r, out] "
             "from a truncated SVD (the best rank-r approximation), rank from --rank, "
             "--rank-ratio, --energy or --param-ratio, the same in every layer; a linear whose factors would "
             "not be smaller stays dense. "
             "Only the matmul weights of the blocks (attn.c_attn, attn.c_proj, mlp.c_fc, "
             "mlp.c_proj) are pruned; embeddings, LayerNorms and biases never are (except the "
             "c_attn bias entries of removed heads)."},
    {.name = "rank", .type = CLI_INT, .metavar = "R", .min = 1, .max = 1048576,
     .help = "lowrank: the rank r of every factored linear (at most min(in, out) of each)."},
    {.name = "rank-ratio", .type = CLI_REAL, .metavar = "X", .min = 1e-9, .max = INFINITY,
     .help = "lowrank: r = round(X * min(in, out)) per linear, X in (0, 1]."},
    {.name = "energy", .type = CLI_REAL, .metavar = "E", .min = 1e-9, .max = INFINITY,
     .help = "lowrank: the smallest r that keeps the share E in (0, 1] of the squared "
             "Frobenius norm (the sum of squared singular values) of that linear's weight in "
             "every layer."},
    {.name = "param-ratio", .type = CLI_REAL, .metavar = "P", .min = 1e-9, .max = INFINITY,
     .help = "lowrank: the largest r whose factors hold at most the share P in (0, 1] of the "
             "dense weight's parameters: r = floor(P * in * out / (in + out))."},
    {.name = "linears", .type = CLI_STRING, .metavar = "LIST", .def = "all",
     .help = "lowrank: the linears to factor, comma-separated from attn.c_attn, attn.c_proj, "
             "mlp.c_fc, mlp.c_proj, or all."},
    {.name = "sparsity", .type = CLI_REAL, .metavar = "S", .def = "0.5", .check = check_fraction,
     .help = "Fraction of weights (or of heads / MLP units per layer) to remove, in [0, 1); "
             "the count is rounded to the nearest integer and heads/ffn keep at least one per "
             "layer. N:M sets its own sparsity (1 - N/M)."},
    {.name = "calib", .type = CLI_STRING, .metavar = "SHARD",
     .help = "Token shard for calibration activations (wanda needs it; heads and ffn use it to "
             "rank units by their activation norms when given; lowrank then factors each "
             "weight weighted by its inputs' RMS, ASVD-style; magnitude and N:M ignore it)."},
    {.name = "calib-tokens", .type = CLI_INT, .metavar = "N", .def = "16384", .min = 1,
     .max = 1e9,
     .help = "Calibration tokens: this many, rounded up to whole seq_len windows spread evenly "
             "over the shard (fewer when the shard is shorter). wanda runs one pass over them "
             "per block."},
    {.name = "out", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "CKPT",
     .help = "Checkpoint to write (atomically): the pruned weights, one uint8 mask per pruned "
             "tensor under /prune/mask (1 = kept; heads and ffn write none, their units are "
             "gone) and the method and sparsity under /prune, "
             "without optimizer state, ready for fine-tuning with --set train.init=CKPT."},
    {.name = "json", .type = CLI_BOOL,
     .help = "Print one JSON object (per-tensor and per-layer sparsity, totals, parameter "
             "counts, file sizes) instead of the table."},
    {0},
};

const cli_spec trainer_spec_prune = {
    .name = "prune",
    .description = "Prune a trained model after training and write the result as a new "
                   "checkpoint, then print the sparsity of every pruned tensor and layer, the "
                   "totals over prunable weights and over all parameters, the parameter count "
                   "before and after, and the file size. Attention heads (heads) and MLP "
                   "units (ffn) are removed, the other methods mask.",
    .options = prune_options,
    .max_positional = 0,
    .epilog = "example:\n"
              "  retort prune --model runs/s/final.h5 --method wanda --sparsity 0.5 \\\n"
              "      --calib data/train.h5 --out pruned.h5\n"
              "  retort prune --model runs/s/final.h5 --method ffn --sparsity 0.25 --out small.h5\n"
              "  retort prune --model runs/s/final.h5 --method lowrank --rank-ratio 0.25 --out lr.h5\n",
};

static const cli_option export_options[] = {
    {.name = "model", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "CKPT",
     .help = "Model to export: a training checkpoint, a deploy file (an int8 one is "
             "dequantized for hf and gguf) or a Hugging Face folder."},
    {.name = "format", .type = CLI_CHOICE, .flags = CLI_REQUIRED, .metavar = "FORMAT",
     .choices = "deploy|hf|gguf",
     .help = "deploy: only what inference needs (no optimizer or training state). hf: a "
             "Hugging Face folder (--out DIR) that transformers' GPT2LMHeadModel and "
             "AutoTokenizer load. gguf: one GGUF file (--out FILE.gguf) for llama.cpp, Ollama "
             "or LM Studio, the tokenizer embedded. A model whose heads were removed is written "
             "with them back as zeros, which computes exactly the same."},
    {.name = "dtype", .type = CLI_CHOICE, .metavar = "f32|f16|bf16", .def = "f32",
     .choices = "f32|f16|bf16", .help = "Weight type of model.safetensors (--format hf)."},
    {.name = "type", .type = CLI_CHOICE, .metavar = "f32|f16|q8_0", .def = "f32",
     .choices = "f32|f16|q8_0",
     .help = "Type of the matrices (--format gguf): q8_0 is llama.cpp's 8-bit blocks of 32 "
             "with one f16 scale (a matrix whose rows are not a multiple of 32 long is written "
             "f16). Vectors are always f32."},
    {.name = "int8", .type = CLI_BOOL,
     .help = "Store matmul weights as int8 with one scale per output channel (QAT scales "
             "from the checkpoint when it has them)."},
    {.name = "act", .type = CLI_CHOICE, .metavar = "static|dynamic", .def = "static",
     .choices = "static|dynamic",
     .help = "int8 activations. static: one scale per linear layer's input, fixed in the "
             "file (from QAT or --calib). dynamic: no stored activation scales and no "
             "calibration; at run time every token's input row to a linear layer gets its "
             "own scale max|x|/127."},
    {.name = "codebook", .type = CLI_CHOICE, .metavar = "16|256", .choices = "16|256",
     .help = "Weight sharing (Deep Compression): cluster every linear weight with k-means "
             "into 16 or 256 shared values and store a 4- or 8-bit index per weight plus "
             "the codebook; the rest stays f32 and the reader decodes at load (not with "
             "--int8)."},
    {.name = "codebook-per", .type = CLI_CHOICE, .metavar = "tensor|channel", .def = "tensor",
     .choices = "tensor|channel",
     .help = "One codebook per linear weight, or one per output channel (k floats more per "
             "column: for small layers and --codebook 16)."},
    {.name = "calib", .type = CLI_STRING, .metavar = "SHARD",
     .help = "Token shard to calibrate activation ranges for --int8 when the checkpoint has "
             "no QAT scales."},
    {.name = "calib-windows", .type = CLI_INT, .metavar = "N", .def = "32", .min = 1,
     .max = 1000000,
     .help = "Windows of seq_len tokens of --calib to observe (running min/max of every "
             "linear layer's input)."},
    {.name = "tokenizer", .type = CLI_STRING, .metavar = "DIR",
     .help = "Tokenizer folder (vocab.json + merges.txt) to record in the deploy file, or to "
             "copy into the hf folder / embed in the gguf file (default: [data] tokenizer of "
             "the checkpoint's config, the one a deploy file records, or the Hugging Face "
             "folder itself)."},
    {.name = "out", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "PATH",
     .help = "Deploy file, hf folder or gguf file to write (files atomically)."},
    {0},
};

const cli_spec trainer_spec_export = {
    .name = "export",
    .description = "Write a model for inference: a deploy file (the model alone, readable by "
                   "`retort eval`, `retort generate`, `retort info` and any HDF5 reader), a "
                   "Hugging Face folder, or a GGUF file.",
    .options = export_options,
    .max_positional = 0,
    .epilog = "example:\n"
              "  retort export --model pruned.h5 --format deploy --int8 --out student.int8.h5\n"
              "  retort export --model runs/s/final.h5 --format hf --out student-hf/\n"
              "  retort export --model runs/s/final.h5 --format gguf --type q8_0 --out s.gguf\n"
              "  retort export --model final.h5 --format deploy --int8 --act dynamic --out d.h5\n"
              "  retort export --model final.h5 --format deploy --codebook 16 --out cb16.h5\n",
};

static const cli_option info_options[] = {
    {.name = "json", .type = CLI_BOOL, .help = "Print one JSON object instead of text."},
    {.name = "verify", .type = CLI_BOOL,
     .help = "Also read every dataset and check its checksum; prints OK or the first bad "
             "dataset and exits non-zero on a failure."},
    {0},
};

const cli_spec trainer_spec_info = {
    .name = "info",
    .description = "Describe a checkpoint or deploy file without building a model: kind, "
                   "step, tokens seen, model shape and parameter count, sparsity and "
                   "quantization, and the training config it was written with.",
    .options = info_options,
    .positional = "CKPT",
    .min_positional = 1,
    .max_positional = 1,
    .positional_help = "Checkpoint or deploy file (HDF5).",
    .epilog = "example:\n  retort info runs/s/step_000400.h5\n",
};

static const cli_option report_options[] = {
    {.name = "out", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "DIR",
     .help = "Folder to write report.md, report.json, val_loss.svg and size_ppl.svg into "
             "(created if missing; each file replaced atomically)."},
    {.name = "data", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "SHARD",
     .help = "Validation token shard every model is evaluated on (as `retort eval`)."},
    {.name = "teacher", .type = CLI_STRING, .metavar = "CKPT",
     .help = "What the top-1 agreement column compares every model with (same vocabulary and "
             "seq_len). To show the teacher as a row, pass it as a --model too."},
    {.name = "model", .type = CLI_STRING, .flags = CLI_REQUIRED | CLI_REPEAT,
     .metavar = "NAME=FILE",
     .help = "A model to evaluate, shown as NAME (repeat for more; training checkpoints and "
             "deploy files alike)."},
    {.name = "curve", .type = CLI_STRING, .flags = CLI_REPEAT, .metavar = "NAME=RUN_DIR",
     .help = "A training run whose validation loss vs tokens is plotted, from the records of "
             "RUN_DIR/metrics.jsonl that have \"val_loss\" and \"tokens\" (repeat for more)."},
    {.name = "pairs", .type = CLI_STRING, .metavar = "CSV",
     .help = "Add a bias score column: the bias probe of `retort eval --pairs` (CrowS-Pairs "
             "layout) on every model, and with --teacher the shift of each model's score "
             "against the teacher's."},
    {.name = "tokenizer", .type = CLI_STRING, .metavar = "DIR",
     .help = "Tokenizer folder for --pairs (default: the one each model file records)."},
    {.name = "no-bench", .type = CLI_BOOL,
     .help = "Skip the inference speed measurement (`retort bench infer --model FILE --json`, "
             "run per model by default); that column is then n/a."},
    {.name = "max-tokens", .type = CLI_INT, .metavar = "N", .def = "0", .min = 0, .max = INFINITY,
     .help = "Evaluate on the first N tokens of the shard only (0 = all of it)."},
    {.name = "batch", .type = CLI_INT, .metavar = "N", .def = "8", .min = 1, .max = 4096,
     .help = "Windows per forward pass of the evaluations."},
    {.name = "json", .type = CLI_BOOL,
     .help = "Print the report (table, curves) as one JSON object on stdout instead of the "
             "Markdown table; DIR/report.json is written either way."},
    {0},
};

const cli_spec trainer_spec_report = {
    .name = "report",
    .description =
        "Evaluate a set of models side by side and write a Markdown report with SVG plots. "
        "One table row per model: parameters, size on disk, validation loss and perplexity, "
        "top-1 agreement with the teacher, expected calibration error (15 bins) and "
        "inference tokens/s. Plots: validation loss vs tokens of each --curve run, "
        "and size on disk vs perplexity.\n\n"
        "Every number is measured while the report is made (the evaluations of `retort eval`, "
        "and `retort bench infer` run by this same binary); the report says how.",
    .options = report_options,
    .max_positional = 0,
    .epilog = "example:\n"
              "  retort report --out report/ --data data/val.h5 --teacher runs/t/final.h5 \\\n"
              "      --model teacher=runs/t/final.h5 --model student=runs/s/final.h5 \\\n"
              "      --model int8=student.int8.h5 --curve teacher=runs/t --curve student=runs/s\n",
};

const cli_spec *trainer_spec_find(const char *name) {
    static const cli_spec *const all[] = {
        &trainer_spec_prepare, &trainer_spec_train,  &trainer_spec_label, &trainer_spec_eval,
        &trainer_spec_generate, &trainer_spec_prune, &trainer_spec_export, &trainer_spec_info,
        &trainer_spec_report,
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}
