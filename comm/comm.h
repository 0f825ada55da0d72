/* libretort_comm: everything retort does over MPI.
 *
 *  - roles: the world is split into K teacher ranks (the first K world ranks)
 *    and the student ranks after them; student s is served by teacher s % K.
 *  - records: one teacher record per student micro-batch (soft labels as
 *    top-k ids + log-probabilities + tail mass, optional feature maps),
 *    framed with a checksummed header and zstd-compressed; pure byte-buffer
 *    encode/decode, usable without MPI.
 *  - the stream: teacher -> student records with credit-based back-pressure
 *    (at most `depth` unconsumed records per student), non-blocking sends,
 *    receives matched as soon as either side polls, clean end of stream.
 *  - collectives among students (gradient all-reduce, sums, broadcasts).
 *
 * Fault model. No call waits forever: every wait is a polling loop
 * (MPI_Test / MPI_Improbe with short sleeps) bounded by comm_timeout()
 * (default 60 s), so a dead or stalled peer turns into RT_ERR_MPI with a
 * message naming the peer's world rank. Collectives use the non-blocking
 * MPI-3 forms (MPI_Iallreduce, MPI_Ibcast, MPI_Comm_idup) for
 * the same reason; a blocking MPI_Allreduce on a dead peer could only be
 * ended by mpirun killing the job. Open MPI 4.1 normally does kill the whole
 * job when a rank dies, so the timeouts are the guarantee for the cases it
 * does not (a stalled rank, a node that hangs instead of dying, launchers
 * that keep going). The one blocking call is MPI_Comm_split inside
 * comm_roles_create (MPI-3 has no non-blocking split); it runs once at
 * start-up. On any comm error the caller reports it and calls comm_abort().
 *
 * Errors are rt_status values with a one-line message (rt_last_error());
 * MPI's own text comes from MPI_Error_string, zstd's from ZSTD_getErrorName.
 * Every function here is for the thread that called comm_init (MPI is
 * initialized with MPI_THREAD_FUNNELED: OpenMP threads never call MPI). */
#ifndef RT_COMM_H
#define RT_COMM_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

/* ------------------------------------------------------------ errors */

/* Records "MPI call EXPR failed at FILE:LINE[ (peer world rank P)]: MPI_MSG"
 * and returns RT_ERR_MPI. `peer` < 0 means no peer is involved. */
rt_status comm_mpi_fail(int mpi_rc, const char *expr, const char *file, int line, int peer);

/* Check macros for MPI calls, in functions that have an `rt_status st` and a
 * `cleanup:` label. Needs MPI_ERRORS_RETURN on the communicator,
 * which comm_init and comm_roles_create set. */
