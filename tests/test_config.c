/* Tests of retort's front end (trainer/): the INI config (defaults, files,
 * --set order, every error class with the place it names, INI and JSON
 * round trips), the command-line parser, and the metrics log. The
 * `retort` binary itself is exercised by tests/cli_*.sh. */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "cmds.h"
#include "config.h"
#include "metrics.h"

/* ------------------------------------------------------------ helpers */

static char tmp_dir[256];

/* Writes `text` to tmp_dir/name and returns the path (one of 8 rotating buffers). */
static const char *write_ini(const char *name, const char *text) {
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Asserts that loading fails with `want` and that the message holds every
 * NULL-terminated substring; prints the message so the log shows it. */
static void expect_error(rt_status got, rt_status want, ...) {
    const char *msg = rt_last_error();
    printf("\n    [%s] %s", rt_status_str(got), msg);
    CU_ASSERT_EQUAL(got, want);
    va_list ap;
    va_start(ap, want);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        if (!strstr(msg, s)) {
            printf("\n    missing '%s' in the message", s);
            CU_FAIL("message lacks an expected part");
        }
    }
    va_end(ap);
}

static rt_status load_text(const char *name, const char *text, const char *const *sets, int n,
                           trainer_config *c) {
    return trainer_config_load(write_ini(name, text), sets, n, c);
}

/* ----------------------------------------------------------- defaults */

static void test_defaults(void) {
    trainer_config c, d;
    CU_ASSERT_EQUAL_FATAL(trainer_config_load(NULL, NULL, 0, &c), RT_OK);
    trainer_config_defaults(&d);
    CU_ASSERT(trainer_config_equal(&c, &d));
    /* The documented defaults, written out independently of the schema. */
    CU_ASSERT_EQUAL(c.model.n_layer, 4);
    CU_ASSERT_EQUAL(c.model.n_head, 4);
    CU_ASSERT_EQUAL(c.model.d_model, 256);
    CU_ASSERT_EQUAL(c.model.d_ff, 1024);
    CU_ASSERT_EQUAL(c.model.seq_len, 128);
    CU_ASSERT_STRING_EQUAL(c.data.train, "data/train.h5");
    CU_ASSERT_STRING_EQUAL(c.data.val, "data/val.h5");
    CU_ASSERT_STRING_EQUAL(c.data.tokenizer, "data/");
    CU_ASSERT_STRING_EQUAL(c.train.run_dir, "runs/default");
    CU_ASSERT_EQUAL(c.train.steps, 1000);
    CU_ASSERT_EQUAL(c.train.batch, 8);
    CU_ASSERT_EQUAL(c.train.micro_batch, 0);
    CU_ASSERT_EQUAL(c.train.lr, 6e-4);
    CU_ASSERT_EQUAL(c.train.min_lr_ratio, 0.1);
    CU_ASSERT_EQUAL(c.train.warmup, 100);
    CU_ASSERT_EQUAL(c.train.weight_decay, 0.1);
    CU_ASSERT_EQUAL(c.train.beta1, 0.9);
    CU_ASSERT_EQUAL(c.train.beta2, 0.95);
    CU_ASSERT_EQUAL(c.train.eps, 1e-8);
    CU_ASSERT_EQUAL(c.train.grad_clip, 1.0);
    CU_ASSERT_EQUAL(c.train.seed, 1234);
    CU_ASSERT_EQUAL(c.train.precision, TRAINER_PRECISION_F32);
    CU_ASSERT_EQUAL(c.train.eval_every, 100);
    CU_ASSERT_EQUAL(c.train.eval_tokens, 65536);
    CU_ASSERT_EQUAL(c.train.checkpoint_every, 200);
    CU_ASSERT_EQUAL(c.train.keep_checkpoints, 3);
    CU_ASSERT_EQUAL(c.train.log_every, 10);
    CU_ASSERT_STRING_EQUAL(c.train.init, "");
    CU_ASSERT_EQUAL(c.distill.teachers, 0);
    CU_ASSERT_STRING_EQUAL(c.distill.teacher, "");
    CU_ASSERT_EQUAL(c.distill.temperature, 2.0);
    CU_ASSERT_EQUAL(c.distill.alpha, 0.5);
    CU_ASSERT_EQUAL(c.distill.labels, 1); /* sample (tests/bench/bench_labels.sh) */
    CU_ASSERT_EQUAL(c.distill.samples, 128);
    CU_ASSERT_EQUAL(c.distill.topk, 64);
    CU_ASSERT_EQUAL(c.distill.beta, 0.0);
    CU_ASSERT_STRING_EQUAL(c.distill.feature_map, "");
    CU_ASSERT_EQUAL(c.distill.n_feature_pairs, 0);
    CU_ASSERT_EQUAL(c.distill.feature_loss, TRAINER_FEATURE_MSE);
    CU_ASSERT_EQUAL(c.distill.divergence, TRAINER_DIV_KL);
    CU_ASSERT_EQUAL(c.distill.depth, 4);
    CU_ASSERT_EQUAL(c.distill.zstd_level, 3);
    CU_ASSERT_EQUAL(c.distill.timeout, 60.0);
    CU_ASSERT_EQUAL(c.distill.teacher_precision, TRAINER_PRECISION_F32);
    CU_ASSERT_EQUAL(c.qat.enabled, false);
    CU_ASSERT_EQUAL(c.qat.start_step, 0);
    CU_ASSERT_EQUAL(c.qat.calib_steps, 8);
    CU_ASSERT_EQUAL(c.qat.act, TRAINER_QAT_SYMMETRIC);
    CU_ASSERT_EQUAL(c.qat.freeze_scales, true);
    CU_ASSERT_EQUAL(c.prune.method, TRAINER_PRUNE_NONE);
    CU_ASSERT_EQUAL(c.prune.sparsity, 0.5);
    CU_ASSERT_STRING_EQUAL(c.prune.nm, "2:4");
    CU_ASSERT_EQUAL(c.prune.nm_n, 2);
    CU_ASSERT_EQUAL(c.prune.nm_m, 4);
}

