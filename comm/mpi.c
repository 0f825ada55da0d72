/* Process-wide MPI for libretort_comm: start-up and tear-down (comm_init,
 * comm_finalize, comm_abort), conversion of MPI error codes into one-line
 * rt_status messages, and the wait bound with its polling policy
 * (comm_timeout, comm_poll_*, comm_wait_bounded) that every wait in this
 * library goes through. It sits below roles.c and collective.c, which both
 * use it, so the arrows between the three point one way. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

static double g_timeout = 60.0;
static bool g_we_initialized = false;

/* ------------------------------------------------------------ errors */

rt_status comm_mpi_fail(int mpi_rc, const char *expr, const char *file, int line, int peer) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error code %d", mpi_rc);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (peer >= 0)
        return rt_fail(RT_ERR_MPI, "MPI call %s failed at %s:%d (peer world rank %d): %s", expr,
                       base, line, peer, msg);
    return rt_fail(RT_ERR_MPI, "MPI call %s failed at %s:%d: %s", expr, base, line, msg);
}

/* ----------------------------------------------- process-wide settings */

rt_status comm_init(int *argc, char ***argv) {
    rt_status st = RT_OK;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return rt_fail(RT_ERR_MPI, "comm_init: MPI was already finalized");
    if (!inited) {
        int provided = MPI_THREAD_SINGLE;
        /* MPI_Init has no error handler yet to return through: a failure
         * here aborts inside MPI with its own message. */
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return comm_mpi_fail(rc, "MPI_Init_thread", __FILE__, __LINE__, -1);
        g_we_initialized = true;
        if (provided < MPI_THREAD_FUNNELED)
            return rt_fail(RT_ERR_MPI,
                           "this MPI library offers thread level %d, retort needs "
                           "MPI_THREAD_FUNNELED (%d): use an MPI built with thread support",
                           provided, MPI_THREAD_FUNNELED);
    }
    COMM_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
cleanup:
    return st;
}

void comm_finalize(void) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (g_we_initialized && inited && !finalized) MPI_Finalize();
}

void comm_abort(int code, const char *msg) {
    int inited = 0, finalized = 0, rank = -1;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (!msg) msg = rt_last_error();
    if (rank >= 0)
        fprintf(stderr, "retort: rank %d: %s\n", rank, msg && msg[0] ? msg : "aborting");
    else
        fprintf(stderr, "retort: %s\n", msg && msg[0] ? msg : "aborting");
    fflush(stdout);
    fflush(stderr);
    if (code == 0) code = 1; /* an abort is never a success */
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

rt_status comm_set_timeout(double seconds) {
    if (!(seconds > 0.0) || seconds > 1e7)
        return rt_fail(RT_ERR_ARGS, "comm timeout %g s must be a positive number of seconds",
                       seconds);
    g_timeout = seconds;
    return RT_OK;
}

double comm_timeout(void) { return g_timeout; }

/* ------------------------------------------------------------ polling */

double comm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void comm_poll_start(comm_poll *p) { p->t0 = comm_now(); }

/* Spinning longer (20 or 100 ms) made no measurable difference to 1M- and
 * 16M-float all-reduces on two ranks, so the spin stays short. */
void comm_poll_pause(comm_poll *p) {
    double waited = comm_now() - p->t0;
    if (waited < 2e-3) {
        sched_yield();
    } else {
        struct timespec ts = {0, waited < 1.0 ? 100000L : 1000000L};
        nanosleep(&ts, NULL);
    }
}

double comm_poll_elapsed(const comm_poll *p) { return comm_now() - p->t0; }

/* Busy notes (comm_busy_note): the communicator they travel on (the live
 * roles' world duplicate) and when the latest one arrived here. */
static MPI_Comm g_busy_comm = MPI_COMM_NULL;
static double g_busy_at = -1e300;

/* Receives every busy note that has arrived; errors are ignored (a note is
 * advice: a broken peer shows up in the wait itself). */
static void busy_drain(void) {
    if (g_busy_comm == MPI_COMM_NULL) return;
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status status;
        int64_t v = 0;
        if (MPI_Improbe(MPI_ANY_SOURCE, COMM_TAG_BUSY, g_busy_comm, &flag, &msg, &status) !=
                MPI_SUCCESS ||
            !flag)
            return;
        if (MPI_Mrecv(&v, 1, MPI_INT64_T, &msg, MPI_STATUS_IGNORE) != MPI_SUCCESS) return;
        g_busy_at = comm_now();
    }
}

void comm_busy_listen(MPI_Comm c) {
    g_busy_comm = c;
    g_busy_at = -1e300;
}

void comm_busy_forget(MPI_Comm c) {
    if (g_busy_comm != c) return;
    busy_drain();
    g_busy_comm = MPI_COMM_NULL;
}

/* A wait longer than a second looks for busy notes; one that arrived
 * within the bound restarts the wait's clock from its arrival. */
bool comm_poll_expired(comm_poll *p) {
    const double now = comm_now();
    if (now - p->t0 < 1.0 && now - p->t0 <= g_timeout) return false;
    busy_drain();
    if (g_busy_at > p->t0) p->t0 = g_busy_at;
    return now - p->t0 > g_timeout;
}

rt_status comm_wait_bounded(MPI_Request *req, const char *what, int peer) {
    rt_status st = RT_OK;
    comm_poll p;
    comm_poll_start(&p);
    for (;;) {
        int done = 0;
        COMM_MPI_CHECK_PEER(MPI_Test(req, &done, MPI_STATUS_IGNORE), peer);
        if (done) break;
        if (comm_poll_expired(&p)) {
            if (peer >= 0)
                return rt_fail(RT_ERR_MPI,
                               "%s: no progress for %.0f s (world rank %d dead or "
                               "stalled?)",
                               what, comm_timeout(), peer);
            return rt_fail(RT_ERR_MPI, "%s: no progress for %.0f s (a rank died or stalled?)", what,
                           comm_timeout());
        }
        comm_poll_pause(&p);
    }
cleanup:
    return st;
}
