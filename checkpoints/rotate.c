/* Rotation of step_<N>.h5 files in a run folder, the `latest` pointer, and
 * resolving what the user typed ("latest", a folder, a file) to a file.
 *
 * Order is what keeps work safe: the new checkpoint is complete and durable
 * before `latest` moves to it, and old files are deleted only after that,
 * never the one `latest` names. A crash anywhere leaves `latest` naming a
 * complete file. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_internal.h"
#include "fsutil.h"

#define LATEST_NAME "latest"
#define FINAL_NAME "final.h5"
#define LOCK_NAME ".lock"
/* A temporary file whose writer is gone and that nobody touched for this
 * long is debris from a killed run. Both conditions, because on a shared
 * file system the pid may belong to another host. */
#define STALE_TMP_SECONDS 600

/* Parses "step_<digits>.h5" (nothing else) into *step. */
static int parse_step_name(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0) return 0;
    const char *p = name + 5;
    int64_t v = 0;
    int nd = 0;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
        if (nd >= 18) return 0;
        v = v * 10 + (*p - '0');
    }
    if (nd == 0 || strcmp(p, ".h5") != 0) return 0;
    *step = v;
    return 1;
}

/* Parses ".<something>.tmp.<pid>" into *pid. */
static int parse_tmp_name(const char *name, long *pid) {
    if (name[0] != '.') return 0;
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name) return 0;
    const char *p = t + 5;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || *end != '\0' || errno || v <= 0) return 0;
    /* only the kinds of temporary files a training run makes */
    int ours = strncmp(name, "." LATEST_NAME ".tmp.", strlen(LATEST_NAME) + 6) == 0 ||
               strncmp(name, "." FINAL_NAME ".tmp.", strlen(FINAL_NAME) + 6) == 0;
    if (!ours && strncmp(name, ".step_", 6) == 0) {
        char base[256];
        size_t n = (size_t)(t - name - 1);
        if (n < sizeof base) {
            memcpy(base, name + 1, n);
            base[n] = '\0';
            int64_t s;
            ours = parse_step_name(base, &s);
        }
    }
    *pid = v;
    return ours;
}

rt_status ckpt_step_path(const char *run_dir, int64_t step, char *out, size_t n) {
    int w = snprintf(out, n, "%s/step_%08lld.h5", run_dir, (long long)step);
    if (w < 0 || (size_t)w >= n) return rt_fail(RT_ERR_ARGS, "%s: path too long", run_dir);
    return RT_OK;
}

typedef struct {
    int64_t step;
    char name[64];
} step_file;

static int by_step_desc(const void *a, const void *b) {
    int64_t x = ((const step_file *)a)->step, y = ((const step_file *)b)->step;
    return (x < y) - (x > y);
}

/* The step_*.h5 files of dir, highest step first. */
static rt_status list_steps(const char *dir, step_file **out, size_t *n) {
    *out = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return rt_fail(RT_ERR_IO, "%s: cannot list the folder (%s)", dir, strerror(errno));
    step_file *v = NULL;
    size_t cap = 0, cnt = 0;
    struct dirent *e;
    rt_status st = RT_OK;
    while ((e = readdir(d))) {
        int64_t s;
        if (!parse_step_name(e->d_name, &s) || strlen(e->d_name) >= sizeof v->name) continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            step_file *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory listing checkpoints", dir);
                break;
            }
            v = nv;
        }
        v[cnt].step = s;
        snprintf(v[cnt].name, sizeof v[cnt].name, "%s", e->d_name);
        cnt++;
    }
    closedir(d);
    if (st != RT_OK) {
        free(v);
        return st;
    }
    if (cnt) qsort(v, cnt, sizeof *v, by_step_desc);
    *out = v, *n = cnt;
    return RT_OK;
}

/* The file name `<dir>/latest` holds (trimmed) into name; 0 if there is no
 * readable, well-formed pointer. */