/* The schema itself: unique keys, fields inside the struct and not
 * overlapping, defaults inside their own bounds. */
static void test_schema(void) {
    int n;
    const trainer_config_key *k = trainer_config_keys(&n);
    CU_ASSERT(n >= 48);
    for (int i = 0; i < n; i++) {
        CU_ASSERT(k[i].offset + k[i].size <= sizeof(trainer_config));
        CU_ASSERT(k[i].def != NULL);
        CU_ASSERT(k[i].help != NULL && k[i].help[0] != '\0');
        for (int j = 0; j < i; j++) {
            CU_ASSERT(!(strcmp(k[i].section, k[j].section) == 0 &&
                        strcmp(k[i].key, k[j].key) == 0));
            bool disjoint = k[i].offset >= k[j].offset + k[j].size ||
                            k[j].offset >= k[i].offset + k[i].size;
            if (!disjoint) printf("\n    %s.%s overlaps %s.%s", k[i].section, k[i].key,
                                  k[j].section, k[j].key);
            CU_ASSERT(disjoint);
        }
        trainer_config c;
        trainer_config_defaults(&c);
        CU_ASSERT_EQUAL(trainer_config_set(&c, k[i].section, k[i].key, k[i].def, "test"), RT_OK);
    }
}

/* ------------------------------------------------------------- parsing */

static void test_file(void) {
    const char *ini = "; a comment\n"
                      "# another\n"
                      "[model]\n"
                      "n_layer = 6\n"
                      "n_head=8 ; inline comment\n"
                      "d_model = 512\n"
                      "\n"
                      "[data]\n"
                      "train = \"corpus/train.h5\"\n"
                      "[train]\n"
                      "steps = 1e6\n"
                      "lr = 3e-4\n"
                      "precision = BF16\n"
                      "init = \"\"\n"
                      "[distill]\n"
                      "teachers = 2\n"
                      "teacher = runs/t/final.h5\n"
                      "feature_map = \"s1:t2, s3:t5\"\n"
                      "beta = 0.25\n"
                      "divergence = reverse_kl\n"
                      "zstd_level = -3\n"
                      "[qat]\n"
                      "enabled = yes\n"
                      "freeze_scales = off\n"
                      "[prune]\n"
                      "method = nm\n"
                      "nm = 1:8\n";
    trainer_config c;
    CU_ASSERT_EQUAL_FATAL(load_text("file.ini", ini, NULL, 0, &c), RT_OK);
    CU_ASSERT_EQUAL(c.model.n_layer, 6);
    CU_ASSERT_EQUAL(c.model.n_head, 8);
    CU_ASSERT_EQUAL(c.model.d_model, 512);
    CU_ASSERT_EQUAL(c.model.d_ff, 1024); /* untouched keys keep defaults */
    CU_ASSERT_STRING_EQUAL(c.data.train, "corpus/train.h5");
    CU_ASSERT_EQUAL(c.train.steps, 1000000);
    CU_ASSERT_EQUAL(c.train.lr, 3e-4);
    CU_ASSERT_EQUAL(c.train.precision, TRAINER_PRECISION_BF16);
    CU_ASSERT_EQUAL(c.distill.teachers, 2);
    CU_ASSERT_STRING_EQUAL(c.distill.teacher, "runs/t/final.h5");
    CU_ASSERT_EQUAL_FATAL(c.distill.n_feature_pairs, 2);
    CU_ASSERT_EQUAL(c.distill.feature_pairs[0][0], 1);
    CU_ASSERT_EQUAL(c.distill.feature_pairs[0][1], 2);
    CU_ASSERT_EQUAL(c.distill.feature_pairs[1][0], 3);
    CU_ASSERT_EQUAL(c.distill.feature_pairs[1][1], 5);
    CU_ASSERT_EQUAL(c.distill.beta, 0.25);
    CU_ASSERT_EQUAL(c.distill.divergence, TRAINER_DIV_REVERSE_KL);
    CU_ASSERT_EQUAL(c.distill.zstd_level, -3);
    CU_ASSERT_EQUAL(c.qat.enabled, true);
    CU_ASSERT_EQUAL(c.qat.freeze_scales, false);
    CU_ASSERT_EQUAL(c.prune.method, TRAINER_PRUNE_NM);
    CU_ASSERT_EQUAL(c.prune.nm_n, 1);
    CU_ASSERT_EQUAL(c.prune.nm_m, 8);

    /* Windows line endings and a last line without newline. */
    CU_ASSERT_EQUAL(load_text("crlf.ini", "[model]\r\nn_layer = 3\r\n[train]\r\nlr = 0.01", NULL,
                              0, &c),
                    RT_OK);
    CU_ASSERT_EQUAL(c.model.n_layer, 3);
    CU_ASSERT_EQUAL(c.train.lr, 0.01);
}

