/* Teacher records: storage, identity check and the wire codec.
 *
 * Wire layout (little-endian host order; the magic reads differently on a
 * big-endian host, so a mixed-endian job fails the magic check):
 *
 *   off size field
 *     0   4  magic "RTRC" (0x43525452)
 *     4   2  format version: 1 (labels), 2 (hidden states)
 *     6   2  header bytes: 72 (version 1), 80 (version 2)
 *     8   8  step
 *    16   4  student index
 *    20   4  b          24  4  T          28  4  k          32  4  vocab
 *    36   4  n_feat     40  4  feat_width 44  4  temperature (f32)
 *    48   8  raw payload bytes (before compression)
 *    56   8  compressed payload bytes (what follows the header)
 *    64   8  FNV-1a 64 over header bytes [0, 64) and [72, header bytes),
 *            then the compressed payload
 *   version 2 only:
 *    72   4  hidden encoding (comm_hidden: 1 int8, 2 bf16)
 *    76   4  hidden width (the teacher's d_model)
 *   then the zstd frame of the shuffled payload
 *
 * Payload: starts (int64[b]), ids (int32[n_pos*k]), logprobs (f32[n_pos*k]),
 * tail (f32[n_pos], only when k >= 1), hscale (f32[n_pos], int8 hidden
 * states only), feat (f32[n_feat*n_pos*width]), back to back: the "word
 * region"; then the hidden states (int8 or bf16 [n_pos*hidden_width]).
 * Before compression the word region is byte-shuffled as 4-byte words (all
 * byte 0s, then all byte 1s, ...): sign/exponent bytes of floats and the
 * high bytes of ids then sit together and compress to almost nothing,
 * which zstd alone cannot see in interleaved words (the same idea as
 * Blosc's shuffle filter); bf16 hidden states are shuffled the same way as
 * 2-byte elements, int8 ones are stored as they are.
 *
 * Records without hidden states keep version 1 and its 72-byte header, so
 * label caches and peers of the earlier format read unchanged. The checksum
 * covers the header too, so a flipped size or shape bit is caught as well
 * as a flipped payload bit. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "comm.h"

#define RECORD_MAGIC 0x43525452u /* "RTRC" read as a little-endian u32 */
#define HDR_CHECKSUM_OFF 64

struct comm_codec {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    int level;
    unsigned char *shuf; /* shuffled payload scratch */
    size_t shuf_cap;
    void *own; /* buffer behind comm_codec_encode */
    size_t own_cap;
};

uint64_t comm_fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ------------------------------------------------------------ storage */

/* Byte sizes of the payload arrays; false on overflow. `words` is the
 * 4-byte-word region (starts .. feat), `total` adds the hidden states. */
typedef struct {
    size_t starts, ids, logprobs, tail, hscale, feat, hstate, words, total;
} record_sizes;

static size_t hidden_elem_bytes(int32_t hidden) { return hidden == COMM_HIDDEN_BF16 ? 2 : 1; }

static bool record_sizes_of(const comm_record_shape *h, record_sizes *z) {
    size_t n_pos, nk, nf, nh;
    memset(z, 0, sizeof *z);
    if (__builtin_mul_overflow((size_t)h->b, (size_t)h->T, &n_pos)) return false;
    if (__builtin_mul_overflow(n_pos, (size_t)h->k, &nk)) return false;
    if (__builtin_mul_overflow(n_pos, (size_t)h->n_feat, &nf)) return false;
    if (__builtin_mul_overflow(nf, (size_t)h->feat_width, &nf)) return false;
    if (__builtin_mul_overflow(n_pos, (size_t)h->hidden_width, &nh)) return false;
    z->starts = (size_t)h->b * sizeof(int64_t);
    if (__builtin_mul_overflow(nk, sizeof(int32_t), &z->ids)) return false;
    z->logprobs = z->ids; /* same count, float is 4 bytes too */
    if (h->k > 0 && __builtin_mul_overflow(n_pos, sizeof(float), &z->tail)) return false;
    if (h->hidden == COMM_HIDDEN_INT8 && __builtin_mul_overflow(n_pos, sizeof(float), &z->hscale))
        return false;
    if (__builtin_mul_overflow(nf, sizeof(float), &z->feat)) return false;
    if (h->hidden != COMM_HIDDEN_NONE &&
        __builtin_mul_overflow(nh, hidden_elem_bytes(h->hidden), &z->hstate))
        return false;
    size_t t = z->starts;
    if (__builtin_add_overflow(t, z->ids, &t)) return false;
    if (__builtin_add_overflow(t, z->logprobs, &t)) return false;
    if (__builtin_add_overflow(t, z->tail, &t)) return false;
    if (__builtin_add_overflow(t, z->hscale, &t)) return false;
    if (__builtin_add_overflow(t, z->feat, &t)) return false;
    z->words = t;
    if (__builtin_add_overflow(t, z->hstate, &t)) return false;
    z->total = t;
    return true;
}

