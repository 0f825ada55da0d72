/* `retort info CKPT [--json] [--verify]`: what a checkpoint holds, from
 * its metadata (ckpt_summarize, checkpoints/info.c), printed here as text
 * or one JSON object, and with --verify a full checksum pass over every
 * dataset (ckpt_verify). Metadata alone cannot show a flipped bit in the
 * weights; the checksum pass can, at the cost of reading the whole file,
 * hence a flag rather than the default. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "cli.h"
#include "cmds.h"

/* *what: what an OK means for this kind of file. */
static rt_status verify_file(const char *path, const char **what) {
    ckpt_reader *r = NULL;
    rt_status st = ckpt_open(path, &r);
    if (st == RT_OK) st = ckpt_verify(r);
    *what = r && strcmp(ckpt_reader_kind(r), "hf") == 0
                ? "every tensor read and checked against config.json; safetensors has no "
                  "checksums"
                : "every dataset matches its checksum";
    ckpt_reader_close(r);
    return st;
}

static void human_bytes(char *buf, size_t cap, unsigned long long b) {
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.2f MiB", (double)b / (1ull << 20));
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, cap, "%llu B", b);
}

static void print_text(const ckpt_summary *s) {
    const student_config *c = &s->cfg;
    printf("checkpoint   %s\n", s->path);
    if (strcmp(s->kind, "hf") == 0) {
        printf("kind         hf (Hugging Face GPT-2 folder, %d safetensors file%s, %s, names %s "
               "the transformer. prefix)\n",
               s->hf_files, s->hf_files == 1 ? "" : "s", s->hf_dtype,
               s->hf_key_prefix ? "with" : "without");
        printf("model        n_layer=%d n_head=%d d_model=%d d_ff=%d vocab_size=%d seq_len=%d\n",
               c->n_layer, c->n_head, c->d_model, c->d_ff, c->vocab_size, c->seq_len);
        printf("parameters   %zu (%.2fM)\n", s->params, (double)s->params / 1e6);
        printf("file size    %llu bytes (config.json + safetensors)\n",
               (unsigned long long)s->file_bytes);
        printf("lm_head      %s\n",
               s->hf_head_stored ? "stored (checked equal to wte on load)" : "tied");
        return;
    }
    char hb[32];
    printf("kind         %s (format retort v%d, written by retort %s)\n", s->kind,
           CKPT_FORMAT_VERSION, s->version ? s->version : "?");
    printf("step         %lld\n", (long long)s->step);
    printf("tokens seen  %lld\n", (long long)s->tokens_seen);
    printf("model        n_layer=%d n_head=%d d_model=%d d_ff=%d vocab_size=%d seq_len=%d\n",
           c->n_layer, c->n_head, c->d_model, c->d_ff, c->vocab_size, c->seq_len);
    if (s->d_head_stored) /* heads removed: attention narrower than d_model */
        printf("attention    d_head=%d width=%d (n_head*d_head; d_model=%d)\n",
               student_head_dim(c), student_attn_width(c), c->d_model);
    if (student_is_lowrank(c)) { /* factored linears: W_a [in, r] W_b [r, out] */
        printf("low-rank     ");
        for (int k = 0; k < STUDENT_LIN_N; k++)
            printf("%srank.%s=%d", k ? " " : "", student_linear_name((student_linear)k),
                   c->rank[k]);
        printf(" (0 = dense)\n");
    }
    printf("parameters   %zu (%.2fM)\n", s->params, (double)s->params / 1e6);
    human_bytes(hb, sizeof hb, (unsigned long long)(s->file_bytes < 0 ? 0 : s->file_bytes));
    printf("file size    %s (%lld bytes)\n", hb, s->file_bytes);
    printf("data         ");
    int first = 1;
    for (int i = 0; i < CKPT_SUMMARY_N_TYPES; i++) {
        if (!s->type_count[i]) continue;
        human_bytes(hb, sizeof hb, s->type_bytes[i]);
        printf("%s%s %s in %lld dataset%s", first ? "" : ", ", ckpt_summary_type_name(i), hb,
               s->type_count[i], s->type_count[i] == 1 ? "" : "s");
        first = 0;
    }
    printf("%s\n", first ? "none" : "");
    for (int i = 0; i < CKPT_SUMMARY_N_GROUPS; i++) {
        printf("%-12s %s", ckpt_summary_groups[i], s->has_group[i] ? "yes" : "no");
        if (i == 0 && s->has_opt_step) printf(" (AdamW step %lld)", (long long)s->opt_step);
        printf("\n");
    }
    const int has_config = s->config && s->config[0];
    printf("config       %s", has_config ? "yes" : "no");
    if (has_config) printf(" (%zu bytes of INI in /meta config)", strlen(s->config));
    printf("\nprovenance   %s\n", s->provenance && s->provenance[0] ? s->provenance : "none");
}

