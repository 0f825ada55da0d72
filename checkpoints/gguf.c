/* GGUF export; the layout and the choices are described in ckpt_gguf.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt_gguf.h"
#include "ckpt_internal.h"
#include "ckpt_st.h"
#include "fsutil.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF is little-endian; this writer assumes a little-endian host"
#endif

enum { GGUF_ALIGN = 32, Q8_BLOCK = 32 };
/* gguf_type of a key's value */
enum { KV_U32 = 4, KV_I32 = 5, KV_F32 = 6, KV_BOOL = 7, KV_STRING = 8, KV_ARRAY = 9 };
/* ggml_type of a tensor; general.file_type of the file */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8 };
enum { FTYPE_F32 = 0, FTYPE_F16 = 1, FTYPE_Q8_0 = 7 };
/* tokenizer.ggml.token_type */
enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3 };

/* llama.cpp's name of each per-block tensor, by the student's block layout. */
static const char *const block_names[STUDENT_BLOCK_TENSORS] = {
    [STUDENT_LN1W] = "attn_norm.weight",       [STUDENT_LN1B] = "attn_norm.bias",
    [STUDENT_QKVW] = "attn_qkv.weight",        [STUDENT_QKVB] = "attn_qkv.bias",
    [STUDENT_ATTPROJW] = "attn_output.weight", [STUDENT_ATTPROJB] = "attn_output.bias",
    [STUDENT_LN2W] = "ffn_norm.weight",        [STUDENT_LN2B] = "ffn_norm.bias",
    [STUDENT_FCW] = "ffn_up.weight",           [STUDENT_FCB] = "ffn_up.bias",
    [STUDENT_FCPROJW] = "ffn_down.weight",     [STUDENT_FCPROJB] = "ffn_down.bias",
};

/* ------------------------------------------------------------ the header */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    uint64_t n_kv; /* key/values put so far (patched into the header) */
    int oom;
} buf;

static void put(buf *b, const void *x, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void put_key(buf *b, const char *k, uint32_t type) {
    b->n_kv++;
    put_str(b, k, strlen(k));
    put_u32(b, type);
}
static void kv_u32(buf *b, const char *k, uint32_t v) {
    put_key(b, k, KV_U32);
    put_u32(b, v);
}
static void kv_f32(buf *b, const char *k, float v) {
    put_key(b, k, KV_F32);
    put(b, &v, 4);
}
static void kv_bool(buf *b, const char *k, int v) {
    put_key(b, k, KV_BOOL);
    const uint8_t x = v != 0;
    put(b, &x, 1);
}
static void kv_str(buf *b, const char *k, const char *v) {
    put_key(b, k, KV_STRING);
    put_str(b, v, strlen(v));
}
static void kv_array(buf *b, const char *k, uint32_t elem, uint64_t n) {
    put_key(b, k, KV_ARRAY);
    put_u32(b, elem);
    put_u64(b, n);
}

/* The tokenizer: tokens, token types and merges, in GPT-2's alphabet. */
static void put_tokenizer(buf *b, const data_tokenizer *t, char *tmp) {
    const int32_t V = data_tokenizer_vocab_size(t), eot = data_tokenizer_eot(t),
                  M = data_tokenizer_n_merges(t);
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", "gpt-2");
    kv_array(b, "tokenizer.ggml.tokens", KV_STRING, (uint64_t)V);
    for (int32_t i = 0; i < V; i++) {
        size_t len;
        const char *s = data_tokenizer_token(t, i, &len); /* <|endoftext|> maps to itself */
        put_str(b, tmp, data_bytes_to_alpha(s, len, tmp));
    }
    kv_array(b, "tokenizer.ggml.token_type", KV_I32, (uint64_t)V);
    for (int32_t i = 0; i < V; i++) put_u32(b, i == eot ? TOKEN_CONTROL : TOKEN_NORMAL);
    kv_array(b, "tokenizer.ggml.merges", KV_STRING, (uint64_t)M);
    for (int32_t r = 0; r < M; r++) {
        int32_t lr[2], res;
        data_tokenizer_merge(t, r, &lr[0], &lr[1], &res);
        size_t n = 0;
        for (int side = 0; side < 2; side++) {
            size_t len;
            const char *s = data_tokenizer_token(t, lr[side], &len);
            if (side) tmp[n++] = ' ';
            n += data_bytes_to_alpha(s, len, tmp + n);
        }
        put_str(b, tmp, n);
    }
    kv_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)eot);
    kv_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)eot);
    kv_bool(b, "tokenizer.ggml.add_bos_token", 0);
    kv_bool(b, "tokenizer.ggml.add_eos_token", 0);
}

