/* Progress lines and <run_dir>/metrics.jsonl for long runs (see metrics.h).
 *
 * Rates are exponential moving averages of per-step time and tokens with a
 * warm-up (the weight of a new step is max(ALPHA, 1/count), i.e. a plain
 * mean over the first 1/ALPHA steps), so the first, slow step (primitive
 * creation, page faults) fades out and later single slow steps (checkpoint
 * writes) barely move the ETA. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define ALPHA 0.1
enum { MAX_VALUES = 32, NAME_MAX_LEN = 48 };

typedef struct {
    char name[NAME_MAX_LEN];
    double value;
    bool show;
} metric_value;

struct trainer_metrics {
    FILE *file; /* metrics.jsonl, or NULL */
    char *path;
    FILE *progress;
    bool in_place;
    bool line_open;     /* an in-place line is on screen without its newline */
    int last_len;       /* its length, to blank leftovers when rewriting */
    int64_t total_steps, last_step;
    int64_t tokens;     /* counted since open */
    double t_open, t_last; /* monotonic seconds */
    int64_t n_steps;    /* step() calls so far */
    double ema_dt, ema_tokens;
    metric_value values[MAX_VALUES];
    int n_values;
};

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mkdir -p: creates every missing folder of `path`. */
rt_status trainer_make_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0) return RT_OK;
    if (n >= sizeof buf) return rt_fail(RT_ERR_ARGS, "run folder path too long: %s", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return rt_fail(RT_ERR_IO, "cannot create run folder %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rt_fail(RT_ERR_IO, "run folder %s exists but is not a folder", path);
    return RT_OK;
}

rt_status trainer_metrics_open(const char *run_dir, int64_t total_steps, int64_t start_step,
                               trainer_metrics **out) {
    rt_status st = RT_OK;
    *out = NULL;
    trainer_metrics *m = calloc(1, sizeof *m);
    if (!m) return rt_fail(RT_ERR_NOMEM, "out of memory opening metrics");
    m->total_steps = total_steps;
    m->last_step = start_step;
    m->t_open = m->t_last = now_mono();
    m->progress = stderr;
    m->in_place = isatty(fileno(stderr)) == 1;
    if (run_dir) {
        if ((st = trainer_make_dirs(run_dir)) != RT_OK) goto cleanup;
        size_t n = strlen(run_dir) + sizeof "/metrics.jsonl";
        m->path = malloc(n);
        if (!m->path) {
            st = rt_fail(RT_ERR_NOMEM, "out of memory opening metrics");
            goto cleanup;
        }
        snprintf(m->path, n, "%s/metrics.jsonl", run_dir);
        m->file = fopen(m->path, "a");
        if (!m->file) {
            st = rt_fail(RT_ERR_IO, "cannot open %s for appending: %s", m->path, strerror(errno));
            goto cleanup;
        }
    }
    *out = m;
    m = NULL;
cleanup:
    trainer_metrics_close(m);
    return st;
}

void trainer_metrics_close(trainer_metrics *m) {
    if (!m) return;
    if (m->line_open && m->progress) fputc('\n', m->progress);
    if (m->file) fclose(m->file);
    free(m->path);
    free(m);
}

void trainer_metrics_set_progress(trainer_metrics *m, FILE *f, bool in_place) {
    if (!m) return;
    m->progress = f;
    m->in_place = in_place;
}

void trainer_metrics_step(trainer_metrics *m, int64_t step, int64_t tokens) {
    if (!m) return;
    double t = now_mono();
    int64_t n = step - m->last_step;
    if (n < 1) n = 1; /* a repeated step number counts as one step */
    double dt = (t - m->t_last) / (double)n, tok = (double)tokens / (double)n;
    m->n_steps++;
    double a = 1.0 / (double)m->n_steps;
    if (a < ALPHA) a = ALPHA;
    m->ema_dt = (1 - a) * m->ema_dt + a * dt;
    m->ema_tokens = (1 - a) * m->ema_tokens + a * tok;
    m->tokens += tokens;
    m->t_last = t;
    m->last_step = step;
}

void trainer_metrics_set_tokens(trainer_metrics *m, int64_t tokens) {
    if (m) m->tokens = tokens;
}

double trainer_metrics_step_s(const trainer_metrics *m) { return m ? m->ema_dt : 0; }

double trainer_metrics_tokens_per_s(const trainer_metrics *m) {
    return m && m->ema_dt > 0 ? m->ema_tokens / m->ema_dt : 0;
}

double trainer_metrics_eta_s(const trainer_metrics *m) {
    if (!m || m->n_steps == 0) return 0;
    int64_t left = m->total_steps - m->last_step;
    return left > 0 ? (double)left * m->ema_dt : 0;
}

static void add_value(trainer_metrics *m, const char *name, double value, bool show) {
    static const char *const reserved[] = {"step",  "time",   "elapsed_s", "tokens",
                                           "tok_s", "step_s", "eta_s"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        RT_ASSERT(strcmp(name, reserved[i]) != 0); /* _log writes these itself */
    RT_ASSERT(strlen(name) < NAME_MAX_LEN);
    for (int i = 0; i < m->n_values; i++)
        if (strcmp(m->values[i].name, name) == 0) {
            m->values[i].value = value;
            m->values[i].show = show;
            return;
        }
    RT_ASSERT(m->n_values < MAX_VALUES);
    metric_value *v = &m->values[m->n_values++];
    snprintf(v->name, sizeof v->name, "%s", name);
    v->value = value;
    v->show = show;
}

void trainer_metrics_add(trainer_metrics *m, const char *name, double value) {
    if (m) add_value(m, name, value, false);
}

void trainer_metrics_show(trainer_metrics *m, const char *name, double value) {
    if (m) add_value(m, name, value, true);
}

void trainer_metrics_fmt_int(char *buf, size_t cap, double x) {
    char digits[32];
    if (!isfinite(x) || fabs(x) >= 1e18) {
        snprintf(buf, cap, "%g", x);
        return;
    }
    snprintf(digits, sizeof digits, "%.0f", fabs(x));
    size_t n = strlen(digits), k = 0;
    char tmp[48];
    if (x < 0 && strcmp(digits, "0") != 0) tmp[k++] = '-';
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) tmp[k++] = ',';
        tmp[k++] = digits[i];
    }
    tmp[k] = '\0';
    snprintf(buf, cap, "%s", tmp);
}