static int read_latest(const char *dir, char *name, size_t cap) {
    char p[CKPT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, LATEST_NAME);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    char buf[512] = "";
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
                   s[len - 1] == '\r'))
        s[--len] = '\0';
    /* a plain file name in the same folder, nothing that walks elsewhere */
    if (len == 0 || len >= cap || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    memcpy(name, s, len + 1);
    return 1;
}

/* Removes the temporary files of dead writers and returns how many. Without
 * the run lock a file counts as debris only when its pid is gone on this
 * host and nobody touched it for STALE_TMP_SECONDS; under the lock every
 * other writer is known to be gone (the lock excludes live ones, on any
 * host), so every temporary file but this process's own is debris. */
static int remove_stale_tmps(const char *dir, int locked) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    time_t now = time(NULL);
    int removed = 0;
    while ((e = readdir(d))) {
        long pid;
        if (!parse_tmp_name(e->d_name, &pid) || pid == (long)getpid()) continue;
        if (!locked && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue; /* alive, or not ours to ask */
        char p[CKPT_PATH_MAX];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (!locked && now - sb.st_mtime < STALE_TMP_SECONDS) continue;
        if (unlink(p) == 0)
            removed++;
        else if (errno != ENOENT)
            fprintf(stderr, "retort: warning: cannot remove the stale temporary file %s (%s)\n", p,
                    strerror(errno));
    }
    closedir(d);
    return removed;
}

/* Deletes old step files so that `keep` remain among those with a step up
 * to `step`; spares the file `latest` names and later steps. */
static void prune(const char *dir, int64_t step, int keep) {
    if (keep <= 0) return;
    step_file *v;
    size_t n;
    if (list_steps(dir, &v, &n) != RT_OK) {
        fprintf(stderr, "retort: warning: %s\n", rt_last_error());
        return;
    }
    char latest[256] = "";
    int have_latest = read_latest(dir, latest, sizeof latest);
    int kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].step > step) continue;
        if (have_latest && strcmp(v[i].name, latest) == 0) {
            kept++;
            continue;
        }
        if (kept < keep) {
            kept++;
            continue;
        }
        char p[CKPT_PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, v[i].name);
        if (unlink(p) != 0 && errno != ENOENT)
            fprintf(stderr, "retort: warning: cannot remove the old checkpoint %s (%s)\n", p,
                    strerror(errno));
    }
    free(v);
}

