/* The teacher -> student record stream with credit-based back-pressure.
 *
 * Protocol, on the roles' private duplicate of the world communicator:
 *  - tag COMM_TAG_RECORD, teacher -> student: wire records (comm_codec),
 *    then one 16-byte end-of-stream message {END_MAGIC, records sent}.
 *    Messages of one tag between two ranks are matched in send order (MPI's
 *    non-overtaking rule), so the end marker always comes last.
 *  - tag COMM_TAG_CREDIT, student -> teacher: an int32 count of records the
 *    student has consumed since its last credit message, or 0: "stop", the
 *    student will use no more records (it still returns the credits of the
 *    ones it discards, so the teacher's close completes).
 * A teacher starts with `depth` credits per student and spends one per
 * record, so a student never holds more than `depth` unconsumed records:
 * the teacher can run ahead of a slow student by at most `depth` micro-
 * batches and memory stays bounded on both sides.
 *
 * Sizes vary per record, so the student matches records with MPI_Improbe
 * and receives them with MPI_Imrecv into one of `depth` slot buffers. It
 * does this whenever it polls (recv, progress, close), so large
 * (rendezvous) transfers start as soon as the student looks, while it may
 * still be computing the previous micro-batch.
 *
 * Every wait is bounded by comm_timeout() and names the peer's world rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

#define END_MAGIC 0x534f455452ULL /* "RTEOS" */
#define END_BYTES 16

typedef enum { SLOT_FREE = 0, SLOT_BUSY, SLOT_READY } slot_state;

/* One message buffer. Teacher: BUSY while its Isend is in flight. Student:
 * BUSY while its Imrecv is in flight, READY once the bytes are there. */
typedef struct {
    void *buf;
    size_t cap, bytes;
    MPI_Request req;
    slot_state state;
} comm_slot;

/* Teacher's view of one served student. */
typedef struct {
    int student, rank;      /* student index and world rank */
    int credits;            /* records it may still be sent */
    int64_t sent, credited; /* records sent, credits received */
    comm_slot *slots;       /* (depth) */
    int32_t credit_in;      /* receive buffer of credit messages */
    MPI_Request credit_req; /* pre-posted receive of the next credit message */
    uint64_t end_msg[2];    /* end-of-stream payload */
    MPI_Request end_req;
    bool end_sent;
    bool stopped; /* the student sent "stop": no more records for it */
} comm_peer;

struct comm_stream {
    comm_roles *roles;
    comm_stream_config cfg;
    comm_codec *codec;
    bool teacher;
    MPI_Comm comm;
    /* teacher side */
    int n_peers;
    comm_peer *peers;
    /* student side */
    int teacher_rank;
    comm_slot *slots;         /* (depth) ring of received messages, in send order */
    int head, n_used;         /* oldest slot, slots in use */
    int32_t *credit_out;      /* (depth + 1) payloads of credit messages */
    MPI_Request *credit_reqs; /* (depth + 1) */
    int credit_next;
    int64_t consumed;
    bool ended; /* the end-of-stream marker was consumed */
    bool closed;
    bool stopping; /* student: sent "stop", discards the rest */
    comm_stream_stats stats;
};

comm_stream_config comm_stream_config_default(void) {
    return (comm_stream_config){.depth = 4, .zstd_level = 3};
}

static comm_slot *slots_new(int n) {
    comm_slot *s = calloc((size_t)n, sizeof *s);
    if (s)
        for (int i = 0; i < n; i++) s[i].req = MPI_REQUEST_NULL;
    return s;
}