static rt_status check_shape(const comm_record_shape *h, const char *who) {
    const bool hid = h->hidden != COMM_HIDDEN_NONE;
    if (h->b < 1 || h->T < 1 || h->vocab < 1 || h->n_feat < 0 || h->feat_width < 0 ||
        (h->n_feat > 0 && h->feat_width < 1))
        return rt_fail(RT_ERR_ARGS,
                       "%s: bad record shape b=%d T=%d k=%d vocab=%d n_feat=%d feat_width=%d "
                       "(need b, T, k, vocab >= 1, k <= vocab, feat_width >= 1 with features)",
                       who, h->b, h->T, h->k, h->vocab, h->n_feat, h->feat_width);
    if (!hid && (h->k < 1 || h->k > h->vocab || h->hidden_width != 0))
        return rt_fail(RT_ERR_ARGS,
                       "%s: bad record shape k=%d vocab=%d hidden_width=%d (need 1 <= k <= vocab "
                       "and no hidden width without hidden states)",
                       who, h->k, h->vocab, h->hidden_width);
    if (hid && (h->hidden != COMM_HIDDEN_INT8 && h->hidden != COMM_HIDDEN_BF16))
        return rt_fail(RT_ERR_ARGS, "%s: unknown hidden-state encoding %d (1 int8, 2 bf16)", who,
                       h->hidden);
    if (hid && (h->k != 0 || h->hidden_width < 1 || h->hidden_width > COMM_MAX_HIDDEN_WIDTH))
        return rt_fail(RT_ERR_ARGS,
                       "%s: bad hidden-state record shape k=%d hidden_width=%d (need k = 0 and "
                       "1 <= hidden_width <= %d)",
                       who, h->k, h->hidden_width, COMM_MAX_HIDDEN_WIDTH);
    return RT_OK;
}

