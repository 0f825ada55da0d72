/* Fault scenarios for libretort_comm, one per run, driven by
 * tests/comm_fault.sh under mpiexec:
 *
 *   test_comm_fault MODE TIMEOUT_S
 *
 *   stream-kill     (np 2, K 1) the teacher sends 3 records and SIGKILLs
 *                   itself; the student must fail naming teacher rank 0
 *   stream-stall    (np 2, K 1) the teacher sends 3 records and sleeps; the
 *                   student must time out naming teacher rank 0
 *   credit-stall    (np 2, K 1, depth 2) the student takes one record and
 *                   sleeps; the teacher must time out naming world rank 1
 *   allreduce-kill  (np 3, K 0) student 2 SIGKILLs itself before an
 *                   all-reduce; students 0 and 1 must fail naming rank 2
 *   allreduce-stall (np 3, K 0) student 2 sleeps instead of joining
 *
 * A rank that sees the expected error reports it and calls comm_abort, as
 * the trainer does, so the job ends non-zero. A run that ends with exit 0
 * means the fault went unnoticed. The wrapper checks the exit status, the
 * message and that the job finished within its bound. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

static void fill(comm_record *r, int64_t step, int student) {
    r->step = step;
    r->student = student;
    r->temperature = 2.0f;
    for (int32_t i = 0; i < r->b; i++) r->starts[i] = step * 1000 + i;
    size_t n = (size_t)r->b * (size_t)r->T * (size_t)r->k;
    for (size_t i = 0; i < n; i++) {
        r->ids[i] = (int32_t)(i % (size_t)r->vocab);
        r->logprobs[i] = -1.0f - (float)(i % 7);
    }
    for (int32_t i = 0; i < r->b * r->T; i++) r->tail[i] = 0.01f;
}

static void die(const char *what) {
    fprintf(stderr, "test_comm_fault: %s\n", what);
    fflush(stderr);
    comm_abort(1, NULL);
}

static void stall(int world_rank, const char *where) {
    printf("world rank %d: stalling %s (sleeping 60 s)\n", world_rank, where);
    fflush(stdout);
    sleep(60);
}

static void kill_self(int world_rank, const char *where) {
    printf("world rank %d: SIGKILL %s\n", world_rank, where);
    fflush(stdout);
    raise(SIGKILL);
}

static int run_stream(const char *mode, comm_roles *roles) {
    comm_stream_config cfg = comm_stream_config_default();
    cfg.depth = 2;
    comm_stream *s = NULL;
    comm_record rec;
    comm_record_init(&rec);
    int me = comm_roles_world_rank(roles);
    if (comm_stream_create(roles, &cfg, &s) != RT_OK) die("stream create");
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        if (comm_record_reserve(&rec, 2, 16, 8, 64, 0, 0) != RT_OK) die("reserve");
        for (int64_t step = 0; step < 10; step++) {
            if (step == 3 && strcmp(mode, "stream-kill") == 0) kill_self(me, "mid-stream");
            if (step == 3 && strcmp(mode, "stream-stall") == 0) stall(me, "mid-stream");
            fill(&rec, step, 0);
            rt_status st = comm_stream_send(s, 0, &rec);
            if (st != RT_OK) comm_abort(1, NULL);
        }
    } else {
        for (int64_t step = 0; step < 10; step++) {
            double waited = 0;
            const comm_record_shape z = {2, 16, 8, 64, 0, 0, 0, 0}; /* the teacher's, above */
            rt_status st = comm_stream_recv(s, &z, &rec, &waited);
            if (st != RT_OK) comm_abort(1, NULL);
            printf("student: record %lld after %.3f s\n", (long long)rec.step, waited);
            fflush(stdout);
            if (step == 0 && strcmp(mode, "credit-stall") == 0) stall(me, "after one record");
        }
    }
    if (comm_stream_close(s) != RT_OK) comm_abort(1, NULL);
    comm_stream_destroy(s);
    comm_record_free(&rec);
    return 0;
}

static int run_allreduce(const char *mode, comm_roles *roles) {
    float buf[1000];
    int me = comm_roles_world_rank(roles);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++) buf[i] = (float)(me + i);
        if (round == 1 && me == 2) {
            if (strcmp(mode, "allreduce-kill") == 0) kill_self(me, "before all-reduce #2");
            stall(me, "before all-reduce #2");
        }
        if (comm_allreduce_mean(buf, 1000, roles) != RT_OK) comm_abort(1, NULL);
        printf("world rank %d: all-reduce %d done\n", me, round);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (comm_init(&argc, &argv) != RT_OK) return rt_report(RT_ERR_MPI);
    if (argc != 3) die("usage: test_comm_fault MODE TIMEOUT_S");
    const char *mode = argv[1];
    if (comm_set_timeout(atof(argv[2])) != RT_OK) comm_abort(2, NULL);
    bool stream = strncmp(mode, "stream-", 7) == 0 || strcmp(mode, "credit-stall") == 0;
    bool allred = strncmp(mode, "allreduce-", 10) == 0;
    if (!stream && !allred) die("unknown mode");
    comm_roles *roles = NULL;
    if (comm_roles_create(MPI_COMM_WORLD, stream ? 1 : 0, &roles) != RT_OK) comm_abort(1, NULL);
    int rc = stream ? run_stream(mode, roles) : run_allreduce(mode, roles);
    comm_roles_destroy(roles);
    comm_finalize();
    return rc;
}
