/* libFuzzer harness: the Hugging Face folder reader (checkpoints/hf.c):
 * config.json, model.safetensors.index.json and the weight files it names,
 * through ckpt_hf_open, ckpt_hf_read_params, ckpt_hf_summarize and
 * ckpt_hf_crc32c. The safetensors layer has its own harness
 * (fuzz_safetensors); here the harness writes valid weight files itself so
 * that inputs get past it to the config checks and the mapping of tensors.
 * The input, in one scratch folder (fuzz_dir) with an empty vocab.json:
 *   byte 0    flags (FL_*): dtype and names of the weights written, a
 *             stored lm_head (equal to wte or not), a NaN weight, a tensor
 *             stored twice, no merges.txt;
 *   then      config.json, up to a NUL;
 *   then      model.safetensors.index.json, up to a NUL: when not empty,
 *             the weights are written as model-00001-of-00002.safetensors
 *             (first half of the table) and model-00002-of-00002.safetensors
 *             (the rest, lm_head) instead of model.safetensors;
 *   then      raw.safetensors's bytes (an index may name it).
 * The weights have the shape config.json gives when that is a small GPT-2
 * (read here leniently), else a fixed tiny one. For a folder that opens the
 * harness checks what ckpt_hf.h promises, aborting on a broken one: the
 * config inside the CKPT_HF_MAX_* bounds; and when every weight is one the
 * harness wrote (no raw.safetensors): the config is the weights' shape, a
 * tensor stored under two names is refused, ckpt_hf_read_params reads
 * exactly the values written (also for fewer positions), and refuses a NaN
 * and an lm_head.weight that differs from wte, and the summary states the
 * names, dtype and head written. */
#include "fuzz_util.h"

#include <jansson.h>
#include <math.h>

#include "ckpt.h"
#include "ckpt_hf.h"
#include "ckpt_st.h"
#include "student.h"

enum {
    FL_DTYPE = 3,          /* 0: F32, 1: F16, 2: BF16, 3: F32 */
    FL_BARE = 4,           /* names without "transformer." */
    FL_HEAD = 8,           /* store lm_head.weight ... */
    FL_HEAD_DIFFERS = 16,  /* ... with one element unlike wte */
    FL_NAN = 32,           /* ln_f.bias[0] = NaN */
    FL_TWICE = 64,         /* ln_f.bias stored twice (other name, or shard 1 too) */
    FL_NO_MERGES = 128,    /* no merges.txt */
};

/* Reads leniently: 0 unless an integer in [1, max]; `def` when absent
 * or null and def > 0. */
static int small_int(json_t *j, const char *key, int def, int max) {
    json_t *x = json_object_get(j, key);
    if ((!x || json_is_null(x)) && def > 0) return def;
    if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > max) return 0;
    return (int)json_integer_value(x);
}

/* The shape of the weights written: config.json's when small, else tiny.
 * n_head does not change a tensor's shape (attention width = n_embd). */
static student_config weights_shape(const char *config_text) {
    student_config c = {.n_layer = 1, .n_head = 1, .d_model = 8, .d_ff = 32, .vocab_size = 16,
                        .seq_len = 8};
    json_t *j = json_loads(config_text, 0, NULL);
    if (json_is_object(j)) {
        student_config s = {.n_head = 1};
        s.n_layer = small_int(j, "n_layer", 0, 4);
        s.d_model = small_int(j, "n_embd", 0, 64);
        s.vocab_size = small_int(j, "vocab_size", 0, 512);
        s.seq_len = small_int(j, "n_positions", 0, 64);
        s.d_ff = small_int(j, "n_inner", 4 * s.d_model, 256);
        if (s.n_layer && s.d_model && s.vocab_size && s.seq_len && s.d_ff) c = s;
    }
    json_decref(j);
    return c;
}

/* Element k of tensor i: exact in F32, F16 and BF16. */
static float weight_value(int i, size_t k) {
    return (float)((int)(((size_t)i * 5 + k) % 17) - 8) * 0.25f;
}

static ckpt_st_dtype dtype_of(int flags) {
    return (flags & FL_DTYPE) == 1 ? CKPT_ST_F16 : (flags & FL_DTYPE) == 2 ? CKPT_ST_BF16
                                                                          : CKPT_ST_F32;
}

static const char *const shard_name[2] = {"model-00001-of-00002.safetensors",
                                          "model-00002-of-00002.safetensors"};

