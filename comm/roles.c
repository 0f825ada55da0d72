/* The split of the world into teacher and student ranks (comm_roles): who
 * is a teacher, which students each teacher serves, the private
 * communicators, and the liveness bookkeeping of each. MPI start-up, error
 * conversion and the wait policy are mpi.c's. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

/* The payload of every busy note (comm_busy_note): static, so that a note
 * still in flight when its roles go needs no buffer of its own. */
static const int64_t g_busy_payload = 1;

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
    r->busy_reqs = malloc((size_t)size * sizeof *r->busy_reqs);
    if (!r->busy_reqs) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for busy notes");
        goto cleanup;
    }
    for (int j = 0; j < size; j++) r->busy_reqs[j] = MPI_REQUEST_NULL;
    comm_busy_listen(r->world);
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
    if (r->world != MPI_COMM_NULL) comm_busy_forget(r->world);
    for (int j = 0; r->busy_reqs && j < r->world_size; j++) {
        if (r->busy_reqs[j] == MPI_REQUEST_NULL) continue;
        int done = 0;
        MPI_Test(&r->busy_reqs[j], &done, MPI_STATUS_IGNORE);
        if (!done) {
            MPI_Request_free(&r->busy_reqs[j]); /* the payload is static: safe to let go */
        }
    }
    free(r->busy_reqs);
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

rt_status comm_busy_note(comm_roles *r) {
    rt_status st = RT_OK;
    for (int j = 0; j < r->world_size; j++) {
        if (j == r->world_rank) continue;
        int done = 1;
        if (r->busy_reqs[j] != MPI_REQUEST_NULL)
            COMM_MPI_CHECK_PEER(MPI_Test(&r->busy_reqs[j], &done, MPI_STATUS_IGNORE), j);
        if (!done) continue; /* the last note has not left yet: one in flight is enough */
        COMM_MPI_CHECK_PEER(MPI_Isend(&g_busy_payload, 1, MPI_INT64_T, j, COMM_TAG_BUSY, r->world,
                                      &r->busy_reqs[j]),
                            j);
    }
cleanup:
    return st;
}
