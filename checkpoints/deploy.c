/* Deploy files (layout: ckpt_deploy.h): writing f32 and int8 ones through
 * ckpt_save's atomic path, and reading int8 ones into a model.
 *
 * int8 export quantizes here, from the f32 block, so that every deploy
 * file is made one way: the linear weights per output channel
 * (student_quantize_weight), the embeddings per row (student_quantize_rows:
 * weight-only, dequantized at load, because wte and wpe are most of the
 * bytes of a small model and a per-row scale keeps their error far below
 * that of the activations). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_deploy.h"

#include <stddef.h>

#define NAME_MAX_LEN 128

_Static_assert(offsetof(student_act_quant, qmax) == offsetof(student_act_quant, qmin) + 4,
               "input_qrange is read and written as the pair (qmin, qmax)");

/* Is tensor i (of c) stored as int8 in an int8 deploy: 0 no, 1 a linear
 * weight (per column), 2 an embedding (per row). */
static int quant_kind(const student_config *c, int i) {
    if (i == 0 || i == 1) return 2;
    return student_prune_target(c, i, NULL) >= 0 ? 1 : 0;
}

/* (layer, student_linear) of linear-weight tensor i, as the index of its
 * activation ranges and of student_int8_set's arrays; the second factor
 * of a low-rank linear comes after all of those (4 * n_layer + that). */
static int lin_index(const student_config *c, int i) {
    int l;
    const int k = student_prune_target(c, i, &l);
    RT_ASSERT(k >= 0);
    const int second = i == student_linear_factor(c, l, (student_linear)k);
    return (second ? STUDENT_LIN_N * c->n_layer : 0) + l * STUDENT_LIN_N + k;
}

/* The dataset prefix of linear-weight tensor t's input quantizer:
 * "transformer.h.<l>.<linear>" (its name up to ".weight"). */
static void input_base(const student_tensor *t, char *base, size_t n) {
    const char *w = strstr(t->name, ".weight");
    snprintf(base, n, "%.*s", (int)(w ? w - t->name : (ptrdiff_t)strlen(t->name)), t->name);
}

rt_status ckpt_deploy_save(const char *path, const ckpt_deploy *d) {
    const student_config *c = &d->cfg;
    RT_TRY(student_config_validate(c));
    const char *tok = d->tokenizer ? d->tokenizer : "";
    ckpt_contents cc = {
        .kind = "deploy", .step = d->step, .tokens_seen = d->tokens_seen, .cfg = *c,
        .config_text = d->config_text, .provenance_json = d->provenance_json,
    };
    const int cb = d->codebook;
    if (cb && (cb != 16 && cb != 256))
        return rt_fail(RT_ERR_ARGS, "%s: a codebook of %d entries; 16 (4-bit indices) or 256 "
                       "(8-bit) are supported", path, cb);
    if (cb && (d->act || d->act_dynamic))
        return rt_fail(RT_ERR_ARGS, "%s: a deploy file is int8 or codebook, not both", path);
    if (!d->act && !d->act_dynamic && !cb) {
        ckpt_array a = {"/tokenizer/path", CKPT_U8, 1, {(int64_t)strlen(tok)}, tok};
        cc.params = d->params;
        cc.extras = &a;
        cc.n_extras = 1;
        return ckpt_save(path, &cc);
    }
    rt_status st = RT_OK;
    const int nt = student_tensor_count(c);
    const int max_arrays = 1 + 5 * nt;
    ckpt_array *arr = calloc((size_t)max_arrays, sizeof *arr);
    char (*names)[NAME_MAX_LEN] = calloc((size_t)max_arrays, NAME_MAX_LEN);
    void **bufs = calloc((size_t)nt * 2, sizeof *bufs);
    int na = 0, nb = 0;
    if (!arr || !names || !bufs) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for the deploy layout", path);
        goto cleanup;
    }