rt_status comm_stream_create(comm_roles *r, const comm_stream_config *cfg, comm_stream **out) {
    rt_status st = RT_OK;
    comm_stream *s = NULL;
    *out = NULL;
    comm_stream_config c = cfg ? *cfg : comm_stream_config_default();
    if (r->n_teachers == 0)
        return rt_fail(RT_ERR_ARGS, "no teacher ranks (distill.teachers = 0): there is no record "
                                    "stream in plain training");
    if (c.depth < 1 || c.depth > 1024)
        return rt_fail(RT_ERR_ARGS, "stream depth %d must be in [1, 1024]", c.depth);
    if (r->has_stream)
        return rt_fail(RT_ERR_ARGS, "world rank %d already has a record stream", r->world_rank);

    s = calloc(1, sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "out of memory for the record stream");
    s->roles = r;
    s->cfg = c;
    s->comm = r->world;
    s->teacher = r->role == COMM_ROLE_TEACHER;
    st = comm_codec_create(c.zstd_level, &s->codec);
    if (st != RT_OK) goto cleanup;
    if (s->teacher) {
        s->n_peers = r->n_served;
        s->peers = calloc((size_t)(s->n_peers ? s->n_peers : 1), sizeof *s->peers);
        if (!s->peers) {
            st = rt_fail(RT_ERR_NOMEM, "out of memory for the record stream");
            goto cleanup;
        }
        for (int i = 0; i < s->n_peers; i++) {
            comm_peer *p = &s->peers[i];
            p->student = r->served[i];
            p->rank = r->n_teachers + p->student;
            p->credits = c.depth;
            p->credit_req = p->end_req = MPI_REQUEST_NULL;
            p->slots = slots_new(c.depth);
            if (!p->slots) {
                st = rt_fail(RT_ERR_NOMEM, "out of memory for the record stream");
                goto cleanup;
            }
            COMM_MPI_CHECK_PEER(MPI_Irecv(&p->credit_in, 1, MPI_INT32_T, p->rank, COMM_TAG_CREDIT,
                                          s->comm, &p->credit_req),
                                p->rank);
        }
    } else {
        s->teacher_rank = comm_roles_my_teacher(r);
        s->slots = slots_new(c.depth);
        s->credit_out = calloc((size_t)c.depth + 1, sizeof *s->credit_out);
        s->credit_reqs = malloc(((size_t)c.depth + 1) * sizeof *s->credit_reqs);
        if (!s->slots || !s->credit_out || !s->credit_reqs) {
            st = rt_fail(RT_ERR_NOMEM, "out of memory for the record stream");
            goto cleanup;
        }
        for (int i = 0; i <= c.depth; i++) s->credit_reqs[i] = MPI_REQUEST_NULL;
    }
    r->has_stream = true;
    *out = s;
    s = NULL;
cleanup:
    comm_stream_destroy(s);
    return st;
}

/* Cancels or abandons a request at teardown. Returns true when the request
 * is finished, so its buffer may be freed. */
static bool finish_request(MPI_Request *req) {
    if (*req == MPI_REQUEST_NULL) return true;
    int done = 0;
    MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (done) return true;
    MPI_Cancel(req);
    /* A cancelled receive completes at once; a send may not be cancellable.
     * Give it a moment, never forever. */
    double t_end = comm_now() + 0.1;
    while (!done && comm_now() < t_end) MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (done) return true;
    MPI_Request_free(req);
    return false;
}

static void slots_free(comm_slot *slots, int n) {
    if (!slots) return;
    bool all = true;
    for (int i = 0; i < n; i++) {
        if (finish_request(&slots[i].req))
            free(slots[i].buf);
        else
            all = false; /* MPI may still touch it: leak rather than corrupt */
    }
    if (all) free(slots);
}

void comm_stream_destroy(comm_stream *s) {
    if (!s) return;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    bool mpi_up = inited && !finalized;
    if (s->peers) {
        bool all = true; /* credit_in and end_msg live in the peers array */
        for (int i = 0; i < s->n_peers && mpi_up; i++) {
            comm_peer *p = &s->peers[i];
            all &= finish_request(&p->credit_req);
            all &= finish_request(&p->end_req);
            slots_free(p->slots, s->cfg.depth);
        }
        if (all) free(s->peers);
    }
    if (mpi_up) {
        slots_free(s->slots, s->cfg.depth);
        bool all = true;
        if (s->credit_reqs)
            for (int i = 0; i <= s->cfg.depth; i++) all &= finish_request(&s->credit_reqs[i]);
        if (all) free(s->credit_out);
    }
    free(s->credit_reqs);
    comm_codec_destroy(s->codec);
    if (s->roles) s->roles->has_stream = false;
    free(s);
}

/* ------------------------------------------------------------ teacher */

