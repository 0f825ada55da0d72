/* libFuzzer harness: tokenizer folders (data/bpe_io.c): vocab.json and
 * merges.txt. The input is vocab.json, then, after the first "\n#version",
 * merges.txt (from its "#version" line on); both are written into the
 * scratch folder (fuzz_dir). A tokenizer that loads then encodes and decodes a
 * little text, and decode(encode(x)) must give back x. */
#include "fuzz_util.h"

#include <string.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = memmem(data, size, "\n#version", 9);
    size_t nv = sep ? (size_t)(sep - data) + 1 : size;
    fuzz_dir_file("vocab.json", data, nv);
    fuzz_dir_file("merges.txt", data + nv, size - nv);
    data_tokenizer *t = NULL;
    if (data_tokenizer_load(fuzz_dir(), &t) == RT_OK) {
        static const char text[] = "Hello world! \xc3\xa9t\xc3\xa9 12 345\n\tx  y";
        data_ids ids = {0};
        if (data_tokenizer_encode(t, text, sizeof text - 1, &ids) == RT_OK) {
            char *back = NULL;
            size_t n = 0;
            if (data_tokenizer_decode(t, ids.ids, ids.n, &back, &n) == RT_OK) {
                if (n != sizeof text - 1 || memcmp(back, text, n) != 0) {
                    fprintf(stderr, "fuzz_tokenizer: decode(encode(x)) != x\n");
                    abort();
                }
                free(back);
            }
        }
        data_ids_free(&ids);
        data_tokenizer_destroy(t);
    }
    return 0;
}
