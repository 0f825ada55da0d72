/* Teacher records: storage, identity check and the wire codec.
 *
 * Wire layout (little-endian host order; the magic reads differently on a
 * big-endian host, so a mixed-endian job fails the magic check):
 *
 *   off size field
 *     0   4  magic "RTRC" (0x43525452)
 *     4   2  format version (COMM_RECORD_VERSION)
 *     6   2  header bytes (72)
 *     8   8  step
 *    16   4  student index
 *    20   4  b          24  4  T          28  4  k          32  4  vocab
 *    36   4  n_feat     40  4  feat_width 44  4  temperature (f32)
 *    48   8  raw payload bytes (before compression)
 *    56   8  compressed payload bytes (what follows the header)
 *    64   8  FNV-1a 64 over header bytes [0, 64) then the compressed payload
 *    72      zstd frame of the shuffled payload
 *
 * Payload: starts (int64[b]), ids (int32[n_pos*k]), logprobs (f32[n_pos*k]),
 * tail (f32[n_pos]), feat (f32[n_feat*n_pos*width]), back to back. Before
 * compression it is byte-shuffled as 4-byte words (all byte 0s, then all
 * byte 1s, ...): sign/exponent bytes of floats and the high bytes of ids
 * then sit together and compress to almost nothing, which zstd alone cannot
 * see in interleaved words (the same idea as Blosc's shuffle filter).
 *
 * The checksum covers the header too, so a flipped size or shape bit is
 * caught as well as a flipped payload bit. */
#include <math.h>
#include <stdbool.h>
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

/* Byte sizes of the payload arrays; false on overflow. */
typedef struct {
    size_t starts, ids, logprobs, tail, feat, total;
} record_sizes;

static bool record_sizes_of(int32_t b, int32_t T, int32_t k, int32_t n_feat, int32_t width,
                            record_sizes *z) {
    size_t n_pos, nk, nf;
    if (__builtin_mul_overflow((size_t)b, (size_t)T, &n_pos)) return false;
    if (__builtin_mul_overflow(n_pos, (size_t)k, &nk)) return false;
    if (__builtin_mul_overflow(n_pos, (size_t)n_feat, &nf)) return false;
    if (__builtin_mul_overflow(nf, (size_t)width, &nf)) return false;
    z->starts = (size_t)b * sizeof(int64_t);
    if (__builtin_mul_overflow(nk, sizeof(int32_t), &z->ids)) return false;
    z->logprobs = z->ids; /* same count, float is 4 bytes too */
    if (__builtin_mul_overflow(n_pos, sizeof(float), &z->tail)) return false;
    if (__builtin_mul_overflow(nf, sizeof(float), &z->feat)) return false;
    size_t t = z->starts;
    if (__builtin_add_overflow(t, z->ids, &t)) return false;
    if (__builtin_add_overflow(t, z->logprobs, &t)) return false;
    if (__builtin_add_overflow(t, z->tail, &t)) return false;
    if (__builtin_add_overflow(t, z->feat, &t)) return false;
    z->total = t;
    return true;
}