static void test_set_order(void) {
    const char *ini = "[train]\nlr = 1e-3\nsteps = 50\n[data]\ntrain = a.h5\n";
    const char *sets[] = {"train.lr=2e-3", "train.precision=bf16", "train.lr = 3e-3",
                    "data.train=x=y.h5", "distill.feature_map=0:0"};
    trainer_config c;
    CU_ASSERT_EQUAL_FATAL(load_text("set.ini", ini, sets, 5, &c), RT_OK);
    CU_ASSERT_EQUAL(c.train.lr, 3e-3);    /* last --set wins over earlier ones and the file */
    CU_ASSERT_EQUAL(c.train.steps, 50);  /* file value kept */
    CU_ASSERT_EQUAL(c.train.precision, TRAINER_PRECISION_BF16);
    CU_ASSERT_STRING_EQUAL(c.data.train, "x=y.h5"); /* only the first '=' splits */
    CU_ASSERT_EQUAL(c.distill.n_feature_pairs, 1);

    /* Overrides apply to defaults when there is no file. */
    const char *sets2[] = {"model.n_layer=12"};
    CU_ASSERT_EQUAL_FATAL(trainer_config_load(NULL, sets2, 1, &c), RT_OK);
    CU_ASSERT_EQUAL(c.model.n_layer, 12);

    /* A --set may make a file value valid that was invalid on its own
     * (checks spanning keys run after all overrides). */
    const char *sets3[] = {"distill.teacher=t.h5"};
    CU_ASSERT_EQUAL(load_text("cross.ini", "[distill]\nteachers = 1\n", sets3, 1, &c), RT_OK);
}

/* -------------------------------------------------------------- errors */