void trainer_metrics_fmt_duration(char *buf, size_t cap, double seconds) {
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, cap, "?");
        return;
    }
    long long s = llround(seconds);
    if (s < 60)
        snprintf(buf, cap, "%llds", s);
    else if (s < 3600)
        snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
    else
        snprintf(buf, cap, "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
}

/* A JSON number, or null for NaN/inf (JSON has no such numbers). */
static json_t *json_num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static rt_status write_json(trainer_metrics *m, int64_t step) {
    rt_status st = RT_OK;
    json_t *o = json_object();
    if (!o) return rt_fail(RT_ERR_NOMEM, "out of memory writing %s", m->path);
    int bad = 0;
    bad |= json_object_set_new(o, "step", json_integer(step));
    bad |= json_object_set_new(o, "time", json_real(now_wall()));
    bad |= json_object_set_new(o, "elapsed_s", json_real(now_mono() - m->t_open));
    bad |= json_object_set_new(o, "tokens", json_integer(m->tokens));
    if (m->n_steps > 0) {
        bad |= json_object_set_new(o, "tok_s", json_num(trainer_metrics_tokens_per_s(m)));
        bad |= json_object_set_new(o, "step_s", json_num(m->ema_dt));
        bad |= json_object_set_new(o, "eta_s", json_num(trainer_metrics_eta_s(m)));
    }
    for (int i = 0; i < m->n_values; i++)
        bad |= json_object_set_new(o, m->values[i].name, json_num(m->values[i].value));
    if (bad) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory writing %s", m->path);
        goto cleanup;
    }
    errno = 0;
    if (json_dumpf(o, m->file, JSON_COMPACT | JSON_REAL_PRECISION(12)) != 0 ||
        fputc('\n', m->file) == EOF || fflush(m->file) != 0 || ferror(m->file)) {
        st = rt_fail(RT_ERR_IO, "cannot write %s: %s", m->path,
                     errno ? strerror(errno) : "write error");
        clearerr(m->file);
    }
cleanup:
    json_decref(o);
    return st;
}

static void print_progress(trainer_metrics *m, int64_t step) {
    char line[1024], num[64];
    size_t k = 0;
    if (m->total_steps > 0)
        k += (size_t)snprintf(line + k, sizeof line - k, "step %lld/%lld", (long long)step,
                              (long long)m->total_steps);
    else
        k += (size_t)snprintf(line + k, sizeof line - k, "step %lld", (long long)step);
    for (int i = 0; i < m->n_values && k < sizeof line; i++)
        if (m->values[i].show)
            k += (size_t)snprintf(line + k, sizeof line - k, " | %s %.4g", m->values[i].name,
                                  m->values[i].value);
    if (m->n_steps > 0 && k < sizeof line) {
        trainer_metrics_fmt_int(num, sizeof num, trainer_metrics_tokens_per_s(m));
        k += (size_t)snprintf(line + k, sizeof line - k, " | %s tok/s", num);
        if (m->total_steps > 0 && k < sizeof line) {
            trainer_metrics_fmt_duration(num, sizeof num, trainer_metrics_eta_s(m));
            k += (size_t)snprintf(line + k, sizeof line - k, " | ETA %s", num);
        }
    }
    if (k >= sizeof line) k = sizeof line - 1;
    if (m->in_place) {
        int pad = m->last_len > (int)k ? m->last_len - (int)k : 0;
        fprintf(m->progress, "\r%s%*s", line, pad, "");
        m->last_len = (int)k;
        m->line_open = true;
    } else {
        fprintf(m->progress, "%s\n", line);
    }
    fflush(m->progress);
}

rt_status trainer_metrics_log(trainer_metrics *m, int64_t step) {
    if (!m) return RT_OK;
    rt_status st = RT_OK;
    if (m->file) st = write_json(m, step);
    if (m->progress) print_progress(m, step);
    m->n_values = 0;
    return st;
}

void trainer_metrics_note(trainer_metrics *m, const char *fmt, ...) {
    if (!m || !m->progress) return;
    if (m->line_open) {
        fputc('\n', m->progress);
        m->line_open = false;
        m->last_len = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(m->progress, fmt, ap);
    va_end(ap);
    fputc('\n', m->progress);
    fflush(m->progress);
}
