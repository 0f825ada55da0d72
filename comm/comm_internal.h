/* Private to libretort_comm: the roles struct and the bounded polling loop
 * that every wait in this library goes through. */
#ifndef RT_COMM_INTERNAL_H
#define RT_COMM_INTERNAL_H

#include <stdbool.h>

#include "comm.h"

/* Tags on the roles' private communicators: the duplicate of the world
 * (stream, world liveness notes) and the student communicator (student
 * liveness notes). Private communicators already keep them apart from
 * anybody else's traffic; distinct values keep them apart from each other. */
enum {
    COMM_TAG_RECORD = 7101, /* teacher -> student: record or end-of-stream */
    COMM_TAG_CREDIT = 7102, /* student -> teacher: int32 credits returned */
    COMM_TAG_ALIVE = 7103,  /* any -> any: "I am waiting in collective #n" */
    COMM_TAG_BUSY = 7104,   /* any -> any: "I am busy (writing), not dead" */
};

/* Liveness notes of one communicator: when a collective drags on, each
 * waiting rank tells the others which collective it waits in, so that on
 * timeout the survivors can name the ranks that never showed up. Costs
 * nothing while collectives complete quickly. */
typedef struct {
    MPI_Comm comm;
    int size, rank;
    int world_offset;  /* world rank = rank in comm + world_offset */
    int64_t seq;       /* collectives started on comm (same on every rank) */
    int64_t *seen;     /* (size) latest collective each rank said it waits in */
    int64_t *notes;    /* (size) payload of the note in flight to each rank */
    MPI_Request *reqs; /* (size) notes in flight */
} comm_live;

struct comm_roles {
    MPI_Comm world;    /* private duplicate of the caller's world (stream traffic) */
    MPI_Comm students; /* MPI_COMM_NULL on teachers */
    MPI_Comm teachers; /* MPI_COMM_NULL on students */
    int world_rank, world_size;
    int n_teachers, n_students;
    comm_role role;
    int student_index; /* -1 on teachers */
    int teacher_index; /* -1 on students */
    int n_served;
    int *served;             /* (n_served) student indices, increasing */
    comm_live live_students; /* on students only */
    comm_live live_world;
    MPI_Request *busy_reqs; /* (world_size) busy notes in flight */
    bool has_stream;
};

/* Bounded wait (mpi.c): spins (MPI_Test + sched_yield) for the first
 * couple of milliseconds, because active transfers need frequent progress
 * calls, then sleeps 100 us between polls, and 1 ms once the wait is long (a
 * stalled peer should not cost a core). */
typedef struct {
    double t0; /* start (or last progress), comm_now() seconds */
} comm_poll;

double comm_now(void); /* CLOCK_MONOTONIC seconds */
void comm_poll_start(comm_poll *p);
/* Sleeps or yields according to the time waited so far. */
void comm_poll_pause(comm_poll *p);
/* Seconds since comm_poll_start. */
double comm_poll_elapsed(const comm_poll *p);
/* True when the wait has been silent for longer than comm_timeout(). A busy
 * note (comm_busy_note) received from any rank counts as a sign of life: it
 * restarts the clock from its arrival. Notes are read once a wait is a
 * second old, so a note that sat unread since an earlier checkpoint can
 * extend one wait by at most one more timeout. */
bool comm_poll_expired(comm_poll *p);
/* Busy notes arrive on communicator c (the roles' world duplicate) from
 * now on; forget stops listening if c is the one listened to. */
void comm_busy_listen(MPI_Comm c);
void comm_busy_forget(MPI_Comm c);

/* Liveness bookkeeping (collective.c). */
rt_status comm_live_init(comm_live *l, MPI_Comm comm, int world_offset);
void comm_live_free(comm_live *l);

/* Waits for `req` with the poll policy above. On timeout returns RT_ERR_MPI
 * with a message "WHAT: no progress for N s (world rank PEER dead or
 * stalled?)" (the peer part only when peer >= 0). */
rt_status comm_wait_bounded(MPI_Request *req, const char *what, int peer);

#endif
