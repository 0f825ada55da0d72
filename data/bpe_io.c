/* Tokenizer files in GPT-2 / Hugging Face format.
 *
 * vocab.json: one JSON object, token -> id, where a token is written in
 * GPT-2's byte-to-unicode alphabet (bytes_to_unicode: e.g. a space is "Ġ",
 * a newline "Ċ") and <|endoftext|> is written as itself. merges.txt: a
 * "#version: 0.2" line, then one merge per line, "left right" in the same
 * alphabet, by rank, each line ending in '\n' (Hugging Face's
 * GPT2Tokenizer drops the first and the last split line). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe_internal.h"
#include "fsutil.h"

/* NUL-terminated alphabet form of token id (buf needs 2 * len + 1). */
static const char *token_alpha(const data_tokenizer *t, int32_t id, char *buf) {
    if (id == t->eot) return DATA_EOT_TEXT;
    size_t len;
    const char *tok = data_tokenizer_token(t, id, &len);
    buf[data_bytes_to_alpha(tok, len, buf)] = '\0';
    return buf;
}

static size_t longest_token(const data_tokenizer *t) {
    size_t m = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
        if (len > m) m = len;
    }
    return m;
}

static rt_status save_vocab(const data_tokenizer *t, const char *path, char *buf) {
    char tmp[DATA_PATH_MAX];
    RT_TRY(data_tmp_path(tmp, sizeof tmp, path));
    rt_status st = RT_OK;
    json_t *obj = json_object();
    if (!obj) return rt_fail(RT_ERR_NOMEM, "%s: out of memory building the JSON", path);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (json_object_set_new(obj, token_alpha(t, id, buf), json_integer(id)) != 0) {
            st = rt_fail(RT_ERR_NOMEM, "%s: out of memory building the JSON", path);
            goto cleanup;
        }
    }
    /* Hugging Face reads UTF-8 keys directly; jansson keeps insertion (id) order. */
    if (json_dump_file(obj, tmp, 0) != 0) {
        st = rt_fail(RT_ERR_IO, "%s: cannot write %s (%s)", path, tmp, strerror(errno));
        remove(tmp);
        goto cleanup;
    }
    st = data_commit_tmp(tmp, path);
cleanup:
    json_decref(obj);
    return st;
}

static rt_status save_merges(const data_tokenizer *t, const char *path, char *buf) {
    char tmp[DATA_PATH_MAX];
    FILE *f = NULL;
    RT_TRY(data_tmp_open(tmp, sizeof tmp, path, &f));
    fputs("#version: 0.2\n", f);
    for (int32_t r = 0; r < t->n_merges; r++) {
        fputs(token_alpha(t, t->merges[(size_t)r * 3], buf), f);
        fputc(' ', f);
        fputs(token_alpha(t, t->merges[(size_t)r * 3 + 1], buf), f);
        fputc('\n', f);
    }
    return data_tmp_finish(f, tmp, path);
}

rt_status data_tokenizer_save(const data_tokenizer *t, const char *dir) {
    char vocab[DATA_PATH_MAX], merges[DATA_PATH_MAX];
    RT_TRY(data_path_join(vocab, sizeof vocab, dir, "vocab.json"));
    RT_TRY(data_path_join(merges, sizeof merges, dir, "merges.txt"));
    size_t cap = 2 * longest_token(t) + sizeof DATA_EOT_TEXT;
    char *buf = malloc(cap);
    if (!buf) return rt_fail(RT_ERR_NOMEM, "out of memory saving the tokenizer to %s", dir);
    rt_status st = save_vocab(t, vocab, buf);
    if (st == RT_OK) st = save_merges(t, merges, buf);
    free(buf);
    return st;
}

/* ---- load ---- */

/* Parsed vocab.json: token bytes in id order. */
typedef struct {
    int32_t n, eot;
    char *bytes;  /* all tokens, in key order as parsed */
    int64_t *at;  /* (n) where token id starts in bytes, -1 until seen */
    int64_t *len; /* (n) */
} vocab_table;

