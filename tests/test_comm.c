/* Tests for libretort_comm, run under mpiexec with several layouts:
 *
 *   mpiexec -np P test_comm --teachers K
 *
 * (tests/comm.cmake registers np 2/K 1, 3/K 1, 4/K 2, 3/K 0 and a single
 * rank). Every rank runs every test in the same order, since most tests
 * communicate; tests that need a teacher check the error path instead when
 * K = 0. Waits inside tests are bounded (comm timeout 30 s), so a broken
 * rank makes the others fail rather than hang. All ranks agree on the
 * result: the failure counts are summed over the world and rank 0 prints
 * the summary.
 *
 * The run stops at the first test that fails on any rank (comm_abort, a
 * non-zero exit): after a failed or timed-out communication the ranks are
 * out of step and MPI's state is undefined, so later tests would only hang
 * or crash (a segfault in the next test was seen). tests/comm.cmake checks
 * this with RT_TEST_COMM_STALL=TEST, which makes the last rank sleep past
 * the timeout at the start of TEST.
 *
 * References are independent of the code under test: role layout from the
 * round-robin rule recomputed here and cross-checked with messages sent to
 * the claimed teacher; records compared field by field with the values the
 * test generated; back-pressure counted from timestamps taken outside the
 * stream (CLOCK_MONOTONIC is one clock for all ranks of a node); the
 * all-reduce against its closed form. */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "comm.h"
#include "comm_internal.h" /* COMM_TAG_RECORD, roles->world: a teacher that breaks the protocol */

static int g_rank, g_size, g_K;
/* Generous: rank 0 alone measures wire sizes (test_wire_size) while the
 * others wait in the next test, and a loaded machine stalls ranks for
 * seconds. Tests of the timeout path set their own short timeouts. */
static double g_timeout = 30.0; /* 2 s in the test RT_TEST_COMM_STALL names */

/* ------------------------------------------------------------ helpers */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int has_error(const char *needle) {
    int ok = strstr(rt_last_error(), needle) != NULL;
    if (!ok)
        printf("\n    rank %d: error message \"%s\" lacks \"%s\"\n", g_rank, rt_last_error(),
               needle);
    return ok;
}

/* Bounded wait for test-only MPI traffic. */
static bool twait(MPI_Request *req) {
    double t_end = now_s() + g_timeout;
    for (;;) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
        if (done) return true;
        if (now_s() > t_end) return false;
        sched_yield();
    }
}

