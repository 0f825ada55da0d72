/* Hugging Face GPT-2 folders: config.json checks, tensor mapping over one or
 * several safetensors files, and the export folder. See ckpt_hf.h.
 *
 * retort's parameter table already uses Hugging Face's state-dict names and
 * Conv1D [in, out] shapes, so mapping is by name: "transformer.<name>" or,
 * in folders saved from GPT2Model (the hub's gpt2 itself), "<name>". */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_hf.h"
#include "ckpt_internal.h"
#include "fsutil.h"

#define PREFIX "transformer."

struct ckpt_hf {
    char *dir;
    student_config cfg;
    int n_files;
    ckpt_st_file **files;
    /* per tensor of cfg's table: the file and its entry */
    int n_tensors;
    const ckpt_st_file **tfile;
    const ckpt_st_tensor **tent;
    const ckpt_st_file *head_file; /* lm_head.weight, when present */
    const ckpt_st_tensor *head;
    int key_prefix;                /* 1: names carry "transformer." */
};

int ckpt_hf_is_folder(const char *dir) {
    char p[CKPT_PATH_MAX];
    struct stat sb;
    if (data_path_join(p, sizeof p, dir, "config.json") != RT_OK) return 0;
    return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && access(p, F_OK) == 0;
}

void ckpt_hf_close(ckpt_hf *h) {
    if (!h) return;
    for (int i = 0; i < h->n_files; i++) ckpt_st_close(h->files[i]);
    free(h->files);
    free(h->tfile);
    free(h->tent);
    free(h->dir);
    free(h);
}

/* Reads a JSON file of at most CKPT_HF_MAX_JSON bytes. */
static rt_status load_json(const char *path, json_t **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return rt_fail(RT_ERR_IO, "%s: %s", path, errno == ENOENT ? "missing" : strerror(errno));
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > CKPT_HF_MAX_JSON)
        return rt_fail(RT_ERR_FORMAT, "%s: not a regular file of at most %u bytes", path,
                       CKPT_HF_MAX_JSON);
    json_error_t e;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!*out)
        return rt_fail(RT_ERR_FORMAT, "%s: malformed JSON (line %d: %.100s)", path, e.line,
                       e.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return rt_fail(RT_ERR_FORMAT, "%s: not a JSON object", path);
    }
    return RT_OK;
}

/* Integer key in [1, max]; `def` (> 0) when absent or null, else required. */
static rt_status cfg_int(const char *path, json_t *j, const char *key, int max, int def, int *v) {
    json_t *x = json_object_get(j, key);
    if ((!x || json_is_null(x)) && def > 0) {
        *v = def;
        return RT_OK;
    }
    if (!x) return rt_fail(RT_ERR_FORMAT, "%s: key %s is missing", path, key);
    if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > max)
        return rt_fail(RT_ERR_FORMAT, "%s: %s must be an integer in [1, %d]", path, key, max);
    *v = (int)json_integer_value(x);
    return RT_OK;
}

/* A boolean key that must be absent or `want`. */
static rt_status cfg_bool(const char *path, json_t *j, const char *key, int want, const char *why) {
    json_t *x = json_object_get(j, key);
    if (!x || json_is_null(x)) return RT_OK;
    if (!json_is_boolean(x))
        return rt_fail(RT_ERR_FORMAT, "%s: %s must be true or false", path, key);
    if (json_is_true(x) != want)
        return rt_fail(RT_ERR_UNSUPPORTED, "%s: %s = %s is not supported (%s)", path, key,
                       want ? "false" : "true", why);
    return RT_OK;
}

