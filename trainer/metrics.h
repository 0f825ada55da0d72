/* Progress and metrics of long runs.
 *
 * Rank 0 opens one trainer_metrics per run; other ranks pass NULL around
 * (every function accepts m == NULL and then does nothing), so the training
 * loop needs no rank checks:
 *
 *     trainer_metrics *m = NULL;
 *     if (rank == 0) RT_TRY(trainer_metrics_open(cfg.train.run_dir, cfg.train.steps, start, &m));
 *     for (step = start; step < steps; step++) {
 *         ...
 *         trainer_metrics_step(m, step + 1, tokens_this_step);   // cheap, every step
 *         if ((step + 1) % log_every == 0) {
 *             trainer_metrics_show(m, "loss", loss);             // JSON + progress line
 *             trainer_metrics_add(m, "lr", lr);                  // JSON only
 *             RT_TRY(trainer_metrics_log(m, step + 1));
 *         }
 *     }
 *     trainer_metrics_close(m);
 *
 * Each log appends one JSON object, flushed, to <run_dir>/metrics.jsonl:
 *   {"step":120,"time":1732290000.5,"elapsed_s":61.2,"tokens":983040,
 *    "tok_s":14203.1,"step_s":0.0721,"eta_s":133.0,"loss":3.214,"lr":0.0006}
 * (values that are NaN or infinite are written as null) and prints
 *   step 120/1000 | loss 3.214 | 14,203 tok/s | ETA 2m13s
 * to stderr: plain lines when stderr is not a terminal, one line rewritten
 * in place (carriage return) when it is. Tokens/s and the ETA come from
 * exponentially smoothed step times, so one slow step (a checkpoint, an
 * evaluation) does not swing them. */
#ifndef TRAINER_METRICS_H
#define TRAINER_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rt_status.h"

typedef struct trainer_metrics trainer_metrics;

/* mkdir -p: creates every missing folder of `path` (RT_ERR_IO naming the
 * folder that cannot be made, or a path that exists but is no folder). */
rt_status trainer_make_dirs(const char *path);

/* Opens (creating run_dir and the file if needed) <run_dir>/metrics.jsonl
 * for appending, so a resumed run continues the same file. total_steps is
 * the step count of the whole run (for "step i/N" and the ETA);
 * start_step is where this process starts (0, or the resumed step).
 * run_dir NULL: progress lines only, no file. */
rt_status trainer_metrics_open(const char *run_dir, int64_t total_steps, int64_t start_step,
                               trainer_metrics **out);

/* Closes the file (ending an in-place progress line with a newline). NULL-safe. */
void trainer_metrics_close(trainer_metrics *m);

/* Where progress lines go (default stderr; NULL = nowhere) and whether to
 * rewrite one line in place (default: when that stream is a terminal). */
void trainer_metrics_set_progress(trainer_metrics *m, FILE *f, bool in_place);

/* Counts one finished step that processed `tokens` tokens (all ranks
 * together): updates the smoothed step time and rate. No output. */
void trainer_metrics_step(trainer_metrics *m, int64_t step, int64_t tokens);

/* Sets the running token count written as "tokens" (a resumed run starts
 * from the tokens its checkpoint had seen, so curves continue). */
void trainer_metrics_set_tokens(trainer_metrics *m, int64_t tokens);

/* Adds a named value to the pending record (JSON only), or with _show also
 * to the progress line, in the order added. At most 32 values per record;
 * a name must be at most 47 bytes and not "step", "time", "elapsed_s",
 * "tokens", "tok_s", "step_s" or "eta_s" (written by _log itself). A name
 * added twice keeps the last value. */
void trainer_metrics_add(trainer_metrics *m, const char *name, double value);
void trainer_metrics_show(trainer_metrics *m, const char *name, double value);

/* Writes the pending record for `step` (plus step, time, elapsed_s,
 * tokens, tok_s, step_s, eta_s) as one line of metrics.jsonl, flushes it,
 * prints the progress line, and clears the record. RT_ERR_IO names the
 * file when writing fails (e.g. disk full). */
rt_status trainer_metrics_log(trainer_metrics *m, int64_t step);

/* Prints a one-off message line ("saved runs/x/step_000200.h5") without
 * garbling an in-place progress line. */
void trainer_metrics_note(trainer_metrics *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Smoothed tokens per second and seconds per step so far (0 before the
 * first step), and the estimated seconds left. */
double trainer_metrics_tokens_per_s(const trainer_metrics *m);
double trainer_metrics_step_s(const trainer_metrics *m);
double trainer_metrics_eta_s(const trainer_metrics *m);

/* Formats for the progress line, exposed for tests: "14,203" and
 * "2m13s" / "1h05m" / "3d04h" / "45s" (seconds rounded). */
void trainer_metrics_fmt_int(char *buf, size_t cap, double x);
void trainer_metrics_fmt_duration(char *buf, size_t cap, double seconds);

#endif