#define ADD(dt, nd, s0, s1, ptr, ...)                                                         \
    do {                                                                                     \
        snprintf(names[na], NAME_MAX_LEN, __VA_ARGS__);                                      \
        arr[na] = (ckpt_array){names[na], (dt), (nd), {(s0), (s1)}, (ptr)};                  \
        na++;                                                                                \
    } while (0)
    static const int32_t one = 1;
    const int32_t cbk[2] = {cb, d->codebook_per_channel ? 1 : 0};
    ADD(CKPT_U8, 1, (int64_t)strlen(tok), 0, tok, "/tokenizer/path");
    if (d->act_dynamic) ADD(CKPT_I32, 0, 0, 0, &one, "%s", CKPT_DEPLOY_ACT_DYNAMIC);
    if (cb) ADD(CKPT_I32, 1, 2, 0, cbk, "%s", CKPT_DEPLOY_CODEBOOK);
    for (int i = 0; i < nt; i++) {
        student_tensor t;
        student_tensor_info(c, i, &t);
        const float *w = d->params + t.offset;
        const int kind = quant_kind(c, i);
        if (!kind || (cb && kind == 2)) {
            ADD(CKPT_F32, t.ndim, t.shape[0], t.shape[1], w, "/model/%s", t.name);
            continue;
        }
        if (cb) {
            const int64_t in = t.shape[0], out = t.shape[1], ncb = cbk[1] ? out * cb : cb;
            const int64_t pw = cb == 16 ? (out + 1) / 2 : out; /* packed row width */
            uint8_t *idx = malloc((size_t)(in * out));
            float *book = malloc((size_t)ncb * sizeof *book);
            bufs[nb++] = idx;
            bufs[nb++] = book;
            if (!idx || !book) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory clustering %s", path, t.name);
                goto cleanup;
            }
            if ((st = student_codebook_weight(w, in, out, cb, cbk[1], book, idx)) != RT_OK)
                goto cleanup;
            if (cb == 16) /* in place: each byte lands at or before the indices still unread */
                for (int64_t r = 0; r < in; r++)
                    for (int64_t p = 0; p < pw; p++) {
                        const uint8_t *src = idx + r * out + 2 * p;
                        idx[r * pw + p] = (uint8_t)(src[0] | (2 * p + 1 < out ? src[1] << 4 : 0));
                    }
            ADD(CKPT_U8, 2, in, pw, idx, "/model/%s", t.name);
            ADD(CKPT_F32, cbk[1] ? 2 : 1, cbk[1] ? out : cb, cbk[1] ? cb : 0, book,
                "/model/%s_codebook", t.name);
            continue;
        }
        const int64_t R = t.shape[0], Cc = t.shape[1], ns = kind == 1 ? Cc : R;
        int8_t *q = malloc((size_t)(R * Cc));
        float *s = malloc((size_t)ns * sizeof(float));
        bufs[nb++] = q;
        bufs[nb++] = s;
        if (!q || !s) {
            st = rt_fail(RT_ERR_NOMEM, "%s: out of memory quantizing %s", path, t.name);
            goto cleanup;
        }
        if (kind == 1)
            student_quantize_weight(w, R, Cc, q, s);
        else
            student_quantize_rows(w, R, Cc, q, s);
        ADD(CKPT_I8, 2, R, Cc, q, "/model/%s", t.name);
        ADD(CKPT_F32, 1, ns, 0, s, "/model/%s_scale", t.name);
        /* one input quantizer per linear: the second factor's input is
         * quantized per row at run time */
        if (kind == 1 && d->act && lin_index(c, i) < STUDENT_LIN_N * c->n_layer) {
            const student_act_quant *a = &d->act[lin_index(c, i)];
            char base[64]; /* student_tensor.name is 64 bytes */
            input_base(&t, base, sizeof base);
            /* qmin, qmax are adjacent int32 fields: the [2] range */
            ADD(CKPT_F32, 0, 0, 0, &a->scale, "/model/%s.input_scale", base);
            ADD(CKPT_I32, 0, 0, 0, &a->zero, "/model/%s.input_zero_point", base);
            ADD(CKPT_I32, 1, 2, 0, &a->qmin, "/model/%s.input_qrange", base);
        }
    }
#undef ADD
    cc.extras = arr;
    cc.n_extras = na;
    st = ckpt_save(path, &cc);
cleanup:
    for (int i = 0; bufs && i < nb; i++) free(bufs[i]);
    free(bufs);
    free(names);
    free(arr);
    return st;
}

int ckpt_deploy_is_int8(ckpt_reader *r) {
    char p[NAME_MAX_LEN + 8];
    student_tensor t;
    student_tensor_info(ckpt_reader_config(r), 2 + 2, &t); /* h.0.attn.c_attn.weight */
    snprintf(p, sizeof p, "/model/%s", t.name);
    ckpt_dtype dt;
    int nd;
    if (strcmp(ckpt_reader_kind(r), "deploy") != 0 || !ckpt_has(r, p)) return 0;
    return ckpt_array_info(r, p, &dt, &nd, NULL) == RT_OK && dt == CKPT_I8;
}

