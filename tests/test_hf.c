/* The safetensors reader/writer and Hugging Face folders at the library
 * level (the binary's side, with PyTorch's losses, is tests/cli_hf.sh):
 *   - f16 and bf16 -> f32 -> back is the identity on every one of the
 *     65536 bit patterns but NaNs (which stay NaN), and f32 -> f16/bf16
 *     rounds to nearest even (checked against closed forms);
 *   - ckpt_st_parse refuses overlapping tensors, offsets past the data,
 *     spans that disagree with shape x dtype, and shape overflow;
 *   - a folder loaded for 16 of its 48 positions gives exactly the logits
 *     of the full model's first 16 positions (what a teacher with more
 *     positions than the student relies on);
 *   - a stored lm_head.weight that differs from wte is refused by name, in
 *     a folder and in an HDF5 file; an equal one is accepted;
 *   - writing a folder and reading it back is bit-exact in F32, and a BF16
 *     folder exported as BF16 holds the very same bits;
 *   - a NaN or Inf weight (F32, BF16, F16) is refused naming file and
 *     tensor. */
#define _GNU_SOURCE
#include <hdf5.h>
#include <math.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_hf.h"
#include "ckpt_st.h"
#include "fsutil.h"
#include "test_util.h"

#define FX RT_FIXTURES_DIR "/hf"

static char *tmpdir;

static int is_nan16(uint16_t h, int bf) {
    return bf ? (h & 0x7f80) == 0x7f80 && (h & 0x7f) : (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static void test_conversions(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i;
        const float a = ckpt_f16_to_f32(h), b = ckpt_bf16_to_f32(h);
        if (is_nan16(h, 0) ? !isnan(a) : ckpt_f32_to_f16(a) != h) bad16++;
        if (is_nan16(h, 1) ? !isnan(b) : ckpt_f32_to_bf16(b) != h) badbf++;
    }
    CU_ASSERT_EQUAL(bad16, 0);
    CU_ASSERT_EQUAL(badbf, 0);
    /* closed forms */
    CU_ASSERT_EQUAL(ckpt_f16_to_f32(0x3c00), 1.0f);
    CU_ASSERT_EQUAL(ckpt_f16_to_f32(0x0001), 0x1p-24f);          /* smallest subnormal */
    CU_ASSERT_EQUAL(ckpt_f16_to_f32(0x7bff), 65504.0f);          /* largest finite */
    CU_ASSERT_EQUAL(ckpt_f32_to_f16(65520.0f), 0x7c00);          /* ties to even: inf */
    CU_ASSERT_EQUAL(ckpt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);   /* halfway: even (down) */
    CU_ASSERT_EQUAL(ckpt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* halfway: even (up) */
    CU_ASSERT_EQUAL(ckpt_f32_to_f16(0x1p-25f), 0x0000);          /* halfway to 0x0001: even */
    CU_ASSERT_EQUAL(ckpt_f32_to_f16(0x1.8p-25f), 0x0001);
    CU_ASSERT_EQUAL(ckpt_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);   /* halfway: even */
    CU_ASSERT_EQUAL(ckpt_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    CU_ASSERT(isnan(ckpt_f16_to_f32(ckpt_f32_to_f16(NAN))));
    CU_ASSERT(isnan(ckpt_bf16_to_f32(ckpt_f32_to_bf16(NAN))));
}

static rt_status parse(const char *json, uint64_t data_bytes) {
    ckpt_st_file *f = NULL;
    const size_t n = strlen(json);
    rt_status st = ckpt_st_parse("x.safetensors", (const uint8_t *)json, n, 8 + n + data_bytes, &f);
    ckpt_st_close(f);
    return st;
}

static void test_parse(void) {
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"__metadata__\":{\"format\":\"pt\"}}", 8), RT_OK);
    CU_ASSERT_EQUAL(parse("{}", 0), RT_OK);
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[6,14]}}", 14),
                    RT_ERR_FORMAT); /* overlap */
    CU_ASSERT(strstr(rt_last_error(), "overlap") != NULL);
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7),
                    RT_ERR_FORMAT); /* past the data block */
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
                    RT_ERR_FORMAT); /* span != shape x dtype */
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1099511627776,1099511627776],"
                          "\"data_offsets\":[0,8]}}", 8), RT_ERR_FORMAT); /* overflow */
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0),
                    RT_ERR_FORMAT);
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0),
                    RT_ERR_FORMAT); /* duplicate key */
    CU_ASSERT_EQUAL(parse("[1,2]", 0), RT_ERR_FORMAT);
    CU_ASSERT_EQUAL(parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
                    RT_ERR_UNSUPPORTED);
}

