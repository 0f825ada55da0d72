/* Collectives among student ranks (gradient all-reduce, scalar sums and
 * maxima), the world broadcast, and the liveness notes that let a timed-out
 * collective name the ranks that never arrived.
 *
 * Every collective is the MPI-3 non-blocking form polled with MPI_Testall
 * under comm_timeout(). A blocking MPI_Allreduce with a dead peer returns
 * only if mpirun kills the job (Open MPI 4.1 usually does, but a stalled
 * rank or a hung node never triggers that), so blocking forms are not used.
 *
 * Liveness: a collective that has waited longer than min(1 s, timeout/4)
 * sends a small note "I am in collective #n" to every other rank of the
 * communicator and keeps reading the notes of others. A rank entering a
 * collective that others already noted answers at once. On timeout the
 * ranks that sent no note for #n are the dead or stalled ones. Fast
 * collectives send nothing. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

enum { DEFAULT_MAX_CHUNK = 262144 }; /* elements; see chunked() for why */
static size_t g_max_chunk = DEFAULT_MAX_CHUNK;

void comm_set_max_chunk(size_t elems) {
    g_max_chunk = elems == 0                ? DEFAULT_MAX_CHUNK
                  : elems > (size_t)INT_MAX ? (size_t)INT_MAX
                                            : elems;
}

/* ------------------------------------------------------------ liveness */

rt_status comm_live_init(comm_live *l, MPI_Comm comm, int world_offset) {
    rt_status st = RT_OK;
    memset(l, 0, sizeof *l);
    l->comm = comm;
    l->world_offset = world_offset;
    COMM_MPI_CHECK(MPI_Comm_size(comm, &l->size));
    COMM_MPI_CHECK(MPI_Comm_rank(comm, &l->rank));
    l->seen = malloc((size_t)l->size * sizeof *l->seen);
    l->notes = malloc((size_t)l->size * sizeof *l->notes);
    l->reqs = malloc((size_t)l->size * sizeof *l->reqs);
    if (!l->seen || !l->notes || !l->reqs) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for liveness notes");
        goto cleanup;
    }
    for (int j = 0; j < l->size; j++) {
        l->seen[j] = 0;
        l->notes[j] = 0;
        l->reqs[j] = MPI_REQUEST_NULL;
    }
cleanup:
    return st;
}

/* Reads every note that has arrived. */
static rt_status live_drain(comm_live *l) {
    rt_status st = RT_OK;
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status status;
        int64_t seq = 0;
        COMM_MPI_CHECK(MPI_Improbe(MPI_ANY_SOURCE, COMM_TAG_ALIVE, l->comm, &flag, &msg, &status));
        if (!flag) break;
        COMM_MPI_CHECK_PEER(MPI_Mrecv(&seq, 1, MPI_INT64_T, &msg, MPI_STATUS_IGNORE),
                            status.MPI_SOURCE + l->world_offset);
        if (seq > l->seen[status.MPI_SOURCE]) l->seen[status.MPI_SOURCE] = seq;
    }
cleanup:
    return st;
}

/* Tells every other rank that this one waits in collective #seq. A note
 * whose previous send has not completed is skipped rather than waited for:
 * notes are advice, never a new way to hang. */
static rt_status live_note(comm_live *l, int64_t seq) {
    rt_status st = RT_OK;
    for (int j = 0; j < l->size; j++) {
        if (j == l->rank) continue;
        int done = 1;
        if (l->reqs[j] != MPI_REQUEST_NULL)
            COMM_MPI_CHECK_PEER(MPI_Test(&l->reqs[j], &done, MPI_STATUS_IGNORE),
                                j + l->world_offset);
        if (!done) continue;
        l->notes[j] = seq;
        COMM_MPI_CHECK_PEER(
            MPI_Isend(&l->notes[j], 1, MPI_INT64_T, j, COMM_TAG_ALIVE, l->comm, &l->reqs[j]),
            j + l->world_offset);
    }
cleanup:
    return st;
}

void comm_live_free(comm_live *l) {
    if (!l->reqs) return;
    bool pending = false;
    if (l->comm != MPI_COMM_NULL) {
        live_drain(l);
        for (int j = 0; j < l->size; j++) {
            if (l->reqs[j] == MPI_REQUEST_NULL) continue;
            int done = 0;
            MPI_Test(&l->reqs[j], &done, MPI_STATUS_IGNORE);
            if (!done) {
                MPI_Request_free(&l->reqs[j]);
                pending = true;
            }
        }
    }
    free(l->seen);
    free(l->reqs);
    /* A note still in flight may read its buffer until it completes; the
     * few bytes are left allocated rather than risk MPI reading freed
     * memory (this only happens on the way to an abort). */
    if (!pending) free(l->notes);
    memset(l, 0, sizeof *l);
}