/* Reads an int8 [R, C] tensor and its scales, checking the shape. */
static rt_status read_q(ckpt_reader *r, const student_tensor *t, int64_t ns, int8_t *q,
                        float *s) {
    char p[NAME_MAX_LEN + 16];
    ckpt_dtype dt;
    int nd;
    int64_t sh[CKPT_MAX_DIMS];
    snprintf(p, sizeof p, "/model/%s", t->name);
    RT_TRY(ckpt_array_info(r, p, &dt, &nd, sh));
    if (dt != CKPT_I8 || nd != 2 || sh[0] != t->shape[0] || sh[1] != t->shape[1])
        return rt_fail(RT_ERR_FORMAT, "%s: %s should be int8 [%lld, %lld] in an int8 deploy file",
                       ckpt_reader_path(r), p, (long long)t->shape[0], (long long)t->shape[1]);
    RT_TRY(ckpt_read_array(r, p, CKPT_I8, t->numel, q));
    snprintf(p, sizeof p, "/model/%s_scale", t->name);
    RT_TRY(ckpt_read_array(r, p, CKPT_F32, (size_t)ns, s));
    return ckpt_check_floats(r, p, s, (size_t)ns, CKPT_SCALE_MIN, CKPT_SCALE_MAX);
}

/* The file's config must be c's but for seq_len, into *fc: m may have
 * fewer positions than the file (ckpt_load_model_window), so tensors are
 * read at the file's shape (fc) and stored at m's (wpe keeps its first
 * rows). */
static rt_status check_window_config(ckpt_reader *r, const student_config *c,
                                     student_config *fc) {
    *fc = *c;
    fc->seq_len = ckpt_reader_config(r)->seq_len;
    RT_TRY(ckpt_check_config(r, fc, "the model being loaded"));
    if (c->seq_len > fc->seq_len)
        return rt_fail(RT_ERR_MISMATCH, "%s: seq_len is %d, expected at least %d",
                       ckpt_reader_path(r), fc->seq_len, c->seq_len);
    return RT_OK;
}