/* Sum of v over the world (bounded; -1 when it did not complete). */
static long long world_sum(long long v) {
    long long out = 0;
    MPI_Request req;
    if (MPI_Iallreduce(&v, &out, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return -1;
    return twait(&req) ? out : -1;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64: test data only */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unif(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static double rng_normal(uint64_t *s) {
    double u1 = rng_unif(s), u2 = rng_unif(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Fills a reserved record with arbitrary content determined by `seed`. */
static void fill_random(comm_record *r, int64_t step, int student, uint64_t seed) {
    uint64_t s = seed;
    r->step = step;
    r->student = student;
    r->temperature = 0.5f + (float)(rng_next(&s) % 8);
    for (int32_t i = 0; i < r->b; i++) r->starts[i] = (int64_t)(rng_next(&s) % 1000000000ULL);
    size_t n_pos = (size_t)r->b * (size_t)r->T, nk = n_pos * (size_t)r->k;
    for (size_t i = 0; i < nk; i++) {
        r->ids[i] = (int32_t)(rng_next(&s) % (uint64_t)r->vocab);
        r->logprobs[i] = (float)(-20.0 * rng_unif(&s));
    }
    for (size_t i = 0; i < n_pos; i++) r->tail[i] = (float)rng_unif(&s);
    size_t nf = n_pos * (size_t)r->n_feat * (size_t)r->feat_width;
    for (size_t i = 0; i < nf; i++) r->feat[i] = (float)rng_normal(&s);
}

/* Field-by-field, bit-exact comparison; prints the first difference. */
static bool records_equal(const comm_record *a, const comm_record *b) {
    const char *what = NULL;
    if (a->step != b->step)
        what = "step";
    else if (a->student != b->student)
        what = "student";
    else if (a->b != b->b || a->T != b->T || a->k != b->k)
        what = "shape";
    else if (a->vocab != b->vocab)
        what = "vocab";
    else if (a->n_feat != b->n_feat || a->feat_width != b->feat_width)
        what = "feature shape";
    else if (memcmp(&a->temperature, &b->temperature, sizeof(float)) != 0)
        what = "temperature";
    else {
        size_t n_pos = (size_t)a->b * (size_t)a->T, nk = n_pos * (size_t)a->k;
        size_t nf = n_pos * (size_t)a->n_feat * (size_t)a->feat_width;
        if (memcmp(a->starts, b->starts, (size_t)a->b * 8) != 0)
            what = "starts";
        else if (memcmp(a->ids, b->ids, nk * 4) != 0)
            what = "ids";
        else if (memcmp(a->logprobs, b->logprobs, nk * 4) != 0)
            what = "logprobs";
        else if (memcmp(a->tail, b->tail, n_pos * 4) != 0)
            what = "tail";
        else if (nf && memcmp(a->feat, b->feat, nf * 4) != 0)
            what = "feat";
    }
    if (what) printf("\n    rank %d: records differ in %s\n", g_rank, what);
    return what == NULL;
}

static comm_roles *roles_or_fail(int k) {
    comm_roles *r = NULL;
    rt_status st = comm_roles_create(MPI_COMM_WORLD, k, &r);
    if (st != RT_OK) printf("\n    rank %d: %s\n", g_rank, rt_last_error());
    return r;
}

/* -------------------------------------------------------------- roles */

static void test_roles_layout(void) {
    comm_roles *r = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    int S = g_size - g_K;
    CU_ASSERT_EQUAL(comm_roles_world_rank(r), g_rank);
    CU_ASSERT_EQUAL(comm_roles_world_size(r), g_size);
    CU_ASSERT_EQUAL(comm_roles_n_teachers(r), g_K);
    CU_ASSERT_EQUAL(comm_roles_n_students(r), S);
    for (int s = 0; s < S; s++) {
        CU_ASSERT_EQUAL(comm_roles_teacher_of(r, s), g_K ? s % g_K : -1);
        CU_ASSERT_EQUAL(comm_roles_student_world_rank(r, s), g_K + s);
    }
    CU_ASSERT_EQUAL(comm_roles_teacher_of(r, S), -1);
    CU_ASSERT_EQUAL(comm_roles_teacher_of(r, -1), -1);

    if (g_rank < g_K) {
        CU_ASSERT_EQUAL(comm_roles_role(r), COMM_ROLE_TEACHER);
        CU_ASSERT_EQUAL(comm_roles_teacher_index(r), g_rank);
        CU_ASSERT_EQUAL(comm_roles_student_index(r), -1);
        CU_ASSERT_EQUAL(comm_roles_my_teacher(r), -1);
        CU_ASSERT(comm_roles_student_comm(r) == MPI_COMM_NULL);
        int tsize = -1;
        MPI_Comm_size(comm_roles_teacher_comm(r), &tsize);
        CU_ASSERT_EQUAL(tsize, g_K);
        /* Round-robin: teacher t serves t, t + K, t + 2K, ... */
        int expect = 0;
        for (int s = g_rank; s < S; s += g_K) {
            CU_ASSERT_EQUAL(comm_roles_served_student(r, expect), s);
            CU_ASSERT_EQUAL(comm_roles_served_world_rank(r, expect), g_K + s);
            expect++;
        }
        CU_ASSERT_EQUAL(comm_roles_n_served(r), expect);
        CU_ASSERT_EQUAL(comm_roles_served_student(r, expect), -1);
        /* Every served student must have picked this rank as its teacher. */
        for (int i = 0; i < comm_roles_n_served(r); i++) {
            int who = -1;
            MPI_Request req;
            MPI_Irecv(&who, 1, MPI_INT, comm_roles_served_world_rank(r, i), 31, MPI_COMM_WORLD,
                      &req);
            CU_ASSERT(twait(&req));
            CU_ASSERT_EQUAL(who, comm_roles_served_world_rank(r, i));
        }
    } else {
        CU_ASSERT_EQUAL(comm_roles_role(r), COMM_ROLE_STUDENT);
        int s = g_rank - g_K;
        CU_ASSERT_EQUAL(comm_roles_student_index(r), s);
        CU_ASSERT_EQUAL(comm_roles_teacher_index(r), -1);
        CU_ASSERT_EQUAL(comm_roles_n_served(r), 0);
        CU_ASSERT(comm_roles_teacher_comm(r) == MPI_COMM_NULL);
        int srank = -1, ssize = -1;
        MPI_Comm_rank(comm_roles_student_comm(r), &srank);
        MPI_Comm_size(comm_roles_student_comm(r), &ssize);
        CU_ASSERT_EQUAL(srank, s);
        CU_ASSERT_EQUAL(ssize, S);
        CU_ASSERT_EQUAL(comm_roles_my_teacher(r), g_K ? s % g_K : -1);
        if (g_K) {
            MPI_Request req;
            MPI_Isend(&g_rank, 1, MPI_INT, comm_roles_my_teacher(r), 31, MPI_COMM_WORLD, &req);
            CU_ASSERT(twait(&req));
        }
    }
    /* The served lists partition the students. */
    CU_ASSERT_EQUAL(world_sum(comm_roles_n_served(r)), g_K ? S : 0);
    comm_roles_destroy(r);
}

static void test_roles_errors(void) {
    comm_roles *r = NULL;
    CU_ASSERT_EQUAL(comm_roles_create(MPI_COMM_WORLD, -1, &r), RT_ERR_ARGS);
    CU_ASSERT(has_error("negative"));
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL(comm_roles_create(MPI_COMM_WORLD, g_size, &r), RT_ERR_ARGS);
    CU_ASSERT(has_error("no student"));
    CU_ASSERT_EQUAL(comm_roles_create(MPI_COMM_WORLD, g_size + 3, &r), RT_ERR_ARGS);
    CU_ASSERT(has_error("mpirun -np"));
    CU_ASSERT_PTR_NULL(r);
    comm_roles_destroy(NULL);
    CU_ASSERT_EQUAL(comm_set_timeout(0.0), RT_ERR_ARGS);
    CU_ASSERT_EQUAL(comm_set_timeout(-3.0), RT_ERR_ARGS);
    CU_ASSERT_EQUAL(comm_timeout(), g_timeout);
}

/* -------------------------------------------------------------- codec */

/* The shape of a record, as the receiver that expects it passes it. */
static comm_record_shape shape_of(const comm_record *r) {
    return (comm_record_shape){r->b, r->T, r->k, r->vocab, r->n_feat, r->feat_width, 0, 0};
}

static void test_codec_roundtrip(void) {
    comm_codec *c = NULL;
    comm_record a, b;
    comm_record_init(&a);
    comm_record_init(&b);
    CU_ASSERT_EQUAL_FATAL(comm_codec_create(3, &c), RT_OK);
    /* Shapes: with features, without, dense (k == vocab), a single
     * position, and growth/shrink of the decoded record's storage. */
    const int32_t shapes[][6] = {
        {2, 16, 8, 100, 2, 12}, {4, 32, 16, 5000, 0, 0},  {1, 8, 64, 64, 0, 0},
        {1, 1, 1, 1, 1, 1},     {3, 64, 32, 8192, 1, 48}, {2, 4, 2, 10, 0, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int32_t *z = shapes[i];
        CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&a, z[0], z[1], z[2], z[3], z[4], z[5]), RT_OK);
        fill_random(&a, 1000 + (int64_t)i, (int)i, 77 + i);
        const void *wire = NULL;
        size_t n = 0;
        CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &a, &wire, &n), RT_OK);
        CU_ASSERT(n > COMM_RECORD_HEADER_BYTES);
        const comm_record_shape want = {z[0], z[1], z[2], z[3], z[4], z[5], 0, 0};
        CU_ASSERT_EQUAL(comm_codec_decode(c, wire, n, &want, &b), RT_OK);
        CU_ASSERT(records_equal(&a, &b));
        CU_ASSERT_EQUAL(comm_record_payload_bytes(&b),
                        (size_t)z[0] * 8 + (size_t)z[0] * z[1] * (8 * (size_t)z[2] + 4) +
                            (size_t)z[0] * z[1] * z[4] * z[5] * 4);
    }
    /* A caller-owned record (arrays pointing at its own buffers) encodes the
     * same bytes as one using the record's block. */
    int64_t starts[2] = {5, 9};
    int32_t ids[2 * 3 * 2] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2};
    float lp[12], tail[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    for (int i = 0; i < 12; i++) lp[i] = -0.25f * (float)i;
    comm_record own = {.step = 7,
                       .student = 1,
                       .b = 2,
                       .T = 3,
                       .k = 2,
                       .vocab = 10,
                       .temperature = 2.0f,
                       .starts = starts,
                       .ids = ids,
                       .logprobs = lp,
                       .tail = tail};
    const void *wire = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(comm_codec_encode(c, &own, &wire, &n), RT_OK);
    CU_ASSERT_EQUAL(comm_codec_decode(c, wire, n, &(comm_record_shape){2, 3, 2, 10, 0, 0, 0, 0}, &b), RT_OK);
    CU_ASSERT(records_equal(&own, &b));
    CU_ASSERT_PTR_NULL(b.feat);
    /* encode_into grows a caller buffer. */
    void *buf = NULL;
    size_t cap = 0, n2 = 0;
    CU_ASSERT_EQUAL(comm_codec_encode_into(c, &own, &buf, &cap, &n2), RT_OK);
    CU_ASSERT_EQUAL(n2, n);
    CU_ASSERT(cap >= n2);
    free(buf);
    comm_record_free(&a);
    comm_record_free(&b);
    comm_record_free(NULL);
    comm_codec_destroy(c);
    comm_codec_destroy(NULL);
}

static void test_codec_bad_args(void) {
    comm_codec *c = NULL;
    comm_record r;
    comm_record_init(&r);
    CU_ASSERT_EQUAL(comm_codec_create(0, &c), RT_ERR_ARGS);
    CU_ASSERT_EQUAL(comm_codec_create(1000, &c), RT_ERR_ARGS);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_EQUAL(comm_record_reserve(&r, 2, 4, 11, 10, 0, 0), RT_ERR_ARGS); /* k > vocab */
    CU_ASSERT(has_error("k <= vocab"));
    CU_ASSERT_EQUAL(comm_record_reserve(&r, 0, 4, 1, 10, 0, 0), RT_ERR_ARGS);
    CU_ASSERT_EQUAL(comm_record_reserve(&r, 1, 4, 1, 10, 2, 0), RT_ERR_ARGS); /* feat, width 0 */
    CU_ASSERT_EQUAL_FATAL(comm_codec_create(1, &c), RT_OK);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&r, 1, 4, 2, 10, 0, 0), RT_OK);
    fill_random(&r, 0, 0, 5);
    const void *wire = NULL;
    size_t n = 0;
    r.temperature = 0.0f;
    CU_ASSERT_EQUAL(comm_codec_encode(c, &r, &wire, &n), RT_ERR_ARGS);
    CU_ASSERT(has_error("temperature"));
    r.temperature = 1.0f;
    r.student = -2;
    CU_ASSERT_EQUAL(comm_codec_encode(c, &r, &wire, &n), RT_ERR_ARGS);
    comm_record_free(&r);
    comm_codec_destroy(c);
}

/* Rewrites the checksum after a deliberate edit, so the check behind it
 * is the one exercised. */
static void reseal(unsigned char *w, size_t n) {
    uint64_t sum = comm_fnv1a64(COMM_FNV1A64_INIT, w, 64);
    sum = comm_fnv1a64(sum, w + COMM_RECORD_HEADER_BYTES, n - COMM_RECORD_HEADER_BYTES);
    memcpy(w + 64, &sum, 8);
}

static void test_codec_corruption(void) {
    comm_codec *c = NULL;
    comm_record a, b;
    comm_record_init(&a);
    comm_record_init(&b);
    CU_ASSERT_EQUAL_FATAL(comm_codec_create(3, &c), RT_OK);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&a, 2, 32, 8, 300, 1, 8), RT_OK);
    fill_random(&a, 42, 3, 99);
    const comm_record_shape ws = shape_of(&a);
    const void *wire0 = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &a, &wire0, &n), RT_OK);
    unsigned char *w = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);

    /* Every single flipped byte, in header or payload, is caught. */
    int missed = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(w, wire0, n);
        w[i] ^= (unsigned char)(1u << (i % 8));
        if (comm_codec_decode(c, w, n, &ws, &b) != RT_ERR_FORMAT) missed++;
    }
    printf("\n    flipped each of %zu bytes: %d undetected ", n, missed);
    CU_ASSERT_EQUAL(missed, 0);
    memcpy(w, wire0, n);
    w[COMM_RECORD_HEADER_BYTES + (n - COMM_RECORD_HEADER_BYTES) / 2] ^= 0x10;
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("checksum mismatch"));

    /* Truncation: inside the payload, and inside the header. */
    memcpy(w, wire0, n);
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n - 1, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("truncated"));
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, 40, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("shorter than its 72-byte header"));
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, 0, &ws, &b), RT_ERR_FORMAT);

    /* Wrong magic and wrong version, each with a valid checksum. */
    memcpy(w, wire0, n);
    memcpy(w, "XXXX", 4);
    reseal(w, n);
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("magic"));
    memcpy(w, wire0, n);
    w[4] = COMM_RECORD_VERSION + 1;
    reseal(w, n);
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("version 2"));

    /* A shape that disagrees with the payload size, resealed. */
    memcpy(w, wire0, n);
    int32_t k = 9;
    memcpy(w + 28, &k, 4);
    reseal(w, n);
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("does not match its shape"));

    /* Issue 16: a sender decides nothing about the receiver's memory. A
     * record of another shape is refused, and so is one whose shape fields,
     * payload size and zstd frame header all agree on 8 GiB: before the
     * receiver passed its shape, the decoder allocated whatever such a
     * header claimed. */
    comm_record_shape other = ws;
    other.T = 16;
    CU_ASSERT_EQUAL(comm_codec_decode(c, wire0, n, &other, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("b=2 T=32 k=8 vocab=300 n_feat=1 feat_width=8, the receiver expects b=2 "
                        "T=16"));
    {
        unsigned char big[COMM_RECORD_HEADER_BYTES + 13];
        memcpy(big, wire0, COMM_RECORD_HEADER_BYTES);
        const int32_t shape[6] = {1, 1 << 20, 1 << 10, 1 << 10, 0, 0}; /* b T k vocab n_feat w */
        memcpy(big + 20, shape, sizeof shape);
        const uint64_t raw = 8 + ((uint64_t)1 << 20) * (8 * ((uint64_t)1 << 10) + 4);
        const uint64_t comp = 13;
        memcpy(big + 48, &raw, 8);
        memcpy(big + 56, &comp, 8);
        /* zstd frame header: magic, single segment with an 8-byte content size */
        const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
        memcpy(big + COMM_RECORD_HEADER_BYTES, magic, 4);
        big[COMM_RECORD_HEADER_BYTES + 4] = 0xe0;
        memcpy(big + COMM_RECORD_HEADER_BYTES + 5, &raw, 8);
        CU_ASSERT_EQUAL(ZSTD_getFrameContentSize(big + COMM_RECORD_HEADER_BYTES, 13), raw);
        reseal(big, sizeof big);
        CU_ASSERT_EQUAL(comm_codec_decode(c, big, sizeof big, &ws, &b), RT_ERR_FORMAT);
        CU_ASSERT(has_error("T=1048576 k=1024 vocab=1024 n_feat=0 feat_width=0, the receiver "
                            "expects b=2 T=32"));
    }

    /* A non-positive temperature, resealed. */
    memcpy(w, wire0, n);
    float zero = 0.0f;
    memcpy(w + 44, &zero, 4);
    reseal(w, n);
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("temperature 0"));

    /* A garbled zstd frame behind a valid checksum. */
    memcpy(w, wire0, n);
    for (size_t i = COMM_RECORD_HEADER_BYTES + 8; i < n; i++) w[i] ^= 0x5a;
    reseal(w, n);
    CU_ASSERT_EQUAL(comm_codec_decode(c, w, n, &ws, &b), RT_ERR_FORMAT);
    printf("(garbled frame: %s) ", rt_last_error());

    /* A well-formed record whose ids exceed the vocabulary. */
    a.ids[17] = a.vocab;
    const void *wire1 = NULL;
    size_t n1 = 0;
    CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &a, &wire1, &n1), RT_OK);
    CU_ASSERT_EQUAL(comm_codec_decode(c, wire1, n1, &ws, &b), RT_ERR_FORMAT);
    CU_ASSERT(has_error("outside the vocabulary of 300"));
    free(w);
    comm_record_free(&a);
    comm_record_free(&b);
    comm_codec_destroy(c);
}

