/* libFuzzer harness: the teacher record decoder (comm/record.c), what a
 * student decodes from a teacher rank's bytes. The harness rewrites the
 * header's FNV-1a checksum over the mutated bytes before decoding (with
 * probability 7/8, chosen by the input), so inputs reach the shape, size,
 * zstd and id checks behind it instead of all stopping at the checksum.
 * Decoding twice into one record exercises reuse of its storage.
 *
 * The receiver's expected shape (what a student passes) is the header's own
 * when a record of that shape is at most 1 MiB (a student of any small
 * shape), else, or when bit 3 of the last byte is set, the shape of the
 * `dense` seed: so the decoder's shape check is reached from both sides,
 * and no input can make it allocate more than 1 MiB of payload. */
#include "fuzz_util.h"

#include <string.h>

#include "comm.h"

enum { CHECKSUM_OFF = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static comm_codec *codec;
    if (!codec && comm_codec_create(3, &codec) != RT_OK) abort();
    uint8_t *wire = malloc(size ? size : 1);
    if (!wire) abort();
    memcpy(wire, data, size);
    if (size >= COMM_RECORD_HEADER_BYTES && (data[size - 1] & 7) != 0) {
        uint64_t h = comm_fnv1a64(COMM_FNV1A64_INIT, wire, CHECKSUM_OFF);
        h = comm_fnv1a64(h, wire + COMM_RECORD_HEADER_BYTES, size - COMM_RECORD_HEADER_BYTES);
        memcpy(wire + CHECKSUM_OFF, &h, sizeof h);
    }
    comm_record_shape want = {2, 4, 16, 16, 0, 0, 0, 0};
    if (size >= COMM_RECORD_HEADER_BYTES && !(data[size - 1] & 8)) {
        int32_t f[6];
        memcpy(f, wire + 20, sizeof f); /* b T k vocab n_feat feat_width */
        double bytes = 8.0 * f[0] + (double)f[0] * f[1] * (8.0 * f[2] + 4.0 + 4.0 * f[4] * f[5]);
        if (bytes >= 0 && bytes <= (double)(1 << 20))
            want = (comm_record_shape){f[0], f[1], f[2], f[3], f[4], f[5], 0, 0};
    }
    comm_record r;
    comm_record_init(&r);
    if (comm_codec_decode(codec, wire, size, &want, &r) == RT_OK) {
        /* a decoded record is whole: every array it announces is there */
        size_t n_pos = (size_t)r.b * (size_t)r.T;
        volatile float sink = r.tail[n_pos - 1] + r.logprobs[n_pos * (size_t)r.k - 1];
        volatile int32_t id = r.ids[n_pos * (size_t)r.k - 1];
        (void)sink, (void)id;
        (void)comm_codec_decode(codec, wire, size, &want, &r);
    }
    comm_record_free(&r);
    free(wire);
    return 0;
}
