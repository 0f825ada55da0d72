/* `retort export --format deploy [--int8]`: a deploy file from a training
 * checkpoint (layout: checkpoints/ckpt_deploy.h). `--format hf` and
 * `--format gguf` write the same model for other programs (ckpt_hf.h,
 * ckpt_gguf.h) from any model file, with the tokenizer beside it.
 *
 * --int8 needs activation scales for the input of every linear layer:
 * from the checkpoint's QAT observers (/qat/state, written by a QAT run)
 * when it has them, so the file computes exactly what QAT trained with;
 * otherwise from --calib, post-training: the running min/max of every
 * linear input over --calib-windows consecutive windows of the shard,
 * symmetric int8 (PTQ). Without either it is an error rather than a guess.
 * --act dynamic needs neither: the deploy file stores int8 weights only and
 * the runtime quantizes every linear input per token (student_int8_set
 * with no quantizers). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_deploy.h"
#include "ckpt_gguf.h"
#include "ckpt_hf.h"
#include "cli.h"
#include "cmds.h"
#include "data.h"

/* The value of `key` in section [sect] of INI text, into out ("" if none). */
static void ini_value(const char *text, const char *sect, const char *key, char *out, size_t n) {
    char cur[64] = "";
    out[0] = '\0';
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[1024];
        if (len >= sizeof line) len = sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = e ? e + 1 : NULL;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '[') {
            char *c = strchr(s, ']');
            if (c) *c = '\0';
            snprintf(cur, sizeof cur, "%s", s + 1);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq || strcmp(cur, sect) != 0) continue;
        char *k_end = eq;
        while (k_end > s && (k_end[-1] == ' ' || k_end[-1] == '\t')) k_end--;
        if ((size_t)(k_end - s) != strlen(key) || strncmp(s, key, strlen(key)) != 0) continue;
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t') v++;
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r')) *--ve = '\0';
        snprintf(out, n, "%s", v);
    }
}

/* PTQ: observe every linear input over n_windows windows of the shard,
 * read a batch of windows at a time. */
static rt_status calibrate(student_model *m, const char *shard, int n_windows,
                           student_act_quant *aq) {
    const student_config *c = student_cfg(m);
    data_shard *sh = NULL;
    int32_t *in = NULL;
    rt_status st = data_shard_open(shard, &sh);
    if (st != RT_OK) return st;
    const int64_t n = data_shard_n_tokens(sh), vocab = data_shard_vocab_size(sh);
    const int T = c->seq_len, B = student_max_batch(m);
    int64_t windows = (n - 1) / T;
    if (windows < 1) {
        st = rt_fail(RT_ERR_ARGS, "export: --calib %s has %lld tokens, fewer than one window of "
                     "%d", shard, (long long)n, T + 1);
        goto cleanup;
    }
    if (vocab > c->vocab_size) {
        st = rt_fail(RT_ERR_MISMATCH, "export: --calib %s has a vocabulary of %lld tokens, the "
                     "model %d; calibrate on a shard of the model's tokenizer", shard,
                     (long long)vocab, c->vocab_size);
        goto cleanup;
    }
    if (windows > n_windows) windows = n_windows;
    if (!(in = malloc((size_t)B * T * sizeof *in))) {
        st = rt_fail(RT_ERR_NOMEM, "export: out of memory for %d calibration windows", B);
        goto cleanup;
    }
    const student_qat_config qc = {.calib_steps = 1 << 30, .asymmetric = 0, .freeze = 1,
                                   .observe_only = 1};
    if ((st = student_qat_enable(m, &qc)) != RT_OK) goto cleanup;
    for (int64_t w = 0; w < windows; w += B) {
        const int rows = (int)(windows - w < B ? windows - w : B);
        for (int r = 0; r < rows; r++)
            if ((st = data_shard_read_window(sh, (w + r) * T, T, in + (size_t)r * T, NULL)) !=
                RT_OK)
                goto cleanup;
        student_qat_observe_next(m);
        if ((st = student_forward(m, in, rows)) != RT_OK) goto cleanup;
    }
    student_qat_step_end(m);
    st = student_qat_act_params(m, aq);
    fprintf(stderr, "export: calibrated activation ranges on %lld windows of %s\n",
            (long long)windows, shard);
cleanup:
    student_qat_disable(m);
    free(in);
    data_shard_close(sh);
    return st;
}

/* QAT: the checkpoint's observers. */
static rt_status qat_scales(student_model *m, ckpt_reader *r, student_act_quant *aq) {
    const size_t n = student_qat_state_size(student_cfg(m));
    float *s = malloc(n * sizeof *s);
    if (!s) return rt_fail(RT_ERR_NOMEM, "export: out of memory");
    const student_qat_config qc = {.calib_steps = 1, .freeze = 1, .observe_only = 1};
    rt_status st = ckpt_read_array(r, "/qat/state", CKPT_F32, n, s);
    if (st == RT_OK) st = student_qat_enable(m, &qc);
    if (st == RT_OK) st = student_qat_set_state(m, s, n);
    if (st == RT_OK) st = student_qat_act_params(m, aq);
    student_qat_disable(m);
    free(s);
    return st;
}