/* One collective's bounded wait, stepped by its caller so that it can do
 * work between polls. The clock restarts whenever the caller reports
 * progress: the bound is on silence, not on the size of the buffer. */
typedef struct {
    comm_live *l;
    int64_t seq;
    double note_after;
    bool noted;
    comm_poll p;
} live_waiter;

static rt_status live_begin(live_waiter *w, comm_live *l) {
    w->l = l;
    w->seq = l->seq;
    w->note_after = comm_timeout() / 4 < 1.0 ? comm_timeout() / 4 : 1.0;
    w->noted = false;
    comm_poll_start(&w->p);
    return live_drain(l); /* a late rank answers notes already waiting */
}

static void live_progress(live_waiter *w) { comm_poll_start(&w->p); }

/* One idle step: liveness bookkeeping, then a pause. *expired turns true
 * when the wait has been silent for longer than comm_timeout(). */
static rt_status live_idle(live_waiter *w, bool *expired) {
    comm_live *l = w->l;
    double waited = comm_poll_elapsed(&w->p);
    *expired = false;
    if (waited > 2e-3) RT_TRY(live_drain(l));
    if (!w->noted) {
        bool others_waiting = false;
        for (int j = 0; j < l->size; j++)
            if (j != l->rank && l->seen[j] >= w->seq) others_waiting = true;
        if (others_waiting || waited > w->note_after) {
            RT_TRY(live_note(l, w->seq));
            w->noted = true;
        }
    }
    if (comm_poll_expired(&w->p)) {
        *expired = true;
        return RT_OK;
    }
    comm_poll_pause(&w->p);
    return RT_OK;
}

/* The error of a timed-out wait, naming the ranks that sent no note. */
static rt_status live_timeout(live_waiter *w, const char *what) {
    comm_live *l = w->l;
    /* Give notes already on their way a moment to land. */
    double grace = comm_timeout() / 10 < 0.5 ? comm_timeout() / 10 : 0.5;
    double t_end = comm_now() + grace;
    while (comm_now() < t_end) {
        RT_TRY(live_drain(l));
        comm_poll_pause(&w->p);
    }
    char missing[256] = "";
    size_t len = 0;
    int n_missing = 0;
    for (int j = 0; j < l->size; j++) {
        if (j == l->rank || l->seen[j] >= w->seq) continue;
        if (n_missing < 16 && len < sizeof missing)
            len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d",
                                    n_missing ? ", " : "", j + l->world_offset);
        n_missing++;
    }
    if (n_missing)
        return rt_fail(RT_ERR_MPI,
                       "%s (collective #%lld over %d ranks) made no progress for %.0f s: no "
                       "sign of life from world rank%s %s%s (dead or stalled?)",
                       what, (long long)w->seq, l->size, comm_timeout(), n_missing > 1 ? "s" : "",
                       missing, n_missing > 16 ? ", ..." : "");
    return rt_fail(RT_ERR_MPI,
                   "%s (collective #%lld over %d ranks) made no progress for %.0f s although "
                   "every rank reports waiting in it (network failure?)",
                   what, (long long)w->seq, l->size, comm_timeout());
}

/* --------------------------------------------------------- collectives */

static rt_status need_student(const comm_roles *r, const char *what) {
    if (r->role != COMM_ROLE_STUDENT)
        return rt_fail(RT_ERR_ARGS, "%s is among student ranks, but world rank %d is a teacher",
                       what, r->world_rank);
    return RT_OK;
}

/* One non-blocking call per chunk of at most g_max_chunk elements, a
 * sliding window of up to CHUNKS_IN_FLIGHT of them in flight, one bounded
 * wait. Chunking is not only for counts above INT_MAX: Open MPI 4.1's
 * MPI_Iallreduce (libnbc) on 16M floats between two ranks of one node ran
 * ~2x slower than on the same data cut into 256K-float pieces (~58 ms vs
 * ~18 ms; the blocking MPI_Allreduce took ~29 ms), as pieces stay in cache
 * and overlap. With `scale` != 1 (floats only) each chunk is multiplied
 * by it just before it is posted, so the pass over memory overlaps the
 * transfers of the chunks before it; scaling after the sum cost a whole
 * extra pass (1M floats on 2 ranks: 2.0-2.3 ms instead of ~1.4 ms). */
