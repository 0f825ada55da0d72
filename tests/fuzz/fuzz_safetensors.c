/* libFuzzer harness: the safetensors reader (checkpoints/safetensors.c),
 * what `retort` reads from every Hugging Face folder it is given. The
 * input is a whole .safetensors file, opened by path (ckpt_st_open: the
 * 8-byte length, the JSON header, every dtype, shape and offset check).
 * For a file that opens, the harness checks what the reader promises
 * (every tensor's bytes inside the data block, shape x dtype = span, no
 * two tensors sharing a byte, lookup by name finds each) and reads every
 * tensor's first and last elements as f32 (the pread and f16/bf16
 * conversion paths), aborting on any broken promise. */
#include "fuzz_util.h"

#include <string.h>

#include "ckpt_st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(0, data, size);
    ckpt_st_file *f = NULL;
    if (ckpt_st_open(path, &f) != RT_OK) return 0;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    const uint64_t data_bytes = size - 8 - hlen;
    const int n = ckpt_st_count(f);
    for (int i = 0; i < n; i++) {
        const ckpt_st_tensor *t = ckpt_st_tensor_at(f, i);
        const uint64_t es = ckpt_st_dtype_size(t->dtype);
        if (t->begin > t->end || t->end > data_bytes || t->numel * es != t->end - t->begin)
            abort();
        if (ckpt_st_find(f, t->name) != t) abort();
        if (i > 0 && strcmp(ckpt_st_tensor_at(f, i - 1)->name, t->name) >= 0) abort();
        for (int j = 0; j < n; j++) { /* no shared bytes (empty tensors share none) */
            const ckpt_st_tensor *u = ckpt_st_tensor_at(f, j);
            if (j != i && t->begin < u->end && u->begin < t->end) abort();
        }
        if (t->numel == 0) continue;
        float x[64];
        const size_t k = t->numel < 64 ? (size_t)t->numel : 64;
        if (ckpt_st_read_f32(f, t, 0, k, x) != RT_OK) abort(); /* bytes are in the file */
        if (ckpt_st_read_f32(f, t, (size_t)t->numel - 1, 1, x) != RT_OK) abort();
    }
    ckpt_st_close(f);
    return 0;
}
