/* libFuzzer harness: token shards (data/shard.c). The input is an HDF5
 * file image, held in memory, opened as a shard: open (the /tokens
 * extent, vocab_size, source), a few reads, and the whole-shard load.
 * Each must return a status (never crash, never allocate what the file
 * merely claims) and leave no HDF5 object open. */
#include "fuzz_util.h"

#include <hdf5.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(0, data, size);
    data_shard *s = NULL;
    if (data_shard_open(path, &s) == RT_OK) {
        int64_t n = data_shard_n_tokens(s);
        int32_t buf[64];
        (void)data_shard_source(s);
        (void)data_shard_vocab_size(s);
        (void)data_shard_read(s, 0, n < 64 ? n : 64, buf);
        if (n > 64) (void)data_shard_read(s, n - 64, 64, buf);
        (void)data_shard_read(s, n, 1, buf); /* past the end: an error */
        data_shard_close(s);
    }
    int32_t *tok = NULL;
    int64_t n = 0, vocab = 0;
    if (data_shard_load(path, &tok, &n, &vocab) == RT_OK) rt_free_aligned(tok);
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        fprintf(stderr, "fuzz_shard: %zd HDF5 objects left open after one input\n", open_ids);
        abort();
    }
    return 0;
}