rt_status ckpt_deploy_read_int8(ckpt_reader *r, student_model *m) {
    const student_config *c = student_cfg(m);
    student_config fc;
    RT_TRY(check_window_config(r, c, &fc));
    /* the arrays of student_int8_set: second factors after the linears */
    const int nt = student_tensor_count(c), nl = (student_is_lowrank(c) ? 8 : 4) * c->n_layer;
    float *P = student_params(m);
    rt_status st = RT_OK;
    int8_t **w8 = calloc((size_t)nl, sizeof *w8), *eq = NULL;
    float **ws = calloc((size_t)nl, sizeof *ws), *es = NULL;
    const int dynamic = ckpt_has(r, CKPT_DEPLOY_ACT_DYNAMIC);
    student_act_quant *aq = calloc((size_t)(4 * c->n_layer), sizeof *aq);
    if (!w8 || !ws || !aq) goto nomem;
    if (dynamic) {
        int32_t flag = 0;
        if ((st = ckpt_read_array(r, CKPT_DEPLOY_ACT_DYNAMIC, CKPT_I32, 1, &flag)) != RT_OK)
            goto cleanup;
        if (flag != 1) {
            st = rt_fail(RT_ERR_FORMAT, "%s: %s is %d, expected 1", ckpt_reader_path(r),
                         CKPT_DEPLOY_ACT_DYNAMIC, (int)flag);
            goto cleanup;
        }
    }
    for (int i = 0; i < nt; i++) {
        student_tensor t, ft;
        char p[NAME_MAX_LEN + 32];
        student_tensor_info(c, i, &t);
        student_tensor_info(&fc, i, &ft);
        const int kind = quant_kind(c, i);
        RT_ASSERT(kind == 2 || t.numel == ft.numel); /* only wpe may be shorter */
        if (kind == 0) {
            snprintf(p, sizeof p, "/model/%s", t.name);
            if ((st = ckpt_read_array(r, p, CKPT_F32, t.numel, P + t.offset)) != RT_OK ||
                (st = ckpt_check_floats(r, p, P + t.offset, t.numel, -FLT_MAX, FLT_MAX)) != RT_OK)
                goto cleanup;
        } else if (kind == 2) { /* embeddings: dequantize into the block */
            eq = malloc(ft.numel);
            es = malloc((size_t)ft.shape[0] * sizeof *es);
            if (!eq || !es) goto nomem;
            if ((st = read_q(r, &ft, ft.shape[0], eq, es)) != RT_OK) goto cleanup;
            for (int64_t row = 0; row < t.shape[0]; row++) /* the first rows of wpe */
                for (int64_t j = 0; j < t.shape[1]; j++)
                    P[t.offset + (size_t)(row * t.shape[1] + j)] =
                        es[row] * (float)eq[row * t.shape[1] + j];
            free(eq), free(es);
            eq = NULL, es = NULL;
        } else {
            const int li = lin_index(c, i);
            w8[li] = malloc(t.numel);
            ws[li] = malloc((size_t)t.shape[1] * sizeof(float));
            if (!w8[li] || !ws[li]) goto nomem;
            if ((st = read_q(r, &t, t.shape[1], w8[li], ws[li])) != RT_OK) goto cleanup;
            /* the block holds the dequantized weight too (exports read it) */
            for (int64_t k = 0; k < t.shape[0]; k++)
                for (int64_t j = 0; j < t.shape[1]; j++) {
                    const size_t e = (size_t)(k * t.shape[1] + j);
                    P[t.offset + e] = ws[li][j] * (float)w8[li][e];
                }
            /* no stored activation quantizers (a second factor's input
             * is quantized per row at run time) */
            if (dynamic || li >= 4 * c->n_layer) continue;
            char base[64];
            input_base(&t, base, sizeof base);
            snprintf(p, sizeof p, "/model/%s.input_scale", base);
            if ((st = ckpt_read_array(r, p, CKPT_F32, 1, &aq[li].scale)) != RT_OK ||
                (st = ckpt_check_floats(r, p, &aq[li].scale, 1, CKPT_SCALE_MIN, CKPT_SCALE_MAX)) !=
                    RT_OK)
                goto cleanup;
            snprintf(p, sizeof p, "/model/%s.input_zero_point", base);
            if ((st = ckpt_read_array(r, p, CKPT_I32, 1, &aq[li].zero)) != RT_OK) goto cleanup;
            snprintf(p, sizeof p, "/model/%s.input_qrange", base);
            if ((st = ckpt_read_array(r, p, CKPT_I32, 2, &aq[li].qmin)) != RT_OK) goto cleanup;
        }
    }
    st = student_int8_set(m, (const int8_t *const *)w8, (const float *const *)ws,
                          dynamic ? NULL : aq);
    if (st != RT_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", rt_last_error());
        st = rt_fail(RT_ERR_FORMAT, "%s: bad int8 contents: %s", ckpt_reader_path(r), why);
    }
    goto cleanup;
nomem:
    st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading the int8 weights", ckpt_reader_path(r));
cleanup:
    for (int i = 0; i < nl; i++) {
        if (w8) free(w8[i]);
        if (ws) free(ws[i]);
    }
    free(w8);
    free(ws);
    free(aq);
    free(eq);
    free(es);
    return st;
}

int ckpt_deploy_is_codebook(ckpt_reader *r) {
    return strcmp(ckpt_reader_kind(r), "deploy") == 0 && ckpt_has(r, CKPT_DEPLOY_CODEBOOK);
}