static void test_identity(void) {
    comm_record r;
    comm_record_init(&r);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&r, 4, 8, 2, 16, 0, 0), RT_OK);
    fill_random(&r, 12, 2, 3);
    int64_t mine[4];
    memcpy(mine, r.starts, sizeof mine);
    CU_ASSERT_EQUAL(comm_record_check_identity(&r, 12, 2, mine, 4), RT_OK);
    CU_ASSERT_EQUAL(comm_record_check_identity(&r, 13, 2, mine, 4), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("step 12") && has_error("step 13"));
    CU_ASSERT_EQUAL(comm_record_check_identity(&r, 12, 1, mine, 4), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("student 2") && has_error("not student 1"));
    CU_ASSERT_EQUAL(comm_record_check_identity(&r, 12, 2, mine, 3), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("4 rows"));
    mine[2] += 256;
    CU_ASSERT_EQUAL(comm_record_check_identity(&r, 12, 2, mine, 4), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("window 2"));
    char expect[64];
    snprintf(expect, sizeof expect, "at token %lld", (long long)r.starts[2]);
    CU_ASSERT(has_error(expect));
    comm_record_free(&r);
}

/* A record of another shape is refused before it is read; issue 16 item 6:
 * features of another width than the teacher's d_model. */
static void test_record_shape(void) {
    comm_record r;
    comm_record_init(&r);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&r, 2, 8, 4, 16, 1, 24), RT_OK);
    CU_ASSERT_EQUAL(comm_record_check_shape(&r, 5, 8, 16, 4, 1, 24), RT_OK);
    CU_ASSERT_EQUAL(comm_record_check_shape(&r, 5, 8, 16, 4, 1, 32), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("features 24 wide") && has_error("d_model is 32") && has_error("step 5"));
    CU_ASSERT_EQUAL(comm_record_check_shape(&r, 5, 9, 16, 4, 1, 24), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("T=8"));
    CU_ASSERT_EQUAL(comm_record_check_shape(&r, 5, 8, 16, 4, 0, 24), RT_ERR_MISMATCH);
    CU_ASSERT(has_error("features=1"));
    comm_record_free(&r);
    /* without features the width is not looked at */
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&r, 2, 8, 4, 16, 0, 0), RT_OK);
    CU_ASSERT_EQUAL(comm_record_check_shape(&r, 5, 8, 16, 4, 0, 32), RT_OK);
    comm_record_free(&r);
}