static rt_status check_shape(int32_t b, int32_t T, int32_t k, int32_t vocab, int32_t n_feat,
                             int32_t width, const char *who) {
    if (b < 1 || T < 1 || k < 1 || vocab < 1 || k > vocab || n_feat < 0 || width < 0 ||
        (n_feat > 0 && width < 1))
        return rt_fail(RT_ERR_ARGS,
                       "%s: bad record shape b=%d T=%d k=%d vocab=%d n_feat=%d feat_width=%d "
                       "(need b, T, k, vocab >= 1, k <= vocab, feat_width >= 1 with features)",
                       who, b, T, k, vocab, n_feat, width);
    return RT_OK;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

void comm_record_init(comm_record *r) { memset(r, 0, sizeof *r); }

rt_status comm_record_reserve(comm_record *r, int32_t b, int32_t T, int32_t k, int32_t vocab,
                              int32_t n_feat, int32_t feat_width) {
    RT_TRY(check_shape(b, T, k, vocab, n_feat, feat_width, "comm_record_reserve"));
    record_sizes z;
    if (!record_sizes_of(b, T, k, n_feat, feat_width, &z))
        return rt_fail(RT_ERR_ARGS, "comm_record_reserve: record of b=%d T=%d k=%d is too large", b,
                       T, k);
    size_t need = align64(z.starts) + align64(z.ids) + align64(z.logprobs) + align64(z.tail) +
                  align64(z.feat);
    if (r->block_bytes_ < need || !r->block_) {
        void *blk = rt_alloc_aligned(need);
        if (!blk)
            return rt_fail(RT_ERR_NOMEM,
                           "out of memory for a %zu-byte teacher record (b=%d "
                           "T=%d k=%d)",
                           need, b, T, k);
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
    r->tail = (float *)p;
    p += align64(z.tail);
    r->feat = n_feat > 0 ? (float *)p : NULL;
    r->b = b;
    r->T = T;
    r->k = k;
    r->vocab = vocab;
    r->n_feat = n_feat;
    r->feat_width = feat_width;
    return RT_OK;
}

void comm_record_free(comm_record *r) {
    if (!r) return;
    rt_free_aligned(r->block_);
    comm_record_init(r);
}

size_t comm_record_payload_bytes(const comm_record *r) {
    record_sizes z;
    if (!record_sizes_of(r->b, r->T, r->k, r->n_feat, r->feat_width, &z)) return 0;
    return z.total;
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

/* Shuffles (or unshuffles) one array that occupies words [w0, w0 + nw) of a
 * payload of n_words 4-byte words: byte j of word i lives at j*n_words + i. */
static void shuffle_part(unsigned char *planes, size_t n_words, size_t w0, const void *src,
                         size_t nw) {
    const unsigned char *s = src;
    for (size_t j = 0; j < 4; j++) {
        unsigned char *d = planes + j * n_words + w0;
        for (size_t i = 0; i < nw; i++) d[i] = s[4 * i + j];
    }
}

static void unshuffle_part(const unsigned char *planes, size_t n_words, size_t w0, void *dst,
                           size_t nw) {
    unsigned char *d = dst;
    for (size_t j = 0; j < 4; j++) {
        const unsigned char *s = planes + j * n_words + w0;
        for (size_t i = 0; i < nw; i++) d[4 * i + j] = s[i];
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

rt_status comm_codec_encode_into(comm_codec *c, const comm_record *r, void **buf, size_t *cap,
                                 size_t *wire_bytes) {
    *wire_bytes = 0;
    RT_TRY(check_shape(r->b, r->T, r->k, r->vocab, r->n_feat, r->feat_width, "record encode"));
    if (r->student < 0)
        return rt_fail(RT_ERR_ARGS, "record encode: student index %d is negative", r->student);
    if (!(r->temperature > 0.0f) || !isfinite(r->temperature))
        return rt_fail(RT_ERR_ARGS, "record encode: temperature %g must be a positive number",
                       (double)r->temperature);
    record_sizes z;
    if (!record_sizes_of(r->b, r->T, r->k, r->n_feat, r->feat_width, &z))
        return rt_fail(RT_ERR_ARGS, "record encode: record of b=%d T=%d k=%d is too large", r->b,
                       r->T, r->k);
    if (!r->starts || !r->ids || !r->logprobs || !r->tail || (z.feat && !r->feat))
        return rt_fail(RT_ERR_ARGS, "record encode: an array of the record is NULL");

    size_t n_words = z.total / 4;
    if (!grow((void **)&c->shuf, &c->shuf_cap, z.total))
        return rt_fail(RT_ERR_NOMEM, "out of memory shuffling a %zu-byte record", z.total);
    size_t w = 0;
    shuffle_part(c->shuf, n_words, w, r->starts, z.starts / 4), w += z.starts / 4;
    shuffle_part(c->shuf, n_words, w, r->ids, z.ids / 4), w += z.ids / 4;
    shuffle_part(c->shuf, n_words, w, r->logprobs, z.logprobs / 4), w += z.logprobs / 4;
    shuffle_part(c->shuf, n_words, w, r->tail, z.tail / 4), w += z.tail / 4;
    if (z.feat) shuffle_part(c->shuf, n_words, w, r->feat, z.feat / 4);

    size_t bound = ZSTD_compressBound(z.total);
    if (!grow(buf, cap, COMM_RECORD_HEADER_BYTES + bound))
        return rt_fail(RT_ERR_NOMEM, "out of memory for a %zu-byte wire record",
                       COMM_RECORD_HEADER_BYTES + bound);
    unsigned char *h = *buf;
    size_t comp = ZSTD_compress2(c->cctx, h + COMM_RECORD_HEADER_BYTES, bound, c->shuf, z.total);
    if (ZSTD_isError(comp))
        return rt_fail(RT_ERR_INTERNAL, "zstd compression of a %zu-byte record failed: %s", z.total,
                       ZSTD_getErrorName(comp));

    float temp = r->temperature;
    uint32_t temp_bits;
    memcpy(&temp_bits, &temp, 4);
    memset(h, 0, COMM_RECORD_HEADER_BYTES);
    put32(h, 0, RECORD_MAGIC);
    put32(h, 4, (uint32_t)COMM_RECORD_VERSION | ((uint32_t)COMM_RECORD_HEADER_BYTES << 16));
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
    uint64_t sum = comm_fnv1a64(COMM_FNV1A64_INIT, h, HDR_CHECKSUM_OFF);
    sum = comm_fnv1a64(sum, h + COMM_RECORD_HEADER_BYTES, comp);
    put64(h, HDR_CHECKSUM_OFF, sum);
    *wire_bytes = COMM_RECORD_HEADER_BYTES + comp;
    return RT_OK;
}

rt_status comm_codec_encode(comm_codec *c, const comm_record *r, const void **wire,
                            size_t *wire_bytes) {
    *wire = NULL;
    RT_TRY(comm_codec_encode_into(c, r, &c->own, &c->own_cap, wire_bytes));
    *wire = c->own;
    return RT_OK;
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
    if (version != COMM_RECORD_VERSION)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record format version %u, this build reads version %d "
                       "(teacher and student ranks run different retort builds)",
                       version, COMM_RECORD_VERSION);
    if (hdr_bytes != COMM_RECORD_HEADER_BYTES)
        return rt_fail(RT_ERR_FORMAT, "teacher record header is %u bytes, expected %d", hdr_bytes,
                       COMM_RECORD_HEADER_BYTES);
    uint64_t raw = get64(h, 48), comp = get64(h, 56), stored = get64(h, HDR_CHECKSUM_OFF);
    if (comp != wire_bytes - COMM_RECORD_HEADER_BYTES)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record is %zu bytes but its header announces %llu + %d "
                       "(truncated or padded in transit)",
                       wire_bytes, (unsigned long long)comp, COMM_RECORD_HEADER_BYTES);
    uint64_t sum = comm_fnv1a64(COMM_FNV1A64_INIT, h, HDR_CHECKSUM_OFF);
    sum = comm_fnv1a64(sum, h + COMM_RECORD_HEADER_BYTES, (size_t)comp);
    if (sum != stored)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record checksum mismatch (stored %016llx, computed %016llx): "
                       "corrupted in transit",
                       (unsigned long long)stored, (unsigned long long)sum);

    int32_t b = (int32_t)get32(h, 20), T = (int32_t)get32(h, 24), k = (int32_t)get32(h, 28);
    int32_t vocab = (int32_t)get32(h, 32), n_feat = (int32_t)get32(h, 36);
    int32_t width = (int32_t)get32(h, 40), student = (int32_t)get32(h, 16);
    rt_status st = check_shape(b, T, k, vocab, n_feat, width, "teacher record");
    if (st != RT_OK) return rt_fail(RT_ERR_FORMAT, "%s", rt_last_error());
    record_sizes z;
    if (!record_sizes_of(b, T, k, n_feat, width, &z) || z.total != raw)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record payload is %llu bytes, which does not match its shape "
                       "b=%d T=%d k=%d n_feat=%d feat_width=%d",
                       (unsigned long long)raw, b, T, k, n_feat, width);
    /* The allocation below is sized by these fields: only the receiver's
     * own shape may decide how much that is, not the sender. */
    if (b != expect->b || T != expect->T || k != expect->k || vocab != expect->vocab ||
        n_feat != expect->n_feat || (n_feat > 0 && width != expect->feat_width))
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record has shape b=%d T=%d k=%d vocab=%d n_feat=%d "
                       "feat_width=%d, the receiver expects b=%d T=%d k=%d vocab=%d n_feat=%d "
                       "feat_width=%d",
                       b, T, k, vocab, n_feat, width, expect->b, expect->T, expect->k,
                       expect->vocab, expect->n_feat, expect->feat_width);
    unsigned long long content = ZSTD_getFrameContentSize(h + COMM_RECORD_HEADER_BYTES, comp);
    if (content != raw)
        return rt_fail(RT_ERR_FORMAT,
                       "teacher record zstd frame holds %llu bytes, header says %llu", content,
                       (unsigned long long)raw);
    if (!grow((void **)&c->shuf, &c->shuf_cap, z.total))
        return rt_fail(RT_ERR_NOMEM, "out of memory for a %zu-byte record", z.total);
    size_t got =
        ZSTD_decompressDCtx(c->dctx, c->shuf, z.total, h + COMM_RECORD_HEADER_BYTES, (size_t)comp);
    if (ZSTD_isError(got))
        return rt_fail(RT_ERR_FORMAT, "teacher record does not decompress: %s",
                       ZSTD_getErrorName(got));
    if (got != z.total)
        return rt_fail(RT_ERR_FORMAT, "teacher record decompressed to %zu bytes, expected %zu", got,
                       z.total);

    RT_TRY(comm_record_reserve(r, b, T, k, vocab, n_feat, width));
    size_t n_words = z.total / 4, w = 0;
    unshuffle_part(c->shuf, n_words, w, r->starts, z.starts / 4), w += z.starts / 4;
    unshuffle_part(c->shuf, n_words, w, r->ids, z.ids / 4), w += z.ids / 4;
    unshuffle_part(c->shuf, n_words, w, r->logprobs, z.logprobs / 4), w += z.logprobs / 4;
    unshuffle_part(c->shuf, n_words, w, r->tail, z.tail / 4), w += z.tail / 4;
    if (z.feat) unshuffle_part(c->shuf, n_words, w, r->feat, z.feat / 4);
    uint32_t temp_bits = get32(h, 44);
    memcpy(&r->temperature, &temp_bits, 4);
    if (!(r->temperature > 0.0f) || !isfinite(r->temperature))
        return rt_fail(RT_ERR_FORMAT, "teacher record at step %lld has temperature %g",
                       (long long)(int64_t)get64(h, 8), (double)r->temperature);
    r->step = (int64_t)get64(h, 8);
    r->student = student;
    /* The student indexes its logits with these ids; a bad one would read
     * out of bounds, so they are checked even though the checksum passed
     * (a buggy teacher is as possible as a flipped bit). */
    size_t n_ids = z.ids / 4;
    for (size_t i = 0; i < n_ids; i++)
        if ((uint32_t)r->ids[i] >= (uint32_t)vocab)
            return rt_fail(RT_ERR_FORMAT,
                           "teacher record at step %lld: token id %d at entry %zu is outside "
                           "the vocabulary of %d",
                           (long long)r->step, r->ids[i], i, vocab);
    return RT_OK;
}
