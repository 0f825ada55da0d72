/* Text helpers of the command line (cli_text.c): number formatting,
 * word wrap, "did you mean" suggestions. Used by the option parser (cli.h
 * includes this header) and by the config reader. */
#ifndef TRAINER_CLI_TEXT_H
#define TRAINER_CLI_TEXT_H

#include <stddef.h>
#include <stdio.h>

/* Writes `text` word-wrapped to `width` columns, every line indented by
 * `indent` spaces except the first, which starts at column `first_col`
 * (already printed by the caller). Ends with a newline. '\n' in text
 * starts a new line; CLI_NBSP joins two words that must stay on one line
 * (printed as a space). */
#define CLI_NBSP "\x1f"
void cli_wrap(FILE *f, const char *text, int first_col, int indent, int width);

/* Formats a bound or default for messages and help: integers plainly
 * ("1024"), round powers of ten from 1e6 on as "1e12", "inf" for
 * infinity, anything else with %g. */
void cli_fmt_number(char *buf, size_t cap, double x);

/* The candidate closest to `word` by edit distance, if close enough to be
 * a likely typo (for "did you mean ...?"), else NULL. */
const char *cli_closest(const char *word, const char *const *candidates, int n);

#endif