rt_status ckpt_deploy_read_codebook(ckpt_reader *r, student_model *m) {
    const student_config *c = student_cfg(m);
    student_config fc;
    RT_TRY(check_window_config(r, c, &fc));
    const char *path = ckpt_reader_path(r);
    int32_t cbk[2] = {0, 0};
    RT_TRY(ckpt_read_array(r, CKPT_DEPLOY_CODEBOOK, CKPT_I32, 2, cbk));
    const int k = cbk[0], pc = cbk[1];
    if ((k != 16 && k != 256) || (pc != 0 && pc != 1))
        return rt_fail(RT_ERR_FORMAT, "%s: %s is [%d, %d]; expected [16 or 256, 0 or 1]", path,
                       CKPT_DEPLOY_CODEBOOK, (int)cbk[0], (int)cbk[1]);
    float *P = student_params(m);
    rt_status st = RT_OK;
    uint8_t *idx = NULL;
    float *book = NULL;
    for (int i = 0; st == RT_OK && i < student_tensor_count(c); i++) {
        student_tensor t;
        char p[NAME_MAX_LEN + 32];
        student_tensor_info(c, i, &t);
        snprintf(p, sizeof p, "/model/%s", t.name);
        if (quant_kind(c, i) != 1) {
            student_tensor ft;
            student_tensor_info(&fc, i, &ft);
            if (ft.numel == t.numel) {
                st = ckpt_read_array(r, p, CKPT_F32, t.numel, P + t.offset);
                continue;
            }
            float *full = malloc(ft.numel * sizeof *full); /* wpe of a longer file */
            if (!full) {
                st = rt_fail(RT_ERR_NOMEM, "%s: out of memory reading %s", path, p);
                break;
            }
            st = ckpt_read_array(r, p, CKPT_F32, ft.numel, full);
            if (st == RT_OK) memcpy(P + t.offset, full, t.numel * sizeof *full);
            free(full);
            continue;
        }
        const int64_t in = t.shape[0], out = t.shape[1], pw = k == 16 ? (out + 1) / 2 : out;
        const int64_t ncb = pc ? out * k : k;
        ckpt_dtype dt;
        int nd;
        int64_t sh[CKPT_MAX_DIMS];
        if ((st = ckpt_array_info(r, p, &dt, &nd, sh)) != RT_OK) break;
        if (dt != CKPT_U8 || nd != 2 || sh[0] != in || sh[1] != pw) {
            st = rt_fail(RT_ERR_FORMAT, "%s: %s should be uint8 [%lld, %lld] in a %d-entry "
                         "codebook deploy file", path, p, (long long)in, (long long)pw, k);
            break;
        }
        idx = malloc((size_t)(in * pw));
        book = malloc((size_t)ncb * sizeof *book);
        if (!idx || !book) {
            st = rt_fail(RT_ERR_NOMEM, "%s: out of memory decoding %s", path, p);
            break;
        }
        if ((st = ckpt_read_array(r, p, CKPT_U8, (size_t)(in * pw), idx)) != RT_OK) break;
        snprintf(p, sizeof p, "/model/%s_codebook", t.name);
        if ((st = ckpt_read_array(r, p, CKPT_F32, (size_t)ncb, book)) != RT_OK) break;
        for (int64_t j = 0; j < ncb; j++)
            if (!isfinite(book[j])) {
                st = rt_fail(RT_ERR_FORMAT, "%s: %s[%lld] = %g is not finite", path, p,
                             (long long)j, (double)book[j]);
                break;
            }
        float *w = P + t.offset;
        for (int64_t row = 0; st == RT_OK && row < in; row++)
            for (int64_t j = 0; j < out; j++) {
                const uint8_t b = idx[row * pw + (k == 16 ? j / 2 : j)];
                const int q = k == 16 ? (j % 2 ? b >> 4 : b & 15) : b;
                w[row * out + j] = book[(pc ? j * k : 0) + q];
            }
        free(idx), free(book);
        idx = NULL, book = NULL;
    }
    free(idx);
    free(book);
    return st;
}

rt_status ckpt_deploy_tokenizer(ckpt_reader *r, char **out) {
    *out = NULL;
    ckpt_dtype dt;
    int nd = 0;
    int64_t sh[CKPT_MAX_DIMS] = {0};
    if (!ckpt_has(r, "/tokenizer/path")) {
        *out = strdup("");
        return *out ? RT_OK : rt_fail(RT_ERR_NOMEM, "out of memory");
    }
    RT_TRY(ckpt_array_info(r, "/tokenizer/path", &dt, &nd, sh));
    if (dt != CKPT_U8 || nd != 1 || sh[0] > 65536)
        return rt_fail(RT_ERR_FORMAT, "%s: /tokenizer/path is not a uint8 string",
                       ckpt_reader_path(r));
    char *s = calloc((size_t)sh[0] + 1, 1);
    if (!s) return rt_fail(RT_ERR_NOMEM, "out of memory");
    rt_status st = ckpt_read_array(r, "/tokenizer/path", CKPT_U8, (size_t)sh[0], s);
    if (st != RT_OK) {
        free(s);
        return st;
    }
    *out = s;
    return RT_OK;
}