/* The tokenizer folder of model `path` (open as r): --tokenizer, else the
 * [data] tokenizer of its config, the one a deploy file records, or the
 * Hugging Face folder itself. */
static rt_status find_tokenizer(const cli_args *a, const char *path, ckpt_reader *r, char *out,
                                size_t cap) {
    out[0] = '\0';
    if (cli_str(a, "tokenizer")) {
        snprintf(out, cap, "%s", cli_str(a, "tokenizer"));
        return RT_OK;
    }
    if (strcmp(ckpt_reader_kind(r), "hf") == 0) {
        snprintf(out, cap, "%s", path);
        return RT_OK;
    }
    char *text = NULL;
    if (ckpt_has(r, "/meta") && ckpt_read_string_attr(r, "/meta", "config", &text) == RT_OK)
        ini_value(text, "data", "tokenizer", out, cap);
    free(text);
    if (!out[0] && ckpt_has(r, "/tokenizer/path")) {
        RT_TRY(ckpt_deploy_tokenizer(r, &text));
        snprintf(out, cap, "%s", text);
        free(text);
    }
    if (!out[0])
        return rt_fail(RT_ERR_ARGS, "%s: records no tokenizer folder; pass --tokenizer DIR "
                       "(vocab.json + merges.txt)", path);
    return RT_OK;
}

/* --format hf | gguf: the model of any file, dequantized and with removed
 * heads padded back, plus its tokenizer. */
static rt_status export_other(const cli_args *a) {
    const char *path = cli_str(a, "model"), *out = cli_str(a, "out"),
               *format = cli_str(a, "format");
    if (cli_flag(a, "int8") || cli_str(a, "calib"))
        return rt_fail(RT_ERR_ARGS, "export: --int8 and --calib are for --format deploy (for "
                       "8-bit GGUF use --type q8_0)");
    student_model *m = NULL;
    ckpt_reader *r = NULL;
    data_tokenizer *tok = NULL;
    float *padded = NULL;
    char tok_dir[1024];
    rt_status st = ckpt_load_model(path, 1, STUDENT_F32, 0, &m, &r);
    if (st == RT_OK) st = find_tokenizer(a, path, r, tok_dir, sizeof tok_dir);
    if (st == RT_OK) st = data_tokenizer_load(tok_dir, &tok);
    if (st != RT_OK) goto cleanup;
    if (data_tokenizer_vocab_size(tok) != student_cfg(m)->vocab_size) {
        st = rt_fail(RT_ERR_MISMATCH, "the tokenizer in %s has %d tokens but the model %s has "
                     "vocab_size %d (pass the --tokenizer the model was trained with)", tok_dir,
                     data_tokenizer_vocab_size(tok), path, student_cfg(m)->vocab_size);
        goto cleanup;
    }
    student_config c;
    if ((st = ckpt_export_params(student_cfg(m), student_params(m), &c, &padded)) != RT_OK)
        goto cleanup;
    const float *params = padded ? padded : student_params(m);
    const char *dt = cli_str(a, "dtype"), *ty = cli_str(a, "type");
    if (strcmp(format, "hf") == 0) {
        const ckpt_st_dtype d = strcmp(dt, "f16") == 0    ? CKPT_ST_F16
                                : strcmp(dt, "bf16") == 0 ? CKPT_ST_BF16
                                                          : CKPT_ST_F32;
        st = ckpt_hf_write(out, &c, params, d, tok_dir, data_tokenizer_eot(tok));
    } else {
        const ckpt_gguf_type g = strcmp(ty, "f16") == 0    ? CKPT_GGUF_F16
                                 : strcmp(ty, "q8_0") == 0 ? CKPT_GGUF_Q8_0
                                                           : CKPT_GGUF_F32;
        char name[256];
        const char *base = strrchr(path, '/');
        snprintf(name, sizeof name, "%s", base && base[1] ? base + 1 : path);
        st = ckpt_gguf_write(out, &c, params, g, tok, name);
    }
    if (st == RT_OK)
        fprintf(stderr, "export: wrote %s (%s, %s%s)\n", out, format,
                strcmp(format, "hf") == 0 ? dt : ty,
                student_is_lowrank(student_cfg(m)) ? ", low-rank factors multiplied back"
                : padded                           ? ", removed heads padded back as zeros"
                                                   : "");
cleanup:
    rt_free_aligned(padded);
    data_tokenizer_destroy(tok);
    student_destroy(m);
    ckpt_reader_close(r);
    return st;
}