static rt_status teacher_progress(comm_stream *s) {
    rt_status st = RT_OK;
    for (int i = 0; i < s->n_peers; i++) {
        comm_peer *p = &s->peers[i];
        for (int j = 0; j < s->cfg.depth; j++) {
            comm_slot *sl = &p->slots[j];
            if (sl->state != SLOT_BUSY) continue;
            int done = 0;
            COMM_MPI_CHECK_PEER(MPI_Test(&sl->req, &done, MPI_STATUS_IGNORE), p->rank);
            if (done) sl->state = SLOT_FREE;
        }
        while (p->credit_req != MPI_REQUEST_NULL) {
            int done = 0;
            COMM_MPI_CHECK_PEER(MPI_Test(&p->credit_req, &done, MPI_STATUS_IGNORE), p->rank);
            if (!done) break;
            int32_t got = p->credit_in;
            if (got == 0) {
                p->stopped = true;
                COMM_MPI_CHECK_PEER(MPI_Irecv(&p->credit_in, 1, MPI_INT32_T, p->rank,
                                              COMM_TAG_CREDIT, s->comm, &p->credit_req),
                                    p->rank);
                continue;
            }
            if (got < 0 || (int64_t)got > p->sent - p->credited)
                return rt_fail(RT_ERR_MPI,
                               "student %d (world rank %d) returned %d credits with only %lld "
                               "records outstanding (protocol error: mismatched retort builds?)",
                               p->student, p->rank, got, (long long)(p->sent - p->credited));
            p->credits += got;
            p->credited += got;
            COMM_MPI_CHECK_PEER(MPI_Irecv(&p->credit_in, 1, MPI_INT32_T, p->rank, COMM_TAG_CREDIT,
                                          s->comm, &p->credit_req),
                                p->rank);
        }
        if (p->end_req != MPI_REQUEST_NULL) {
            int done = 0;
            COMM_MPI_CHECK_PEER(MPI_Test(&p->end_req, &done, MPI_STATUS_IGNORE), p->rank);
        }
    }
cleanup:
    return st;
}

static comm_peer *find_peer(comm_stream *s, int student) {
    for (int i = 0; i < s->n_peers; i++)
        if (s->peers[i].student == student) return &s->peers[i];
    return NULL;
}

static comm_slot *free_slot(comm_stream *s, comm_peer *p) {
    for (int j = 0; j < s->cfg.depth; j++)
        if (p->slots[j].state == SLOT_FREE) return &p->slots[j];
    return NULL;
}

rt_status comm_stream_send(comm_stream *s, int student, const comm_record *rec) {
    rt_status st = RT_OK;
    if (!s->teacher)
        return rt_fail(RT_ERR_ARGS, "comm_stream_send on world rank %d, which is a student",
                       s->roles->world_rank);
    comm_peer *p = find_peer(s, student);
    if (!p)
        return rt_fail(RT_ERR_ARGS, "teacher %d (world rank %d) does not serve student %d",
                       s->roles->teacher_index, s->roles->world_rank, student);
    if (rec->student != student)
        return rt_fail(RT_ERR_ARGS, "record for student %d handed to the stream of student %d",
                       rec->student, student);
    if (p->end_sent)
        return rt_fail(RT_ERR_ARGS, "record for student %d after the stream was closed", student);

    comm_poll poll;
    comm_poll_start(&poll);
    comm_slot *sl = NULL;
    for (;;) {
        RT_TRY(teacher_progress(s));
        if (p->stopped || (p->credits > 0 && (sl = free_slot(s, p)))) break;
        if (comm_poll_expired(&poll))
            return rt_fail(RT_ERR_MPI,
                           "student %d (world rank %d) returned no credit for %.0f s while "
                           "holding %lld unconsumed records (dead or stalled?)",
                           student, p->rank, comm_timeout(), (long long)(p->sent - p->credited));
        comm_poll_pause(&poll);
    }
    s->stats.wait_seconds += comm_poll_elapsed(&poll);
    if (p->stopped) return RT_OK; /* it would only discard the record */

    double t0 = comm_now();
    size_t bytes = 0;
    RT_TRY(comm_codec_encode_into(s->codec, rec, &sl->buf, &sl->cap, &bytes));
    s->stats.codec_seconds += comm_now() - t0;
    if (bytes > (size_t)INT32_MAX)
        return rt_fail(RT_ERR_ARGS,
                       "record for student %d is %zu bytes compressed, over MPI's 2 GiB message "
                       "limit: lower distill.topk or the batch per student rank",
                       student, bytes);
    sl->bytes = bytes;
    COMM_MPI_CHECK_PEER(
        MPI_Isend(sl->buf, (int)bytes, MPI_BYTE, p->rank, COMM_TAG_RECORD, s->comm, &sl->req),
        p->rank);
    sl->state = SLOT_BUSY;
    p->credits--;
    p->sent++;
    int in_flight = (int)(p->sent - p->credited);
    if (in_flight > s->stats.max_in_flight) s->stats.max_in_flight = in_flight;
    s->stats.records++;
    s->stats.positions += (int64_t)rec->b * rec->T;
    s->stats.raw_bytes += (int64_t)comm_record_raw_bytes(rec);
    s->stats.wire_bytes += (int64_t)bytes;
    /* Start the transfer now rather than at the next poll. */
    st = teacher_progress(s);
cleanup:
    return st;
}

