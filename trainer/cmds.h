/* retort's commands: the dispatch-table entry type, every command's entry
 * point, and every command's option table.
 *
 * main.c holds the table, one line per command:
 *     { "eval", "measure loss and perplexity on a token shard", trainer_cmd_eval },
 * A command is `int run(int argc, char **argv)` with argv[0] = the command
 * name and the rest its arguments; it returns the process exit code (0 ok,
 * 1 failure, 2 usage error; rt_report() maps an rt_status to it).
 *
 * The option tables (trainer_spec_*) live in cli.c, so that `--help` and
 * argument checking work the same before and after a command's
 * implementation lands; an implementation parses with its table:
 *     int rc = cli_parse(&trainer_spec_eval, argc, argv, &a); if (rc >= 0) return rc;
 *
 * Adding a command: write `int trainer_cmd_x(int argc, char **argv)` in its
 * own file (declare it here), give it a `const cli_spec trainer_spec_x`
 * (cli.c, listed in trainer_spec_find) and add one line to main.c's table. */
#ifndef TRAINER_CMDS_H
#define TRAINER_CMDS_H

#include "cli.h"

typedef struct {
    const char *name;    /* as typed after `retort` */
    const char *summary; /* one line for `retort --help` */
    int (*run)(int argc, char **argv);
} trainer_command;

/* `retort train` stopped by SIGTERM/SIGINT/SIGUSR1 after saving a checkpoint
 * of the step it reached: not finished, nothing lost (--resume latest). */
#define TRAINER_EXIT_STOPPED 3

/* Entry points of the commands implemented in this folder. */
int trainer_cmd_prepare(int argc, char **argv); /* cmd_prepare.c */
int trainer_cmd_train(int argc, char **argv);   /* train.c */
int trainer_cmd_label(int argc, char **argv);   /* cmd_label.c */
int trainer_cmd_eval(int argc, char **argv);     /* cmd_eval.c (library form: eval.h) */
int trainer_cmd_generate(int argc, char **argv); /* cmd_generate.c */
int trainer_cmd_info(int argc, char **argv);     /* cmd_info.c */
int trainer_cmd_report(int argc, char **argv);   /* report.c */
int trainer_cmd_prune(int argc, char **argv);    /* cmd_prune.c */
int trainer_cmd_export(int argc, char **argv);   /* cmd_export.c */


/* Option tables, one per command (bench parses its own subcommands). */
extern const cli_spec trainer_spec_prepare;
extern const cli_spec trainer_spec_train;
extern const cli_spec trainer_spec_label;
extern const cli_spec trainer_spec_eval;
extern const cli_spec trainer_spec_generate;
extern const cli_spec trainer_spec_prune;
extern const cli_spec trainer_spec_export;
extern const cli_spec trainer_spec_info;
extern const cli_spec trainer_spec_report;

/* The option table of command `name`, or NULL. */
const cli_spec *trainer_spec_find(const char *name);

/* Checks a `prune --method` value: magnitude | wanda | heads | ffn | N:M. */
rt_status trainer_check_prune_method(const char *value);

#endif