/* Wire size of a realistic record: b = 8, T = 256, k = 64 at vocab 8192.
 * Teacher logits are a frequency prior (Zipf-like over ids) plus Gaussian
 * noise plus a few strongly preferred context tokens per position, at
 * temperature 2; the record keeps the top-64 log-probs (sorted) and the
 * tail mass. Compared with the raw record and with dense f32 logits, and
 * with a dense record (k = vocab) through the same codec. Rank 0 only:
 * local work, and the numbers are reported once. */
typedef struct {
    float v;
    int32_t id;
} scored;

static void test_wire_size(void) {
    if (g_rank != 0) return;
    const int32_t b = 8, T = 256, k = 64, V = 8192;
    const float temp = 2.0f;
    const size_t n_pos = (size_t)b * T;
    comm_codec *c = NULL;
    comm_record r, d, back;
    comm_record_init(&r);
    comm_record_init(&d);
    comm_record_init(&back);
    CU_ASSERT_EQUAL_FATAL(comm_codec_create(3, &c), RT_OK);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&r, b, T, k, V, 0, 0), RT_OK);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&d, b, T, V, V, 0, 0), RT_OK);
    r.step = d.step = 5;
    r.student = d.student = 0;
    r.temperature = d.temperature = temp;
    for (int32_t i = 0; i < b; i++) r.starts[i] = d.starts[i] = (int64_t)i * 1000 * T;
    float *prior = malloc((size_t)V * sizeof *prior);
    scored *z = malloc((size_t)V * sizeof *z), top[64];
    CU_ASSERT_PTR_NOT_NULL_FATAL(prior);
    CU_ASSERT_PTR_NOT_NULL_FATAL(z);
    uint64_t s = 2024;
    for (int32_t v = 0; v < V; v++) prior[v] = (float)(-2.0 * log(1.0 + v));
    double tail_sum = 0;
    for (size_t p = 0; p < n_pos; p++) {
        for (int32_t v = 0; v < V; v++) {
            z[v].v = prior[v] + (float)(1.0 * rng_normal(&s));
            z[v].id = v;
        }
        for (int j = 0; j < 5; j++)
            z[rng_next(&s) % (uint64_t)V].v += (float)(6.0 + 8.0 * rng_unif(&s));
        double mx = -1e30, sum = 0;
        for (int32_t v = 0; v < V; v++) mx = z[v].v / temp > mx ? z[v].v / temp : mx;
        for (int32_t v = 0; v < V; v++) sum += exp(z[v].v / temp - mx);
        double lse = mx + log(sum);
        for (int32_t v = 0; v < V; v++) { /* dense record: natural id order */
            d.ids[p * V + v] = v;
            d.logprobs[p * V + v] = (float)(z[v].v / temp - lse);
        }
        d.tail[p] = 0.0f;
        /* Top-k by insertion into a sorted prefix (k << V). */
        int32_t n_top_sel = 0;
        for (int32_t v = 0; v < V; v++) {
            if (n_top_sel == k && z[v].v <= top[k - 1].v) continue;
            int32_t j = n_top_sel < k ? n_top_sel++ : k - 1;
            while (j > 0 && top[j - 1].v < z[v].v) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = z[v];
        }
        double kept = 0;
        for (int32_t j = 0; j < k; j++) {
            double lp = top[j].v / temp - lse;
            r.ids[p * k + j] = top[j].id;
            r.logprobs[p * k + j] = (float)lp;
            kept += exp(lp);
        }
        r.tail[p] = (float)(1.0 - kept > 0 ? 1.0 - kept : 0.0);
        tail_sum += r.tail[p];
    }
    const void *wire = NULL;
    size_t n_top = 0, n_dense = 0;
    double t0 = now_s();
    CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &r, &wire, &n_top), RT_OK);
    double t_enc = now_s() - t0;
    t0 = now_s();
    CU_ASSERT_EQUAL(comm_codec_decode(c, wire, n_top, &(comm_record_shape){b, T, k, V, 0, 0, 0, 0}, &back),
                    RT_OK);
    double t_dec = now_s() - t0;
    CU_ASSERT(records_equal(&r, &back));
    /* Without the byte shuffle: zstd of the plain payload, for comparison. */
    size_t raw = comm_record_payload_bytes(&r);
    unsigned char *plain = malloc(raw);
    size_t off = 0;
    memcpy(plain + off, r.starts, (size_t)b * 8), off += (size_t)b * 8;
    memcpy(plain + off, r.ids, n_pos * k * 4), off += n_pos * k * 4;
    memcpy(plain + off, r.logprobs, n_pos * k * 4), off += n_pos * k * 4;
    memcpy(plain + off, r.tail, n_pos * 4);
    size_t plain_bound = ZSTD_compressBound(raw);
    void *plain_z = malloc(plain_bound);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain_z);
    size_t n_plain = ZSTD_compress(plain_z, plain_bound, plain, raw, 3);
    CU_ASSERT_FATAL(!ZSTD_isError(n_plain));
    free(plain_z);
    CU_ASSERT_EQUAL_FATAL(comm_codec_encode(c, &d, &wire, &n_dense), RT_OK);
    double per_tok_top = (double)n_top / (double)n_pos;
    double per_tok_raw = (double)(raw + COMM_RECORD_HEADER_BYTES) / (double)n_pos;
    double per_tok_logits = 4.0 * V;
    printf("\n    wire size b=%d T=%d k=%d vocab=%d (mean tail mass %.3f):\n"
           "      top-k record, zstd-3 + shuffle: %zu bytes = %.1f B/token (encode %.1f ms, "
           "decode %.1f ms)\n"
           "      top-k record, zstd-3, no shuffle: %zu bytes = %.1f B/token\n"
           "      top-k record, raw:              %zu bytes = %.1f B/token\n"
           "      dense record (k = vocab), zstd: %zu bytes = %.1f B/token\n"
           "      dense f32 logits, raw:          %zu bytes = %.1f B/token\n"
           "      compression %.2fx vs raw record, %.0fx vs dense f32 logits ",
           b, T, k, V, tail_sum / (double)n_pos, n_top, per_tok_top, 1e3 * t_enc, 1e3 * t_dec,
           n_plain + COMM_RECORD_HEADER_BYTES,
           (double)(n_plain + COMM_RECORD_HEADER_BYTES) / (double)n_pos,
           raw + COMM_RECORD_HEADER_BYTES, per_tok_raw, n_dense, (double)n_dense / (double)n_pos,
           n_pos * (size_t)V * 4, per_tok_logits, per_tok_raw / per_tok_top,
           per_tok_logits / per_tok_top);
    CU_ASSERT(n_top < raw);
    CU_ASSERT(per_tok_top < per_tok_logits / 50);
    free(plain);
    free(prior);
    free(z);
    comm_record_free(&r);
    comm_record_free(&d);
    comm_record_free(&back);
    comm_codec_destroy(c);
}