static rt_status teacher_close(comm_stream *s) {
    rt_status st = RT_OK;
    for (int i = 0; i < s->n_peers; i++) {
        comm_peer *p = &s->peers[i];
        if (p->end_sent) continue;
        p->end_msg[0] = END_MAGIC;
        p->end_msg[1] = (uint64_t)p->sent;
        COMM_MPI_CHECK_PEER(MPI_Isend(p->end_msg, END_BYTES, MPI_BYTE, p->rank, COMM_TAG_RECORD,
                                      s->comm, &p->end_req),
                            p->rank);
        p->end_sent = true;
    }
    comm_poll poll;
    comm_poll_start(&poll);
    for (;;) {
        RT_TRY(teacher_progress(s));
        comm_peer *late = NULL;
        for (int i = 0; i < s->n_peers && !late; i++) {
            comm_peer *p = &s->peers[i];
            bool busy = p->end_req != MPI_REQUEST_NULL || p->credited < p->sent;
            for (int j = 0; j < s->cfg.depth; j++) busy |= p->slots[j].state == SLOT_BUSY;
            if (busy) late = p;
        }
        if (!late) break;
        if (comm_poll_expired(&poll))
            return rt_fail(RT_ERR_MPI,
                           "closing the record stream: student %d (world rank %d) consumed only "
                           "%lld of %lld records within %.0f s (dead, stalled, or running fewer "
                           "steps than its teacher?)",
                           late->student, late->rank, (long long)late->credited,
                           (long long)late->sent, comm_timeout());
        comm_poll_pause(&poll);
    }
    /* All credits are back, so no credit message can still come: the
     * pre-posted receives are cancelled, which completes them locally. */
    for (int i = 0; i < s->n_peers; i++) {
        comm_peer *p = &s->peers[i];
        if (p->credit_req == MPI_REQUEST_NULL) continue;
        COMM_MPI_CHECK_PEER(MPI_Cancel(&p->credit_req), p->rank);
        st = comm_wait_bounded(&p->credit_req, "cancelling a credit receive", p->rank);
        if (st != RT_OK) goto cleanup;
    }
cleanup:
    return st;
}

/* ------------------------------------------------------------ student */

static rt_status student_progress(comm_stream *s) {
    rt_status st = RT_OK;
    int depth = s->cfg.depth;
    /* Complete transfers in flight. */
    for (int i = 0; i < s->n_used; i++) {
        comm_slot *sl = &s->slots[(s->head + i) % depth];
        if (sl->state != SLOT_BUSY) continue;
        int done = 0;
        COMM_MPI_CHECK_PEER(MPI_Test(&sl->req, &done, MPI_STATUS_IGNORE), s->teacher_rank);
        if (done) sl->state = SLOT_READY;
    }
    /* Match newly arrived messages into free slots, in order. */
    while (s->n_used < depth) {
        int flag = 0, count = 0;
        MPI_Message msg;
        MPI_Status status;
        COMM_MPI_CHECK_PEER(
            MPI_Improbe(s->teacher_rank, COMM_TAG_RECORD, s->comm, &flag, &msg, &status),
            s->teacher_rank);
        if (!flag) break;
        COMM_MPI_CHECK_PEER(MPI_Get_count(&status, MPI_BYTE, &count), s->teacher_rank);
        comm_slot *sl = &s->slots[(s->head + s->n_used) % depth];
        /* the buffer is sized by what the teacher sends: no more than a
         * record of the shape this student expects (cfg.max_record_bytes,
         * when set; or the end marker); a larger one is refused without
         * being received (the job ends on this error) */
        if (s->cfg.max_record_bytes && (size_t)count > s->cfg.max_record_bytes &&
            count != END_BYTES) {
            return rt_fail(RT_ERR_FORMAT,
                           "a %d-byte message from teacher rank %d is larger than any record of "
                           "the expected shape (at most %zu bytes)",
                           count, s->teacher_rank, s->cfg.max_record_bytes);
        }
        size_t need = count > 0 ? (size_t)count : 1;
        if (sl->cap < need) {
            void *nb = realloc(sl->buf, need);
            if (!nb)
                return rt_fail(RT_ERR_NOMEM,
                               "out of memory for a %d-byte record from teacher "
                               "rank %d",
                               count, s->teacher_rank);
            sl->buf = nb;
            sl->cap = need;
        }
        sl->bytes = (size_t)count;
        COMM_MPI_CHECK_PEER(MPI_Imrecv(sl->buf, count, MPI_BYTE, &msg, &sl->req), s->teacher_rank);
        sl->state = SLOT_BUSY;
        s->n_used++;
        int done = 0;
        COMM_MPI_CHECK_PEER(MPI_Test(&sl->req, &done, MPI_STATUS_IGNORE), s->teacher_rank);
        if (done) sl->state = SLOT_READY;
    }
cleanup:
    return st;
}