/* Writes the weights of shape c into the scratch folder; `sharded`: the
 * two shards, else model.safetensors. */
static void write_weights(const student_config *c, int flags, int sharded) {
    const int n = student_tensor_count(c);
    float *block = calloc(student_block_floats(c), sizeof *block);
    float *head = calloc((size_t)c->vocab_size * (size_t)c->d_model, sizeof *head);
    ckpt_st_out *out = calloc((size_t)n + 2, sizeof *out);
    int *where = calloc((size_t)n + 2, sizeof *where);
    char(*names)[96] = calloc((size_t)n + 2, sizeof *names);
    if (!block || !head || !out || !where || !names) abort();
    const size_t skip = flags & FL_BARE ? strlen("transformer.") : 0;
    student_tensor t;
    for (int i = 0; i < n; i++) {
        student_tensor_info(c, i, &t);
        for (size_t k = 0; k < t.numel; k++) block[t.offset + k] = weight_value(i, k);
        snprintf(names[i], sizeof names[i], "%s", t.name + skip);
        out[i] = (ckpt_st_out){.name = names[i], .ndim = t.ndim,
                               .shape = {t.shape[0], t.shape[1]}, .data = block + t.offset};
        where[i] = i >= n / 2;
    }
    int m = n;
    if (flags & FL_NAN) block[t.offset] = NAN; /* t: the last tensor, ln_f.bias */
    if (flags & FL_TWICE) {
        out[m] = out[n - 1];
        if (!sharded) { /* the other naming, in the same file */
            snprintf(names[m], sizeof names[m], "%s", skip ? t.name : t.name + strlen("transformer."));
            out[m].name = names[m];
        }
        where[m++] = 0;
    }
    if (flags & FL_HEAD) {
        student_tensor_info(c, 0, &t); /* wte */
        memcpy(head, block + t.offset, t.numel * sizeof *head);
        if (flags & FL_HEAD_DIFFERS) head[t.numel - 1] += 1.0f;
        out[m] = (ckpt_st_out){.name = "lm_head.weight", .ndim = 2,
                               .shape = {t.shape[0], t.shape[1]}, .data = head};
        where[m++] = 1;
    }
    const ckpt_st_dtype dtype = dtype_of(flags);
    char path[512];
    for (int s = 0; s < (sharded ? 2 : 1); s++) {
        ckpt_st_out *part = calloc((size_t)m, sizeof *part);
        if (!part) abort();
        int k = 0;
        for (int i = 0; i < m; i++)
            if (!sharded || where[i] == s) part[k++] = out[i];
        snprintf(path, sizeof path, "%s/%s", fuzz_dir(), sharded ? shard_name[s] : "model.safetensors");
        if (ckpt_st_write(path, part, k, dtype) != RT_OK) {
            fprintf(stderr, "fuzz_hf: cannot write %s: %s\n", path, rt_last_error());
            abort();
        }
        free(part);
    }
    free(block);
    free(head);
    free(out);
    free(where);
    free(names);
}

/* Every value of a block read for config mc is the one written. */
static void check_values(const student_config *mc, const float *block) {
    for (int i = 0; i < student_tensor_count(mc); i++) {
        student_tensor t;
        student_tensor_info(mc, i, &t);
        for (size_t k = 0; k < t.numel; k++)
            if (block[t.offset + k] != weight_value(i, k)) {
                fprintf(stderr, "fuzz_hf: %s[%zu] read %g, written %g\n", t.name, k,
                        (double)block[t.offset + k], (double)weight_value(i, k));
                abort();
            }
    }
}

/* Reads the weights for mc (guarded: at most 4M floats); the status. */
static rt_status read_params(ckpt_hf *h, const student_config *mc, int verify) {
    const size_t nf = student_block_floats(mc);
    if (nf > (4u << 20)) return RT_ERR_ARGS;
    float *block = malloc(nf * sizeof *block);
    if (!block) abort();
    const rt_status st = ckpt_hf_read_params(h, mc, block);
    if (st == RT_OK && verify) check_values(mc, block);
    free(block);
    return st;
}

