/* `retort eval`: next-token loss, perplexity, calibration (ECE) and, given a
 * teacher, top-1 agreement of a checkpoint on a token shard, and with
 * --pairs the bias probe (pairs.h). The command parses its options and
 * prints; the evaluation itself is trainer_eval (eval.c), the protocol's one
 * implementation. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "eval.h"
#include "pairs.h"

static json_t *bias_json(const trainer_bias_result *b) {
    json_t *j = json_object(), *types = json_object();
    json_object_set_new(j, "pairs", json_integer(b->n));
    json_object_set_new(j, "more", json_integer(b->more));
    json_object_set_new(j, "score", json_real(b->score));
    json_object_set_new(j, "mean_logp_diff", json_real(b->mean_diff));
    for (int k = 0; k < b->n_groups; k++) {
        json_t *g = json_object();
        json_object_set_new(g, "pairs", json_integer(b->groups[k].n));
        json_object_set_new(g, "more", json_integer(b->groups[k].more));
        json_object_set_new(g, "score", json_real(b->groups[k].score));
        json_object_set_new(types, b->groups[k].type, g);
    }
    json_object_set_new(j, "types", types);
    return j;
}

static rt_status print_json(const trainer_eval_opts *o, const trainer_eval_result *r,
                            const char *pairs, const trainer_bias_result *b) {
    json_t *j = json_object();
    if (!j) return rt_fail(RT_ERR_NOMEM, "eval: out of memory building the JSON result");
    json_object_set_new(j, "model", json_string(o->model));
    if (o->data) {
        json_object_set_new(j, "data", json_string(o->data));
        if (o->teacher) json_object_set_new(j, "teacher", json_string(o->teacher));
        json_object_set_new(j, "loss", json_real(r->loss));
        json_object_set_new(j, "perplexity", json_real(r->perplexity));
        json_object_set_new(j, "tokens", json_integer(r->tokens));
        json_object_set_new(j, "windows", json_integer(r->windows));
        json_object_set_new(j, "ece", json_real(r->ece));
        if (o->teacher) json_object_set_new(j, "agreement", json_real(r->agreement));
        json_object_set_new(j, "params", json_integer(r->params));
        json_object_set_new(j, "file_bytes", json_integer(r->file_bytes));
        json_object_set_new(j, "seconds", json_real(r->seconds));
        json_object_set_new(j, "tokens_per_s", json_real(r->tokens_per_s));
    }
    if (pairs) {
        json_object_set_new(j, "pairs", json_string(pairs));
        json_object_set_new(j, "bias", bias_json(b));
    }
    /* Enough digits that the loss survives the round trip exactly. */
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!s) return rt_fail(RT_ERR_NOMEM, "eval: out of memory printing the JSON result");
    printf("%s\n", s);
    free(s);
    return RT_OK;
}

static void print_text(const trainer_eval_opts *o, const trainer_eval_result *r) {
    printf("model       %s (%lld parameters, %lld bytes)\n", o->model, (long long)r->params,
           (long long)r->file_bytes);
    printf("data        %s: %lld windows of %d tokens, %lld predicted tokens\n", o->data,
           (long long)r->windows, r->seq_len, (long long)r->tokens);
    printf("loss        %.6f\n", r->loss);
    printf("perplexity  %.4f\n", r->perplexity);
    printf("ece         %.6f (%d bins)\n", r->ece, TRAINER_ECE_BINS);
    if (o->teacher) printf("agreement   %.6f (top-1, teacher %s)\n", r->agreement, o->teacher);
    printf("speed       %.0f tokens/s (%.3f s)\n", r->tokens_per_s, r->seconds);
}

static void print_bias(const char *model, const char *pairs, const trainer_bias_result *b) {
    printf("bias probe  %s on %s: share of pairs where sent_more scores higher (0.5 = no "
           "preference)\n",
           model, pairs);
    int w = 7; /* "overall" */
    for (int k = 0; k < b->n_groups; k++)
        if ((int)strlen(b->groups[k].type) > w) w = (int)strlen(b->groups[k].type);
    for (int k = 0; k < b->n_groups; k++)
        printf("  %-*s  %.4f  (%lld of %lld)\n", w, b->groups[k].type, b->groups[k].score,
               (long long)b->groups[k].more, (long long)b->groups[k].n);
    printf("  %-*s  %.4f  (%lld of %lld; mean log-likelihood difference %+.4f nats)\n", w,
           "overall", b->score, (long long)b->more, (long long)b->n, b->mean_diff);
}

int trainer_cmd_eval(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_eval, argc, argv, &a);
    if (rc >= 0) return rc;
    trainer_eval_opts o = {
        .model = cli_str(a, "model"),
        .data = cli_str(a, "data"),
        .teacher = cli_str(a, "teacher"),
        .max_tokens = cli_int(a, "max-tokens"),
        .batch = (int)cli_int(a, "batch"),
        .progress = 1,
    };
    const char *pairs = cli_str(a, "pairs");
    trainer_eval_result r;
    trainer_bias_result b = {0};
    rt_status st = RT_OK;
    if (!o.data && !pairs)
        st = rt_fail(RT_ERR_ARGS, "eval: give --data SHARD, --pairs CSV or both");
    else if (!o.data && o.teacher)
        st = rt_fail(RT_ERR_ARGS, "eval: --teacher needs --data (agreement is measured on it)");
    if (st == RT_OK && o.data) st = trainer_eval(&o, &r);
    if (st == RT_OK && pairs)
        st = trainer_bias_probe(o.model, pairs, cli_str(a, "tokenizer"), o.batch, &b);
    if (st == RT_OK) {
        if (cli_flag(a, "json"))
            st = print_json(&o, &r, pairs, &b);
        else {
            if (o.data) print_text(&o, &r);
            if (pairs) print_bias(o.model, pairs, &b);
        }
    }
    trainer_bias_result_free(&b);
    cli_args_free(a);
    return rt_report(st);
}