static bool is_end(const comm_slot *sl, uint64_t *n_sent) {
    if (sl->bytes != END_BYTES) return false;
    uint64_t m[2];
    memcpy(m, sl->buf, sizeof m);
    if (m[0] != END_MAGIC) return false;
    *n_sent = m[1];
    return true;
}

/* Waits until the oldest slot holds a complete message. */
static rt_status student_wait_head(comm_stream *s, const char *waiting_for, double *waited) {
    comm_poll poll;
    comm_poll_start(&poll);
    for (;;) {
        RT_TRY(student_progress(s));
        if (s->n_used > 0 && s->slots[s->head].state == SLOT_READY) break;
        if (comm_poll_expired(&poll))
            return rt_fail(RT_ERR_MPI,
                           "student %d (world rank %d): no %s from teacher rank %d for %.0f s "
                           "(dead or stalled?)",
                           s->roles->student_index, s->roles->world_rank, waiting_for,
                           s->teacher_rank, comm_timeout());
        comm_poll_pause(&poll);
    }
    *waited = comm_poll_elapsed(&poll);
    return RT_OK;
}

/* Returns one credit to the teacher. The credit ring has depth + 1 entries,
 * more than the records that can be outstanding, so a slot is normally
 * free; the bounded wait covers a teacher that stopped receiving. */
static rt_status send_credit(comm_stream *s, int32_t value) {
    rt_status st = RT_OK;
    int i = s->credit_next;
    s->credit_next = (i + 1) % (s->cfg.depth + 1);
    if (s->credit_reqs[i] != MPI_REQUEST_NULL) {
        st = comm_wait_bounded(&s->credit_reqs[i], "returning a credit", s->teacher_rank);
        if (st != RT_OK) goto cleanup;
    }
    s->credit_out[i] = value;
    COMM_MPI_CHECK_PEER(MPI_Isend(&s->credit_out[i], 1, MPI_INT32_T, s->teacher_rank,
                                  COMM_TAG_CREDIT, s->comm, &s->credit_reqs[i]),
                        s->teacher_rank);
cleanup:
    return st;
}

