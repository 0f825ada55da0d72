/* libFuzzer harness: tokenizer folders (data/bpe_io.c): vocab.json and
 * merges.txt. The input is vocab.json, then, after the first "\n#version",
 * merges.txt (from its "#version" line on); both are written into one
 * temporary folder. A tokenizer that loads then encodes and decodes a
 * little text, and decode(encode(x)) must give back x. */
#include "fuzz_util.h"

#include <string.h>

#include "data.h"

static char dir[64] = "/tmp/rt_fuzz_tok_XXXXXX";

static void remove_dir(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/vocab.json", dir), unlink(path);
    snprintf(path, sizeof path, "%s/merges.txt", dir), unlink(path);
    rmdir(dir);
}

static void put(const char *dir, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int made;
    if (!made) {
        if (!mkdtemp(dir)) abort();
        atexit(remove_dir);
        made = 1;
    }
    const uint8_t *sep = memmem(data, size, "\n#version", 9);
    size_t nv = sep ? (size_t)(sep - data) + 1 : size;
    put(dir, "vocab.json", data, nv);
    put(dir, "merges.txt", data + nv, size - nv);
    data_tokenizer *t = NULL;
    if (data_tokenizer_load(dir, &t) == RT_OK) {
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