#define COMM_MPI_CHECK(expr) COMM_MPI_CHECK_PEER(expr, -1)
#define COMM_MPI_CHECK_PEER(expr, peer)                                      \
    do {                                                                     \
        int comm_rc_ = (expr);                                               \
        if (comm_rc_ != MPI_SUCCESS) {                                       \
            st = comm_mpi_fail(comm_rc_, #expr, __FILE__, __LINE__, (peer)); \
            goto cleanup;                                                    \
        }                                                                    \
    } while (0)

/* ----------------------------------------------- process-wide settings */

/* MPI_Init_thread(MPI_THREAD_FUNNELED) if MPI is not initialized yet, and
 * MPI_ERRORS_RETURN on MPI_COMM_WORLD. Safe to call twice. */
rt_status comm_init(int *argc, char ***argv);
/* MPI_Finalize if comm_init initialized MPI and it is not finalized yet. */
void comm_finalize(void);
/* Prints "retort: MSG" (or rt_last_error() when msg is NULL) to stderr with
 * this rank's world rank and ends every rank of the job with MPI_Abort.
 * Falls back to _exit(code) when MPI is not running. */
void comm_abort(int code, const char *msg) __attribute__((noreturn));

/* Bound of every wait in this library, seconds (> 0; default 60). A call
 * that sees no progress from its peer(s) for this long fails RT_ERR_MPI. */
rt_status comm_set_timeout(double seconds);
double comm_timeout(void);

/* ------------------------------------------------------------- roles */

typedef enum { COMM_ROLE_TEACHER = 0, COMM_ROLE_STUDENT = 1 } comm_role;

typedef struct comm_roles comm_roles;

/* Collective over `world`. World ranks 0..K-1 are teachers, K..P-1 are
 * students with student index s = world rank - K; student s is served by
 * teacher s % K (world rank s % K). K = 0 is plain training (everybody is a
 * student). Fails RT_ERR_ARGS when K < 0 or K >= P (no student left).
 * Creates private communicators (a duplicate of world for the stream, one
 * for teachers, one for students), all with MPI_ERRORS_RETURN. */
rt_status comm_roles_create(MPI_Comm world, int n_teachers, comm_roles **out);
/* NULL is fine. Call it on every rank (MPI_Comm_free is formally
 * collective, though Open MPI does not wait in it). */
void comm_roles_destroy(comm_roles *r);

comm_role comm_roles_role(const comm_roles *r);
int comm_roles_world_rank(const comm_roles *r);
int comm_roles_world_size(const comm_roles *r);
int comm_roles_n_teachers(const comm_roles *r);    /* K */
int comm_roles_n_students(const comm_roles *r);    /* P - K */
int comm_roles_student_index(const comm_roles *r); /* s, or -1 on a teacher */
int comm_roles_teacher_index(const comm_roles *r); /* t, or -1 on a student */
/* World rank of student s's teacher (-1 when K = 0 or s is out of range). */
int comm_roles_teacher_of(const comm_roles *r, int student);
/* World rank of this student's teacher (-1 on a teacher or when K = 0). */
int comm_roles_my_teacher(const comm_roles *r);
int comm_roles_student_world_rank(const comm_roles *r, int student); /* K + s */
/* Students served by this teacher (0 on a student), in increasing index;
 * the i-th one's student index and world rank. */
int comm_roles_n_served(const comm_roles *r);
int comm_roles_served_student(const comm_roles *r, int i);
int comm_roles_served_world_rank(const comm_roles *r, int i);
/* Communicator over the students (ranks = student indices), MPI_COMM_NULL
 * on a teacher; and over the teachers, MPI_COMM_NULL on a student. Owned by
 * the roles: do not free. */
MPI_Comm comm_roles_student_comm(const comm_roles *r);
MPI_Comm comm_roles_teacher_comm(const comm_roles *r);

/* A rank that is about to be busy for long without communicating (student
 * 0 writing a checkpoint) calls this about once a second meanwhile: it sends
 * a short note to every other rank, and a wait anywhere in this library that
 * receives one restarts its comm_timeout() clock. So a slow but live writer
 * never trips the timeout, and a dead one stops sending and the waits
 * expire as before. Non-blocking; a note whose previous one to the same rank
 * is still in flight is skipped. */
rt_status comm_busy_note(comm_roles *r);

/* ----------------------------------------------------------- records */

/* Hidden-state encodings of a record (comm_record.hidden). */
typedef enum {
    COMM_HIDDEN_NONE = 0, /* no hidden states: ids + log-probabilities */
    COMM_HIDDEN_INT8 = 1, /* int8 with one f32 scale per position */
    COMM_HIDDEN_BF16 = 2, /* bf16 */
} comm_hidden;

/* Largest hidden-state width a record may announce (a model's d_model is
 * bounded the same way, STUDENT_MAX_D_MODEL). */
#define COMM_MAX_HIDDEN_WIDTH 65536

/* One teacher record: the soft labels (and feature maps) for one student
 * micro-batch of b rows of T tokens, n_pos = b * T positions in row-major
 * order. The labels are either k (id, log-probability) entries per
 * position plus the tail mass (hidden = COMM_HIDDEN_NONE, k >= 1), or the
 * teacher's final normalized hidden state per position (hidden = INT8 or
 * BF16, k = 0, no tail), from which a student holding the teacher's output
 * matrix rebuilds the full logits. Owned by the caller.
 * comm_record_reserve/decode point the arrays into one block owned by the
 * record (freed by comm_record_free); a caller that only encodes may
 * instead point them at its own buffers. */
typedef struct {
    int64_t step;       /* global training step */
    int32_t student;    /* student index the record is for */
    int32_t b, T;       /* micro-batch rows and sequence length */
    int32_t k;          /* entries per position; k == vocab means dense; 0 with hidden */
    int32_t vocab;      /* vocabulary size (ids are in [0, vocab)) */
    float temperature;  /* softmax temperature of the log-probabilities */
    int32_t n_feat;     /* feature-map layers (0 = none) */
    int32_t feat_width; /* width of each feature map (teacher d_model) */
    int32_t hidden;       /* comm_hidden */
    int32_t hidden_width; /* width of the hidden states (teacher d_model), 0 without */
    int64_t *starts;    /* (b) token offset of each row's window: identity */
    int32_t *ids;       /* (n_pos, k) token ids, any order */
    float *logprobs;    /* (n_pos, k) log p(id) at `temperature` */
    float *tail;        /* (n_pos) probability mass not in the k entries (NULL when k = 0) */
    float *hscale;      /* (n_pos) int8 hidden states: value = q * hscale (else NULL) */
    void *hstate;       /* (n_pos, hidden_width) int8_t or bf16 (uint16_t) hidden states */
    float *feat;        /* (n_feat, n_pos, feat_width) */
    /* owned storage behind the arrays above (managed by reserve/free) */
    void *block_;
    size_t block_bytes_;
} comm_record;

/* A record's shape: what a receiver expects (comm_codec_decode;
 * feat_width only matters when n_feat > 0) and what
 * comm_record_reserve_shape lays out. hidden and hidden_width are 0 for a
 * record of label entries. */
typedef struct {
    int32_t b, T, k, vocab, n_feat, feat_width, hidden, hidden_width;
} comm_record_shape;

/* Zeroes *r (no storage). */
void comm_record_init(comm_record *r);
/* Sets the shape fields and points the arrays into the record's own block,
 * growing it when needed (contents are unspecified). RT_ERR_ARGS on a bad
 * shape (b, T, vocab >= 1; 1 <= k <= vocab without hidden states, k = 0
 * and 1 <= hidden_width <= COMM_MAX_HIDDEN_WIDTH with them; n_feat,
 * feat_width >= 0). */
rt_status comm_record_reserve_shape(comm_record *r, const comm_record_shape *shape);
/* The same for a record of soft-label entries (no hidden states). */
rt_status comm_record_reserve(comm_record *r, int32_t b, int32_t T, int32_t k, int32_t vocab,
                              int32_t n_feat, int32_t feat_width);
/* Frees the record's block and zeroes *r. NULL is fine. */
void comm_record_free(comm_record *r);
/* Uncompressed payload bytes of r (starts, ids, logprobs, tail, hscale,
 * hstate, feat). */
size_t comm_record_payload_bytes(const comm_record *r);
/* Header + payload bytes of r before compression. */
size_t comm_record_raw_bytes(const comm_record *r);
/* The most bytes a wire record of this shape can take (header + zstd's
 * bound on the compressed payload); 0 when the shape's sizes overflow. */
size_t comm_record_wire_bound(const comm_record_shape *shape);

/* Checks that r is the teacher's record for this student's batch: same
 * step, same student index, same b and the same window starts. Fails
 * RT_ERR_MISMATCH naming the step, the student and the first differing
 * window (teacher and student disagree on data, seed or batch). */
rt_status comm_record_check_identity(const comm_record *r, int64_t step, int student,
                                     const int64_t *starts, int32_t b);

/* Checks that r has the shape this student reads: T positions, `vocab`,
 * k entries per position, n_feat feature maps each feat_width wide (the
 * teacher's d_model). Fails RT_ERR_MISMATCH naming the step and what
 * differs, so nothing is read from a record of another shape (a record's
 * feature block is n_feat * positions * its own width). */
rt_status comm_record_check_shape(const comm_record *r, int64_t step, int32_t T, int32_t vocab,
                                  int32_t k, int32_t n_feat, int32_t feat_width);

/* Size of the wire header of a record without hidden states (format
 * version 1); a record with them has an 80-byte header (version 2). A
 * record on the wire is its header followed by the zstd frame of the
 * (byte-shuffled) payload. */
#define COMM_RECORD_HEADER_BYTES 72
#define COMM_RECORD_HEADER_BYTES_HIDDEN 80
#define COMM_RECORD_VERSION 1
#define COMM_RECORD_VERSION_HIDDEN 2

/* Reusable compression state (zstd contexts + scratch buffers). */
typedef struct comm_codec comm_codec;

/* level: zstd level, 1..ZSTD_maxCLevel() (3 is a good default; negative
 * "fast" levels are accepted too). */
rt_status comm_codec_create(int level, comm_codec **out);
void comm_codec_destroy(comm_codec *c); /* NULL is fine */
/* Encodes r into the codec's own buffer: *wire and *wire_bytes stay valid until
 * the next encode on this codec. RT_ERR_ARGS on a malformed record. */
rt_status comm_codec_encode(comm_codec *c, const comm_record *r, const void **wire,
                            size_t *wire_bytes);
/* Same, into a caller buffer grown with realloc (*buf may be NULL). */
rt_status comm_codec_encode_into(comm_codec *c, const comm_record *r, void **buf, size_t *cap,
                                 size_t *wire_bytes);
/* Decodes one wire record into r (reserving r's storage). Verifies magic,
 * version, header size, shape, sizes, the FNV-1a 64 checksum over header and
 * compressed payload, the zstd frame, that every id is < vocab, and that
 * hidden states are finite (int8 scales finite and >= 0). The header's
 * shape must equal `expect` (the caller's own: rows, T, k, vocab, features,
 * hidden encoding and width), checked before anything is allocated: a peer
 * cannot make the receiver allocate more than a record of the receiver's
 * shape. RT_ERR_FORMAT with a message saying which check failed. */
rt_status comm_codec_decode(comm_codec *c, const void *wire, size_t wire_bytes,
                            const comm_record_shape *expect, comm_record *r);

/* FNV-1a 64-bit hash of n bytes continuing from `h` (start with
 * COMM_FNV1A64_INIT). Exposed for tests and tools. */
#define COMM_FNV1A64_INIT 0xcbf29ce484222325ULL
uint64_t comm_fnv1a64(uint64_t h, const void *data, size_t n);

/* ------------------------------------------------------------ stream */

typedef struct comm_stream comm_stream;

typedef struct {
    int depth;      /* unconsumed records in flight per student, >= 1 (4) */
    int zstd_level; /* compression level of records (3) */
    /* student: the largest message accepted from the teacher (0: any),
     * e.g. comm_record_wire_bound of the student's record shape, so that a
     * teacher cannot make a student allocate more than its records need */
    size_t max_record_bytes;
} comm_stream_config;

/* Defaults: depth 4, zstd level 3, no message bound. */
comm_stream_config comm_stream_config_default(void);

/* Local (no communication). A teacher gets a sending end for its served
 * students, a student a receiving end from its teacher. Fails RT_ERR_ARGS
 * when K = 0 (there is no teacher to stream from) or when `r` already has a
 * stream. The stream borrows `r`, which must outlive it. */
rt_status comm_stream_create(comm_roles *r, const comm_stream_config *cfg, comm_stream **out);
/* Frees the stream; pending operations are cancelled, so call
 * comm_stream_close first for a clean end. NULL is fine. */
void comm_stream_destroy(comm_stream *s);

/* Teacher: compresses `rec` and sends it non-blocking to student `student`
 * (a student index this teacher serves; rec->student must equal it). Blocks
 * only while that student holds `depth` unconsumed records, and then at
 * most comm_timeout() seconds before failing RT_ERR_MPI naming the student's
 * world rank. `rec` may be reused as soon as this returns. */
rt_status comm_stream_send(comm_stream *s, int student, const comm_record *rec);

/* Student: the next record from this student's teacher, decoded into `rec`
 * (storage reserved as needed; a record not of shape `expect` is refused
 * before it is decompressed, see comm_codec_decode), and the seconds spent waiting for it
 * (wait_seconds may be NULL). Returns the record's credit to the teacher.
 * RT_ERR_MPI naming the teacher's world rank when nothing arrives within
 * comm_timeout() or when the teacher ended the stream; RT_ERR_FORMAT on a
 * corrupted record; RT_ERR_MISMATCH when the record names another student. */
rt_status comm_stream_recv(comm_stream *s, const comm_record_shape *expect, comm_record *rec,
                           double *wait_seconds);

/* Student: tells the teacher that this student will consume no more
 * records (it stops early, e.g. on SIGTERM, at a step every student agreed
 * on). comm_stream_close then discards whatever the teacher had already
 * sent, returning its credits, until the end-of-stream marker. */
rt_status comm_stream_stop(comm_stream *s);
/* Teacher: true once every student it serves has called comm_stream_stop
 * (the teacher then ends its loop and closes). Sends to a stopped student
 * are dropped. Call comm_stream_progress first to read new stop notes. */
bool comm_stream_stopped(const comm_stream *s);

/* Either side: advances transfers without blocking (Open MPI progresses
 * rendezvous transfers only inside MPI calls). The teacher's loop calls it
 * once per step, before comm_stream_stopped, to complete finished sends and
 * read stop notes; a student needs no call of its own: comm_stream_recv
 * ends with it, so the next record moves while the student computes. */
rt_status comm_stream_progress(comm_stream *s);

/* Clean end. Teacher: sends end-of-stream to every served student and waits
 * until each has consumed all its records (all credits back) and every send
 * completed. Student: waits for the teacher's end-of-stream and fails
 * RT_ERR_MPI if records it never consumed come first. Bounded by
 * comm_timeout(). */
rt_status comm_stream_close(comm_stream *s);

typedef struct {
    int64_t records;      /* sent (teacher) or received (student) */
    int64_t positions;    /* token positions carried by those records */
    int64_t raw_bytes;    /* header + uncompressed payload */
    int64_t wire_bytes;   /* bytes on the wire (header + zstd frame) */
    double wait_seconds;  /* teacher: blocked on credits; student: on records */
    double codec_seconds; /* compressing (teacher) or decompressing (student) */
    int max_in_flight;    /* teacher: most unconsumed records any student held */
} comm_stream_stats;

void comm_stream_get_stats(const comm_stream *s, comm_stream_stats *out);

/* ------------------------------------------------ collectives (students) */

/* These are collective over the student communicator (comm_bcast_world:
 * over the world) and fail RT_ERR_ARGS when called on a teacher. Each is
 * a sequence of MPI non-blocking collectives, polled until none has made
 * progress for comm_timeout(); ranks waiting long send each other short
 * "alive" notes so that a timeout names the ranks that never arrived. After
 * a timeout the collective is still pending inside MPI: report and
 * comm_abort. */

/* In place: buf = mean over students of buf. Each rank scales its chunk by
 * 1/n_students just before summing (overlaps the pass with the transfers;
 * same result up to float rounding). n may exceed INT_MAX. */
rt_status comm_allreduce_mean(float *buf, size_t n, comm_roles *r);
/* In place sums and maxima of doubles (loss, token counts, timings). */
rt_status comm_allreduce_sum_double(double *vals, size_t n, comm_roles *r);
rt_status comm_allreduce_max_double(double *vals, size_t n, comm_roles *r);
/* Broadcasts `bytes` bytes from world rank `root` to every rank (teachers
 * included); collective over the world. */
rt_status comm_bcast_world(void *buf, size_t bytes, int root, comm_roles *r);

/* Largest element count one MPI call of the collectives above carries
 * (default 262144, which is faster than whole buffers with Open MPI 4.1;
 * at most INT_MAX; 0 restores the default). Tests use small values to
 * exercise the splitting. */
void comm_set_max_chunk(size_t elems);

#endif