/* ------------------------------------------------------------- stream */

/* Deterministic record content of (step, student): teacher and student
 * compute it independently. Shapes vary with the step so slot buffers
 * grow and shrink. */
static comm_record_shape expected_shape(int64_t step) {
    return (comm_record_shape){2, 8 + 8 * (int32_t)(step % 3), 5, 50, (int32_t)(step % 2), 4, 0, 0};
}

static void expected_record(comm_record *r, int64_t step, int student) {
    comm_record_shape z = expected_shape(step);
    comm_record_reserve(r, z.b, z.T, z.k, z.vocab, z.n_feat, z.feat_width);
    fill_random(r, step, student, (uint64_t)(step * 131 + student * 7 + 1));
    for (int32_t i = 0; i < r->b; i++) r->starts[i] = step * 100 + student * 10 + i;
}

static void test_stream_roundtrip(void) {
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    comm_stream *s = NULL;
    comm_stream_config cfg = comm_stream_config_default();
    cfg.depth = 3;
    if (g_K == 0) { /* plain training has no stream */
        CU_ASSERT_EQUAL(comm_stream_create(roles, &cfg, &s), RT_ERR_ARGS);
        CU_ASSERT(has_error("no teacher ranks"));
        comm_roles_destroy(roles);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(comm_stream_create(roles, &cfg, &s), RT_OK);
    const int64_t n_steps = 7;
    comm_record rec, want;
    comm_record_init(&rec);
    comm_record_init(&want);
    comm_stream_stats stats;
    long long my_wire[2] = {0, 0};
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        for (int64_t step = 0; step < n_steps; step++)
            for (int i = 0; i < comm_roles_n_served(roles); i++) {
                int st = comm_roles_served_student(roles, i);
                expected_record(&rec, step, st);
                CU_ASSERT_EQUAL(comm_stream_send(s, st, &rec), RT_OK);
                CU_ASSERT_EQUAL(comm_stream_progress(s), RT_OK);
            }
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
        comm_stream_get_stats(s, &stats);
        CU_ASSERT_EQUAL(stats.records, n_steps * comm_roles_n_served(roles));
        CU_ASSERT(stats.max_in_flight <= cfg.depth);
        my_wire[0] = stats.wire_bytes;
    } else {
        int me = comm_roles_student_index(roles);
        for (int64_t step = 0; step < n_steps; step++) {
            double waited = -1;
            const comm_record_shape z = expected_shape(step);
            CU_ASSERT_EQUAL(comm_stream_recv(s, &z, &rec, &waited), RT_OK);
            CU_ASSERT(waited >= 0.0 && waited < g_timeout);
            expected_record(&want, step, me);
            CU_ASSERT(records_equal(&rec, &want));
            CU_ASSERT_EQUAL(comm_record_check_identity(&rec, step, me, want.starts, want.b), RT_OK);
            CU_ASSERT_EQUAL(comm_stream_progress(s), RT_OK);
        }
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK); /* idempotent */
        comm_stream_get_stats(s, &stats);
        CU_ASSERT_EQUAL(stats.records, n_steps);
        CU_ASSERT(stats.wire_bytes > 0 && stats.raw_bytes > 0);
        my_wire[1] = stats.wire_bytes;
    }
    /* Bytes sent by all teachers == bytes received by all students. */
    long long sent = world_sum(my_wire[0]), got = world_sum(my_wire[1]);
    CU_ASSERT(sent > 0);
    CU_ASSERT_EQUAL(sent, got);
    comm_stream_destroy(s);
    comm_record_free(&rec);
    comm_record_free(&want);
    comm_roles_destroy(roles);
}