static void vocab_table_free(vocab_table *v) {
    free(v->bytes);
    free(v->at);
    free(v->len);
}

static rt_status vocab_entry(vocab_table *v, const char *path, const char *key, json_t *val,
                             size_t *used) {
    if (!json_is_integer(val))
        return rt_fail(RT_ERR_FORMAT, "%s: the id of token \"%s\" is not an integer", path, key);
    json_int_t id = json_integer_value(val);
    if (id < 0 || id >= v->n)
        return rt_fail(RT_ERR_FORMAT, "%s: token \"%s\" has id %lld outside 0..%d (ids must be "
                       "0..N-1 for N tokens)", path, key, (long long)id, v->n - 1);
    if (v->at[id] >= 0)
        return rt_fail(RT_ERR_FORMAT, "%s: id %lld is used by two tokens", path, (long long)id);
    int64_t nb;
    if (strcmp(key, DATA_EOT_TEXT) == 0) {
        v->eot = (int32_t)id;
        nb = (int64_t)strlen(key);
        memcpy(v->bytes + *used, key, (size_t)nb);
    } else {
        nb = data_alpha_to_bytes(key, v->bytes + *used);
        if (nb <= 0)
            return rt_fail(RT_ERR_FORMAT, "%s: token \"%s\" (id %lld) is empty or has a character "
                           "outside GPT-2's byte alphabet", path, key, (long long)id);
    }
    v->at[id] = (int64_t)*used;
    v->len[id] = nb;
    *used += (size_t)nb;
    return RT_OK;
}

static rt_status parse_vocab(const char *path, json_t *root, vocab_table *v) {
    if (!json_is_object(root))
        return rt_fail(RT_ERR_FORMAT, "%s: expected a JSON object of token -> id", path);
    size_t n = json_object_size(root);
    if (n < DATA_MIN_VOCAB || n > INT32_MAX)
        return rt_fail(RT_ERR_FORMAT, "%s: %zu tokens; a byte-level vocabulary has at least %d",
                       path, n, DATA_MIN_VOCAB);
    size_t total = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) total += strlen(key);
    v->n = (int32_t)n;
    v->eot = -1;
    v->bytes = malloc(total + 1);
    v->at = malloc(n * sizeof *v->at);
    v->len = malloc(n * sizeof *v->len);
    if (!v->bytes || !v->at || !v->len)
        return rt_fail(RT_ERR_NOMEM, "%s: out of memory for %zu tokens", path, n);
    for (size_t i = 0; i < n; i++) v->at[i] = -1;
    size_t used = 0;
    json_object_foreach(root, key, val) RT_TRY(vocab_entry(v, path, key, val, &used));
    if (v->eot < 0) return rt_fail(RT_ERR_FORMAT, "%s: has no %s token", path, DATA_EOT_TEXT);
    return RT_OK;
}

/* Reads vocab.json into a tokenizer without merges. */
static rt_status load_vocab(const char *path, data_tokenizer **out) {
    *out = NULL;
    rt_status st = RT_OK;
    vocab_table v;
    memset(&v, 0, sizeof v);
    char *bytes = NULL;
    int64_t *off = NULL;
    json_t *root = NULL;
    char *text = NULL;
    size_t len = 0;
    if (access(path, F_OK) != 0)
        return rt_fail(RT_ERR_IO, "%s: cannot open (%s); a tokenizer folder holds vocab.json "
                       "and merges.txt", path, strerror(errno));
    RT_TRY(data_read_file_max(path, DATA_TOKENIZER_MAX_BYTES, "tokenizer file", &text, &len));
    json_error_t err;
    root = json_loadb(text, len, 0, &err);
    free(text);
    if (!root) {
        st = rt_fail(RT_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", path, err.line, err.text);
        goto cleanup;
    }
    if ((st = parse_vocab(path, root, &v)) != RT_OK) goto cleanup;
    /* Lay the tokens out in id order. */
    off = malloc(((size_t)v.n + 1) * sizeof *off);
    if (!off) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    off[0] = 0;
    for (int32_t id = 0; id < v.n; id++) off[id + 1] = off[id] + v.len[id];
    bytes = malloc((size_t)off[v.n] + 1);
    if (!bytes) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int32_t id = 0; id < v.n; id++)
        memcpy(bytes + off[id], v.bytes + v.at[id], (size_t)v.len[id]);
    st = data_tokenizer_from_tokens(v.n, bytes, off, v.eot, path, out);
cleanup:
    json_decref(root);
    vocab_table_free(&v);
    free(bytes);
    free(off);
    return st;
}