static rt_status parse_config(const char *path, json_t *j, student_config *c) {
    json_t *x = json_object_get(j, "model_type");
    if (x && (!json_is_string(x) || strcmp(json_string_value(x), "gpt2") != 0))
        return rt_fail(RT_ERR_UNSUPPORTED, "%s: model_type is not \"gpt2\"; retort reads GPT-2 "
                       "models only", path);
    *c = (student_config){0};
    RT_TRY(cfg_int(path, j, "n_layer", CKPT_HF_MAX_LAYERS, 0, &c->n_layer));
    RT_TRY(cfg_int(path, j, "n_head", CKPT_HF_MAX_HEADS, 0, &c->n_head));
    RT_TRY(cfg_int(path, j, "n_embd", CKPT_HF_MAX_WIDTH, 0, &c->d_model));
    RT_TRY(cfg_int(path, j, "vocab_size", CKPT_HF_MAX_VOCAB, 0, &c->vocab_size));
    RT_TRY(cfg_int(path, j, "n_positions", CKPT_HF_MAX_POSITIONS, 0, &c->seq_len));
    RT_TRY(cfg_int(path, j, "n_inner", CKPT_HF_MAX_FF, 4 * c->d_model, &c->d_ff));
    x = json_object_get(j, "activation_function");
    if (x && !json_is_null(x)) {
        const char *a = json_is_string(x) ? json_string_value(x) : "";
        if (strcmp(a, "gelu_new") != 0 && strcmp(a, "gelu_pytorch_tanh") != 0)
            return rt_fail(RT_ERR_UNSUPPORTED, "%s: activation_function \"%.40s\" is not "
                           "supported (retort computes the tanh GELU: gelu_new or "
                           "gelu_pytorch_tanh)", path, a);
    }
    x = json_object_get(j, "layer_norm_epsilon");
    if (x && !json_is_null(x) && (!json_is_number(x) || fabs(json_number_value(x) - 1e-5) > 1e-12))
        return rt_fail(RT_ERR_UNSUPPORTED, "%s: layer_norm_epsilon must be 1e-05 (retort's "
                       "LayerNorm uses GPT-2's epsilon)", path);
    RT_TRY(cfg_bool(path, j, "scale_attn_by_inverse_layer_idx", 0, "attention is scaled by "
                    "1/sqrt(head_dim) only"));
    RT_TRY(cfg_bool(path, j, "reorder_and_upcast_attn", 0, "GPT-2's attention order only"));
    RT_TRY(cfg_bool(path, j, "scale_attn_weights", 1, "attention is always scaled"));
    RT_TRY(cfg_bool(path, j, "add_cross_attention", 0, "decoder-only GPT-2 only"));
    RT_TRY(cfg_bool(path, j, "tie_word_embeddings", 1, "the LM head is tied to wte"));
    if (c->d_model % c->n_head != 0)
        return rt_fail(RT_ERR_FORMAT, "%s: n_embd %d is not a multiple of n_head %d", path,
                       c->d_model, c->n_head);
    if (student_config_validate(c) != RT_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", rt_last_error());
        return rt_fail(RT_ERR_FORMAT, "%s: %s", path, why);
    }
    return RT_OK;
}

/* A safetensors file name from an index: a plain name inside the folder. */
static int plain_name(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && strlen(s) < 256;
}

static rt_status add_file(ckpt_hf *h, const char *name) {
    char p[CKPT_PATH_MAX];
    RT_TRY(data_path_join(p, sizeof p, h->dir, name));
    for (int i = 0; i < h->n_files; i++)
        if (strcmp(ckpt_st_path(h->files[i]), p) == 0) return RT_OK;
    ckpt_st_file **nf = realloc(h->files, (size_t)(h->n_files + 1) * sizeof *nf);
    if (!nf) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", h->dir);
    h->files = nf;
    RT_TRY(ckpt_st_open(p, &h->files[h->n_files]));
    h->n_files++;
    return RT_OK;
}

/* Opens model.safetensors, or the shards model.safetensors.index.json names. */
static rt_status open_weights(ckpt_hf *h) {
    char p[CKPT_PATH_MAX];
    RT_TRY(data_path_join(p, sizeof p, h->dir, "model.safetensors"));
    if (access(p, F_OK) == 0) return add_file(h, "model.safetensors");
    RT_TRY(data_path_join(p, sizeof p, h->dir, "model.safetensors.index.json"));
    if (access(p, F_OK) != 0)
        return rt_fail(RT_ERR_IO, "%s: has neither model.safetensors nor "
                       "model.safetensors.index.json (only safetensors weights are read)", h->dir);
    json_t *idx = NULL;
    RT_TRY(load_json(p, &idx));
    rt_status st = RT_OK;
    json_t *map = json_object_get(idx, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: no weight_map object", p);
        goto cleanup;
    }
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v) || !plain_name(json_string_value(v))) {
            st = rt_fail(RT_ERR_FORMAT, "%s: weight_map entry %.100s is not a file name in the "
                         "folder", p, key);
            goto cleanup;
        }
        if ((st = add_file(h, json_string_value(v))) != RT_OK) goto cleanup;
    }