rt_status comm_stream_recv(comm_stream *s, const comm_record_shape *expect, comm_record *rec,
                           double *wait_seconds) {
    rt_status st = RT_OK;
    double waited = 0.0;
    if (wait_seconds) *wait_seconds = 0.0;
    if (s->teacher)
        return rt_fail(RT_ERR_ARGS, "comm_stream_recv on world rank %d, which is a teacher",
                       s->roles->world_rank);
    if (s->ended || s->closed)
        return rt_fail(RT_ERR_ARGS, "comm_stream_recv after the stream from teacher rank %d ended",
                       s->teacher_rank);
    RT_TRY(student_wait_head(s, "record", &waited));
    if (wait_seconds) *wait_seconds = waited;
    s->stats.wait_seconds += waited;

    comm_slot *sl = &s->slots[s->head];
    uint64_t n_sent = 0;
    if (is_end(sl, &n_sent)) {
        s->ended = true;
        return rt_fail(RT_ERR_MPI,
                       "teacher rank %d ended the stream after %llu records, but student %d "
                       "(world rank %d) asked for record %lld (teacher and student disagree "
                       "on the number of steps)",
                       s->teacher_rank, (unsigned long long)n_sent, s->roles->student_index,
                       s->roles->world_rank, (long long)s->consumed + 1);
    }
    double t0 = comm_now();
    st = comm_codec_decode(s->codec, sl->buf, sl->bytes, expect, rec);
    s->stats.codec_seconds += comm_now() - t0;
    if (st != RT_OK) {
        char why[768];
        snprintf(why, sizeof why, "%s", rt_last_error());
        return rt_fail(st, "record %lld from teacher rank %d to student %d: %s",
                       (long long)s->consumed + 1, s->teacher_rank, s->roles->student_index, why);
    }
    s->stats.records++;
    s->stats.positions += (int64_t)rec->b * rec->T;
    s->stats.raw_bytes += (int64_t)comm_record_raw_bytes(rec);
    s->stats.wire_bytes += (int64_t)sl->bytes;
    sl->state = SLOT_FREE;
    s->head = (s->head + 1) % s->cfg.depth;
    s->n_used--;
    s->consumed++;
    RT_TRY(send_credit(s, 1));
    if (rec->student != s->roles->student_index)
        return rt_fail(RT_ERR_MISMATCH,
                       "teacher rank %d sent a record for student %d to student %d (world rank "
                       "%d): ranks disagree on the role assignment",
                       s->teacher_rank, rec->student, s->roles->student_index,
                       s->roles->world_rank);
    /* Let the next record start moving while the caller computes. */
    return student_progress(s);
}

static rt_status student_close(comm_stream *s) {
    rt_status st = RT_OK;
    while (!s->ended) {
        double waited = 0.0;
        RT_TRY(student_wait_head(s, "end-of-stream", &waited));
        comm_slot *sl = &s->slots[s->head];
        uint64_t n_sent = 0;
        const bool end = is_end(sl, &n_sent);
        if (!end && !s->stopping)
            return rt_fail(RT_ERR_MPI,
                           "closing the record stream: teacher rank %d sent more records than "
                           "student %d (world rank %d) consumed (%lld); teacher and student "
                           "disagree on the number of steps",
                           s->teacher_rank, s->roles->student_index, s->roles->world_rank,
                           (long long)s->consumed);
        if (end && (int64_t)n_sent != s->consumed)
            return rt_fail(RT_ERR_MPI,
                           "closing the record stream: teacher rank %d reports %llu records "
                           "sent, student %d received %lld",
                           s->teacher_rank, (unsigned long long)n_sent, s->roles->student_index,
                           (long long)s->consumed);
        sl->state = SLOT_FREE;
        s->head = (s->head + 1) % s->cfg.depth;
        s->n_used--;
        if (end) {
            s->ended = true;
        } else { /* stopping: a record sent before the teacher saw the stop */
            s->consumed++;
            RT_TRY(send_credit(s, 1));
        }
    }
    for (int i = 0; i <= s->cfg.depth; i++) {
        if (s->credit_reqs[i] == MPI_REQUEST_NULL) continue;
        st = comm_wait_bounded(&s->credit_reqs[i], "returning the last credits", s->teacher_rank);
        if (st != RT_OK) goto cleanup;
    }
cleanup:
    return st;
}

rt_status comm_stream_stop(comm_stream *s) {
    if (s->teacher)
        return rt_fail(RT_ERR_ARGS, "comm_stream_stop on world rank %d, which is a teacher",
                       s->roles->world_rank);
    if (s->stopping || s->ended || s->closed) return RT_OK;
    RT_TRY(send_credit(s, 0));
    s->stopping = true;
    return RT_OK;
}

bool comm_stream_stopped(const comm_stream *s) {
    if (!s->teacher || s->n_peers == 0) return false;
    for (int i = 0; i < s->n_peers; i++)
        if (!s->peers[i].stopped) return false;
    return true;
}

/* ------------------------------------------------------------- common */

rt_status comm_stream_progress(comm_stream *s) {
    return s->teacher ? teacher_progress(s) : student_progress(s);
}

rt_status comm_stream_close(comm_stream *s) {
    if (s->closed) return RT_OK;
    RT_TRY(s->teacher ? teacher_close(s) : student_close(s));
    s->closed = true;
    return RT_OK;
}

void comm_stream_get_stats(const comm_stream *s, comm_stream_stats *out) { *out = s->stats; }