/* config.json values a fuzzer tries (tests/fuzz/fuzz_hf.c): each refused
 * with one error naming config.json and the key. n_positions above
 * retort's context limit was refused naming "model.seq_len" (the
 * CKPT_HF_MAX_POSITIONS bound was above STUDENT_MAX_SEQ_LEN, so the check
 * of the student config answered first). */
static void test_config_values(void) {
    static const struct {
        const char *json, *key;
    } cases[] = {
        {"\"n_positions\": 65537", "n_positions"},
        {"\"n_positions\": 9223372036854775807", "n_positions"},
        {"\"n_layer\": 1e30", "n_layer"},
        {"\"n_embd\": \"32\"", "n_embd"},
        {"\"n_head\": null", "n_head"},
        {"\"vocab_size\": -1", "vocab_size"},
        {"\"n_inner\": {}", "n_inner"},
        {"\"n_head\": 3", "n_head"}, /* 32 % 3 != 0 */
    };
    char *dir = rt_test_join(tmpdir, "config_values");
    char *cfg = rt_test_join(dir, "config.json");
    CU_ASSERT_FATAL(data_mkdir_p(dir) == RT_OK);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char json[512];
        int n = snprintf(json, sizeof json, "{%s", cases[k].json);
        static const char *const base[] = {"\"n_layer\": 2", "\"n_head\": 4", "\"n_embd\": 32",
                                           "\"vocab_size\": 257", "\"n_positions\": 48"};
        for (size_t b = 0; b < sizeof base / sizeof base[0]; b++)
            if (!strstr(base[b], cases[k].key))
                n += snprintf(json + n, sizeof json - (size_t)n, ", %s", base[b]);
        snprintf(json + n, sizeof json - (size_t)n, "}");
        CU_ASSERT_FATAL(data_write_text(cfg, json) == RT_OK);
        ckpt_hf *h = NULL;
        student_config c;
        CU_ASSERT(ckpt_hf_open(dir, &h, &c) == RT_ERR_FORMAT);
        CU_ASSERT_PTR_NULL(h);
        if (!strstr(rt_last_error(), cases[k].key)) {
            printf("\n  %s -> %s", json, rt_last_error());
            CU_FAIL("the error does not name the key");
        }
        CU_ASSERT(strstr(rt_last_error(), cfg) == rt_last_error()); /* starts with the file */
        CU_ASSERT(strstr(rt_last_error(), "model.") == NULL);       /* not a retort INI key */
    }
    free(cfg);
    free(dir);
}

/* Logits of the first T positions: a window model equals the full one. */
static void test_window(void) {
    student_model *full = NULL, *win = NULL;
    CU_ASSERT_FATAL(ckpt_load_model(FX "/f32", 1, STUDENT_F32, 0, &full, NULL) == RT_OK);
    CU_ASSERT_FATAL(ckpt_load_model_window(FX "/f32", 16, 1, STUDENT_F32, 0, &win, NULL) == RT_OK);
    CU_ASSERT_EQUAL(student_cfg(win)->seq_len, 16);
    const int P = student_cfg(full)->seq_len, V = student_cfg(full)->vocab_size;
    int32_t tok[48];
    for (int i = 0; i < P; i++) tok[i] = (i * 37 + 11) % V;
    CU_ASSERT_FATAL(student_forward(full, tok, 1) == RT_OK);
    CU_ASSERT_FATAL(student_forward(win, tok, 1) == RT_OK);
    double maxd = 0;
    for (int i = 0; i < 16 * V; i++)
        maxd = fmax(maxd, fabs(student_logits(full)[i] - student_logits(win)[i]));
    printf("\n  window vs full logits: max |diff| %.3g\n", maxd);
    CU_ASSERT(maxd < 1e-5);
    student_model *bad = NULL;
    CU_ASSERT(ckpt_load_model_window(FX "/f32", 49, 1, STUDENT_F32, 0, &bad, NULL) ==
              RT_ERR_MISMATCH);
    student_destroy(full);
    student_destroy(win);
}

/* The model's tensors as safetensors entries (names and shapes from the
 * layout table, data pointing into params), with `extra` free slots after
 * them; free with free_tensors. */
