/* The command-line parser every `retort` command uses.
 *
 * A command describes its options once, in a table (cli_option[]) inside a
 * cli_spec; the same table drives parsing, validation of values (integers,
 * reals with bounds, fixed choices, a per-option check), the synopsis and
 * the `--help` text. So a command's parser is a few lines:
 *
 *     cli_args *a = NULL;
 *     int rc = cli_parse(&trainer_spec_eval, argc, argv, &a);
 *     if (rc >= 0) return rc;                 // --help shown, or usage error reported
 *     const char *model = cli_str(a, "model");
 *     int64_t max_tokens = cli_int(a, "max-tokens");
 *     ...
 *     cli_args_free(a);
 *
 * Syntax accepted: `--name value`, `--name=value`, bare `--flag` for
 * booleans, `-h`/`--help` anywhere, `--` to end options, positional
 * arguments anywhere. A value given as a separate word may not start with
 * "--" (that is nearly always a forgotten value); `--name=--x` passes one. */
#ifndef TRAINER_CLI_H
#define TRAINER_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli_text.h"
#include "rt_status.h"

typedef enum {
    CLI_BOOL,   /* a flag without value: given or not */
    CLI_STRING, /* any text */
    CLI_INT,    /* a base-10 integer (int64), within [min, max] when bounded */
    CLI_REAL,   /* a finite real number, within [min, max] when bounded */
    CLI_CHOICE, /* one of `choices` ("a|b|c") */
} cli_type;

enum {
    CLI_REQUIRED = 1u << 0,       /* must be given */
    CLI_REPEAT = 1u << 1,         /* may be given several times; values accumulate in order */
    CLI_MANY = 1u << 2,           /* `--input a b c`: takes every following word up to the
                                     next option (implies CLI_REPEAT) */
    CLI_OPTIONAL_VALUE = 1u << 3, /* the value may be left out; then `implicit` is used */
};

typedef struct {
    const char *name;    /* long name without "--", e.g. "vocab-size" */
    cli_type type;
    unsigned flags;      /* CLI_REQUIRED | CLI_REPEAT | CLI_MANY | CLI_OPTIONAL_VALUE */
    const char *metavar; /* shown in help: "PATH", "N"; unused for CLI_BOOL */
    const char *def;     /* default as text (validated like a given value), or NULL */
    double min, max;     /* CLI_INT / CLI_REAL inclusive bounds (max may be INFINITY);
                            unbounded when both are 0 */
    const char *choices; /* CLI_CHOICE: "a|b|c" */
    const char *implicit;/* CLI_OPTIONAL_VALUE: the value of a bare `--name` */
    const char *help;    /* one or more sentences; wrapped by the help printer */
    /* Optional extra validation of a value (after the type check); returns
     * RT_ERR_ARGS with an rt_fail message saying what was expected. The
     * parser prefixes the option's name. */
    rt_status (*check)(const char *value);
} cli_option;

typedef struct {
    const char *name;          /* command name as typed: "eval" */
    const char *description;   /* paragraph(s) under the synopsis; '\n\n' separates */
    const cli_option *options; /* terminated by an entry with name == NULL */
    const char *positional;    /* metavar of positional arguments ("CKPT"), or NULL */
    int min_positional;        /* how many positionals are required */
    int max_positional;        /* how many are allowed; -1 = any number */
    const char *positional_help;
    const char *epilog;        /* printed after the options (examples), or NULL */
    void (*extra_help)(FILE *f); /* printed last (e.g. train: every config key), or NULL */
} cli_spec;

typedef struct cli_args cli_args;

/* Parses argv[1..argc-1] (argv[0] is the command name) against `spec`.
 * Returns -1 when the command should run: *out holds the arguments (free
 * with cli_args_free). Otherwise returns the process exit code and *out is
 * NULL: 0 after printing the help to stdout (-h/--help), 2 after reporting
 * a usage error on stderr as one line naming the option or argument. */
int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args **out);

/* The same without printing: RT_OK with *out set, or RT_ERR_ARGS with the
 * message in rt_last_error(). *help is set when -h/--help was given (then
 * *out is NULL and nothing else was checked). */
rt_status cli_parse_args(const cli_spec *spec, int argc, char **argv, cli_args **out,
                         bool *help);

void cli_args_free(cli_args *a); /* NULL-safe */

/* Getters. `name` must be an option of the spec (a wrong name is a bug and
 * aborts). Values were validated while parsing, so these cannot fail. */
bool cli_has(const cli_args *a, const char *name);        /* given on the command line */
const char *cli_str(const cli_args *a, const char *name); /* last value, else default, else NULL */
int64_t cli_int(const cli_args *a, const char *name);     /* needs a value or a default */
double cli_real(const cli_args *a, const char *name);     /* needs a value or a default */
bool cli_flag(const cli_args *a, const char *name);       /* CLI_BOOL given */
/* Every value of a CLI_REPEAT / CLI_MANY option in command-line order
 * (owned by `a`, valid until cli_args_free; strings point into argv). */
const char *const *cli_list(const cli_args *a, const char *name, int *n);
/* Positional arguments in order. */
const char *const *cli_positionals(const cli_args *a, int *n);

/* Writes the full help of a command: synopsis, description, every option
 * with its metavar, default, bounds or choices, then epilog and extras. */
void cli_print_help(const cli_spec *spec, FILE *f);

#endif
