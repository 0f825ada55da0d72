/* MPI start-up and tear-down, error conversion, the wait bound and its
 * polling policy, and the split of the world into teacher and student
 * ranks. */
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

bool comm_poll_expired(const comm_poll *p) { return comm_now() - p->t0 > g_timeout; }

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

/* ------------------------------------------------------------- roles */

rt_status comm_roles_create(MPI_Comm world, int n_teachers, comm_roles **out) {
    rt_status st = RT_OK;
    comm_roles *r = NULL;
    MPI_Comm dup = MPI_COMM_NULL, sub = MPI_COMM_NULL;
    MPI_Request req = MPI_REQUEST_NULL;
    int rank = 0, size = 0;
    *out = NULL;
    /* Before anything can fail with MPI's default handler (abort). */
    COMM_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    if (world != MPI_COMM_WORLD) COMM_MPI_CHECK(MPI_Comm_set_errhandler(world, MPI_ERRORS_RETURN));
    COMM_MPI_CHECK(MPI_Comm_rank(world, &rank));
    COMM_MPI_CHECK(MPI_Comm_size(world, &size));
    /* Every rank sees the same arguments, so every rank fails the same way
     * here, before any communication that could leave others waiting. */
    if (n_teachers < 0)
        return rt_fail(RT_ERR_ARGS,
                       "distill.teachers = %d: the number of teacher ranks cannot "
                       "be negative (0 = plain training)",
                       n_teachers);
    if (n_teachers >= size)
        return rt_fail(RT_ERR_ARGS,
                       "distill.teachers = %d leaves no student rank among %d MPI ranks: start "
                       "at least %d ranks (mpirun -np %d) or use fewer teachers",
                       n_teachers, size, n_teachers + 1, n_teachers + 1);

    r = calloc(1, sizeof *r);
    if (!r) return rt_fail(RT_ERR_NOMEM, "out of memory for the rank roles");
    r->world = r->students = r->teachers = MPI_COMM_NULL;
    r->world_rank = rank;
    r->world_size = size;
    r->n_teachers = n_teachers;
    r->n_students = size - n_teachers;
    r->role = rank < n_teachers ? COMM_ROLE_TEACHER : COMM_ROLE_STUDENT;
    r->student_index = r->role == COMM_ROLE_STUDENT ? rank - n_teachers : -1;
    r->teacher_index = r->role == COMM_ROLE_TEACHER ? rank : -1;
    if (r->role == COMM_ROLE_TEACHER) {
        for (int s = rank; s < r->n_students; s += n_teachers) r->n_served++;
        if (r->n_served > 0) {
            r->served = malloc((size_t)r->n_served * sizeof *r->served);
            if (!r->served) {
                st = rt_fail(RT_ERR_NOMEM, "out of memory for the served-student list");
                goto cleanup;
            }
            int i = 0;
            for (int s = rank; s < r->n_students; s += n_teachers) r->served[i++] = s;
        }
    }

    /* The stream gets a private duplicate so its tags never meet anybody
     * else's traffic on `world`; idup keeps even this wait bounded. */
    COMM_MPI_CHECK(MPI_Comm_idup(world, &dup, &req));
    st = comm_wait_bounded(&req, "duplicating the world communicator", -1);
    if (st != RT_OK) goto cleanup;
    COMM_MPI_CHECK(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
    r->world = dup;
    dup = MPI_COMM_NULL;
    /* Blocking: MPI-3 has no non-blocking split. It runs once at start-up,
     * right after the idup above proved every rank alive. */
    COMM_MPI_CHECK(MPI_Comm_split(r->world, (int)r->role, rank, &sub));
    COMM_MPI_CHECK(MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN));
    if (r->role == COMM_ROLE_STUDENT)
        r->students = sub;
    else
        r->teachers = sub;
    sub = MPI_COMM_NULL;

    st = comm_live_init(&r->live_world, r->world, 0);
    if (st != RT_OK) goto cleanup;
    if (r->role == COMM_ROLE_STUDENT) {
        st = comm_live_init(&r->live_students, r->students, n_teachers);
        if (st != RT_OK) goto cleanup;
    }
    *out = r;
    r = NULL;
cleanup:
    if (dup != MPI_COMM_NULL) MPI_Comm_free(&dup);
    if (sub != MPI_COMM_NULL) MPI_Comm_free(&sub);
    comm_roles_destroy(r);
    return st;
}

void comm_roles_destroy(comm_roles *r) {
    if (!r) return;
    comm_live_free(&r->live_students);
    comm_live_free(&r->live_world);
    /* MPI_Comm_free is local in Open MPI and in the standard's intent
     * (it marks the communicator for deallocation), so no wait here. */
    if (r->students != MPI_COMM_NULL) MPI_Comm_free(&r->students);
    if (r->teachers != MPI_COMM_NULL) MPI_Comm_free(&r->teachers);
    if (r->world != MPI_COMM_NULL) MPI_Comm_free(&r->world);
    free(r->served);
    free(r);
}

comm_role comm_roles_role(const comm_roles *r) { return r->role; }
int comm_roles_world_rank(const comm_roles *r) { return r->world_rank; }
int comm_roles_world_size(const comm_roles *r) { return r->world_size; }
int comm_roles_n_teachers(const comm_roles *r) { return r->n_teachers; }
int comm_roles_n_students(const comm_roles *r) { return r->n_students; }
int comm_roles_student_index(const comm_roles *r) { return r->student_index; }
int comm_roles_teacher_index(const comm_roles *r) { return r->teacher_index; }

int comm_roles_teacher_of(const comm_roles *r, int student) {
    if (r->n_teachers == 0 || student < 0 || student >= r->n_students) return -1;
    return student % r->n_teachers;
}

int comm_roles_my_teacher(const comm_roles *r) {
    if (r->role != COMM_ROLE_STUDENT) return -1;
    return comm_roles_teacher_of(r, r->student_index);
}

int comm_roles_student_world_rank(const comm_roles *r, int student) {
    if (student < 0 || student >= r->n_students) return -1;
    return r->n_teachers + student;
}

int comm_roles_n_served(const comm_roles *r) { return r->n_served; }

int comm_roles_served_student(const comm_roles *r, int i) {
    return i >= 0 && i < r->n_served ? r->served[i] : -1;
}

int comm_roles_served_world_rank(const comm_roles *r, int i) {
    return i >= 0 && i < r->n_served ? r->n_teachers + r->served[i] : -1;
}

MPI_Comm comm_roles_student_comm(const comm_roles *r) { return r->students; }
MPI_Comm comm_roles_teacher_comm(const comm_roles *r) { return r->teachers; }