static ckpt_st_out *tensors_of(const student_config *c, const float *params, int extra) {
    const int n = student_tensor_count(c);
    ckpt_st_out *t = calloc((size_t)(n + extra), sizeof *t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    student_tensor info;
    for (int i = 0; i < n; i++) {
        student_tensor_info(c, i, &info);
        t[i] = (ckpt_st_out){.name = strdup(info.name), .ndim = info.ndim,
                             .shape = {info.shape[0], info.shape[1]},
                             .data = params + info.offset};
    }
    return t;
}

static void free_tensors(ckpt_st_out *t, int n) {
    for (int i = 0; i < n; i++) free((char *)t[i].name);
    free(t);
}

/* Export the f32 fixture, read it back bit for bit; then a differing
 * lm_head.weight (folder and HDF5) is refused, an equal one accepted. */
static void test_roundtrip_and_head(void) {
    student_model *m = NULL;
    CU_ASSERT_FATAL(ckpt_load_model(FX "/f32", 1, STUDENT_F32, 0, &m, NULL) == RT_OK);
    const student_config *c = student_cfg(m);
    char *out = rt_test_join(tmpdir, "exp");
    CU_ASSERT_FATAL(ckpt_hf_write(out, c, student_params(m), CKPT_ST_F32, FX "/f32", 256) == RT_OK);
    student_model *r = NULL;
    CU_ASSERT_FATAL(ckpt_load_model(out, 1, STUDENT_F32, 0, &r, NULL) == RT_OK);
    CU_ASSERT(memcmp(student_params(m), student_params(r),
                     student_block_floats(c) * sizeof(float)) == 0);
    student_destroy(r);

    /* a folder whose model.safetensors adds an lm_head that differs */
    const int n = student_tensor_count(c);
    ckpt_st_out *t = tensors_of(c, student_params(m), 1);
    student_tensor info;
    student_tensor_info(c, 0, &info);
    float *head = malloc(info.numel * sizeof *head);
    memcpy(head, student_params(m), info.numel * sizeof *head);
    t[n] = (ckpt_st_out){.name = "lm_head.weight", .ndim = 2,
                         .shape = {info.shape[0], info.shape[1]}, .data = head};
    char *st = rt_test_join(out, "model.safetensors");
    CU_ASSERT_FATAL(ckpt_st_write(st, t, n + 1, CKPT_ST_F32) == RT_OK);
    CU_ASSERT(ckpt_load_model(out, 1, STUDENT_F32, 0, &r, NULL) == RT_OK); /* equal: fine */
    student_destroy(r);
    r = NULL;
    head[5] += 1.0f;
    CU_ASSERT_FATAL(ckpt_st_write(st, t, n + 1, CKPT_ST_F32) == RT_OK);
    CU_ASSERT(ckpt_load_model(out, 1, STUDENT_F32, 0, &r, NULL) == RT_ERR_UNSUPPORTED);
    CU_ASSERT(strstr(rt_last_error(), "lm_head.weight differs from wte") != NULL);
    CU_ASSERT(strstr(rt_last_error(), st) != NULL);

    /* the same in an HDF5 deploy file: an extra /model/lm_head.weight */
    char *h5 = rt_test_join(tmpdir, "head.h5");
    const ckpt_contents cc = {.kind = "train", .cfg = *c, .params = student_params(m)};
    CU_ASSERT_FATAL(ckpt_save(h5, &cc) == RT_OK);
    hid_t f = H5Fopen(h5, H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)info.shape[0], (hsize_t)info.shape[1]};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/model/lm_head.weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, head) >= 0);
    H5Dclose(d), H5Sclose(sp), H5Fclose(f);
    CU_ASSERT(ckpt_load_model(h5, 1, STUDENT_F32, 0, &r, NULL) == RT_ERR_UNSUPPORTED);
    CU_ASSERT(strstr(rt_last_error(), "/model/lm_head.weight differs") != NULL);
    CU_ASSERT(strstr(rt_last_error(), h5) != NULL);

    free_tensors(t, n);
    free(head);
    free(st);
    free(h5);
    free(out);
    student_destroy(m);
}

/* Issue 16: a NaN or Inf weight in a folder is refused naming the file
 * and the tensor, as in an HDF5 file (the HF reader skipped the check and
 * handed the NaN to the model: ckpt_load_model returned RT_OK). F32 NaN,
 * and BF16 and F16 infinity (their own bit patterns, converted exactly). */