/* A teacher with depth d sends n records per student as fast as it can;
 * each student takes a record every `nap` ms. At the moment the student
 * asks for record m it has consumed m records, so the records posted
 * before that moment minus m are unconsumed records in flight. Posting
 * times are taken when comm_stream_send returns (after MPI_Isend), so the
 * count never overstates what the stream allowed. */
static void backpressure_round(comm_roles *roles, int depth, int n, int nap) {
    comm_stream *s = NULL;
    comm_stream_config cfg = {.depth = depth, .zstd_level = 1};
    CU_ASSERT_EQUAL_FATAL(comm_stream_create(roles, &cfg, &s), RT_OK);
    comm_record rec;
    comm_record_init(&rec);
    CU_ASSERT_EQUAL_FATAL(comm_record_reserve(&rec, 1, 16, 4, 32, 0, 0), RT_OK);
    double *t = calloc((size_t)n, sizeof *t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        int n_served = comm_roles_n_served(roles);
        double *t_post = calloc((size_t)(n * (n_served ? n_served : 1)), sizeof *t_post);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t_post);
        for (int m = 0; m < n; m++)
            for (int i = 0; i < n_served; i++) {
                int st = comm_roles_served_student(roles, i);
                fill_random(&rec, m, st, (uint64_t)m);
                CU_ASSERT_EQUAL(comm_stream_send(s, st, &rec), RT_OK);
                t_post[i * n + m] = now_s();
            }
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
        comm_stream_stats stats;
        comm_stream_get_stats(s, &stats);
        CU_ASSERT(stats.max_in_flight <= depth);
        CU_ASSERT(n_served == 0 || stats.wait_seconds > 0.0);
        for (int i = 0; i < n_served; i++) {
            MPI_Request req;
            MPI_Isend(t_post + i * n, n, MPI_DOUBLE, comm_roles_served_world_rank(roles, i), 32,
                      MPI_COMM_WORLD, &req);
            CU_ASSERT(twait(&req));
        }
        free(t_post);
    } else {
        double *t_enter = calloc((size_t)n, sizeof *t_enter);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t_enter);
        for (int m = 0; m < n; m++) {
            sleep_ms(nap);
            t_enter[m] = now_s();
            CU_ASSERT_EQUAL(comm_stream_recv(s, &(comm_record_shape){1, 16, 4, 32, 0, 0, 0, 0}, &rec,
                                             NULL),
                            RT_OK);
            CU_ASSERT_EQUAL(rec.step, m);
        }
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
        MPI_Request req;
        MPI_Irecv(t, n, MPI_DOUBLE, comm_roles_my_teacher(roles), 32, MPI_COMM_WORLD, &req);
        CU_ASSERT(twait(&req));
        int max_unconsumed = 0;
        for (int m = 0; m < n; m++) {
            int posted = 0;
            for (int j = 0; j < n; j++) posted += t[j] < t_enter[m];
            if (posted - m > max_unconsumed) max_unconsumed = posted - m;
        }
        printf("\n    rank %d: depth %d: at most %d unconsumed records in flight ", g_rank, depth,
               max_unconsumed);
        CU_ASSERT(max_unconsumed <= depth);
        /* The teacher is much faster than the student, so it runs ahead:
         * the count sees in-flight records at all. (On an idle machine it
         * reaches the bound; on an oversubscribed one, such as a 2-core CI
         * box running tests in parallel, the teacher may be descheduled
         * for longer than the student's nap, so only >= 1 is asserted.) */
        CU_ASSERT(max_unconsumed >= 1);
        free(t_enter);
    }
    free(t);
    comm_record_free(&rec);
    comm_stream_destroy(s);
}

static void test_stream_backpressure(void) {
    if (g_K == 0) return;
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    backpressure_round(roles, 2, 10, 40);
    backpressure_round(roles, 5, 12, 40);
    comm_roles_destroy(roles);
}

/* The teacher stops after 2 records, the student asks for 3. */
static void test_stream_early_end(void) {
    if (g_K == 0) return;
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    comm_stream *s = NULL;
    CU_ASSERT_EQUAL_FATAL(comm_stream_create(roles, NULL, &s), RT_OK);
    comm_record rec;
    comm_record_init(&rec);
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        for (int64_t step = 0; step < 2; step++)
            for (int i = 0; i < comm_roles_n_served(roles); i++) {
                expected_record(&rec, step, comm_roles_served_student(roles, i));
                CU_ASSERT_EQUAL(comm_stream_send(s, comm_roles_served_student(roles, i), &rec),
                                RT_OK);
            }
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
        /* a record after close is refused as such (every layout here gives
         * each teacher at least one student) and never reaches the student,
         * which sees the end after 2 records below */
        CU_ASSERT_FATAL(comm_roles_n_served(roles) > 0);
        const int to = comm_roles_served_student(roles, 0);
        expected_record(&rec, 2, to);
        CU_ASSERT_EQUAL(comm_stream_send(s, to, &rec), RT_ERR_ARGS);
        char want[96];
        snprintf(want, sizeof want, "record for student %d after the stream was closed", to);
        CU_ASSERT(has_error(want));
    } else {
        comm_record_shape z[3] = {expected_shape(0), expected_shape(1), expected_shape(2)};
        CU_ASSERT_EQUAL(comm_stream_recv(s, &z[0], &rec, NULL), RT_OK);
        CU_ASSERT_EQUAL(comm_stream_recv(s, &z[1], &rec, NULL), RT_OK);
        CU_ASSERT_EQUAL(comm_stream_recv(s, &z[2], &rec, NULL), RT_ERR_MPI);
        char want[64];
        snprintf(want, sizeof want, "teacher rank %d ended the stream after 2 records",
                 comm_roles_my_teacher(roles));
        CU_ASSERT(has_error(want));
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
    }
    comm_stream_destroy(s);
    comm_record_free(&rec);
    comm_roles_destroy(roles);
}

/* The teacher sends 3 records, the student consumes 2 and closes: both
 * sides report it (the teacher after a short timeout). */