static comm_record_shape shape_of(const comm_record *r) {
    return (comm_record_shape){r->b,      r->T,          r->k,      r->vocab, r->n_feat,
                               r->feat_width, r->hidden, r->hidden_width};
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

void comm_record_init(comm_record *r) { memset(r, 0, sizeof *r); }

rt_status comm_record_reserve_shape(comm_record *r, const comm_record_shape *h) {
    RT_TRY(check_shape(h, "comm_record_reserve"));
    record_sizes z;
    if (!record_sizes_of(h, &z))
        return rt_fail(RT_ERR_ARGS, "comm_record_reserve: record of b=%d T=%d k=%d is too large",
                       h->b, h->T, h->k);
    const size_t need = align64(z.starts) + align64(z.ids) + align64(z.logprobs) +
                        align64(z.tail) + align64(z.hscale) + align64(z.hstate) + align64(z.feat);
    if (r->block_bytes_ < need || !r->block_) {
        void *blk = rt_alloc_aligned(need);
        if (!blk)
            return rt_fail(RT_ERR_NOMEM,
                           "out of memory for a %zu-byte teacher record (b=%d "
                           "T=%d k=%d)",
                           need, h->b, h->T, h->k);
        rt_free_aligned(r->block_);
        r->block_ = blk;
        r->block_bytes_ = need;
    }
    unsigned char *p = r->block_;
    r->starts = (int64_t *)p;
    p += align64(z.starts);
    r->ids = (int32_t *)p;
    p += align64(z.ids);
    r->logprobs = (float *)p;
    p += align64(z.logprobs);
    r->tail = z.tail ? (float *)p : NULL;
    p += align64(z.tail);
    r->hscale = z.hscale ? (float *)p : NULL;
    p += align64(z.hscale);
    r->hstate = z.hstate ? (void *)p : NULL;
    p += align64(z.hstate);
    r->feat = h->n_feat > 0 ? (float *)p : NULL;
    r->b = h->b;
    r->T = h->T;
    r->k = h->k;
    r->vocab = h->vocab;
    r->n_feat = h->n_feat;
    r->feat_width = h->feat_width;
    r->hidden = h->hidden;
    r->hidden_width = h->hidden_width;
    return RT_OK;
}

rt_status comm_record_reserve(comm_record *r, int32_t b, int32_t T, int32_t k, int32_t vocab,
                              int32_t n_feat, int32_t feat_width) {
    const comm_record_shape h = {b, T, k, vocab, n_feat, feat_width, COMM_HIDDEN_NONE, 0};
    return comm_record_reserve_shape(r, &h);
}

void comm_record_free(comm_record *r) {
    if (!r) return;
    rt_free_aligned(r->block_);
    comm_record_init(r);
}

size_t comm_record_payload_bytes(const comm_record *r) {
    record_sizes z;
    const comm_record_shape h = shape_of(r);
    if (!record_sizes_of(&h, &z)) return 0;
    return z.total;
}

static size_t header_bytes_of(int32_t hidden) {
    return hidden != COMM_HIDDEN_NONE ? COMM_RECORD_HEADER_BYTES_HIDDEN : COMM_RECORD_HEADER_BYTES;
}

size_t comm_record_raw_bytes(const comm_record *r) {
    return header_bytes_of(r->hidden) + comm_record_payload_bytes(r);
}

size_t comm_record_wire_bound(const comm_record_shape *shape) {
    record_sizes z;
    if (!record_sizes_of(shape, &z)) return 0;
    const size_t bound = ZSTD_compressBound(z.total);
    if (ZSTD_isError(bound) || bound > SIZE_MAX - header_bytes_of(shape->hidden)) return 0;
    return header_bytes_of(shape->hidden) + bound;
}

rt_status comm_record_check_identity(const comm_record *r, int64_t step, int student,
                                     const int64_t *starts, int32_t b) {
    if (r->step != step)
        return rt_fail(RT_ERR_MISMATCH,
                       "teacher record is for step %lld but student %d is at step %lld "
                       "(teacher and student ranks are out of step: same config and resume "
                       "checkpoint on every rank?)",
                       (long long)r->step, student, (long long)step);
    if (r->student != student)
        return rt_fail(RT_ERR_MISMATCH,
                       "teacher record at step %lld is for student %d, not student %d "
                       "(role assignment differs between ranks)",
                       (long long)step, r->student, student);
    if (r->b != b)
        return rt_fail(RT_ERR_MISMATCH,
                       "teacher record at step %lld for student %d has %d rows but the "
                       "student's micro-batch has %d (same train.batch on every rank?)",
                       (long long)step, student, r->b, b);
    for (int32_t i = 0; i < b; i++)
        if (r->starts[i] != starts[i])
            return rt_fail(RT_ERR_MISMATCH,
                           "teacher record at step %lld for student %d: window %d starts at "
                           "token %lld in the teacher's batch but at %lld in the student's "
                           "(teacher and student read different data: same train.h5, seed "
                           "and batch on every rank?)",
                           (long long)step, student, i, (long long)r->starts[i],
                           (long long)starts[i]);
    return RT_OK;
}

rt_status comm_record_check_shape(const comm_record *r, int64_t step, int32_t T, int32_t vocab,
                                  int32_t k, int32_t n_feat, int32_t feat_width) {
    if (r->T != T || r->vocab != vocab || r->k != k || r->n_feat != n_feat)
        return rt_fail(RT_ERR_MISMATCH,
                       "teacher record of step %lld has T=%d vocab=%d k=%d features=%d, "
                       "expected %d, %d, %d, %d",
                       (long long)step, r->T, r->vocab, r->k, r->n_feat, T, vocab, k, n_feat);
    if (n_feat > 0 && r->feat_width != feat_width)
        return rt_fail(RT_ERR_MISMATCH,
                       "teacher record of step %lld has features %d wide, the teacher's "
                       "d_model is %d",
                       (long long)step, r->feat_width, feat_width);
    return RT_OK;
}

/* -------------------------------------------------------------- codec */

rt_status comm_codec_create(int level, comm_codec **out) {
    *out = NULL;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel() || level == 0)
        return rt_fail(RT_ERR_ARGS, "zstd level %d is out of range [%d, %d] (0 excluded)", level,
                       ZSTD_minCLevel(), ZSTD_maxCLevel());
    comm_codec *c = calloc(1, sizeof *c);
    if (!c) return rt_fail(RT_ERR_NOMEM, "out of memory for a record codec");
    c->level = level;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    if (!c->cctx || !c->dctx) {
        comm_codec_destroy(c);
        return rt_fail(RT_ERR_NOMEM, "out of memory for zstd contexts");
    }
    size_t zr = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);
    if (ZSTD_isError(zr)) {
        comm_codec_destroy(c);
        return rt_fail(RT_ERR_ARGS, "zstd level %d: %s", level, ZSTD_getErrorName(zr));
    }
    *out = c;
    return RT_OK;
}