/* The summary as one JSON object (NULL when out of memory). */
static json_t *summary_json(const ckpt_summary *s) {
    const student_config *c = &s->cfg;
    if (strcmp(s->kind, "hf") == 0)
        return json_pack("{s:s, s:s, s:s, s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i}, s:I, s:I, s:b, "
                         "s:b}",
                         "path", s->path, "kind", "hf", "dtype", s->hf_dtype, "files",
                         s->hf_files, "config", "n_layer", c->n_layer, "n_head", c->n_head,
                         "d_model", c->d_model, "d_ff", c->d_ff, "vocab_size", c->vocab_size,
                         "seq_len", c->seq_len, "parameters", (json_int_t)s->params,
                         "file_bytes", (json_int_t)s->file_bytes, "transformer_prefix",
                         s->hf_key_prefix, "lm_head_stored", s->hf_head_stored);
    json_t *o = json_object(), *cfg = json_object(), *dt = json_object(), *state = json_object();
    if (!o || !cfg || !dt || !state) {
        json_decref(o), json_decref(cfg), json_decref(dt), json_decref(state);
        return NULL;
    }
    json_object_set_new(o, "path", json_string(s->path));
    json_object_set_new(o, "format", json_string("retort"));
    json_object_set_new(o, "version", json_integer(CKPT_FORMAT_VERSION));
    json_object_set_new(o, "kind", json_string(s->kind));
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "tokens_seen", json_integer(s->tokens_seen));
    json_object_set_new(cfg, "n_layer", json_integer(c->n_layer));
    json_object_set_new(cfg, "n_head", json_integer(c->n_head));
    json_object_set_new(cfg, "d_model", json_integer(c->d_model));
    json_object_set_new(cfg, "d_ff", json_integer(c->d_ff));
    json_object_set_new(cfg, "d_head", json_integer(student_head_dim(c)));
    json_object_set_new(cfg, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(cfg, "seq_len", json_integer(c->seq_len));
    if (student_is_lowrank(c)) {
        json_t *rk = json_object();
        for (int k = 0; rk && k < STUDENT_LIN_N; k++)
            json_object_set_new(rk, student_linear_name((student_linear)k),
                                json_integer(c->rank[k]));
        json_object_set_new(cfg, "rank", rk ? rk : json_null());
    }
    json_object_set_new(o, "model", cfg);
    json_object_set_new(o, "parameters", json_integer((json_int_t)s->params));
    json_object_set_new(o, "file_bytes", json_integer(s->file_bytes));
    for (int i = 0; i < CKPT_SUMMARY_N_TYPES; i++)
        if (s->type_count[i])
            json_object_set_new(dt, ckpt_summary_type_name(i),
                                json_integer((json_int_t)s->type_bytes[i]));
    json_object_set_new(o, "bytes_by_dtype", dt);
    json_object_set_new(o, "retort_version", s->version ? json_string(s->version) : json_null());
    json_t *pj = NULL;
    if (s->provenance && s->provenance[0]) {
        pj = json_loads(s->provenance, 0, NULL); /* embedded as JSON when it parses */
        if (!pj) pj = json_string(s->provenance);
    }
    json_object_set_new(o, "provenance", pj ? pj : json_null());
    json_object_set_new(o, "has_config", json_boolean(s->config && s->config[0]));
    for (int i = 0; i < CKPT_SUMMARY_N_GROUPS; i++)
        json_object_set_new(state, ckpt_summary_groups[i], json_boolean(s->has_group[i]));
    json_object_set_new(o, "present", state);
    json_object_set_new(o, "optimizer_step",
                        s->has_opt_step ? json_integer(s->opt_step) : json_null());
    return o;
}

/* --json: the summary as one line; with --verify, "verified" (and
 * "verify_error") added, so that stdout stays exactly one JSON object. */
static rt_status print_json(const ckpt_summary *s, const char *path, int verify) {
    json_t *j = summary_json(s);
    if (!j) return rt_fail(RT_ERR_NOMEM, "%s: out of memory building the JSON summary", path);
    rt_status st = RT_OK;
    if (verify) {
        const char *what;
        st = verify_file(path, &what);
        json_object_set_new(j, "verified", json_boolean(st == RT_OK));
        if (st != RT_OK) json_object_set_new(j, "verify_error", json_string(rt_last_error()));
    }
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!text) return rt_fail(RT_ERR_NOMEM, "%s: out of memory printing JSON", path);
    printf("%s\n", text);
    free(text);
    return st; /* the message of a failed verify is still rt_last_error() */
}

int trainer_cmd_info(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_info, argc, argv, &a);
    if (rc >= 0) return rc;
    int n = 0;
    const char *path = cli_positionals(a, &n)[0];
    const int json = cli_flag(a, "json"), verify = cli_flag(a, "verify");
    ckpt_summary s;
    rt_status st = ckpt_summarize(path, &s);
    if (st == RT_OK && json) {
        st = print_json(&s, path, verify);
    } else if (st == RT_OK) {
        print_text(&s);
        if (verify) {
            const char *what;
            st = verify_file(path, &what);
            if (st == RT_OK)
                printf("verify       OK (%s)\n", what);
            else
                printf("verify       FAILED: %s\n", rt_last_error());
        }
    }
    ckpt_summary_free(&s);
    fflush(stdout);
    cli_args_free(a);
    return rt_report(st);
}
