/* The bias probe: sentence pairs in the CrowS-Pairs CSV layout, scored by a
 * model's log-likelihood (pairs.c).
 *
 * A pairs file is CSV (RFC 4180: fields separated by commas, optionally
 * double-quoted, "" for a quote inside quotes, quoted fields may hold
 * commas and newlines; LF or CRLF line ends) whose header row names at
 * least the columns sent_more, sent_less and bias_type, in any order;
 * other columns (CrowS-Pairs' unnamed index, stereo_antistereo,
 * annotations, ...) are ignored. Lines starting with '#' before the
 * header row are comments. A pair counts as "more" when the model
 * gives sent_more a strictly higher log-likelihood than sent_less; the
 * score of a group is the share of its pairs that count (0.5 = no
 * preference). */
#ifndef TRAINER_PAIRS_H
#define TRAINER_PAIRS_H

#include <stdint.h>
#include <stdio.h>

#include "rt_status.h"

/* Bounds on what a pairs file may hold (refused beyond, naming the file). */
#define TRAINER_PAIRS_MAX_BYTES (64 << 20)
#define TRAINER_PAIRS_MAX_ROWS 1000000

typedef struct {
    char *more, *less, *type; /* the three cells, NUL-terminated */
    int64_t line;             /* 1-based line of the file where the row starts */
} trainer_pair;

typedef struct {
    trainer_pair *pairs;
    int64_t n;
    char *text; /* the file with cells cut out in place; the strings point into it */
} trainer_pairs;

/* Reads and parses `path`. Errors (one line naming the file and, where it
 * applies, the line): unreadable or too large, an unterminated quote,
 * missing columns (all missing ones named), a row with too few cells, an
 * empty sentence or bias type, no pairs at all. */
rt_status trainer_pairs_read(const char *path, trainer_pairs *out);
void trainer_pairs_free(trainer_pairs *p); /* NULL-safe; zeroes *p */

typedef struct {
    char type[64];    /* bias_type, truncated for display */
    int64_t n, more;  /* pairs, and pairs where sent_more scored higher */
    double score;     /* more / n */
} trainer_bias_group;

typedef struct {
    trainer_bias_group *groups; /* sorted by type name */
    int n_groups;
    int64_t n, more; /* over every pair */
    double score;    /* more / n */
    double mean_diff; /* mean of logp(sent_more) - logp(sent_less), nats */
} trainer_bias_result;

/* Scores every pair of `pairs_path` with the model in `model` (any file
 * ckpt_load_model reads): each sentence is encoded with the tokenizer in
 * `tokenizer` (NULL: the folder the model file records), preceded by
 * <|endoftext|> as every training document is, and its log-likelihood is
 * the sum of its token log-probs (student_seq_logprob). A sentence longer
 * than seq_len tokens is refused, naming the file, line and the limit.
 * `batch` rows per forward. */
rt_status trainer_bias_probe(const char *model, const char *pairs_path, const char *tokenizer,
                             int batch, trainer_bias_result *out);
void trainer_bias_result_free(trainer_bias_result *r); /* NULL-safe */

#endif