static void test_stream_extra_records(void) {
    if (g_K == 0) return;
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    comm_stream *s = NULL;
    CU_ASSERT_EQUAL_FATAL(comm_stream_create(roles, NULL, &s), RT_OK);
    CU_ASSERT_EQUAL(comm_set_timeout(1.0), RT_OK);
    comm_record rec;
    comm_record_init(&rec);
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        for (int64_t step = 0; step < 3; step++)
            for (int i = 0; i < comm_roles_n_served(roles); i++) {
                expected_record(&rec, step, comm_roles_served_student(roles, i));
                CU_ASSERT_EQUAL(comm_stream_send(s, comm_roles_served_student(roles, i), &rec),
                                RT_OK);
            }
        double t0 = now_s();
        if (comm_roles_n_served(roles) > 0) {
            CU_ASSERT_EQUAL(comm_stream_close(s), RT_ERR_MPI);
            CU_ASSERT(has_error("consumed only 2 of 3 records"));
            CU_ASSERT(now_s() - t0 < 3.0);
        }
    } else {
        comm_record_shape z[2] = {expected_shape(0), expected_shape(1)};
        CU_ASSERT_EQUAL(comm_stream_recv(s, &z[0], &rec, NULL), RT_OK);
        CU_ASSERT_EQUAL(comm_stream_recv(s, &z[1], &rec, NULL), RT_OK);
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_ERR_MPI);
        CU_ASSERT(has_error("sent more records than student"));
    }
    CU_ASSERT_EQUAL(comm_set_timeout(g_timeout), RT_OK);
    /* Keep ranks together so the next test starts after the teacher's
     * timeout on every rank. */
    CU_ASSERT_EQUAL(world_sum(1), g_size);
    comm_stream_destroy(s);
    comm_record_free(&rec);
    comm_roles_destroy(roles);
}

/* A teacher sends a message larger than any record of the shape the
 * student expects: the student refuses it before allocating a buffer for
 * it. (Small enough to go eagerly, so the teacher's send completes although
 * the student never receives it; in a run the error ends the job.) */
static void test_stream_oversize(void) {
    if (g_K == 0) return;
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    comm_record rec;
    comm_record_init(&rec);
    const comm_record_shape z = expected_shape(0);
    const size_t bound = comm_record_wire_bound(&z);
    CU_ASSERT_FATAL(bound > COMM_RECORD_HEADER_BYTES && bound < 2000);
    const int n = (int)bound + 1000;
    comm_stream_config cfg = comm_stream_config_default();
    cfg.max_record_bytes = bound;
    comm_stream *s = NULL;
    CU_ASSERT_EQUAL_FATAL(comm_stream_create(roles, &cfg, &s), RT_OK);
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        unsigned char *junk = calloc((size_t)n, 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(junk);
        for (int i = 0; i < comm_roles_n_served(roles); i++)
            CU_ASSERT_EQUAL(MPI_Send(junk, n, MPI_BYTE, comm_roles_served_world_rank(roles, i),
                                     COMM_TAG_RECORD, roles->world),
                            MPI_SUCCESS);
        free(junk);
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
    } else {
        CU_ASSERT_EQUAL(comm_stream_recv(s, &z, &rec, NULL), RT_ERR_FORMAT);
        char want[128];
        snprintf(want, sizeof want, "a %d-byte message from teacher rank %d is larger than any "
                 "record of the expected shape (at most %zu bytes)",
                 n, comm_roles_my_teacher(roles), bound);
        CU_ASSERT(has_error(want));
        CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
    }
    comm_stream_destroy(s);
    comm_record_free(&rec);
    comm_roles_destroy(roles);
}

static void test_stream_api_errors(void) {
    if (g_K == 0) return;
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    comm_stream *s = NULL, *s2 = NULL;
    comm_stream_config bad = {.depth = 0, .zstd_level = 3};
    CU_ASSERT_EQUAL(comm_stream_create(roles, &bad, &s), RT_ERR_ARGS);
    bad.depth = 2;
    bad.zstd_level = 99;
    CU_ASSERT_EQUAL(comm_stream_create(roles, &bad, &s), RT_ERR_ARGS);
    CU_ASSERT_EQUAL_FATAL(comm_stream_create(roles, NULL, &s), RT_OK);
    CU_ASSERT_EQUAL(comm_stream_create(roles, NULL, &s2), RT_ERR_ARGS);
    CU_ASSERT(has_error("already has a record stream"));
    comm_record rec;
    comm_record_init(&rec);
    expected_record(&rec, 0, 0);
    if (comm_roles_role(roles) == COMM_ROLE_TEACHER) {
        CU_ASSERT_EQUAL(comm_stream_recv(s, &(comm_record_shape){0}, &rec, NULL), RT_ERR_ARGS);
        /* A student this teacher does not serve. */
        int other = comm_roles_n_students(roles);
        for (int t = 0; t < comm_roles_n_students(roles); t++)
            if (comm_roles_teacher_of(roles, t) != g_rank) other = t;
        rec.student = other;
        CU_ASSERT_EQUAL(comm_stream_send(s, other, &rec), RT_ERR_ARGS);
        CU_ASSERT(has_error("does not serve"));
        if (comm_roles_n_served(roles) > 0) {
            rec.student = comm_roles_served_student(roles, 0) + 1;
            CU_ASSERT_EQUAL(comm_stream_send(s, comm_roles_served_student(roles, 0), &rec),
                            RT_ERR_ARGS);
            CU_ASSERT(has_error("handed to the stream of student"));
        }
    } else {
        CU_ASSERT_EQUAL(comm_stream_send(s, 0, &rec), RT_ERR_ARGS);
        CU_ASSERT(has_error("which is a student"));
    }
    CU_ASSERT_EQUAL(comm_stream_close(s), RT_OK);
    comm_stream_destroy(s);
    comm_record_free(&rec);
    comm_roles_destroy(roles);
}

/* -------------------------------------------------------- collectives */