static void test_errors(void) {
    trainer_config c;
    char path[512];
    snprintf(path, sizeof path, "%s/missing.ini", tmp_dir);
    expect_error(trainer_config_load(path, NULL, 0, &c), RT_ERR_IO, path, NULL);

    expect_error(load_text("e1.ini", "[model]\nn_layer = 2\n[modle]\nx = 1\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e1.ini:3", "[modle]", "did you mean [model]", NULL);
    /* An unknown section with no keys is still an error. */
    expect_error(load_text("e1b.ini", "[model]\nn_layer = 2\n\n[extra]\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e1b.ini:4", "[extra]", NULL);
    expect_error(load_text("e2.ini", "[train]\nsteps = 5\nlrr = 1\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e2.ini:3", "train.lrr", "did you mean train.lr", NULL);
    expect_error(load_text("e2b.ini", "[train]\nteacher = t.h5\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e2b.ini:2", "train.teacher", "[distill]", NULL);
    expect_error(load_text("e3.ini", "[model]\n\nn_layer = four\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e3.ini:3", "model.n_layer", "integer", "'four'", NULL);
    expect_error(load_text("e3b.ini", "[train]\nsteps = 10.5\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e3b.ini:2", "train.steps", NULL);
    /* issue 16 item 16: strtod's other spellings are not integers */
    expect_error(load_text("e3c.ini", "[train]\nsteps = 0x10\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e3c.ini:2", "train.steps", "integer", "'0x10'", NULL);
    expect_error(load_text("e3d.ini", "[train]\nsteps = inf\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e3d.ini:2", "train.steps", NULL);
    const char *hex_set[] = {"model.n_layer=0X2"};
    expect_error(trainer_config_load(NULL, hex_set, 1, &c), RT_ERR_ARGS, "model.n_layer",
                 "'0X2'", NULL);
    expect_error(load_text("e4.ini", "[model]\nn_layer = 0\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e4.ini:2", "model.n_layer", "[1, 1024]", "'0'", NULL);
    expect_error(load_text("e4b.ini", "[train]\nbeta2 = 1\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e4b.ini:2", "train.beta2", "[0, 1)", NULL);
    /* issue 16 item 12: below 1 as a double, 1.0f in the optimizer */
    expect_error(load_text("e4b2.ini", "[train]\nbeta2 = 0.99999999\n", NULL, 0, &c),
                 RT_ERR_ARGS, "train.beta2", "rounds to 1 in float32", NULL);
    CU_ASSERT_EQUAL(load_text("e4b3.ini", "[train]\nbeta2 = 0.99999994\n", NULL, 0, &c), RT_OK);
    expect_error(load_text("e4c.ini", "[train]\nlr = nan\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e4c.ini:2", "train.lr", NULL);
    expect_error(load_text("e4d.ini", "[model]\nd_ff = 99999999999\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e4d.ini:2", "model.d_ff", NULL);
    expect_error(load_text("e5.ini", "[train]\nprecision = fp16\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e5.ini:2", "train.precision", "one of f32, bf16", "'fp16'", NULL);
    expect_error(load_text("e5b.ini", "[qat]\nenabled = maybe\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e5b.ini:2", "qat.enabled", "true or false", NULL);
    expect_error(load_text("e6.ini", "[distill]\nfeature_map = s1-t2\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e6.ini:2", "distill.feature_map", "s1-t2", NULL);
    expect_error(load_text("e6b.ini", "[distill]\nfeature_map = s1:t-2\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e6b.ini:2", "distill.feature_map", NULL);
    expect_error(load_text("e6c.ini", "[distill]\nfeature_map = 1:2,\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e6c.ini:2", "distill.feature_map", NULL);
    expect_error(load_text("e7.ini", "[prune]\nnm = 4:2\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e7.ini:2", "prune.nm", "4:2", NULL);
    expect_error(load_text("e8.ini", "n_layer = 2\n[model]\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e8.ini:1", "outside any section", NULL);
    expect_error(load_text("e9.ini", "[model]\nn_layer = 2\nn_layer = 3\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e9.ini:3", "model.n_layer", "line 2", NULL);
    expect_error(load_text("e10.ini", "[model]\nn_layer 2\n", NULL, 0, &c), RT_ERR_ARGS,
                 "e10.ini:2", NULL);
    /* Only the first error is reported. */
    expect_error(load_text("e11.ini", "[model]\nn_head = x\nd_model = y\n", NULL, 0, &c),
                 RT_ERR_ARGS, "e11.ini:2", "model.n_head", NULL);
    char longline[400];
    snprintf(longline, sizeof longline, "[data]\ntrain = %0300d\n[model]\nn_layer = 1\n", 7);
    expect_error(load_text("e12.ini", longline, NULL, 0, &c), RT_ERR_ARGS, "e12.ini:2", "longer",
                 NULL);

    /* --set errors name the --set. */
    const char *s1[] = {"train.lr"};
    expect_error(trainer_config_load(NULL, s1, 1, &c), RT_ERR_ARGS, "--set 'train.lr'",
                 "section.key=value", NULL);
    const char *s2[] = {"trian.lr=1"};
    expect_error(trainer_config_load(NULL, s2, 1, &c), RT_ERR_ARGS, "--set trian.lr=1",
                 "[trian]", "did you mean [train]", NULL);
    const char *s3[] = {"train.lr=1e-3", "train.steps=-5"};
    expect_error(trainer_config_load(NULL, s3, 2, &c), RT_ERR_ARGS, "--set train.steps=-5",
                 "train.steps", NULL);
    const char *s4[] = {"data.train=a ;b"};
    expect_error(trainer_config_load(NULL, s4, 1, &c), RT_ERR_ARGS, "data.train", NULL);

    /* Checks across keys, after every override. */
    const char *x1[] = {"model.d_model=250"};
    expect_error(trainer_config_load(NULL, x1, 1, &c), RT_ERR_ARGS, "model.d_model",
                 "model.n_head", NULL);
    const char *x2[] = {"distill.teachers=1"};
    expect_error(trainer_config_load(NULL, x2, 1, &c), RT_ERR_ARGS, "distill.teacher", NULL);
    const char *x3[] = {"distill.beta=0.5"};
    expect_error(trainer_config_load(NULL, x3, 1, &c), RT_ERR_ARGS, "distill.beta",
                 "distill.feature_map", NULL);
    const char *x4[] = {"distill.feature_map=s5:t1"};
    expect_error(trainer_config_load(NULL, x4, 1, &c), RT_ERR_ARGS, "s5:t1", "model.n_layer",
                 NULL);
    const char *x5[] = {"train.micro_batch=16"};
    expect_error(trainer_config_load(NULL, x5, 1, &c), RT_ERR_ARGS, "train.micro_batch",
                 "train.batch", NULL);
    const char *x6[] = {"prune.method=wanda", "prune.schedule=gradual", "prune.end_step=10",
                        "train.recompute=true"};
    expect_error(trainer_config_load(NULL, x6, 4, &c), RT_ERR_ARGS, "prune.method = wanda",
                 "train.recompute", NULL);
    CU_ASSERT_EQUAL(trainer_config_load(NULL, x6, 3, &c), RT_OK); /* without recompute */
    printf("\n");
}

/* ---------------------------------------------------------- round trip */

/* A valid value different from the default for every key, derived from
 * the schema, so a key added later is covered without touching this test. */
static void odd_value(const trainer_config_key *k, char *buf, size_t cap) {
    switch (k->type) {
    case TRAINER_KEY_INT:
    case TRAINER_KEY_INT64: {
        double hi = isinf(k->max) ? k->min + 987654321.0 : k->max;
        long long v = (long long)floor(k->min + (hi - k->min) / 3.0);
        if (v == atoll(k->def)) v = (long long)hi;
        snprintf(buf, cap, "%lld", v);
        break;
    }
    case TRAINER_KEY_FLOAT: {
        /* An irrational-looking fraction of the range: needs all 17 digits. */
        double v = k->min + (k->max - k->min) * (1.0 / 3.0 + 1e-9);
        snprintf(buf, cap, "%.17g", v);
        break;
    }
    case TRAINER_KEY_BOOL:
        snprintf(buf, cap, "%s", strcmp(k->def, "true") == 0 ? "false" : "true");
        break;
    case TRAINER_KEY_ENUM: {
        const char *bar = strrchr(k->choices, '|');
        snprintf(buf, cap, "%s", bar + 1); /* the last choice; the default is another one */
        break;
    }
    case TRAINER_KEY_STRING: snprintf(buf, cap, "dir with space/%s.x", k->key); break;
    }
}

static void test_round_trip(void) {
    int n;
    const trainer_config_key *k = trainer_config_keys(&n);
    trainer_config c, back;
    trainer_config_defaults(&c);
    char v[256];
    int changed = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(k[i].key, "feature_map") == 0) {
            snprintf(v, sizeof v, "s0:t3,s2:t11");
        } else if (strcmp(k[i].key, "nm") == 0) {
            snprintf(v, sizeof v, "3:7");
        } else if (strcmp(k[i].key, "n_head") == 0) {
            snprintf(v, sizeof v, "8"); /* d_model below stays divisible */
        } else if (strcmp(k[i].key, "d_model") == 0) {
            snprintf(v, sizeof v, "1024");
        } else if (strcmp(k[i].key, "micro_batch") == 0) {
            snprintf(v, sizeof v, "2");
        } else if (strcmp(k[i].section, "prune") == 0 && strcmp(k[i].key, "method") == 0) {
            snprintf(v, sizeof v, "magnitude"); /* what schedule = gradual needs */
        } else if (strcmp(k[i].section, "prune") == 0 && strcmp(k[i].key, "start_step") == 0) {
            snprintf(v, sizeof v, "5");
        } else if (strcmp(k[i].section, "prune") == 0 && strcmp(k[i].key, "end_step") == 0) {
            snprintf(v, sizeof v, "11"); /* above start_step, within train.steps */
        } else {
            odd_value(&k[i], v, sizeof v);
        }
        rt_status st = trainer_config_set(&c, k[i].section, k[i].key, v, "test");
        if (st != RT_OK) printf("\n    %s.%s=%s: %s", k[i].section, k[i].key, v, rt_last_error());
        CU_ASSERT_EQUAL(st, RT_OK);
        trainer_config d;
        trainer_config_defaults(&d);
        CU_ASSERT_EQUAL(trainer_config_set(&d, k[i].section, k[i].key, v, "test"), RT_OK);
        trainer_config base;
        trainer_config_defaults(&base);
        if (!trainer_config_equal(&d, &base)) changed++;
        else printf("\n    %s.%s: test value equals the default", k[i].section, k[i].key);
    }
    CU_ASSERT_EQUAL(changed, n);
    CU_ASSERT_EQUAL_FATAL(trainer_config_validate(&c), RT_OK);
    CU_ASSERT_EQUAL(c.distill.n_feature_pairs, 2);

    char *ini = NULL;
    CU_ASSERT_EQUAL_FATAL(trainer_config_to_ini(&c, &ini), RT_OK);
    rt_status st = trainer_config_load_string(ini, "dump", NULL, 0, &back);
    if (st != RT_OK) printf("\n%s\n    %s", ini, rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, RT_OK);
    CU_ASSERT(trainer_config_equal(&c, &back));
    CU_ASSERT_EQUAL(memcmp(&c.distill.feature_pairs, &back.distill.feature_pairs,
                           sizeof c.distill.feature_pairs), 0);

    /* Written to a file, the same dump reads back through the file path too. */
    trainer_config back2;
    CU_ASSERT_EQUAL(trainer_config_load(write_ini("dump.ini", ini), NULL, 0, &back2), RT_OK);
    CU_ASSERT(trainer_config_equal(&c, &back2));

    /* An empty string and awkward floats survive. */
    trainer_config e;
    trainer_config_defaults(&e);
    e.train.lr = 0.1 + 0.2; /* 0.30000000000000004 */
    e.distill.timeout = 1e-300;
    CU_ASSERT_EQUAL(trainer_config_set(&e, "data", "val", "", "test"), RT_OK);
    free(ini);
    CU_ASSERT_EQUAL_FATAL(trainer_config_to_ini(&e, &ini), RT_OK);
    CU_ASSERT_EQUAL_FATAL(trainer_config_load_string(ini, "dump", NULL, 0, &back), RT_OK);
    CU_ASSERT(trainer_config_equal(&e, &back));
    CU_ASSERT_EQUAL(back.train.lr, 0.1 + 0.2);
    CU_ASSERT_STRING_EQUAL(back.data.val, "");
    free(ini);

    /* A value starting with ';' (accepted: no whitespace before it) read
     * back as an empty comment after "key = " (found by fuzz_config). */
    CU_ASSERT_EQUAL_FATAL(load_text("semi.ini", "[train]\nrun_dir =; odd run\n", NULL, 0, &e),
                          RT_OK);
    CU_ASSERT_STRING_EQUAL(e.train.run_dir, "; odd run");
    CU_ASSERT_EQUAL_FATAL(trainer_config_to_ini(&e, &ini), RT_OK);
    CU_ASSERT_EQUAL_FATAL(trainer_config_load_string(ini, "dump", NULL, 0, &back), RT_OK);
    CU_ASSERT_STRING_EQUAL(back.train.run_dir, "; odd run");
    CU_ASSERT(trainer_config_equal(&e, &back));
    free(ini);

    /* trainer_config_to_ini checks its own round trip (what a checkpoint
     * stores must read back as the config that ran): a config that would
     * not read back, here one that no longer validates, is refused. */
    trainer_config_defaults(&e);
    e.train.beta2 = 0.99999999999; /* rounds to 1.0f */
    ini = NULL;
    CU_ASSERT_EQUAL(trainer_config_to_ini(&e, &ini), RT_ERR_ARGS);
    CU_ASSERT_PTR_NULL(ini);
    CU_ASSERT(strstr(rt_last_error(), "train.beta2") != NULL);
}

/* The JSON dump, read back by jansson, holds every key with its value. */
static void test_json(void) {
    trainer_config c;
    const char *sets[] = {"train.lr=0.00025", "train.precision=bf16", "qat.enabled=true",
                    "train.steps=123456789012"};
    CU_ASSERT_EQUAL_FATAL(trainer_config_load(NULL, sets, 4, &c), RT_OK);
    json_t *j = trainer_config_to_json(&c);
    CU_ASSERT_FATAL(j != NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_error_t err;
    json_t *r = json_loads(text, 0, &err);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_EQUAL(json_real_value(json_object_get(json_object_get(r, "train"), "lr")), 0.00025);
    json_t *train = json_object_get(r, "train");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(train, "precision")), "bf16");
    CU_ASSERT(json_is_true(json_object_get(json_object_get(r, "qat"), "enabled")));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(r, "train"), "steps")),
                    123456789012LL);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(r, "model"), "n_layer")), 4);
    int n, count = 0;
    const trainer_config_key *k = trainer_config_keys(&n);
    for (int i = 0; i < n; i++)
        if (json_object_get(json_object_get(r, k[i].section), k[i].key)) count++;
    CU_ASSERT_EQUAL(count, n);
    json_decref(r);
    free(text);
}

static void test_help(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    trainer_config_print_help(f);
    fclose(f);
    int n;
    const trainer_config_key *k = trainer_config_keys(&n);
    for (int i = 0; i < n; i++) {
        char needle[96];
        snprintf(needle, sizeof needle, "  %s = ", k[i].key);
        if (!strstr(buf, needle)) printf("\n    help lacks %s.%s", k[i].section, k[i].key);
        CU_ASSERT(strstr(buf, needle) != NULL);
    }
    CU_ASSERT(strstr(buf, "[distill]") != NULL);
    CU_ASSERT(strstr(buf, "One of f32, bf16.") != NULL);
    CU_ASSERT(strchr(buf, CLI_NBSP[0]) == NULL); /* joiners print as spaces */
    free(buf);
}

/* ----------------------------------------------------------------- cli */

static const cli_option t_options[] = {
    {.name = "out", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "DIR"},
    {.name = "n", .type = CLI_INT, .metavar = "N", .def = "7", .min = 1, .max = 100},
    {.name = "x", .type = CLI_REAL, .metavar = "X", .def = "0.5", .min = -1, .max = 1},
    {.name = "mode", .type = CLI_CHOICE, .metavar = "M", .def = "a", .choices = "a|bb|c"},
    {.name = "set", .type = CLI_STRING, .flags = CLI_REPEAT, .metavar = "KV"},
    {.name = "input", .type = CLI_STRING, .flags = CLI_MANY, .metavar = "PATH"},
    {.name = "resume", .type = CLI_STRING, .flags = CLI_OPTIONAL_VALUE, .metavar = "P",
     .implicit = "latest"},
    {.name = "json", .type = CLI_BOOL},
    {0},
};
static const cli_spec t_spec = {.name = "t", .options = t_options, .positional = "FILE",
                                .min_positional = 0, .max_positional = 2};

static rt_status parse(cli_args **a, bool *help, ...) {
    char *argv[32] = {"t"};
    int argc = 1;
    va_list ap;
    va_start(ap, help);
    for (char *s = va_arg(ap, char *); s; s = va_arg(ap, char *)) argv[argc++] = s;
    va_end(ap);
    return cli_parse_args(&t_spec, argc, argv, a, help);
}

static void test_cli(void) {
    cli_args *a = NULL;
    bool help = false;
    CU_ASSERT_EQUAL_FATAL(parse(&a, &help, "--out", "o", "--n=9", "--x", "-0.25", "--set",
                                "a.b=1", "pos1", "--set=c.d=2", "--input", "f1", "f2", "f3",
                                "--json", "--resume", "--", "--pos2", NULL),
                          RT_OK);
    CU_ASSERT_FALSE(help);
    CU_ASSERT_STRING_EQUAL(cli_str(a, "out"), "o");
    CU_ASSERT_EQUAL(cli_int(a, "n"), 9);
    CU_ASSERT_EQUAL(cli_real(a, "x"), -0.25);
    CU_ASSERT_STRING_EQUAL(cli_str(a, "mode"), "a"); /* default */
    CU_ASSERT_FALSE(cli_has(a, "mode"));
    int n;
    const char *const *sets = cli_list(a, "set", &n);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_STRING_EQUAL(sets[0], "a.b=1");
    CU_ASSERT_STRING_EQUAL(sets[1], "c.d=2");
    const char *const *in = cli_list(a, "input", &n);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_STRING_EQUAL(in[2], "f3");
    CU_ASSERT(cli_flag(a, "json"));
    CU_ASSERT_STRING_EQUAL(cli_str(a, "resume"), "latest");
    const char *const *pos = cli_positionals(a, &n);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_STRING_EQUAL(pos[0], "pos1");
    CU_ASSERT_STRING_EQUAL(pos[1], "--pos2");
    cli_args_free(a);

    CU_ASSERT_EQUAL_FATAL(parse(&a, &help, "--resume", "ck.h5", "--out", "o", NULL), RT_OK);
    CU_ASSERT_STRING_EQUAL(cli_str(a, "resume"), "ck.h5");
    CU_ASSERT_EQUAL(cli_int(a, "n"), 7);
    CU_ASSERT_FALSE(cli_flag(a, "json"));
    cli_args_free(a);

    /* Help wins over everything else, even errors. */
    CU_ASSERT_EQUAL(parse(&a, &help, "--bogus", "-h", NULL), RT_OK);
    CU_ASSERT(help);
    CU_ASSERT(a == NULL);

    expect_error(parse(&a, &help, "--out", "o", "--bogus", NULL), RT_ERR_ARGS, "'--bogus'", NULL);
    expect_error(parse(&a, &help, "--out", "o", "--jsn", NULL), RT_ERR_ARGS, "did you mean --json",
                 NULL);
    expect_error(parse(&a, &help, NULL), RT_ERR_ARGS, "--out", "missing", NULL);
    expect_error(parse(&a, &help, "--out", NULL), RT_ERR_ARGS, "--out", "value", NULL);
    expect_error(parse(&a, &help, "--out", "--json", NULL), RT_ERR_ARGS, "--out", "'--json'", NULL);
    expect_error(parse(&a, &help, "--out", "o", "--n", "101", NULL), RT_ERR_ARGS, "--n",
                 "[1, 100]", NULL);
    expect_error(parse(&a, &help, "--out", "o", "--n", "3x", NULL), RT_ERR_ARGS, "--n", "'3x'",
                 NULL);
    expect_error(parse(&a, &help, "--out", "o", "--x", "inf", NULL), RT_ERR_ARGS, "--x", NULL);
    expect_error(parse(&a, &help, "--out", "o", "--mode", "b", NULL), RT_ERR_ARGS, "--mode",
                 "a, bb, c", NULL);
    expect_error(parse(&a, &help, "--out", "o", "--out", "p", NULL), RT_ERR_ARGS, "--out",
                 "twice", NULL);
    expect_error(parse(&a, &help, "--out", "o", "--json=1", NULL), RT_ERR_ARGS, "--json", NULL);
    expect_error(parse(&a, &help, "--out", "o", "a", "b", "c", NULL), RT_ERR_ARGS, "'c'", NULL);
    expect_error(parse(&a, &help, "--out", "o", "-v", NULL), RT_ERR_ARGS, "'-v'", NULL);
    CU_ASSERT(a == NULL);

    /* Every command's table prints a help that names each of its options. */
    const char *cmds[] = {"prepare", "train", "eval", "generate", "prune", "export", "info",
                          "report"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const cli_spec *s = trainer_spec_find(cmds[i]);
        CU_ASSERT_FATAL(s != NULL);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        cli_print_help(s, f);
        fclose(f);
        for (int k = 0; s->options[k].name; k++) {
            char needle[64];
            snprintf(needle, sizeof needle, "--%s", s->options[k].name);
            CU_ASSERT(strstr(buf, needle) != NULL);
            /* Defaults must pass their own option's checks. */
            if (s->options[k].def && s->options[k].type != CLI_BOOL) {
                char opt[128];
                snprintf(opt, sizeof opt, "--%s=%s", s->options[k].name, s->options[k].def);
                char *argv[] = {(char *)cmds[i], opt};
                cli_args *ca = NULL;
                bool h;
                rt_status st = cli_parse_args(s, 2, argv, &ca, &h);
                /* Missing required options are fine here; a bad default is not. */
                CU_ASSERT(st == RT_OK || strstr(rt_last_error(), "missing") != NULL);
                cli_args_free(ca);
            }
        }
        free(buf);
    }
    CU_ASSERT_EQUAL(trainer_check_prune_method("wanda"), RT_OK);
    CU_ASSERT_EQUAL(trainer_check_prune_method("2:4"), RT_OK);
    CU_ASSERT_NOT_EQUAL(trainer_check_prune_method("4:2"), RT_OK);
    CU_ASSERT_NOT_EQUAL(trainer_check_prune_method("nm"), RT_OK);

    const char *cands[] = {"vocab-size", "val-fraction", "tokenizer", "quiet"};
    CU_ASSERT_STRING_EQUAL(cli_closest("vocab_size", cands, 4), "vocab-size");
    CU_ASSERT_STRING_EQUAL(cli_closest("vocab", cands, 4), "vocab-size");
    CU_ASSERT_PTR_NULL(cli_closest("zzz", cands, 4));
    printf("\n");
}

/* ------------------------------------------------------------- metrics */

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

static void test_metrics_format(void) {
    char b[64];
    trainer_metrics_fmt_int(b, sizeof b, 14203.4);
    CU_ASSERT_STRING_EQUAL(b, "14,203");
    trainer_metrics_fmt_int(b, sizeof b, 999);
    CU_ASSERT_STRING_EQUAL(b, "999");
    trainer_metrics_fmt_int(b, sizeof b, 1234567);
    CU_ASSERT_STRING_EQUAL(b, "1,234,567");
    trainer_metrics_fmt_int(b, sizeof b, 0);
    CU_ASSERT_STRING_EQUAL(b, "0");
    trainer_metrics_fmt_duration(b, sizeof b, 133);
    CU_ASSERT_STRING_EQUAL(b, "2m13s");
    trainer_metrics_fmt_duration(b, sizeof b, 45.4);
    CU_ASSERT_STRING_EQUAL(b, "45s");
    trainer_metrics_fmt_duration(b, sizeof b, 3900);
    CU_ASSERT_STRING_EQUAL(b, "1h05m");
    trainer_metrics_fmt_duration(b, sizeof b, 3 * 86400 + 4 * 3600 + 59);
    CU_ASSERT_STRING_EQUAL(b, "3d04h");
}

static void test_metrics_log(void) {
    char run[600];
    snprintf(run, sizeof run, "%s/run/a", tmp_dir); /* nested: created by open */
    trainer_metrics *m = NULL;
    CU_ASSERT_EQUAL_FATAL(trainer_metrics_open(run, 100, 0, &m), RT_OK);
    char *prog = NULL;
    size_t plen = 0;
    FILE *pf = open_memstream(&prog, &plen);
    trainer_metrics_set_progress(m, pf, false);

    /* 12 steps of ~10 ms, 1000 tokens each, then one slow step of ~200 ms. */
    for (int s = 1; s <= 12; s++) {
        sleep_s(0.010);
        trainer_metrics_step(m, s, 1000);
    }
    double fast = trainer_metrics_step_s(m);
    sleep_s(0.200);
    trainer_metrics_step(m, 13, 1000);
    double after_slow = trainer_metrics_step_s(m);
    printf("\n    step_s after 12 fast steps %.4f, after a slow one %.4f, tok/s %.0f", fast,
           after_slow, trainer_metrics_tokens_per_s(m));
    /* Sleeps only overshoot; a loaded machine may stretch them a lot. */
    CU_ASSERT(fast >= 0.0095 && fast < 0.060);
    /* Smoothing: one slow step moves the average by ~ALPHA of the jump, not to it. */
    CU_ASSERT(after_slow > fast && after_slow < 0.5 * 0.200);
    CU_ASSERT_DOUBLE_EQUAL(trainer_metrics_tokens_per_s(m), 1000.0 / after_slow,
                           1e-9 * 1000.0 / after_slow);
    CU_ASSERT_DOUBLE_EQUAL(trainer_metrics_eta_s(m), 87 * after_slow, 1e-12);

    trainer_metrics_show(m, "loss", 3.2145);
    trainer_metrics_add(m, "lr", 6e-4);
    trainer_metrics_add(m, "bad", NAN);
    CU_ASSERT_EQUAL(trainer_metrics_log(m, 13), RT_OK);
    trainer_metrics_add(m, "val_loss", 2.5);
    CU_ASSERT_EQUAL(trainer_metrics_log(m, 14), RT_OK);
    trainer_metrics_note(m, "saved %s", "x.h5");
    trainer_metrics_close(m);
    fclose(pf);
    printf("\n    progress: %s", prog);
    CU_ASSERT(strncmp(prog, "step 13/100 | loss 3.215 | ", 27) == 0);
    CU_ASSERT(strstr(prog, " tok/s | ETA ") != NULL);
    CU_ASSERT(strchr(prog, '\r') == NULL && strchr(prog, '\033') == NULL);
    CU_ASSERT(strstr(prog, "\nsaved x.h5\n") != NULL);
    free(prog);

    /* Reopen (a resumed run) appends to the same file. */
    CU_ASSERT_EQUAL_FATAL(trainer_metrics_open(run, 100, 14, &m), RT_OK);
    trainer_metrics_set_progress(m, NULL, false);
    trainer_metrics_add(m, "loss", 1.0);
    CU_ASSERT_EQUAL(trainer_metrics_log(m, 15), RT_OK);
    trainer_metrics_close(m);

    char path[700];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        CU_ASSERT_FATAL(o != NULL);
        int64_t step = json_integer_value(json_object_get(o, "step"));
        CU_ASSERT_EQUAL(step, 13 + lines);
        if (lines == 0) {
            CU_ASSERT_EQUAL(json_real_value(json_object_get(o, "loss")), 3.2145);
            CU_ASSERT_EQUAL(json_real_value(json_object_get(o, "lr")), 6e-4);
            CU_ASSERT(json_is_null(json_object_get(o, "bad")));
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "tokens")), 13000);
            CU_ASSERT(json_real_value(json_object_get(o, "tok_s")) > 0);
        }
        if (lines == 1) {
            CU_ASSERT(json_object_get(o, "loss") == NULL); /* the record was cleared */
            CU_ASSERT_EQUAL(json_real_value(json_object_get(o, "val_loss")), 2.5);
        }
        if (lines == 2) CU_ASSERT(json_object_get(o, "tok_s") == NULL); /* no step yet */
        json_decref(o);
        lines++;
    }
    fclose(f);
    CU_ASSERT_EQUAL(lines, 3);

    /* NULL handle (ranks other than 0): everything is a no-op. */
    trainer_metrics_step(NULL, 1, 1);
    trainer_metrics_add(NULL, "loss", 1);
    CU_ASSERT_EQUAL(trainer_metrics_log(NULL, 1), RT_OK);
    trainer_metrics_close(NULL);

    /* A run folder that cannot be created is an I/O error naming it. */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/metrics.jsonl/sub", run);
    expect_error(trainer_metrics_open(bad, 10, 0, &m), RT_ERR_IO, "metrics.jsonl", NULL);
    printf("\n");
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/rt_test_config.XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite cfg = CU_add_suite("config", NULL, NULL);
    CU_add_test(cfg, "defaults", test_defaults);
    CU_add_test(cfg, "schema", test_schema);
    CU_add_test(cfg, "file", test_file);
    CU_add_test(cfg, "set order", test_set_order);
    CU_add_test(cfg, "errors", test_errors);
    CU_add_test(cfg, "ini round trip", test_round_trip);
    CU_add_test(cfg, "json", test_json);
    CU_add_test(cfg, "help", test_help);
    CU_pSuite cli = CU_add_suite("cli", NULL, NULL);
    CU_add_test(cli, "parse", test_cli);
    CU_pSuite met = CU_add_suite("metrics", NULL, NULL);
    CU_add_test(met, "format", test_metrics_format);
    CU_add_test(met, "log", test_metrics_log);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return failed ? 1 : 0;
}