void comm_codec_destroy(comm_codec *c) {
    if (!c) return;
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c->shuf);
    free(c->own);
    free(c);
}

static bool grow(void **buf, size_t *cap, size_t need) {
    if (*cap >= need && *buf) return true;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n = n > SIZE_MAX / 2 ? need : n * 2;
    void *p = realloc(*buf, n);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

/* Shuffles (or unshuffles) one array that occupies elements [e0, e0 + ne)
 * of a region of n_elems elements of es bytes: byte j of element i lives at
 * j*n_elems + i of the region. */
static void shuffle_part(unsigned char *planes, size_t n_elems, size_t e0, const void *src,
                         size_t ne, size_t es) {
    const unsigned char *s = src;
    for (size_t j = 0; j < es; j++) {
        unsigned char *d = planes + j * n_elems + e0;
        for (size_t i = 0; i < ne; i++) d[i] = s[es * i + j];
    }
}

static void unshuffle_part(const unsigned char *planes, size_t n_elems, size_t e0, void *dst,
                           size_t ne, size_t es) {
    unsigned char *d = dst;
    for (size_t j = 0; j < es; j++) {
        const unsigned char *s = planes + j * n_elems + e0;
        for (size_t i = 0; i < ne; i++) d[es * i + j] = s[i];
    }
}

/* The arrays of a record in payload order: the word region, then the
 * hidden states (their own region of elements of es bytes). */
typedef struct {
    void *p;
    size_t bytes;
} record_part;

static int record_parts(const comm_record *r, const record_sizes *z, record_part parts[6]) {
    int n = 0;
    parts[n++] = (record_part){r->starts, z->starts};
    parts[n++] = (record_part){r->ids, z->ids};
    parts[n++] = (record_part){r->logprobs, z->logprobs};
    parts[n++] = (record_part){r->tail, z->tail};
    parts[n++] = (record_part){r->hscale, z->hscale};
    parts[n++] = (record_part){r->feat, z->feat};
    return n;
}

/* Payload bytes <-> the shuffled planes in `buf` (z->total bytes). */
static void payload_shuffle(unsigned char *buf, const comm_record *r, const record_sizes *z,
                            int unshuffle) {
    record_part parts[6];
    const int n = record_parts(r, z, parts);
    const size_t n_words = z->words / 4;
    size_t w = 0;
    for (int i = 0; i < n; i++) {
        if (!parts[i].bytes) continue;
        if (unshuffle) unshuffle_part(buf, n_words, w, parts[i].p, parts[i].bytes / 4, 4);
        else shuffle_part(buf, n_words, w, parts[i].p, parts[i].bytes / 4, 4);
        w += parts[i].bytes / 4;
    }
    if (z->hstate) {
        const size_t es = hidden_elem_bytes(r->hidden), ne = z->hstate / es;
        if (unshuffle) unshuffle_part(buf + z->words, ne, 0, r->hstate, ne, es);
        else shuffle_part(buf + z->words, ne, 0, r->hstate, ne, es);
    }
}

static void put32(unsigned char *h, size_t off, uint32_t v) { memcpy(h + off, &v, 4); }
static void put64(unsigned char *h, size_t off, uint64_t v) { memcpy(h + off, &v, 8); }
static uint32_t get32(const unsigned char *h, size_t off) {
    uint32_t v;
    memcpy(&v, h + off, 4);
    return v;
}
static uint64_t get64(const unsigned char *h, size_t off) {
    uint64_t v;
    memcpy(&v, h + off, 8);
    return v;
}

/* FNV-1a 64 of a header (hdr bytes, the checksum field skipped) and the
 * compressed payload that follows it. */
static uint64_t record_checksum(const unsigned char *h, size_t hdr, size_t comp) {
    uint64_t sum = comm_fnv1a64(COMM_FNV1A64_INIT, h, HDR_CHECKSUM_OFF);
    sum = comm_fnv1a64(sum, h + HDR_CHECKSUM_OFF + 8, hdr - HDR_CHECKSUM_OFF - 8);
    return comm_fnv1a64(sum, h + hdr, comp);
}

rt_status comm_codec_encode_into(comm_codec *c, const comm_record *r, void **buf, size_t *cap,
                                 size_t *wire_bytes) {
    *wire_bytes = 0;
    const comm_record_shape shape = shape_of(r);
    RT_TRY(check_shape(&shape, "record encode"));
    if (r->student < 0)
        return rt_fail(RT_ERR_ARGS, "record encode: student index %d is negative", r->student);
    if (!(r->temperature > 0.0f) || !isfinite(r->temperature))
        return rt_fail(RT_ERR_ARGS, "record encode: temperature %g must be a positive number",
                       (double)r->temperature);
    record_sizes z;
    if (!record_sizes_of(&shape, &z))
        return rt_fail(RT_ERR_ARGS, "record encode: record of b=%d T=%d k=%d is too large", r->b,
                       r->T, r->k);
    if (!r->starts || (z.ids && (!r->ids || !r->logprobs)) || (z.tail && !r->tail) ||
        (z.hscale && !r->hscale) || (z.hstate && !r->hstate) || (z.feat && !r->feat))
        return rt_fail(RT_ERR_ARGS, "record encode: an array of the record is NULL");

    if (!grow((void **)&c->shuf, &c->shuf_cap, z.total))
        return rt_fail(RT_ERR_NOMEM, "out of memory shuffling a %zu-byte record", z.total);
    payload_shuffle(c->shuf, r, &z, 0);

    const size_t hdr = header_bytes_of(r->hidden);
    size_t bound = ZSTD_compressBound(z.total);
    if (!grow(buf, cap, hdr + bound))
        return rt_fail(RT_ERR_NOMEM, "out of memory for a %zu-byte wire record", hdr + bound);
    unsigned char *h = *buf;
    size_t comp = ZSTD_compress2(c->cctx, h + hdr, bound, c->shuf, z.total);
    if (ZSTD_isError(comp))
        return rt_fail(RT_ERR_INTERNAL, "zstd compression of a %zu-byte record failed: %s", z.total,
                       ZSTD_getErrorName(comp));

    float temp = r->temperature;
    uint32_t temp_bits;
    memcpy(&temp_bits, &temp, 4);
    memset(h, 0, hdr);
    const unsigned version =
        r->hidden != COMM_HIDDEN_NONE ? COMM_RECORD_VERSION_HIDDEN : COMM_RECORD_VERSION;
    put32(h, 0, RECORD_MAGIC);
    put32(h, 4, (uint32_t)version | ((uint32_t)hdr << 16));
    put64(h, 8, (uint64_t)r->step);
    put32(h, 16, (uint32_t)r->student);
    put32(h, 20, (uint32_t)r->b);
    put32(h, 24, (uint32_t)r->T);
    put32(h, 28, (uint32_t)r->k);
    put32(h, 32, (uint32_t)r->vocab);
    put32(h, 36, (uint32_t)r->n_feat);
    put32(h, 40, (uint32_t)r->feat_width);
    put32(h, 44, temp_bits);
    put64(h, 48, (uint64_t)z.total);
    put64(h, 56, (uint64_t)comp);
    if (version == COMM_RECORD_VERSION_HIDDEN) {
        put32(h, 72, (uint32_t)r->hidden);
        put32(h, 76, (uint32_t)r->hidden_width);
    }
    put64(h, HDR_CHECKSUM_OFF, record_checksum(h, hdr, comp));
    *wire_bytes = hdr + comp;
    return RT_OK;
}

rt_status comm_codec_encode(comm_codec *c, const comm_record *r, const void **wire,
                            size_t *wire_bytes) {
    *wire = NULL;
    RT_TRY(comm_codec_encode_into(c, r, &c->own, &c->own_cap, wire_bytes));
    *wire = c->own;
    return RT_OK;
}

/* The header's shape against the receiver's own: only the receiver may
 * decide how much a record makes it allocate, not the sender. */
static rt_status check_expected(const comm_record_shape *e, const comm_record_shape *h) {
    if (h->b == e->b && h->T == e->T && h->k == e->k && h->vocab == e->vocab &&
        h->n_feat == e->n_feat && (h->n_feat == 0 || h->feat_width == e->feat_width) &&
        h->hidden == e->hidden && h->hidden_width == e->hidden_width)
        return RT_OK;
    /* hidden-state fields only where either side has them */
    char hh[64] = "", he[128] = "";
    if (h->hidden || e->hidden) {
        snprintf(hh, sizeof hh, " hidden=%d hidden_width=%d", h->hidden, h->hidden_width);
        snprintf(he, sizeof he,
                 " hidden=%d hidden_width=%d (hidden: 1 int8, 2 bf16; hidden_width = the "
                 "teacher's d_model)",
                 e->hidden, e->hidden_width);
    }
    return rt_fail(RT_ERR_FORMAT,
                   "teacher record has shape b=%d T=%d k=%d vocab=%d n_feat=%d feat_width=%d%s, "
                   "the receiver expects b=%d T=%d k=%d vocab=%d n_feat=%d feat_width=%d%s",
                   h->b, h->T, h->k, h->vocab, h->n_feat, h->feat_width, hh, e->b, e->T, e->k,
                   e->vocab, e->n_feat, e->feat_width, he);
}

rt_status comm_codec_decode(comm_codec *c, const void *wire, size_t wire_bytes,
                            const comm_record_shape *expect, comm_record *r) {
    const unsigned char *h = wire;
    if (wire_bytes < COMM_RECORD_HEADER_BYTES)
        return rt_fail(RT_ERR_FORMAT,
                       "record of %zu bytes is shorter than its %d-byte header (truncated)",
                       wire_bytes, COMM_RECORD_HEADER_BYTES);
    uint32_t magic = get32(h, 0);
    if (magic != RECORD_MAGIC)
        return rt_fail(RT_ERR_FORMAT,
                       "not a teacher record: magic 0x%08x, expected 0x%08x (\"RTRC\")", magic,
                       RECORD_MAGIC);
    uint32_t vh = get32(h, 4);
    unsigned version = vh & 0xffffu, hdr_bytes = vh >> 16;
    if (version != COMM_RECORD_VERSION && version != COMM_RECORD_VERSION_HIDDEN)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record format version %u, this build reads versions %d and %d "
                       "(teacher and student ranks run different retort builds)",
                       version, COMM_RECORD_VERSION, COMM_RECORD_VERSION_HIDDEN);
    const size_t hdr = version == COMM_RECORD_VERSION ? COMM_RECORD_HEADER_BYTES
                                                      : COMM_RECORD_HEADER_BYTES_HIDDEN;
    if (hdr_bytes != hdr)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record format version %u has a %zu-byte header, this one "
                       "announces %u",
                       version, hdr, hdr_bytes);
    if (wire_bytes < hdr)
        return rt_fail(RT_ERR_FORMAT,
                       "record of %zu bytes is shorter than its %zu-byte header (truncated)",
                       wire_bytes, hdr);
    uint64_t raw = get64(h, 48), comp = get64(h, 56), stored = get64(h, HDR_CHECKSUM_OFF);
    if (comp != wire_bytes - hdr)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record is %zu bytes but its header announces %llu + %zu "
                       "(truncated or padded in transit)",
                       wire_bytes, (unsigned long long)comp, hdr);
    uint64_t sum = record_checksum(h, hdr, (size_t)comp);
    if (sum != stored)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record checksum mismatch (stored %016llx, computed %016llx): "
                       "corrupted in transit",
                       (unsigned long long)stored, (unsigned long long)sum);

    const int64_t step = (int64_t)get64(h, 8);
    comm_record_shape shape = {
        .b = (int32_t)get32(h, 20),      .T = (int32_t)get32(h, 24),
        .k = (int32_t)get32(h, 28),      .vocab = (int32_t)get32(h, 32),
        .n_feat = (int32_t)get32(h, 36), .feat_width = (int32_t)get32(h, 40),
    };
    if (version == COMM_RECORD_VERSION_HIDDEN) {
        shape.hidden = (int32_t)get32(h, 72);
        shape.hidden_width = (int32_t)get32(h, 76);
        if (shape.hidden == COMM_HIDDEN_NONE)
            return rt_fail(RT_ERR_FORMAT,
                           "teacher record format version 2 without hidden states");
    }
    const int32_t student = (int32_t)get32(h, 16);
    if (check_shape(&shape, "teacher record") != RT_OK) {
        /* the message is rt_last_error()'s buffer: copy it before reusing it */
        char why[512];
        snprintf(why, sizeof why, "%s", rt_last_error());
        return rt_fail(RT_ERR_FORMAT, "%s", why);
    }
    record_sizes z;
    if (!record_sizes_of(&shape, &z) || z.total != raw)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record payload is %llu bytes, which does not match its shape "
                       "b=%d T=%d k=%d n_feat=%d feat_width=%d hidden=%d hidden_width=%d",
                       (unsigned long long)raw, shape.b, shape.T, shape.k, shape.n_feat,
                       shape.feat_width, shape.hidden, shape.hidden_width);
    /* the allocation below is sized by these fields */
    RT_TRY(check_expected(expect, &shape));
    unsigned long long content = ZSTD_getFrameContentSize(h + hdr, comp);
    if (content != raw)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record zstd frame holds %llu bytes, header says %llu", content,
                       (unsigned long long)raw);
    if (!grow((void **)&c->shuf, &c->shuf_cap, z.total))
        return rt_fail(RT_ERR_NOMEM, "out of memory for a %zu-byte record", z.total);
    size_t got = ZSTD_decompressDCtx(c->dctx, c->shuf, z.total, h + hdr, (size_t)comp);
    if (ZSTD_isError(got))
        return rt_fail(RT_ERR_FORMAT, "teacher record does not decompress: %s",
                       ZSTD_getErrorName(got));
    if (got != z.total)
        return rt_fail(RT_ERR_FORMAT, "teacher record decompressed to %zu bytes, expected %zu", got,
                       z.total);

    RT_TRY(comm_record_reserve_shape(r, &shape));
    payload_shuffle(c->shuf, r, &z, 1);
    uint32_t temp_bits = get32(h, 44);
    memcpy(&r->temperature, &temp_bits, 4);
    if (!(r->temperature > 0.0f) || !isfinite(r->temperature))
        return rt_fail(RT_ERR_FORMAT, "teacher record at step %lld has temperature %g",
                       (long long)step, (double)r->temperature);
    r->step = step;
    r->student = student;
    /* The student indexes its logits with these ids; a bad one would read
     * out of bounds, so they are checked even though the checksum passed
     * (a buggy teacher is as possible as a flipped bit). */
    size_t n_ids = z.ids / 4;
    for (size_t i = 0; i < n_ids; i++)
        if ((uint32_t)r->ids[i] >= (uint32_t)shape.vocab)
            return rt_fail(RT_ERR_FORMAT,
                           "teacher record at step %lld: token id %d at entry %zu is outside "
                           "the vocabulary of %d",
                           (long long)r->step, r->ids[i], i, shape.vocab);
    /* hidden states become logits: a non-finite one would poison the loss */
    const size_t n_pos = (size_t)shape.b * (size_t)shape.T;
    for (size_t i = 0; r->hscale && i < n_pos; i++)
        if (!(r->hscale[i] >= 0.0f) || !isfinite(r->hscale[i]))
            return rt_fail(RT_ERR_FORMAT,
                           "teacher record at step %lld: hidden-state scale %g at position %zu "
                           "is not a finite number >= 0",
                           (long long)r->step, (double)r->hscale[i], i);
    if (shape.hidden == COMM_HIDDEN_BF16) {
        const uint16_t *x = r->hstate;
        const size_t n = n_pos * (size_t)shape.hidden_width;
        for (size_t i = 0; i < n; i++)
            if ((x[i] & 0x7f80u) == 0x7f80u)
                return rt_fail(RT_ERR_FORMAT,
                               "teacher record at step %lld: hidden-state entry %zu is not "
                               "finite",
                               (long long)r->step, i);
    }
    return RT_OK;
}