int trainer_cmd_export(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_export, argc, argv, &a);
    if (rc >= 0) return rc;
    if (strcmp(cli_str(a, "format"), "deploy") != 0) {
        const rt_status st = export_other(a);
        cli_args_free(a);
        return rt_report(st);
    }
    rt_status st = RT_OK;
    ckpt_reader *r = NULL;
    student_model *m = NULL;
    student_act_quant *aq = NULL;
    char *config_text = NULL, *prov = NULL;
    const char *path = cli_str(a, "model"), *out = cli_str(a, "out"), *calib = cli_str(a, "calib");
    const int int8 = cli_flag(a, "int8");
    const int dynamic = strcmp(cli_str(a, "act"), "dynamic") == 0;
    const int codebook = cli_has(a, "codebook") ? atoi(cli_str(a, "codebook")) : 0;
    const int per_channel = strcmp(cli_str(a, "codebook-per"), "channel") == 0;
    const char *source = "none";

    if (dynamic && !int8) {
        st = rt_fail(RT_ERR_ARGS, "export: --act dynamic is for int8 activations; add --int8");
        goto cleanup;
    }
    if (codebook && int8) {
        st = rt_fail(RT_ERR_ARGS, "export: --codebook and --int8 are two ways to store the "
                     "weights; choose one");
        goto cleanup;
    }
    if (calib && (!int8 || dynamic))
        fprintf(stderr, "export: --calib is only used with --int8 --act static; ignoring it\n");
    if ((st = ckpt_open(path, &r)) != RT_OK) goto cleanup;
    if (ckpt_deploy_is_int8(r)) {
        st = rt_fail(RT_ERR_ARGS, "%s: is already an int8 deploy file; export from the training "
                     "checkpoint it came from", path);
        goto cleanup;
    }
    const int has_qat = ckpt_has(r, "/qat/state");
    if (int8 && !dynamic && !has_qat && !calib) {
        st = rt_fail(RT_ERR_ARGS, "%s: has no QAT scales (/qat/state); --int8 needs them or a "
                     "token shard to calibrate on (--calib data/val.h5)", path);
        goto cleanup;
    }
    if (int8 && !dynamic && has_qat && calib)
        fprintf(stderr, "export: using the checkpoint's QAT scales; --calib is ignored\n");
    ckpt_reader_close(r);
    r = NULL;
    if ((st = ckpt_load_model(path, 8, STUDENT_F32, 0, &m, &r)) != RT_OK) goto cleanup;
    const student_config *c = student_cfg(m);
    if (int8 && dynamic) {
        source = "dynamic";
    } else if (int8) {
        aq = calloc((size_t)(4 * c->n_layer), sizeof *aq);
        if (!aq) {
            st = rt_fail(RT_ERR_NOMEM, "export: out of memory");
            goto cleanup;
        }
        if (has_qat) {
            st = qat_scales(m, r, aq);
            source = "qat";
        } else {
            st = calibrate(m, calib, (int)cli_int(a, "calib-windows"), aq);
            source = "ptq";
        }
        if (st != RT_OK) goto cleanup;
    }
    if (ckpt_has(r, "/meta") && ckpt_read_string_attr(r, "/meta", "config", &config_text) != RT_OK) {
        free(config_text);
        config_text = NULL;
    }
    char tok[1024];
    if (cli_str(a, "tokenizer"))
        snprintf(tok, sizeof tok, "%s", cli_str(a, "tokenizer"));
    else
        ini_value(config_text ? config_text : "", "data", "tokenizer", tok, sizeof tok);
    {
        json_t *j = json_pack("{s:s, s:I, s:s, s:s}", "source", path, "source_step",
                              (json_int_t)ckpt_reader_step(r), "format",
                              int8 ? "deploy-int8" : codebook ? "deploy-codebook" : "deploy-f32",
                              "activation_scales", source);
        prov = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    const ckpt_deploy d = {
        .step = ckpt_reader_step(r), .tokens_seen = ckpt_reader_tokens_seen(r), .cfg = *c,
        .params = student_params(m), .act = int8 ? aq : NULL, .act_dynamic = int8 && dynamic,
        .codebook = codebook, .codebook_per_channel = per_channel, .tokenizer = tok,
        .config_text = config_text, .provenance_json = prov,
    };
    if ((st = ckpt_deploy_save(out, &d)) != RT_OK) goto cleanup;
    if (codebook)
        fprintf(stderr, "export: wrote %s (linear weights as %d-entry codebooks per %s, "
                "%d-bit indices)\n", out, codebook, per_channel ? "output channel" : "tensor",
                codebook == 16 ? 4 : 8);
    else
        fprintf(stderr, "export: wrote %s (%s%s)\n", out,
                !int8      ? "f32"
                : dynamic  ? "int8, activations quantized per token at run time"
                           : "int8, activation scales from ",
                int8 && !dynamic ? source : "");
cleanup:
    free(aq);
    free(config_text);
    free(prov);
    student_destroy(m);
    ckpt_reader_close(r);
    cli_args_free(a);
    return rt_report(st);
}