/* Looks up one side of a merge line (alphabet form) as a token id. */
static rt_status merge_side(const data_tokenizer *t, const char *path, int line, const char *s,
                            char *buf, int32_t *id) {
    int64_t n = data_alpha_to_bytes(s, buf);
    int64_t e = n > 0 ? data_strmap_find(&t->tok_index, buf, (size_t)n) : -1;
    if (e < 0)
        return rt_fail(RT_ERR_FORMAT, "%s line %d: \"%s\" is not a token of vocab.json", path,
                       line, s);
    *id = (int32_t)e;
    return RT_OK;
}

static rt_status merge_line(data_tokenizer *t, const char *path, int line, char *s, char *buf) {
    size_t len = strlen(s);
    if (len > 0 && s[len - 1] == '\r') s[--len] = '\0';
    if (len == 0) return RT_OK; /* blank lines (e.g. a trailing one) carry no merge */
    char *sp = strchr(s, ' ');
    if (!sp || sp == s || sp[1] == '\0' || strchr(sp + 1, ' '))
        return rt_fail(RT_ERR_FORMAT, "%s line %d: expected \"left right\", got \"%s\"", path,
                       line, s);
    *sp = '\0';
    int32_t l = -1, r = -1, result;
    RT_TRY(merge_side(t, path, line, s, buf, &l));
    RT_TRY(merge_side(t, path, line, sp + 1, buf, &r));
    rt_status st = data_tokenizer_add_merge(t, l, r, &result);
    if (st != RT_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", rt_last_error());
        return rt_fail(st, "%s line %d: \"%s %s\": %s", path, line, s, sp + 1, why);
    }
    return RT_OK;
}

static rt_status load_merges(data_tokenizer *t, const char *path) {
    char *text = NULL, *buf = NULL;
    size_t len;
    RT_TRY(data_read_file_max(path, DATA_TOKENIZER_MAX_BYTES, "tokenizer file", &text, &len));
    rt_status st = RT_OK;
    if (strncmp(text, "#version", 8) != 0) {
        st = rt_fail(RT_ERR_FORMAT, "%s: line 1 must be the \"#version: 0.2\" header", path);
        goto cleanup;
    }
    if (strlen(text) != len) {
        st = rt_fail(RT_ERR_FORMAT, "%s: contains a NUL byte", path);
        goto cleanup;
    }
    buf = malloc(len + 1);
    if (!buf) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    char *line = strchr(text, '\n');
    for (int no = 2; line; no++) {
        char *s = line + 1;
        line = strchr(s, '\n');
        if (line) *line = '\0';
        if ((st = merge_line(t, path, no, s, buf)) != RT_OK) goto cleanup;
    }
cleanup:
    free(text);
    free(buf);
    return st;
}

rt_status data_tokenizer_load(const char *dir, data_tokenizer **out) {
    *out = NULL;
    char vocab[DATA_PATH_MAX], merges[DATA_PATH_MAX];
    RT_TRY(data_path_join(vocab, sizeof vocab, dir, "vocab.json"));
    RT_TRY(data_path_join(merges, sizeof merges, dir, "merges.txt"));
    data_tokenizer *t = NULL;
    RT_TRY(load_vocab(vocab, &t));
    rt_status st = load_merges(t, merges);
    if (st != RT_OK) {
        data_tokenizer_destroy(t);
        return st;
    }
    *out = t;
    return RT_OK;
}