/* ------------------------------------------------------------- tensors */

typedef struct {
    char name[64];
    int student;      /* index in the student's tensor table */
    int transpose;    /* a linear weight: [in, out] -> ggml [out, in] */
    int64_t ne[2];    /* ggml dimensions: ne[0] contiguous */
    int ndim;
    uint32_t type;    /* ggml type */
    uint64_t offset, bytes;
} out_tensor;

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

/* One row of n floats as `type` into dst; returns the bytes written. */
static size_t encode_row(const float *x, int64_t n, uint32_t type, uint8_t *dst) {
    if (type == GGML_F32) {
        memcpy(dst, x, (size_t)n * 4);
        return (size_t)n * 4;
    }
    if (type == GGML_F16) {
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = ckpt_f32_to_f16(x[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
        return (size_t)n * 2;
    }
    uint8_t *o = dst; /* Q8_0: per block of 32, f16 d = max|x| / 127, then 32 int8 */
    for (int64_t b = 0; b < n; b += Q8_BLOCK) {
        float amax = 0.0f;
        for (int j = 0; j < Q8_BLOCK; j++) amax = fmaxf(amax, fabsf(x[b + j]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = ckpt_f32_to_f16(d);
        memcpy(o, &h, 2);
        for (int j = 0; j < Q8_BLOCK; j++) o[2 + j] = (uint8_t)(int8_t)roundf(x[b + j] * id);
        o += 2 + Q8_BLOCK;
    }
    return (size_t)(o - dst);
}

static uint64_t row_bytes(int64_t n, uint32_t type) {
    return type == GGML_F32 ? (uint64_t)n * 4
           : type == GGML_F16 ? (uint64_t)n * 2
                              : (uint64_t)n / Q8_BLOCK * (2 + Q8_BLOCK);
}

/* The file's tensors, in the student's table order, with names and types. */
static int plan_tensors(const student_config *c, ckpt_gguf_type type, out_tensor *t,
                        int *n_fallback) {
    const int n = student_tensor_count(c);
    uint64_t off = 0;
    *n_fallback = 0;
    for (int i = 0; i < n; i++) {
        student_tensor s;
        student_tensor_info(c, i, &s);
        int layer;
        const int k = student_block_slot(c, i, &layer);
        out_tensor *o = &t[i];
        o->student = i;
        if (k >= 0)
            snprintf(o->name, sizeof o->name, "blk.%d.%s", layer, block_names[k]);
        else
            snprintf(o->name, sizeof o->name, "%s",
                     i == 0 ? "token_embd.weight" : i == 1 ? "position_embd.weight"
                     : i == n - 2 ? "output_norm.weight" : "output_norm.bias");
        o->ndim = s.ndim;
        o->transpose = student_prune_target(c, i, NULL) >= 0;
        if (s.ndim == 1) {
            o->ne[0] = s.shape[0], o->ne[1] = 1;
        } else if (o->transpose) { /* [in, out] -> ne = {in, out} */
            o->ne[0] = s.shape[0], o->ne[1] = s.shape[1];
        } else { /* embeddings [rows, C] -> ne = {C, rows} */
            o->ne[0] = s.shape[1], o->ne[1] = s.shape[0];
        }
        o->type = s.ndim == 1 ? GGML_F32
                  : type == CKPT_GGUF_F32 ? GGML_F32
                  : type == CKPT_GGUF_F16 ? GGML_F16
                                          : GGML_Q8_0;
        if (o->type == GGML_Q8_0 && o->ne[0] % Q8_BLOCK != 0) {
            o->type = GGML_F16;
            (*n_fallback)++;
        }
        o->offset = off;
        o->bytes = row_bytes(o->ne[0], o->type) * (uint64_t)o->ne[1];
        off = align_up(off + o->bytes);
    }
    return n;
}

/* Tensor o's data, one ggml row at a time (row r of a linear weight is
 * column r of the [in, out] matrix). */
static rt_status write_tensor(FILE *fp, const char *path, const out_tensor *o,
                              const float *params, size_t src_off, float *row, uint8_t *enc) {
    const float *src = params + src_off;
    const int64_t n0 = o->ne[0], n1 = o->ne[1];
    for (int64_t r = 0; r < n1; r++) {
        const float *x = src + r * n0;
        if (o->transpose) {
            for (int64_t i = 0; i < n0; i++) row[i] = src[i * n1 + r];
            x = row;
        }
        const size_t nb = encode_row(x, n0, o->type, enc);
        if (fwrite(enc, 1, nb, fp) != nb)
            return rt_fail(RT_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
    }
    static const uint8_t zeros[GGUF_ALIGN];
    const size_t pad = (size_t)(align_up(o->bytes) - o->bytes);
    if (pad && fwrite(zeros, 1, pad, fp) != pad)
        return rt_fail(RT_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
    return RT_OK;
}

rt_status ckpt_gguf_write(const char *path, const student_config *c, const float *params,
                          ckpt_gguf_type type, const data_tokenizer *tok, const char *name) {
    RT_ASSERT(c->d_head == 0 || c->d_head * c->n_head == c->d_model);
    if (data_tokenizer_vocab_size(tok) != c->vocab_size)
        return rt_fail(RT_ERR_MISMATCH, "export: the tokenizer has %d tokens, the model %d",
                       data_tokenizer_vocab_size(tok), c->vocab_size);
    rt_status st = RT_OK;
    const int n = student_tensor_count(c);
    out_tensor *t = calloc((size_t)n, sizeof *t);
    buf b = {0};
    FILE *fp = NULL;
    char tmp[CKPT_PATH_MAX] = "";
    /* the longest token or merge in the alphabet: 2 bytes per byte */
    size_t longest = 64;
    for (int32_t i = 0; i < data_tokenizer_vocab_size(tok); i++) {
        size_t len;
        data_tokenizer_token(tok, i, &len);
        if (4 * len + 2 > longest) longest = 4 * len + 2;
    }
    /* the longest ggml row: d_model or d_ff floats */
    const size_t widest = (size_t)(c->d_ff > c->d_model ? c->d_ff : c->d_model);
    char *alpha = malloc(longest);
    float *row = malloc(widest * sizeof *row);
    uint8_t *enc = malloc(widest * sizeof *row);
    if (!t || !alpha || !row || !enc) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    int n_fallback;
    plan_tensors(c, type, t, &n_fallback);

    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)n);
    put_u64(&b, 0); /* key/values: patched below */
    kv_str(&b, "general.architecture", "gpt2");
    kv_str(&b, "general.name", name);
    kv_u32(&b, "general.file_type", type == CKPT_GGUF_F32 ? FTYPE_F32
                                    : type == CKPT_GGUF_F16 ? FTYPE_F16 : FTYPE_Q8_0);
    kv_u32(&b, "general.quantization_version", 2);
    kv_u32(&b, "general.alignment", GGUF_ALIGN);
    kv_u32(&b, "gpt2.context_length", (uint32_t)c->seq_len);
    kv_u32(&b, "gpt2.embedding_length", (uint32_t)c->d_model);
    kv_u32(&b, "gpt2.feed_forward_length", (uint32_t)c->d_ff);
    kv_u32(&b, "gpt2.block_count", (uint32_t)c->n_layer);
    kv_u32(&b, "gpt2.attention.head_count", (uint32_t)c->n_head);
    kv_f32(&b, "gpt2.attention.layer_norm_epsilon", 1e-5f);
    put_tokenizer(&b, tok, alpha);
    const uint64_t n_kv = b.n_kv;
    if (!b.oom) memcpy(b.p + 16, &n_kv, 8);
    for (int i = 0; i < n; i++) {
        put_str(&b, t[i].name, strlen(t[i].name));
        put_u32(&b, (uint32_t)t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) put_u64(&b, (uint64_t)t[i].ne[d]);
        put_u32(&b, t[i].type);
        put_u64(&b, t[i].offset);
    }
    while (b.n % GGUF_ALIGN) put(&b, "", 1);
    if (b.oom) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory building the header", path);
        goto cleanup;
    }
    if ((st = data_tmp_open(tmp, sizeof tmp, path, &fp)) != RT_OK) goto cleanup;
    if (fwrite(b.p, 1, b.n, fp) != b.n) {
        st = rt_fail(RT_ERR_IO, "%s: write failed (%s)", tmp, strerror(errno));
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        student_tensor s;
        student_tensor_info(c, t[i].student, &s);
        if ((st = write_tensor(fp, tmp, &t[i], params, s.offset, row, enc)) != RT_OK) goto cleanup;
    }
    st = data_tmp_finish(fp, tmp, path); /* removes tmp on failure */
    fp = NULL;
    tmp[0] = '\0';
    if (st == RT_OK && n_fallback)
        fprintf(stderr, "export: %d matrices have a row length that is not a multiple of 32 and "
                "were written F16 instead of Q8_0\n", n_fallback);
cleanup:
    if (fp) fclose(fp);
    if (st != RT_OK && tmp[0]) unlink(tmp);
    free(b.p);
    free(t);
    free(alpha);
    free(row);
    free(enc);
    return st;
}