static void allreduce_check(comm_roles *roles, size_t n) {
    int S = comm_roles_n_students(roles), me = comm_roles_student_index(roles);
    float *x = malloc(n * sizeof *x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    for (size_t i = 0; i < n; i++) x[i] = (float)me + 0.5f * (float)i;
    CU_ASSERT_EQUAL(comm_allreduce_mean(x, n, roles), RT_OK);
    /* mean over s of (s + i/2) = (S - 1)/2 + i/2 */
    double max_rel = 0;
    for (size_t i = 0; i < n; i++) {
        double want = 0.5 * (S - 1) + 0.5 * (double)i;
        double rel = fabs((double)x[i] - want) / (want > 1.0 ? want : 1.0);
        if (rel > max_rel) max_rel = rel;
    }
    if (me == 0)
        printf("\n    all-reduce mean of %zu floats over %d students: max rel diff %.2e ", n, S,
               max_rel);
    CU_ASSERT(max_rel <= 5e-7); /* two float roundings (sum, scale) */
    free(x);
}

static void test_collectives(void) {
    comm_roles *roles = roles_or_fail(g_K);
    CU_ASSERT_PTR_NOT_NULL_FATAL(roles);
    int S = comm_roles_n_students(roles);
    if (comm_roles_role(roles) == COMM_ROLE_STUDENT) {
        int me = comm_roles_student_index(roles);
        allreduce_check(roles, 10007);
        comm_set_max_chunk(1000); /* 11 MPI calls, the last one short */
        allreduce_check(roles, 10007);
        comm_set_max_chunk(0);
        allreduce_check(roles, 0);

        double v[3] = {me, 1.0, 0.25 * me};
        CU_ASSERT_EQUAL(comm_allreduce_sum_double(v, 3, roles), RT_OK);
        CU_ASSERT_EQUAL(v[0], 0.5 * S * (S - 1));
        CU_ASSERT_EQUAL(v[1], (double)S);
        CU_ASSERT_EQUAL(v[2], 0.125 * S * (S - 1));
        double mx[2] = {me, -me};
        CU_ASSERT_EQUAL(comm_allreduce_max_double(mx, 2, roles), RT_OK);
        CU_ASSERT_EQUAL(mx[0], (double)(S - 1));
        CU_ASSERT_EQUAL(mx[1], 0.0);
    } else {
        float x[4] = {0};
        double d[1] = {0};
        CU_ASSERT_EQUAL(comm_allreduce_mean(x, 4, roles), RT_ERR_ARGS);
        CU_ASSERT(has_error("is a teacher"));
        CU_ASSERT_EQUAL(comm_allreduce_sum_double(d, 1, roles), RT_ERR_ARGS);
    }
    /* World broadcast, teachers included, from the last rank. */
    int64_t word[4] = {0, 0, 0, 0};
    if (g_rank == g_size - 1)
        for (int i = 0; i < 4; i++) word[i] = 1000 + i;
    CU_ASSERT_EQUAL(comm_bcast_world(word, sizeof word, g_size - 1, roles), RT_OK);
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(word[i], 1000 + i);
    CU_ASSERT_EQUAL(comm_bcast_world(word, 8, g_size, roles), RT_ERR_ARGS);
    /* Byte broadcasts split into chunks too. */
    unsigned char buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (unsigned char)(g_rank == g_size - 1 ? i * 7 : 0);
    comm_set_max_chunk(128);
    CU_ASSERT_EQUAL(comm_bcast_world(buf, sizeof buf, g_size - 1, roles), RT_OK);
    comm_set_max_chunk(0);
    int bad = 0;
    for (int i = 0; i < 300; i++) bad += buf[i] != (unsigned char)(i * 7);
    CU_ASSERT_EQUAL(bad, 0);
    comm_roles_destroy(roles);
}

static void test_mpi_check_macro(void) {
    /* An MPI error (here a bad rank) becomes RT_ERR_MPI with MPI's text. */
    rt_status st = RT_OK;
    int x = 0;
    COMM_MPI_CHECK_PEER(MPI_Send(&x, 1, MPI_INT, g_size + 5, 1, MPI_COMM_WORLD), g_size + 5);
cleanup:
    CU_ASSERT_EQUAL(st, RT_ERR_MPI);
    CU_ASSERT(has_error("MPI_Send"));
    CU_ASSERT(has_error("test_comm.c"));
    char want[48];
    snprintf(want, sizeof want, "peer world rank %d", g_size + 5);
    CU_ASSERT(has_error(want));
    CU_ASSERT(has_error("MPI_ERR_RANK") || has_error("invalid rank"));
}

/* --------------------------------------------------------------- main */

/* Per-test setup: the stall that tests/comm.cmake's stop test asks for
 * (every rank waits at most 2 s in that test, the last rank sleeps 6 s). */
static void test_setup(void) {
    const char *stall = getenv("RT_TEST_COMM_STALL");
    CU_pTest t = CU_get_current_test();
    if (!stall || !t || strcmp(stall, t->pName) != 0) return;
    g_timeout = 2.0;
    comm_set_timeout(g_timeout);
    if (g_rank == g_size - 1) {
        printf("rank %d: stalling 6 s at the start of %s\n", g_rank, stall);
        fflush(stdout);
        sleep_ms(6000);
    }
}

/* Per-test teardown: stops the whole job at this rank's first failure. */
static void test_teardown(void) {
    if (CU_get_number_of_failures() == 0) return;
    CU_pTest t = CU_get_current_test();
    for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext)
        fprintf(stderr, "rank %d: FAILED %s (%s:%u): %s\n", g_rank,
                f->pTest ? f->pTest->pName : "?", f->strFileName ? f->strFileName : "?",
                f->uiLineNumber, f->strCondition ? f->strCondition : "?");
    char msg[160];
    snprintf(msg, sizeof msg,
             "test_comm: stopping after %s failed (the ranks are out of step; later tests "
             "would hang or crash)",
             t ? t->pName : "a test");
    comm_abort(1, msg);
}

int main(int argc, char **argv) {
    if (comm_init(&argc, &argv) != RT_OK) return rt_report(RT_ERR_MPI);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--teachers") == 0 && i + 1 < argc) g_K = atoi(argv[++i]);
    if (g_K < 0 || g_K >= g_size) {
        if (g_rank == 0)
            fprintf(stderr, "test_comm: --teachers %d does not fit %d ranks\n", g_K, g_size);
        comm_abort(2, "bad test layout");
    }
    comm_set_timeout(g_timeout);
    if (g_rank == 0) printf("test_comm: %d ranks, %d teachers\n", g_size, g_K);

    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite suite = CU_add_suite_with_setup_and_teardown("comm", NULL, NULL, test_setup,
                                                           test_teardown);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"roles_layout", test_roles_layout},
        {"roles_errors", test_roles_errors},
        {"codec_roundtrip", test_codec_roundtrip},
        {"codec_bad_args", test_codec_bad_args},
        {"codec_corruption", test_codec_corruption},
        {"identity", test_identity},
        {"record_shape", test_record_shape},
        {"wire_size", test_wire_size},
        {"stream_roundtrip", test_stream_roundtrip},
        {"stream_backpressure", test_stream_backpressure},
        {"stream_early_end", test_stream_early_end},
        {"stream_extra_records", test_stream_extra_records},
        {"stream_oversize", test_stream_oversize},
        {"stream_api_errors", test_stream_api_errors},
        {"collectives", test_collectives},
        {"mpi_check_macro", test_mpi_check_macro},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn)) return 1;
    /* Rank 0 narrates; the others print only their failures (below). */
    CU_basic_set_mode(g_rank == 0 ? CU_BRM_VERBOSE : CU_BRM_SILENT);
    CU_basic_run_tests();
    long long failed = (long long)CU_get_number_of_failures();
    if (g_rank != 0)
        for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext)
            fprintf(stderr, "rank %d: FAILED %s (%s:%u): %s\n", g_rank,
                    f->pTest ? f->pTest->pName : "?", f->strFileName ? f->strFileName : "?",
                    f->uiLineNumber, f->strCondition ? f->strCondition : "?");
    CU_cleanup_registry();
    long long total = world_sum(failed);
    if (g_rank == 0)
        printf("\ntest_comm: %lld failed assertion(s) over %d ranks -> %s\n",
               total < 0 ? -1 : total, g_size, total == 0 ? "PASS" : "FAIL");
    comm_finalize();
    return total == 0 ? 0 : 1;
}