rt_status ckpt_save_rotating(const char *run_dir, int64_t step, const ckpt_contents *c, int keep) {
    if (!run_dir || !run_dir[0]) return rt_fail(RT_ERR_ARGS, "no run folder given for checkpoints");
    if (step < 0) return rt_fail(RT_ERR_ARGS, "%s: negative checkpoint step %lld", run_dir,
                                 (long long)step);
    if (c && c->step != step)
        return rt_fail(RT_ERR_ARGS, "%s: checkpoint file step %lld differs from the contents' step "
                       "%lld", run_dir, (long long)step, (long long)c->step);
    struct stat sb;
    if (stat(run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rt_fail(RT_ERR_IO, "%s: the run folder does not exist", run_dir);
    char path[CKPT_PATH_MAX], lpath[CKPT_PATH_MAX], text[128];
    RT_TRY(ckpt_step_path(run_dir, step, path, sizeof path));
    RT_TRY(ckpt_save(path, c));
    snprintf(lpath, sizeof lpath, "%s/%s", run_dir, LATEST_NAME);
    snprintf(text, sizeof text, "step_%08lld.h5\n", (long long)step);
    RT_TRY(data_write_text(lpath, text));
    prune(run_dir, step, keep);
    remove_stale_tmps(run_dir, 0);
    return RT_OK;
}

static rt_status resolve_dir(const char *dir, char *out, size_t n) {
    char name[256];
    int w;
    if (read_latest(dir, name, sizeof name)) {
        w = snprintf(out, n, "%s/%s", dir, name);
        if (w < 0 || (size_t)w >= n) return rt_fail(RT_ERR_ARGS, "%s: path too long", dir);
        struct stat sb;
        if (stat(out, &sb) != 0)
            return rt_fail(RT_ERR_IO, "%s/%s names %s, which does not exist", dir, LATEST_NAME,
                           name);
        return RT_OK;
    }
    step_file *v;
    size_t cnt;
    RT_TRY(list_steps(dir, &v, &cnt));
    if (cnt == 0) {
        free(v);
        return rt_fail(RT_ERR_IO, "%s: no checkpoint here (no `%s` file and no step_*.h5)", dir,
                       LATEST_NAME);
    }
    w = snprintf(out, n, "%s/%s", dir, v[0].name);
    free(v);
    if (w < 0 || (size_t)w >= n) return rt_fail(RT_ERR_ARGS, "%s: path too long", dir);
    return RT_OK;
}

rt_status ckpt_resolve(const char *arg, const char *run_dir, char *out, size_t n) {
    if (!arg || strcmp(arg, LATEST_NAME) == 0) {
        if (!run_dir || !run_dir[0])
            return rt_fail(RT_ERR_ARGS, "checkpoint \"latest\" needs a run folder (train.run_dir)");
        struct stat sb;
        if (stat(run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return rt_fail(RT_ERR_IO, "%s: no such run folder (looking for the latest checkpoint)",
                           run_dir);
        return resolve_dir(run_dir, out, n);
    }
    struct stat sb;
    if (stat(arg, &sb) != 0)
        return rt_fail(RT_ERR_IO, "%s: no such file or folder", arg);
    if (S_ISDIR(sb.st_mode)) return resolve_dir(arg, out, n);
    if (strlen(arg) >= n) return rt_fail(RT_ERR_ARGS, "%s: path too long", arg);
    memcpy(out, arg, strlen(arg) + 1);
    return RT_OK;
}

/* ----------------------------------------------------------- run lock */

struct ckpt_run_lock {
    int fd;
};

/* The holder's "pid P on host H" from the lock file, for the refusal. */
static void read_holder(int fd, char *out, size_t cap) {
    char buf[320];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long pid = 0;
    char host[256] = "";
    if (n > 0) {
        buf[n] = '\0';
        if (sscanf(buf, "%ld %255s", &pid, host) == 2 && pid > 0) {
            for (char *c = host; *c; c++)
                if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) *c = '?';
            snprintf(out, cap, "pid %ld on host %s", pid, host);
            return;
        }
    }
    snprintf(out, cap, "a process that has not recorded itself yet");
}

rt_status ckpt_run_lock_take(const char *run_dir, ckpt_run_lock **out, int *n_removed) {
    *out = NULL;
    if (n_removed) *n_removed = 0;
    char path[CKPT_PATH_MAX];
    int w = snprintf(path, sizeof path, "%s/%s", run_dir, LOCK_NAME);
    if (w < 0 || (size_t)w >= sizeof path) return rt_fail(RT_ERR_ARGS, "%s: path too long", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return rt_fail(RT_ERR_IO, "%s: cannot open the run lock (%s)", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char holder[320];
        read_holder(fd, holder, sizeof holder);
        close(fd);
        if (err == EWOULDBLOCK)
            return rt_fail(RT_ERR_ARGS,
                           "%s is in use by another run (%s holds %s): give this run its own "
                           "train.run_dir, or wait for that one to end",
                           run_dir, holder, path);
        return rt_fail(RT_ERR_IO, "%s: cannot lock (%s)", path, strerror(err));
    }
    char host[256] = "unknown";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    char line[320];
    int n = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        int err = errno;
        close(fd);
        return rt_fail(RT_ERR_IO, "%s: cannot record the lock holder (%s)", path, strerror(err));
    }
    ckpt_run_lock *l = malloc(sizeof *l);
    if (!l) {
        close(fd);
        return rt_fail(RT_ERR_NOMEM, "out of memory");
    }
    l->fd = fd;
    int removed = remove_stale_tmps(run_dir, 1);
    if (n_removed) *n_removed = removed;
    *out = l;
    return RT_OK;
}

void ckpt_run_lock_release(ckpt_run_lock *l) {
    if (!l) return;
    close(l->fd); /* drops the flock; the file stays for the next holder */
    free(l);
}