cleanup:
    json_decref(idx);
    return st;
}

/* The entry of `name` (without prefix) in any file; a duplicate across
 * files is an error. */
static rt_status find_tensor(ckpt_hf *h, const char *name, const ckpt_st_file **f,
                             const ckpt_st_tensor **t) {
    char full[128];
    snprintf(full, sizeof full, PREFIX "%s", name);
    *f = NULL, *t = NULL;
    for (int i = 0; i < h->n_files; i++)
        for (int pass = 0; pass < 2; pass++) {
            const ckpt_st_tensor *e = ckpt_st_find(h->files[i], pass ? name : full);
            if (!e) continue;
            if (*t)
                return rt_fail(RT_ERR_FORMAT, "%s: tensor %s is stored twice (%s and %s)", h->dir,
                               name, ckpt_st_path(*f), ckpt_st_path(h->files[i]));
            *f = h->files[i], *t = e;
        }
    return RT_OK;
}

static void shape_str(char *b, size_t cap, int nd, const int64_t *s) {
    size_t n = (size_t)snprintf(b, cap, "[");
    for (int i = 0; i < nd && n < cap; i++)
        n += (size_t)snprintf(b + n, cap - n, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (n < cap) snprintf(b + n, cap - n, "]");
}

/* Every tensor of every file must be a GPT-2 parameter, a buffer older
 * checkpoints carry, or the tied head. */
static rt_status check_extras(ckpt_hf *h) {
    for (int i = 0; i < h->n_files; i++)
        for (int k = 0; k < ckpt_st_count(h->files[i]); k++) {
            const char *n = ckpt_st_tensor_at(h->files[i], k)->name;
            const char *bare = strncmp(n, PREFIX, strlen(PREFIX)) == 0 ? n + strlen(PREFIX) : n;
            const size_t L = strlen(bare);
            if (strcmp(bare, "lm_head.weight") == 0 || strcmp(n, "lm_head.weight") == 0) continue;
            if ((L > 10 && strcmp(bare + L - 10, ".attn.bias") == 0) ||
                (L > 17 && strcmp(bare + L - 17, ".attn.masked_bias") == 0))
                continue;
            char full[160];
            snprintf(full, sizeof full, PREFIX "%.140s", bare);
            if (student_tensor_find(&h->cfg, full) < 0)
                return rt_fail(RT_ERR_FORMAT, "%s: unexpected tensor %.100s (not a parameter of "
                               "a GPT-2 of the shape config.json gives)",
                               ckpt_st_path(h->files[i]), n);
        }
    return RT_OK;
}

static rt_status map_tensors(ckpt_hf *h) {
    const student_config *c = &h->cfg;
    h->n_tensors = student_tensor_count(c);
    h->tfile = calloc((size_t)h->n_tensors, sizeof *h->tfile);
    h->tent = calloc((size_t)h->n_tensors, sizeof *h->tent);
    if (!h->tfile || !h->tent) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", h->dir);
    for (int i = 0; i < h->n_tensors; i++) {
        student_tensor t;
        student_tensor_info(c, i, &t);
        const char *bare = t.name + strlen(PREFIX);
        RT_TRY(find_tensor(h, bare, &h->tfile[i], &h->tent[i]));
        if (!h->tent[i])
            return rt_fail(RT_ERR_FORMAT, "%s: tensor %s (or %s) is missing",
                           h->n_files == 1 ? ckpt_st_path(h->files[0]) : h->dir, t.name, bare);
        const ckpt_st_tensor *e = h->tent[i];
        int same = e->ndim == t.ndim;
        for (int d = 0; same && d < t.ndim; d++) same = e->shape[d] == t.shape[d];
        if (!same) {
            char hb[96], wb[96];
            shape_str(hb, sizeof hb, e->ndim, e->shape);
            shape_str(wb, sizeof wb, t.ndim, t.shape);
            return rt_fail(RT_ERR_MISMATCH, "%s: %s has shape %s, config.json says %s",
                           ckpt_st_path(h->tfile[i]), e->name, hb, wb);
        }
        if (i == 0) h->key_prefix = strncmp(e->name, PREFIX, strlen(PREFIX)) == 0;
    }
    RT_TRY(find_tensor(h, "lm_head.weight", &h->head_file, &h->head));
    if (h->head) {
        student_tensor t;
        student_tensor_info(c, 0, &t); /* wte */
        if (h->head->ndim != 2 || h->head->shape[0] != t.shape[0] ||
            h->head->shape[1] != t.shape[1])
            return rt_fail(RT_ERR_UNSUPPORTED, "%s: lm_head.weight is not shaped like wte: an "
                           "untied LM head is not supported", ckpt_st_path(h->head_file));
    }
    return check_extras(h);
}

rt_status ckpt_hf_open(const char *dir, ckpt_hf **out, student_config *cfg) {
    *out = NULL;
    rt_status st = RT_OK;
    json_t *j = NULL;
    char p[CKPT_PATH_MAX];
    ckpt_hf *h = calloc(1, sizeof *h);
    if (!h || !(h->dir = strdup(dir))) {
        free(h);
        return rt_fail(RT_ERR_NOMEM, "%s: out of memory", dir);
    }
    if ((st = data_path_join(p, sizeof p, dir, "config.json")) != RT_OK) goto cleanup;
    if ((st = load_json(p, &j)) != RT_OK) goto cleanup;
    if ((st = parse_config(p, j, &h->cfg)) != RT_OK) goto cleanup;
    static const char *const tok_files[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        if ((st = data_path_join(p, sizeof p, dir, tok_files[i])) != RT_OK) goto cleanup;
        if (access(p, R_OK) != 0) {
            st = rt_fail(RT_ERR_IO, "%s: missing tokenizer file (a Hugging Face GPT-2 folder "
                         "holds vocab.json and merges.txt)", p);
            goto cleanup;
        }
    }
    if ((st = open_weights(h)) != RT_OK) goto cleanup;
    if ((st = map_tensors(h)) != RT_OK) goto cleanup;
    *cfg = h->cfg;
    *out = h;
    h = NULL;
cleanup:
    json_decref(j);
    ckpt_hf_close(h);
    return st;
}

static rt_status crc_file(const char *path, uint32_t *crc) {
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(RT_ERR_IO, "%s: cannot open for checksumming", path);
    char *buf = malloc(1 << 16);
    size_t n;
    while (buf && (n = fread(buf, 1, 1 << 16, f)) > 0) *crc = ckpt_crc32c(*crc, buf, n);
    const int bad = !buf || ferror(f);
    free(buf);
    fclose(f);
    return bad ? rt_fail(RT_ERR_IO, "%s: read error while checksumming", path) : RT_OK;
}

rt_status ckpt_hf_crc32c(const char *dir, uint32_t *crc) {
    student_config c;
    ckpt_hf *h = NULL;
    RT_TRY(ckpt_hf_open(dir, &h, &c));
    char p[CKPT_PATH_MAX];
    uint32_t x = 0;
    rt_status st = data_path_join(p, sizeof p, dir, "config.json");
    if (st == RT_OK) st = crc_file(p, &x);
    for (int i = 0; st == RT_OK && i < h->n_files; i++) st = crc_file(ckpt_st_path(h->files[i]), &x);
    ckpt_hf_close(h);
    if (st == RT_OK) *crc = x;
    return st;
}

/* lm_head.weight must equal wte (already in `wte`), compared chunk-wise. */
static rt_status check_head(ckpt_hf *h, const float *wte, size_t n) {
    enum { CHUNK = 1 << 16 };
    float *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", h->dir);
    rt_status st = RT_OK;
    for (size_t i = 0; i < n && st == RT_OK; i += CHUNK) {
        const size_t k = n - i < CHUNK ? n - i : CHUNK;
        st = ckpt_st_read_f32(h->head_file, h->head, i, k, buf);
        if (st == RT_OK && memcmp(buf, wte + i, k * sizeof *buf) != 0)
            st = rt_fail(RT_ERR_UNSUPPORTED, "%s: lm_head.weight differs from wte: an untied LM "
                         "head is not supported", ckpt_st_path(h->head_file));
    }
    free(buf);
    return st;
}

rt_status ckpt_hf_read_params(ckpt_hf *h, const student_config *mc, float *block) {
    student_config want = *mc;
    want.seq_len = h->cfg.seq_len;
    RT_ASSERT(memcmp(&want, &h->cfg, sizeof want) == 0 && mc->seq_len <= h->cfg.seq_len);
    for (int i = 0; i < h->n_tensors; i++) {
        student_tensor t;
        student_tensor_info(mc, i, &t); /* wpe: the first mc->seq_len rows */
        RT_TRY(ckpt_st_read_f32(h->tfile[i], h->tent[i], 0, t.numel, block + t.offset));
        /* as for HDF5 files (ckpt_check_floats): a NaN or Inf weight is an
         * error naming the tensor, not undefined behaviour in a kernel */
        RT_TRY(ckpt_check_floats_in(ckpt_st_path(h->tfile[i]), h->tent[i]->name, block + t.offset,
                                    t.numel, -FLT_MAX, FLT_MAX));
        if (i == 0 && h->head) RT_TRY(check_head(h, block + t.offset, t.numel));
    }
    return RT_OK;
}

uint64_t ckpt_hf_bytes(const ckpt_hf *h) {
    uint64_t bytes = 0;
    char p[CKPT_PATH_MAX];
    struct stat sb;
    if (data_path_join(p, sizeof p, h->dir, "config.json") == RT_OK && stat(p, &sb) == 0)
        bytes += (uint64_t)sb.st_size;
    for (int i = 0; i < h->n_files; i++)
        if (stat(ckpt_st_path(h->files[i]), &sb) == 0) bytes += (uint64_t)sb.st_size;
    return bytes;
}

rt_status ckpt_hf_summarize(const ckpt_hf *h, ckpt_summary *s) {
    if (!(s->path = strdup(h->dir))) return rt_fail(RT_ERR_NOMEM, "%s: out of memory", h->dir);
    snprintf(s->kind, sizeof s->kind, "hf");
    s->file_bytes = (long long)ckpt_hf_bytes(h);
    s->hf_dtype = ckpt_st_dtype_name(h->tent[0]->dtype);
    s->hf_files = h->n_files;
    s->hf_key_prefix = h->key_prefix;
    s->hf_head_stored = h->head != NULL;
    return RT_OK;
}

/* ----------------------------------------------------------------- export */

static rt_status write_json(const char *dir, const char *name, json_t *j) {
    char p[CKPT_PATH_MAX];
    rt_status st = data_path_join(p, sizeof p, dir, name);
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    if (st == RT_OK && !s) st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", p);
    if (st == RT_OK) {
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (!t) {
            st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", p);
        } else {
            s = t;
            memcpy(s + n, "\n", 2);
            st = data_write_text(p, s);
        }
    }
    free(s);
    return st;
}

static rt_status copy_file(const char *from_dir, const char *dir, const char *name) {
    char src[CKPT_PATH_MAX], dst[CKPT_PATH_MAX];
    RT_TRY(data_path_join(src, sizeof src, from_dir, name));
    RT_TRY(data_path_join(dst, sizeof dst, dir, name));
    char *buf = NULL;
    size_t len = 0;
    RT_TRY(data_read_file(src, &buf, &len));
    rt_status st = strlen(buf) == len ? data_write_text(dst, buf)
                                      : rt_fail(RT_ERR_FORMAT, "%s: holds a NUL byte", src);
    free(buf);
    return st;
}

rt_status ckpt_hf_write(const char *dir, const student_config *c0, const float *params,
                        ckpt_st_dtype dtype, const char *tokenizer_dir, int eot) {
    RT_ASSERT(student_attn_width(c0) == c0->d_model); /* ckpt_export_params pads removed heads */
    rt_status st = RT_OK;
    student_config c = *c0;
    c.d_head = 0;
    ckpt_st_out *t = NULL;
    char (*names)[80] = NULL;
    if ((st = data_mkdir_p(dir)) != RT_OK) return st;
    const int n = student_tensor_count(&c);
    t = calloc((size_t)n, sizeof *t);
    names = calloc((size_t)n, sizeof *names);
    if (!t || !names) {
        st = rt_fail(RT_ERR_NOMEM, "export: out of memory");
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        student_tensor s;
        student_tensor_info(&c, i, &s);
        snprintf(names[i], sizeof names[i], "%s", s.name);
        t[i] = (ckpt_st_out){.name = names[i], .ndim = s.ndim, .shape = {s.shape[0], s.shape[1]},
                             .data = params + s.offset};
    }
    char p[CKPT_PATH_MAX];
    if ((st = data_path_join(p, sizeof p, dir, "model.safetensors")) != RT_OK) goto cleanup;
    if ((st = ckpt_st_write(p, t, n, dtype)) != RT_OK) goto cleanup;
    static const char *const torch_dtype[] = {"float32", "float16", "bfloat16"};
    /* every GPT2Config field transformers writes; retort trains without dropout */
    json_t *cj = json_pack(
        "{s:s, s:[s], s:f, s:i, s:f, s:i, s:f, s:f, s:s, s:i, s:i, s:i, s:i, s:b, s:f, "
        "s:b, s:b, s:n, s:f, s:b, s:s, s:b, s:s, s:s, s:b, s:i}",
        "activation_function", "gelu_new", "architectures", "GPT2LMHeadModel", "attn_pdrop", 0.0,
        "bos_token_id", eot, "embd_pdrop", 0.0, "eos_token_id", eot, "initializer_range", 0.02,
        "layer_norm_epsilon", 1e-5, "model_type", "gpt2", "n_embd", c.d_model,
        "n_head", c.n_head, "n_inner", c.d_ff, "n_layer", c.n_layer, "reorder_and_upcast_attn", 0,
        "resid_pdrop", 0.0, "scale_attn_by_inverse_layer_idx", 0, "scale_attn_weights", 1,
        "summary_activation", "summary_first_dropout", 0.0, "summary_proj_to_labels", 1,
        "summary_type", "cls_index", "summary_use_proj", 1, "torch_dtype", torch_dtype[dtype],
        "transformers_version", "4.40.0", "use_cache", 1, "vocab_size", c.vocab_size);
    if (cj) json_object_set_new(cj, "n_positions", json_integer(c.seq_len));
    if ((st = write_json(dir, "config.json", cj)) != RT_OK) goto cleanup;
    st = write_json(dir, "generation_config.json",
                    json_pack("{s:i, s:i, s:s}", "bos_token_id", eot, "eos_token_id", eot,
                              "transformers_version", "4.40.0"));
    if (st != RT_OK) goto cleanup;
    if ((st = copy_file(tokenizer_dir, dir, "vocab.json")) != RT_OK) goto cleanup;
    if ((st = copy_file(tokenizer_dir, dir, "merges.txt")) != RT_OK) goto cleanup;
    st = write_json(dir, "special_tokens_map.json",
                    json_pack("{s:s, s:s, s:s}", "bos_token", "<|endoftext|>", "eos_token",
                              "<|endoftext|>", "unk_token", "<|endoftext|>"));
    if (st != RT_OK) goto cleanup;
    st = write_json(dir, "tokenizer_config.json",
                    json_pack("{s:b, s:s, s:b, s:s, s:i, s:s, s:s}", "add_prefix_space", 0,
                              "bos_token", "<|endoftext|>", "clean_up_tokenization_spaces", 0,
                              "eos_token", "<|endoftext|>", "model_max_length", c.seq_len,
                              "tokenizer_class", "GPT2Tokenizer", "unk_token", "<|endoftext|>"));
cleanup:
    free(t);
    free(names);
    return st;
}