enum { CHUNKS_IN_FLIGHT = 16 };
typedef enum { OP_ALLREDUCE, OP_BCAST } coll_kind;

static rt_status chunked(comm_live *l, coll_kind kind, void *buf, size_t n, MPI_Datatype type,
                         size_t elem_bytes, MPI_Op op, int root, float scale, const char *what) {
    rt_status st = RT_OK;
    const size_t chunk = g_max_chunk;
    const size_t n_chunks = n == 0 ? 0 : (n + chunk - 1) / chunk;
    MPI_Request reqs[CHUNKS_IN_FLIGHT];
    int idx[CHUNKS_IN_FLIGHT];
    size_t next = 0, finished = 0;
    live_waiter w;
    l->seq++; /* every rank counts every collective, even an empty one */
    for (int i = 0; i < CHUNKS_IN_FLIGHT; i++) reqs[i] = MPI_REQUEST_NULL;
    if (n_chunks == 0) return RT_OK;
    st = live_begin(&w, l);
    if (st != RT_OK) goto cleanup;
    while (finished < n_chunks) {
        for (int i = 0; i < CHUNKS_IN_FLIGHT && next < n_chunks; i++) {
            if (reqs[i] != MPI_REQUEST_NULL) continue;
            size_t off = next * chunk;
            int cnt = (int)(n - off < chunk ? n - off : chunk);
            char *p = (char *)buf + off * elem_bytes;
            if (scale != 1.0f) {
                float *f = (float *)p;
                for (int j = 0; j < cnt; j++) f[j] *= scale;
            }
            if (kind == OP_ALLREDUCE)
                COMM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p, cnt, type, op, l->comm, &reqs[i]));
            else
                COMM_MPI_CHECK(MPI_Ibcast(p, cnt, type, root, l->comm, &reqs[i]));
            next++;
        }
        int n_done = 0;
        COMM_MPI_CHECK(MPI_Testsome(CHUNKS_IN_FLIGHT, reqs, &n_done, idx, MPI_STATUSES_IGNORE));
        if (n_done == MPI_UNDEFINED) n_done = 0; /* no active request: cannot happen here */
        finished += (size_t)n_done;
        if (n_done > 0) {
            live_progress(&w);
            continue;
        }
        bool expired = false;
        st = live_idle(&w, &expired);
        if (st != RT_OK) goto cleanup;
        if (expired) {
            st = live_timeout(&w, what);
            goto cleanup;
        }
    }
cleanup:
    return st;
}

rt_status comm_allreduce_mean(float *buf, size_t n, comm_roles *r) {
    RT_TRY(need_student(r, "the gradient all-reduce"));
    char what[96];
    snprintf(what, sizeof what, "all-reduce (mean) of %zu floats among students", n);
    return chunked(&r->live_students, OP_ALLREDUCE, buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, 0,
                   1.0f / (float)r->n_students, what);
}

rt_status comm_allreduce_sum_double(double *vals, size_t n, comm_roles *r) {
    RT_TRY(need_student(r, "comm_allreduce_sum_double"));
    return chunked(&r->live_students, OP_ALLREDUCE, vals, n, MPI_DOUBLE, sizeof(double), MPI_SUM, 0,
                   1.0f, "all-reduce (sum) of doubles among students");
}

rt_status comm_allreduce_max_double(double *vals, size_t n, comm_roles *r) {
    RT_TRY(need_student(r, "comm_allreduce_max_double"));
    return chunked(&r->live_students, OP_ALLREDUCE, vals, n, MPI_DOUBLE, sizeof(double), MPI_MAX, 0,
                   1.0f, "all-reduce (max) of doubles among students");
}

rt_status comm_bcast_world(void *buf, size_t bytes, int root, comm_roles *r) {
    if (root < 0 || root >= r->world_size)
        return rt_fail(RT_ERR_ARGS, "broadcast root rank %d is not among the %d world ranks", root,
                       r->world_size);
    char what[96];
    snprintf(what, sizeof what, "broadcast of %zu bytes from world rank %d", bytes, root);
    return chunked(&r->live_world, OP_BCAST, buf, bytes, MPI_BYTE, 1, MPI_OP_NULL, root, 1.0f,
                   what);
}