static void check_opened(ckpt_hf *h, const student_config *cfg, const student_config *wc,
                         int flags, int sharded, int verify) {
    const student_config *c = cfg;
    if (c->n_layer < 1 || c->n_layer > CKPT_HF_MAX_LAYERS || c->n_head < 1 ||
        c->n_head > CKPT_HF_MAX_HEADS || c->d_model < 1 || c->d_model > CKPT_HF_MAX_WIDTH ||
        c->d_model % c->n_head != 0 || c->d_ff < 1 || c->d_ff > CKPT_HF_MAX_FF ||
        c->vocab_size < 1 || c->vocab_size > CKPT_HF_MAX_VOCAB || c->seq_len < 1 ||
        c->seq_len > CKPT_HF_MAX_POSITIONS || c->d_head != 0) {
        fprintf(stderr, "fuzz_hf: opened config out of bounds\n");
        abort();
    }
    if (verify) {
        if (c->n_layer != wc->n_layer || c->d_model != wc->d_model || c->d_ff != wc->d_ff ||
            c->vocab_size != wc->vocab_size || c->seq_len != wc->seq_len) {
            fprintf(stderr, "fuzz_hf: opened a config unlike its weights' shape\n");
            abort();
        }
        if ((flags & FL_TWICE) && !sharded) {
            fprintf(stderr, "fuzz_hf: a tensor stored under two names was accepted\n");
            abort();
        }
    }
    const int must_fail = (flags & FL_NAN) || ((flags & FL_HEAD) && (flags & FL_HEAD_DIFFERS));
    const rt_status st = read_params(h, cfg, verify);
    if (verify && (st == RT_OK) == must_fail) {
        fprintf(stderr, "fuzz_hf: read_params %s\n", st == RT_OK ? "accepted bad weights"
                                                              : rt_last_error());
        abort();
    }
    if (st == RT_OK && c->seq_len > 1) { /* the first rows of wpe only */
        student_config fewer = *c;
        fewer.seq_len = c->seq_len / 2;
        if (read_params(h, &fewer, verify) != RT_OK && verify) abort();
    }
    ckpt_summary s = {0};
    if (ckpt_hf_summarize(h, &s) != RT_OK || s.hf_files < 1 || !s.hf_dtype) abort();
    if (verify && (s.hf_key_prefix != !(flags & FL_BARE) ||
                   s.hf_head_stored != !!(flags & FL_HEAD) ||
                   strcmp(s.hf_dtype, ckpt_st_dtype_name(dtype_of(flags))) != 0)) {
        fprintf(stderr, "fuzz_hf: the summary misstates the weights written\n");
        abort();
    }
    ckpt_summary_free(&s);
    if (ckpt_hf_bytes(h) == 0) abort();
    uint32_t crc = 0;
    if (ckpt_hf_crc32c(fuzz_dir(), &crc) != RT_OK) { /* the same folder opens again */
        fprintf(stderr, "fuzz_hf: reopening failed: %s\n", rt_last_error());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const files[] = {"config.json", "model.safetensors.index.json",
                                        "model.safetensors", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors", "raw.safetensors",
                                        "vocab.json", "merges.txt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) fuzz_dir_file(files[i], NULL, 0);
    const int flags = size ? data[0] : 0;
    char *text = malloc(size + 1); /* config.json NUL index NUL raw */
    if (!text) abort();
    if (size) memcpy(text, data + 1, size - 1);
    const size_t len = size ? size - 1 : 0;
    text[len] = '\0';
    const char *config = text;
    const size_t config_len = strlen(config);
    const char *index = config_len < len ? config + config_len + 1 : text + len;
    const size_t index_len = strlen(index);
    const char *raw = index + index_len < text + len ? index + index_len + 1 : text + len;
    const size_t raw_len = (size_t)(text + len - raw);

    fuzz_dir_file("config.json", config, config_len);
    if (index_len) fuzz_dir_file("model.safetensors.index.json", index, index_len);
    if (raw_len) fuzz_dir_file("raw.safetensors", raw, raw_len);
    fuzz_dir_file("vocab.json", "", 0);
    if (!(flags & FL_NO_MERGES)) fuzz_dir_file("merges.txt", "", 0);
    const student_config wc = weights_shape(config);
    write_weights(&wc, flags, index_len > 0);

    ckpt_hf *h = NULL;
    student_config cfg;
    if (ckpt_hf_open(fuzz_dir(), &h, &cfg) == RT_OK) {
        if (!ckpt_hf_is_folder(fuzz_dir()) || (flags & FL_NO_MERGES)) abort();
        check_opened(h, &cfg, &wc, flags, index_len > 0, raw_len == 0);
        ckpt_hf_close(h);
    }
    free(text);
    return 0;
}