static void test_nonfinite(void) {
    student_model *m = NULL;
    CU_ASSERT_FATAL(ckpt_load_model(FX "/f32", 1, STUDENT_F32, 0, &m, NULL) == RT_OK);
    const student_config *c = student_cfg(m);
    const int n = student_tensor_count(c);
    char *out = rt_test_join(tmpdir, "nonfinite");
    CU_ASSERT_FATAL(ckpt_hf_write(out, c, student_params(m), CKPT_ST_F32, FX "/f32", 256) == RT_OK);
    char *st = rt_test_join(out, "model.safetensors");
    float *p = malloc(student_block_floats(c) * sizeof *p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    const struct {
        ckpt_st_dtype dtype;
        int tensor;
        size_t at;
        float v;
    } cases[] = {{CKPT_ST_F32, 3, 7, NAN}, {CKPT_ST_BF16, 0, 0, INFINITY},
                 {CKPT_ST_F16, n - 1, 1, -INFINITY}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(p, student_params(m), student_block_floats(c) * sizeof *p);
        student_tensor info;
        student_tensor_info(c, cases[k].tensor, &info);
        p[info.offset + cases[k].at] = cases[k].v;
        ckpt_st_out *t = tensors_of(c, p, 0);
        CU_ASSERT_FATAL(ckpt_st_write(st, t, n, cases[k].dtype) == RT_OK);
        free_tensors(t, n);
        student_model *r = NULL;
        CU_ASSERT(ckpt_load_model(out, 1, STUDENT_F32, 0, &r, NULL) == RT_ERR_FORMAT);
        char want[256];
        snprintf(want, sizeof want, "%s: %s[%zu] = %g is not finite", st, info.name, cases[k].at,
                 (double)cases[k].v);
        CU_ASSERT(strstr(rt_last_error(), want) != NULL);
        printf("\n  %s: %s", ckpt_st_dtype_name(cases[k].dtype), rt_last_error());
        student_destroy(r);
    }
    free(p);
    free(st);
    free(out);
    student_destroy(m);
}

/* A BF16 folder exported as BF16 holds the same bits: bf16 -> f32 is exact
 * and one-to-one, so equal floats are equal bf16 values. */
static void test_bf16_bits(void) {
    student_model *m = NULL;
    CU_ASSERT_FATAL(ckpt_load_model(FX "/bf16_sharded", 1, STUDENT_F32, 0, &m, NULL) == RT_OK);
    const student_config *c = student_cfg(m);
    char *out = rt_test_join(tmpdir, "exp_bf16");
    CU_ASSERT_FATAL(ckpt_hf_write(out, c, student_params(m), CKPT_ST_BF16, FX "/bf16_sharded",
                                  256) == RT_OK);
    char *path = rt_test_join(out, "model.safetensors");
    ckpt_st_file *f = NULL, *src[2] = {NULL, NULL};
    CU_ASSERT_FATAL(ckpt_st_open(path, &f) == RT_OK);
    CU_ASSERT_FATAL(ckpt_st_open(FX "/bf16_sharded/model-00001-of-00002.safetensors", &src[0]) ==
                    RT_OK);
    CU_ASSERT_FATAL(ckpt_st_open(FX "/bf16_sharded/model-00002-of-00002.safetensors", &src[1]) ==
                    RT_OK);
    CU_ASSERT_EQUAL(ckpt_st_count(f), student_tensor_count(c));
    int same = 0;
    for (int i = 0; i < ckpt_st_count(f); i++) {
        const ckpt_st_tensor *t = ckpt_st_tensor_at(f, i), *s = NULL;
        const ckpt_st_file *sf = NULL;
        for (int k = 0; k < 2 && !s; k++) s = ckpt_st_find(sf = src[k], t->name);
        CU_ASSERT_FATAL(s != NULL);
        CU_ASSERT_EQUAL(t->dtype, CKPT_ST_BF16);
        CU_ASSERT_FATAL(s->numel == t->numel);
        float *a = malloc(t->numel * sizeof *a), *b = malloc(t->numel * sizeof *b);
        CU_ASSERT(ckpt_st_read_f32(f, t, 0, t->numel, a) == RT_OK);
        CU_ASSERT(ckpt_st_read_f32(sf, s, 0, s->numel, b) == RT_OK);
        same += memcmp(a, b, t->numel * sizeof *a) == 0;
        free(a);
        free(b);
    }
    CU_ASSERT_EQUAL(same, ckpt_st_count(f));
    ckpt_st_close(f);
    ckpt_st_close(src[0]);
    ckpt_st_close(src[1]);
    free(path);
    free(out);
    student_destroy(m);
}

static int setup(void) { return (tmpdir = rt_test_mkdtemp("hf")) ? 0 : -1; }
static int teardown(void) {
    rt_test_rm_rf(tmpdir);
    free(tmpdir);
    return 0;
}

int main(void) {
    static const rt_test_case cases[] = {
        {"conversions", test_conversions},
        {"parse", test_parse},
        {"window", test_window},
        {"roundtrip_and_head", test_roundtrip_and_head},
        {"bf16_bits", test_bf16_bits},
        {"nonfinite", test_nonfinite},
        {"config_values", test_config_values},
    };
    if (!rt_test_suite("hf", setup, teardown, cases, sizeof cases / sizeof cases[0], "RT_TEST_ONLY"))
        return 1;
    return rt_test_finish();
}
