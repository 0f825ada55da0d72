/* `retort train`: plain language-model training and distributed
 * distillation, one loop for both.
 *
 * Every rank reads the same config. comm_roles splits the world: with
 * distill.teachers = K > 0 the first K ranks become teachers (teacher_serve
 * below), the rest students (student_train). Both sides derive everything
 * about the data from the same deterministic sampler, so a teacher computes
 * the windows of its students' micro-batches itself and only the soft
 * labels travel; every record carries the batch identity and the student
 * checks it.
 *
 * Per optimizer step a student runs b / mb micro-batches (b = its share of
 * the global batch, mb = train.micro_batch), accumulates gradients, takes
 * the mean over students with one all-reduce of the gradient block, clips
 * and applies AdamW. Loss scales are chosen so that the gradient is that of
 * the mean loss over the whole global batch, whatever the rank count.
 *
 * Failure handling: any error after the world is split is reported with the
 * rank and ends the whole job (comm_abort), because the peers could only
 * wait for it until their timeouts. Checkpoints are written atomically by
 * student 0 only (checkpoints/), so a death at any moment leaves the last
 * complete one. While it writes, student 0 sends busy notes (comm_busy_note)
 * so that the other ranks' waits do not mistake a slow write for a death.
 *
 * Stopping: SIGTERM, SIGINT and SIGUSR1 only set a flag. Each student adds
 * it to the per-step sums that are all-reduced anyway, so every student sees
 * the same decision at the same step boundary: a checkpoint of that step is
 * saved, the students tell their teachers (comm_stream_stop), and every rank
 * exits with TRAINER_EXIT_STOPPED. Student 0 holds the run folder's lock
 * (ckpt_run_lock_take) for the whole run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <jansson.h>

#include "ckpt.h"
#include "ckpt_hf.h"
#include "ckpt_masks.h"
#include "cli.h"
#include "cmds.h"
#include "comm.h"
#include "config.h"
#include "data.h"
#include "eval.h"
#include "labels_cache.h"
#include "metrics.h"
#include "rt_rand.h"
#include "student.h"
#include "teacher.h"
#include "train_internal.h"

/* ------------------------------------------------------------ signals */

/* The stop signal received (0 = none); set by the handler only. */
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) {
    /* A second Ctrl-C means "now": back to the default action. Repeated
     * SIGTERMs (a scheduler signalling every process of a job) do not. */
    if (g_stop_signal == SIGINT && sig == SIGINT) {
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    if (!g_stop_signal) g_stop_signal = sig;
}

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static const char *stop_signal_name(int sig) {
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1"
                                                                                   : "a signal";
}

/* ------------------------------------------------------------ set-up */

/* The student's model shape: [model] plus the data's vocabulary, or, with
 * train.init, the shape of that checkpoint (a pruned model keeps its own
 * smaller shape). Teachers call this too, to know the student's seq_len. */
rt_status trainer_run_model_config(const trainer_config *cfg, int64_t vocab, student_config *out) {
    *out = (student_config){
        .n_layer = cfg->model.n_layer, .n_head = cfg->model.n_head,
        .d_model = cfg->model.d_model, .d_ff = cfg->model.d_ff,
        .vocab_size = (int)vocab,      .seq_len = cfg->model.seq_len,
    };
    if (cfg->train.init[0]) {
        ckpt_reader *r = NULL;
        RT_TRY(ckpt_open(cfg->train.init, &r));
        *out = *ckpt_reader_config(r);
        rt_status st = ckpt_check_model(r); /* before a model is sized by its /config */
        ckpt_reader_close(r);
        RT_TRY(st);
        if (out->vocab_size != vocab)
            return rt_fail(RT_ERR_MISMATCH,
                           "%s (train.init): vocabulary of %d tokens, but %s has %lld",
                           cfg->train.init, out->vocab_size, cfg->data.train, (long long)vocab);
    }
    return student_config_validate(out);
}

/* The soft-label settings against a vocabulary of V tokens: the other
 * divergences need dense labels (topk = vocab, or hidden states), sampling
 * needs a tail to draw from, hidden states need the teacher's output
 * matrix. */
static rt_status check_labels(const trainer_config *cfg, int V) {
    if (cfg->distill.labels == TEACHER_LABELS_HIDDEN && !cfg->distill.teacher[0])
        return rt_fail(RT_ERR_ARGS,
                       "distill.labels = hidden needs distill.teacher: the student rank rebuilds "
                       "the teacher's logits with the teacher's output matrix (also when it "
                       "trains from a label cache)");
    if (cfg->distill.divergence != TRAINER_DIV_KL &&
        cfg->distill.labels != TEACHER_LABELS_HIDDEN &&
        (cfg->distill.labels != TEACHER_LABELS_TOPK || cfg->distill.topk < V))
        return rt_fail(RT_ERR_ARGS,
                       "distill.divergence = %s needs dense soft labels: set distill.labels = "
                       "topk and distill.topk >= %d (the vocabulary size)",
                       cfg->distill.divergence == TRAINER_DIV_JSD ? "jsd" : "reverse_kl", V);
    if (cfg->distill.labels == TEACHER_LABELS_SAMPLE ||
        cfg->distill.labels == TEACHER_LABELS_TOPK_SAMPLE) {
        const int k = cfg->distill.labels == TEACHER_LABELS_SAMPLE ? 0 : cfg->distill.topk;
        if ((int64_t)k + cfg->distill.samples >= V)
            return rt_fail(RT_ERR_ARGS,
                           "distill.samples = %d%s leaves no tail to sample in a vocabulary of "
                           "%d: lower it, or send every probability with distill.labels = topk "
                           "and distill.topk = %d",
                           cfg->distill.samples, k ? " + distill.topk" : "", V, V);
    }
    return RT_OK;
}

/* Checks the teacher checkpoint against the student: same vocabulary and
 * sequence length, feature-map layers in range. Run by every rank at
 * start-up, before any training, so all of them fail the same way. */
rt_status trainer_check_teacher(const trainer_config *cfg, const student_config *sc,
                                student_config *tc) {
    ckpt_reader *r = NULL;
    RT_TRY(ckpt_open(cfg->distill.teacher, &r));
    *tc = *ckpt_reader_config(r);
    rt_status st = ckpt_check_model(r); /* before a teacher is sized by its /config */
    ckpt_reader_close(r);
    RT_TRY(st);
    const char *tp = cfg->distill.teacher;
    if (tc->vocab_size != sc->vocab_size)
        return rt_fail(RT_ERR_MISMATCH,
                       "%s: teacher vocabulary is %d tokens, the student's data has %d "
                       "(teacher and student must share the tokenizer)",
                       tp, tc->vocab_size, sc->vocab_size);
    if (tc->seq_len < sc->seq_len) /* more positions are fine: the first seq_len are used */
        return rt_fail(RT_ERR_MISMATCH,
                       "%s: teacher has %d positions, fewer than the student's seq_len %d (set "
                       "model.seq_len <= %d)",
                       tp, tc->seq_len, sc->seq_len, tc->seq_len);
    for (int p = 0; p < cfg->distill.n_feature_pairs; p++) {
        const int s = cfg->distill.feature_pairs[p][0], t = cfg->distill.feature_pairs[p][1];
        if (s < 1 || s > sc->n_layer)
            return rt_fail(RT_ERR_ARGS,
                           "distill.feature_map: student layer %d is out of range 1..%d", s,
                           sc->n_layer);
        if (t < 1 || t > tc->n_layer)
            return rt_fail(RT_ERR_ARGS,
                           "distill.feature_map: teacher layer %d is out of range 1..%d (%s)",
                           t, tc->n_layer, tp);
    }
    return check_labels(cfg, tc->vocab_size);
}

/* The teacher's settings for this run: its shape, the label scheme and
 * the feature layers. Students use it too, for the label width. */
teacher_config trainer_teacher_config(const trainer_config *cfg, const student_config *tmodel,
                                      int batch) {
    teacher_config tc = {
        .model = *tmodel,
        .batch = batch,
        .precision = cfg->distill.teacher_precision == TRAINER_PRECISION_BF16 ? STUDENT_BF16
                                                                              : STUDENT_F32,
        .temperature = (float)cfg->distill.temperature,
        .labels = (teacher_labels)cfg->distill.labels,
        .topk = cfg->distill.topk < tmodel->vocab_size ? cfg->distill.topk : tmodel->vocab_size,
        .samples = cfg->distill.samples,
        .hidden_bf16 = cfg->distill.hidden,
        .n_features = cfg->distill.n_feature_pairs,
    };
    for (int p = 0; p < tc.n_features; p++)
        tc.feature_layers[p] = cfg->distill.feature_pairs[p][1] - 1; /* HF index -> block */
    return tc;
}

/* The shape of the records of b rows of T positions a teacher with
 * settings tc sends (with n_feat feature maps): label entries, or hidden
 * states as wide as the teacher. Teachers reserve it, students expect it.
 * T is the student's window, which a teacher with more positions (its
 * /config's seq_len) runs on. */
comm_record_shape trainer_record_shape(const teacher_config *tc, int b, int T, int n_feat) {
    const int hidden = tc->labels == TEACHER_LABELS_HIDDEN;
    return (comm_record_shape){
        .b = b,
        .T = T,
        .k = teacher_label_width(tc),
        .vocab = tc->model.vocab_size,
        .n_feat = n_feat,
        .feat_width = n_feat ? tc->model.d_model : 0,
        .hidden = !hidden ? COMM_HIDDEN_NONE : tc->hidden_bf16 ? COMM_HIDDEN_BF16 : COMM_HIDDEN_INT8,
        .hidden_width = hidden ? tc->model.d_model : 0,
    };
}

/* Micro-batch geometry shared by teachers and students. */
typedef struct {
    int R;       /* student ranks */
    int G;       /* global batch (rows) */
    int b;       /* rows per student per step */
    int mb;      /* rows per micro-batch */
    int n_micro; /* micro-batches per step */
    int T, V;
} run_shape;

static rt_status run_shape_make(const trainer_config *cfg, int R, const student_config *sc,
                                run_shape *out) {
    run_shape s = {.R = R, .G = cfg->train.batch, .T = sc->seq_len, .V = sc->vocab_size};
    if (s.G % R != 0)
        return rt_fail(RT_ERR_ARGS,
                       "train.batch = %d cannot be split evenly over %d student ranks", s.G, R);
    s.b = s.G / R;
    s.mb = cfg->train.micro_batch > 0 ? cfg->train.micro_batch : s.b;
    if (s.mb > s.b || s.b % s.mb != 0)
        return rt_fail(RT_ERR_ARGS,
                       "train.micro_batch = %d must divide the %d rows each of the %d student "
                       "ranks gets (train.batch = %d)",
                       s.mb, s.b, R, s.G);
    s.n_micro = s.b / s.mb;
    *out = s;
    return RT_OK;
}

/* Record sequence number of micro-batch j of `step` (the record identity). */
static int64_t record_seq(const run_shape *s, int64_t step, int j) {
    return step * s->n_micro + j;
}

/* ---------------------------------------------------------- teacher */

/* *stopped: the students stopped early (comm_stream_stop) and the loop
 * ended with them. */
static rt_status teacher_serve(const trainer_config *cfg, comm_roles *roles, int64_t start,
                               data_shard *train, const student_config *sc, int *stopped) {
    rt_status st = RT_OK;
    teacher *t = NULL;
    comm_stream *stream = NULL;
    data_sampler **samplers = NULL;
    int32_t *inputs = NULL, *targets = NULL;
    int64_t *starts = NULL;
    comm_record rec;
    comm_record_init(&rec);
    const int n_served = comm_roles_n_served(roles);
    run_shape rs;
    if ((st = run_shape_make(cfg, comm_roles_n_students(roles), sc, &rs)) != RT_OK) goto cleanup;

    /* the frozen teacher: any model file, loaded for the student's windows */
    student_model *tm = NULL;
    st = ckpt_load_model_window(cfg->distill.teacher, sc->seq_len, rs.mb,
                                cfg->distill.teacher_precision == TRAINER_PRECISION_BF16
                                    ? STUDENT_BF16
                                    : STUDENT_F32,
                                0, &tm, NULL);
    if (st != RT_OK) goto cleanup;
    /* shape and precision come from the loaded model */
    teacher_config tc = trainer_teacher_config(cfg, sc, rs.mb);
    if ((st = teacher_create_with(&tc, tm, &t)) != RT_OK) goto cleanup;
    tc = *teacher_cfg(t);

    comm_stream_config scfg = comm_stream_config_default();
    scfg.depth = cfg->distill.depth;
    scfg.zstd_level = cfg->distill.zstd_level;
    if ((st = comm_stream_create(roles, &scfg, &stream)) != RT_OK) goto cleanup;

    samplers = calloc((size_t)n_served, sizeof *samplers);
    inputs = malloc((size_t)rs.b * rs.T * sizeof *inputs);
    targets = malloc((size_t)rs.b * rs.T * sizeof *targets);
    starts = malloc((size_t)rs.b * sizeof *starts);
    if (!samplers || !inputs || !targets || !starts) {
        st = rt_fail(RT_ERR_NOMEM, "teacher: out of memory for %d rows", rs.b);
        goto cleanup;
    }
    for (int i = 0; i < n_served; i++) {
        st = data_sampler_create(cfg->data.train, data_shard_n_tokens(train), rs.T, rs.G, rs.R,
                                 comm_roles_served_student(roles, i), (uint64_t)cfg->train.seed,
                                 &samplers[i]);
        if (st != RT_OK) goto cleanup;
    }
    const comm_record_shape shape = trainer_record_shape(&tc, rs.mb, rs.T, tc.n_features);
    if ((st = comm_record_reserve_shape(&rec, &shape)) != RT_OK) goto cleanup;
    const teacher_out out = {rec.ids, rec.logprobs, rec.tail, rec.hstate, rec.hscale,
                             tc.n_features ? rec.feat : NULL};
    rec.temperature = tc.temperature;

    for (int64_t step = start; step < cfg->train.steps; step++) {
        if ((st = comm_stream_progress(stream)) != RT_OK) goto cleanup;
        if (comm_stream_stopped(stream)) break;
        for (int i = 0; i < n_served; i++) {
            const int s = comm_roles_served_student(roles, i);
            if ((st = data_sampler_read(samplers[i], train, step, inputs, targets)) != RT_OK ||
                (st = data_sampler_windows(samplers[i], step, starts)) != RT_OK)
                goto cleanup;
            for (int j = 0; j < rs.n_micro; j++) {
                st = teacher_run(t, inputs + (size_t)j * rs.mb * rs.T, rs.mb,
                                 (uint64_t)cfg->train.seed, step, starts + (size_t)j * rs.mb,
                                 &out);
                if (st != RT_OK) goto cleanup;
                rec.step = record_seq(&rs, step, j);
                rec.student = s;
                memcpy(rec.starts, starts + (size_t)j * rs.mb, (size_t)rs.mb * sizeof *starts);
                if ((st = comm_stream_send(stream, s, &rec)) != RT_OK) goto cleanup;
            }
        }
    }
    st = comm_stream_close(stream);
    *stopped = comm_stream_stopped(stream);
    if (st == RT_OK && getenv("RETORT_TEACHER_STATS")) {
        /* teacher_run's own split, as `retort bench teacher` reports it */
        comm_stream_stats ss;
        comm_stream_get_stats(stream, &ss);
        const teacher_stats ts = teacher_get_stats(t);
        const double busy_s = ts.forward_s + ts.labels_s;
        fprintf(stderr,
                "teacher rank %d: %lld records, %.1f raw / %.1f wire bytes per token, "
                "waited %.1f s for credits, %.1f s compressing, %.0f tokens/s busy "
                "(%lld tokens: forward %.1f s, labels %.2f s = %.1f%%)\n",
                comm_roles_world_rank(roles), (long long)ss.records,
                (double)ss.raw_bytes / (double)(ss.positions ? ss.positions : 1),
                (double)ss.wire_bytes / (double)(ss.positions ? ss.positions : 1),
                ss.wait_seconds, ss.codec_seconds,
                busy_s > 0.0 ? (double)ts.tokens / busy_s : 0.0, (long long)ts.tokens,
                ts.forward_s, ts.labels_s, busy_s > 0.0 ? 100.0 * ts.labels_s / busy_s : 0.0);
    }
cleanup:
    for (int i = 0; samplers && i < n_served; i++) data_sampler_destroy(samplers[i]);
    free(samplers);
    free(inputs);
    free(targets);
    free(starts);
    comm_record_free(&rec);
    comm_stream_destroy(stream);
    teacher_destroy(t);
    return st;
}

/* ---------------------------------------------------------- student */

/* Learned projections of the feature loss, one (Cs, Ct) matrix per pair
 * when the widths differ, with their gradients and AdamW moments: the
 * same llm.c-style blocks as the model, in one allocation each. */
typedef struct {
    int n_pairs, Cs, Ct;
    size_t n;                     /* floats per block (0 without projections) */
    float *w, *g, *m, *v;         /* (n_pairs, Cs, Ct) */
    float *y, *dy;                /* (mb*T, Ct) scratch */
} feature_proj;

static void feature_proj_free(feature_proj *f) {
    rt_free_aligned(f->w);
    rt_free_aligned(f->g);
    rt_free_aligned(f->m);
    rt_free_aligned(f->v);
    rt_free_aligned(f->y);
    rt_free_aligned(f->dy);
    memset(f, 0, sizeof *f);
}

static rt_status feature_proj_init(feature_proj *f, int n_pairs, int Cs, int Ct, int64_t n_pos,
                                   uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->n_pairs = n_pairs, f->Cs = Cs, f->Ct = Ct;
    if (n_pairs == 0) return RT_OK;
    f->y = rt_alloc_aligned((size_t)n_pos * Ct * sizeof(float));
    f->dy = rt_alloc_aligned((size_t)n_pos * Ct * sizeof(float));
    if (!f->y || !f->dy) goto nomem;
    if (Cs == Ct) return RT_OK; /* same width: compared directly */
    f->n = (size_t)n_pairs * Cs * Ct;
    f->w = rt_alloc_aligned(f->n * sizeof(float));
    f->g = rt_alloc_aligned(f->n * sizeof(float));
    f->m = rt_alloc_aligned(f->n * sizeof(float));
    f->v = rt_alloc_aligned(f->n * sizeof(float));
    if (!f->w || !f->g || !f->m || !f->v) goto nomem;
    /* N(0, 1/Cs): keeps the projected features at the scale of the input */
    uint64_t s = seed ^ 0xF0A7u;
    const double sd = 1.0 / sqrt((double)Cs);
    for (size_t i = 0; i < f->n; i++) {
        double u1 = rt_uniform01(&s), u2 = rt_uniform01(&s);
        f->w[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
    return RT_OK;
nomem:
    feature_proj_free(f);
    return rt_fail(RT_ERR_NOMEM, "out of memory for the feature projections");
}

/* Everything student_train owns; freed in one place. */
typedef struct {
    trainer_config cfg;
    comm_roles *roles;
    int rank; /* student index */
    run_shape rs;
    student_config mc;
    student_config tc; /* teacher shape (distillation only) */
    int distill;
    int width;          /* soft-label entries per position (teacher_label_width) */
    data_shard *train;  /* read a window at a time (data_sampler_read), never loaded */
    int32_t *val;       /* the val tokens evaluate() reads, not the whole shard */
    int64_t n_val;
    data_sampler *sampler;
    student_model *m;
    feature_proj fp;
    comm_stream *stream;           /* teacher records (online distillation) */
    trainer_labels_reader *cache;  /* or a label cache (distill.labels_dir) */
    comm_record rec;
    comm_record_shape want;    /* the shape of this student's teacher records */
    student_hidden_head *head; /* labels = hidden: the teacher's output matrix */
    float *tlogp;              /* (mb*T, V) labels = hidden: the teacher's rebuilt log-probs */
    float *ttail;              /* (mb*T) their (zero) tail, which the kernel writes */
    int32_t *inputs, *targets; /* (b, T) */
    int64_t *starts;           /* (b) */
    trainer_metrics *metrics;
    int64_t start_step;
    char resume_path[TRAINER_STR_MAX];
    char *config_ini;
    char *provenance;
    char teacher_crc[9];    /* CRC-32C of distill.teacher ("00000000" without one) */
    uint8_t *mask;          /* pruning masks (block layout), NULL = dense */
    student_shared *shared; /* train.shared_weights: clusters of equal weights */
    ckpt_prune_meta prune_meta;
    ckpt_run_lock *lock;    /* student 0: the run folder is ours */
} student_run;

static void student_run_free(student_run *s) {
    data_sampler_destroy(s->sampler);
    data_shard_close(s->train);
    rt_free_aligned(s->val);
    student_destroy(s->m);
    feature_proj_free(&s->fp);
    comm_stream_destroy(s->stream);
    trainer_labels_close(s->cache);
    comm_record_free(&s->rec);
    student_hidden_head_free(s->head);
    rt_free_aligned(s->tlogp);
    rt_free_aligned(s->ttail);
    free(s->inputs);
    free(s->targets);
    free(s->starts);
    trainer_metrics_close(s->metrics);
    free(s->config_ini);
    free(s->provenance);
    rt_free_aligned(s->mask);
    student_shared_free(s->shared);
    ckpt_run_lock_release(s->lock);
}

/* Provenance as JSON built by jansson, so paths with quotes, backslashes
 * or control characters come out escaped (the text is stored as is). */
static rt_status make_provenance(student_run *s) {
    uint32_t c_train = 0, c_val = 0, c_teacher = 0;
    RT_TRY(trainer_file_crc32c(s->cfg.data.train, &c_train));
    if (s->val) RT_TRY(trainer_file_crc32c(s->cfg.data.val, &c_val));
    /* a run from a label cache may have no teacher file */
    const int has_teacher = s->distill && s->cfg.distill.teacher[0];
    if (has_teacher) RT_TRY(trainer_file_crc32c(s->cfg.distill.teacher, &c_teacher));
    char crc[3][9];
    snprintf(crc[0], sizeof crc[0], "%08x", c_train);
    snprintf(crc[1], sizeof crc[1], "%08x", c_val);
    snprintf(crc[2], sizeof crc[2], "%08x", c_teacher);
    memcpy(s->teacher_crc, crc[2], sizeof s->teacher_crc);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i}",
                          "retort_version", RETORT_VERSION, "train_shard", s->cfg.data.train,
                          "train_crc32c", crc[0], "val_shard", s->val ? s->cfg.data.val : "",
                          "val_crc32c", crc[1], "teacher",
                          has_teacher ? s->cfg.distill.teacher : "", "teacher_crc32c", crc[2],
                          "labels_dir", s->cfg.distill.labels_dir, "init", s->cfg.train.init,
                          "student_ranks", s->rs.R, "teacher_ranks", s->cfg.distill.teachers);
    /* NULL also when a path is not valid UTF-8, which JSON cannot carry */
    if (!o)
        return rt_fail(RT_ERR_ARGS, "data.train, data.val, distill.teacher, distill.labels_dir "
                       "and train.init must be valid UTF-8 paths (they are recorded in the "
                       "checkpoint's provenance)");
    s->provenance = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s->provenance ? RT_OK : rt_fail(RT_ERR_NOMEM, "out of memory");
}

/* Writes the full training state of the step just finished. Student 0
 * only: the sampler position is a pure function of (seed, step), so the
 * other ranks have no state of their own to contribute. */
static rt_status save_checkpoint(student_run *s, int64_t step, int final) {
    const int64_t tokens_seen = step * s->rs.G * s->rs.T;
    const int64_t n_students = s->rs.R, seed = s->cfg.train.seed;
    ckpt_array ex[64];
    int n_ex = 0;
    ckpt_masks_extras mex;
    memset(&mex, 0, sizeof mex);
    ex[n_ex++] = (ckpt_array){"/state/step", CKPT_I64, 0, {0}, &step};
    ex[n_ex++] = (ckpt_array){"/state/seed", CKPT_I64, 0, {0}, &seed};
    ex[n_ex++] = (ckpt_array){"/state/student_ranks", CKPT_I64, 0, {0}, &n_students};
    if (s->fp.n) {
        const int64_t shp[3] = {s->fp.n_pairs, s->fp.Cs, s->fp.Ct};
        ex[n_ex++] = (ckpt_array){"/distill/projection", CKPT_F32, 3, {shp[0], shp[1], shp[2]},
                                  s->fp.w};
        ex[n_ex++] = (ckpt_array){"/distill/projection_m", CKPT_F32, 3,
                                  {shp[0], shp[1], shp[2]}, s->fp.m};
        ex[n_ex++] = (ckpt_array){"/distill/projection_v", CKPT_F32, 3,
                                  {shp[0], shp[1], shp[2]}, s->fp.v};
    }
    size_t nq = 0;
    const float *qs = student_qat_state(s->m, &nq);
    if (qs) ex[n_ex++] = (ckpt_array){"/qat/state", CKPT_F32, 1, {(int64_t)nq}, qs};
    ckpt_array *all = ex;
    if (s->mask || s->prune_meta.method[0]) {
        RT_TRY(ckpt_masks_extras_build(&s->mc, s->mask, &s->prune_meta, &mex));
        all = malloc((size_t)(n_ex + mex.n) * sizeof *all);
        if (!all) {
            ckpt_masks_extras_free(&mex);
            return rt_fail(RT_ERR_NOMEM, "out of memory");
        }
        memcpy(all, ex, (size_t)n_ex * sizeof *all);
        memcpy(all + n_ex, mex.arrays, (size_t)mex.n * sizeof *all);
        n_ex += mex.n;
    }
    ckpt_contents c = {
        .kind = "train",
        .step = step,
        .tokens_seen = tokens_seen,
        .cfg = s->mc,
        .params = student_params(s->m),
        .adam_m = student_adam_m(s->m),
        .adam_v = student_adam_v(s->m),
        .adam_step = step,
        .extras = all,
        .n_extras = n_ex,
        .config_text = s->config_ini,
        .provenance_json = s->provenance,
    };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char path[TRAINER_STR_MAX + 32];
    rt_status st = ckpt_save_rotating(s->cfg.train.run_dir, step, &c, s->cfg.train.keep_checkpoints);
    if (st == RT_OK && final) {
        snprintf(path, sizeof path, "%s/final.h5", s->cfg.train.run_dir);
        st = ckpt_save(path, &c);
    } else if (st == RT_OK) {
        st = ckpt_step_path(s->cfg.train.run_dir, step, path, sizeof path);
    }
    if (all != ex) free(all);
    ckpt_masks_extras_free(&mex);
    RT_TRY(st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    trainer_metrics_note(s->metrics, "saved %s (%.2f s)", path, dt);
    return RT_OK;
}

/* save_checkpoint on a thread of its own while this (the MPI) thread sends
 * busy notes, so that the ranks waiting for student 0 meanwhile keep their
 * timeouts for dead peers, not slow disks. Alone, it just saves. */
typedef struct {
    student_run *s;
    int64_t step;
    int final;
    rt_status st;
    char err[1024];
    int done; /* atomic */
} save_job;

static void *save_thread(void *arg) {
    save_job *j = arg;
    /* test hook: a slow file system, e.g. a big model on NFS */
    const char *delay = getenv("RETORT_TEST_SAVE_DELAY");
    if (delay && atof(delay) > 0) {
        const double d = atof(delay);
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
    j->st = save_checkpoint(j->s, j->step, j->final);
    if (j->st != RT_OK) snprintf(j->err, sizeof j->err, "%s", rt_last_error());
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static rt_status save_checkpoint_alive(student_run *s, int64_t step, int final) {
    save_job j = {.s = s, .step = step, .final = final};
    pthread_t th;
    if (pthread_create(&th, NULL, save_thread, &j) != 0)
        return rt_fail(RT_ERR_INTERNAL, "cannot start the checkpoint writer thread");
    const double every = comm_timeout() / 4 < 1.0 ? comm_timeout() / 4 : 1.0;
    rt_status note_st = RT_OK;
    while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE)) {
        if (note_st == RT_OK) note_st = comm_busy_note(s->roles);
        for (double t = 0; t < every && !__atomic_load_n(&j.done, __ATOMIC_ACQUIRE); t += 0.01) {
            struct timespec ts = {0, 10000000L};
            nanosleep(&ts, NULL);
        }
    }
    pthread_join(th, NULL);
    if (j.st != RT_OK) return rt_fail(j.st, "%s", j.err);
    return note_st;
}

/* The QAT settings of the config, as student/ takes them. */
static student_qat_config qat_config(const trainer_config *c) {
    return (student_qat_config){
        .calib_steps = c->qat.calib_steps > 0 ? c->qat.calib_steps : 1,
        .asymmetric = c->qat.act == TRAINER_QAT_ASYMMETRIC,
        .freeze = c->qat.freeze_scales,
    };
}

/* Gradual pruning (prune.schedule = gradual), after the optimizer step
 * that completes step `done`: at the schedule's steps, new masks at the
 * cubic schedule's sparsity, applied to the weights at once; in between
 * and after end_step the masks stay as they are. magnitude needs only the
 * weights; wanda scales |w| by the input norms of this step's last
 * forward (its micro-batch on every student, summed over the students, so
 * every student computes the same masks); nm keeps M - round(s(t) M) of
 * every M inputs, reaching N of M at end_step (s(t) ramps to 1 - N/M).
 * The masks are saved with every checkpoint (ckpt_masks.h) and a resumed
 * run recomputes the same forward at the same step, so a resume
 * mid-schedule continues bit for bit. */
static rt_status gradual_prune(student_run *s, int64_t done) {
    const trainer_config *c = &s->cfg;
    if (c->prune.schedule != TRAINER_PRUNE_SCHEDULE_GRADUAL ||
        !student_prune_gradual_due(c->prune.start_step, c->prune.end_step, c->prune.every, done))
        return RT_OK;
    const int nm = c->prune.method == TRAINER_PRUNE_NM;
    const double final = nm ? 1.0 - (double)c->prune.nm_n / c->prune.nm_m : c->prune.sparsity;
    const double sp = student_prune_gradual_sparsity(final, c->prune.start_step,
                                                     c->prune.end_step, c->prune.every, done);
    const size_t n = student_block_size(s->m);
    if (!s->mask && !(s->mask = rt_alloc_aligned(n)))
        return rt_fail(RT_ERR_NOMEM, "out of memory for the pruning masks");
    student_prune_spec ps = {.method = STUDENT_PRUNE_MAGNITUDE, .name = "prune.nm",
                             .sparsity = sp, .nm_m = c->prune.nm_m};
    double *acc = NULL;
    if (nm) {
        ps.method = STUDENT_PRUNE_NM;
        const int k = (int)floor(sp * c->prune.nm_m + 0.5);
        ps.nm_n = c->prune.nm_m - k < c->prune.nm_n ? c->prune.nm_n : c->prune.nm_m - k;
    } else if (c->prune.method == TRAINER_PRUNE_WANDA) {
        ps.method = STUDENT_PRUNE_WANDA;
        const size_t ns = student_prune_stats_size(&s->mc);
        if (!(acc = malloc(ns * sizeof *acc)))
            return rt_fail(RT_ERR_NOMEM, "out of memory for wanda's input statistics");
        rt_status st = student_prune_stats_last(s->m, acc);
        if (st == RT_OK) st = comm_allreduce_sum_double(acc, ns, s->roles);
        if (st != RT_OK) {
            free(acc);
            return st;
        }
    }
    size_t pruned = 0, prunable = 0;
    rt_status st = student_prune_block_masks(&s->mc, student_params(s->m), &ps, acc, s->mask,
                                             &pruned, &prunable);
    free(acc);
    RT_TRY(st);
    student_apply_mask(student_params(s->m), s->mask, n);
    snprintf(s->prune_meta.method, sizeof s->prune_meta.method, "%s",
             nm ? c->prune.nm : c->prune.method == TRAINER_PRUNE_WANDA ? "wanda" : "magnitude");
    s->prune_meta.sparsity = final;
    s->prune_meta.achieved = prunable ? (double)pruned / (double)prunable : 0.0;
    trainer_metrics_note(s->metrics, "step %lld: gradual pruning to sparsity %.6f (%zu of %zu "
                         "weights)", (long long)done, sp, pruned, prunable);
    return RT_OK;
}

/* What a starting checkpoint (resumed or train.init) carries besides the
 * weights: pruning masks, which stay fixed for the whole run, and QAT
 * observer state, which continues where it was. */
static rt_status load_side_state(student_run *s, ckpt_reader *r) {
    int found = 0;
    RT_TRY(ckpt_masks_read(r, &s->mc, &s->mask));
    RT_TRY(ckpt_prune_meta_read(r, &s->prune_meta, &found));
    if (s->mask) student_apply_mask(student_params(s->m), s->mask, student_block_size(s->m));
    if (ckpt_has(r, "/qat/state")) {
        if (s->cfg.train.precision == TRAINER_PRECISION_BF16)
            return rt_fail(RT_ERR_ARGS,
                           "%s carries QAT state (/qat/state), which needs train.precision = "
                           "f32 to continue",
                           ckpt_reader_path(r));
        const size_t n = student_qat_state_size(&s->mc);
        float *q = malloc(n * sizeof *q);
        if (!q) return rt_fail(RT_ERR_NOMEM, "out of memory");
        const student_qat_config qc = qat_config(&s->cfg);
        rt_status st = ckpt_read_array(r, "/qat/state", CKPT_F32, n, q);
        if (st == RT_OK) st = student_qat_enable(s->m, &qc);
        if (st == RT_OK) st = student_qat_set_state(s->m, q, n);
        free(q);
        RT_TRY(st);
    }
    return RT_OK;
}

/* The students must hold bit-identical weights (same all-reduced gradient,
 * same update); checked before each checkpoint so that a silent divergence
 * (a broken reduction, a rank on different data) is a loud error instead of
 * a checkpoint of one rank's private model. */
static rt_status verify_replicas(student_run *s, int64_t step) {
    if (s->rs.R < 2) return RT_OK;
    const uint32_t crc = ckpt_crc32c(0, student_params(s->m), student_block_size(s->m) * sizeof(float));
    double v[2] = {(double)crc, -(double)crc};
    RT_TRY(comm_allreduce_max_double(v, 2, s->roles));
    if (v[0] != -v[1])
        return rt_fail(RT_ERR_INTERNAL,
                       "step %lld: the %d student ranks hold different weights (CRC-32C %08x on "
                       "student %d); refusing to checkpoint",
                       (long long)step, s->rs.R, crc, s->rank);
    return RT_OK;
}

/* A resumed run keeps its teacher: the CRC-32C of distill.teacher must be
 * the one the checkpoint's provenance records (issue 16 item 15), whatever
 * the path; a checkpoint without that record (other tools) is not checked. */
static rt_status check_resume_teacher(const student_run *s, ckpt_reader *r) {
    char *text = NULL;
    if (ckpt_read_string_attr(r, "/meta", "provenance", &text) != RT_OK) {
        free(text);
        return RT_OK;
    }
    rt_status st = RT_OK;
    json_t *o = json_loads(text, 0, NULL);
    const char *was = json_string_value(json_object_get(o, "teacher_crc32c"));
    const char *was_path = json_string_value(json_object_get(o, "teacher"));
    if (was && strcmp(was, s->teacher_crc) != 0) {
        if (!(s->distill && s->cfg.distill.teacher[0]))
            st = rt_fail(RT_ERR_MISMATCH, "%s: was trained with the teacher %s (CRC-32C %s); "
                         "resuming it without one would be another run (use train.init)",
                         s->resume_path, was_path ? was_path : "?", was);
        else
            st = rt_fail(RT_ERR_MISMATCH, "%s (distill.teacher): CRC-32C %s, but %s was trained "
                         "with %s (CRC-32C %s): resume with that teacher, or start a new run "
                         "(train.init)", s->cfg.distill.teacher, s->teacher_crc, s->resume_path,
                         was_path && was_path[0] ? was_path : "no teacher", was);
    }
    json_decref(o);
    free(text);
    return st;
}

/* Restores model, optimizer, projections and the step from a checkpoint. */
static rt_status load_resume(student_run *s) {
    ckpt_reader *r = NULL;
    rt_status st = ckpt_open(s->resume_path, &r);
    if (st != RT_OK) return st;
    int64_t step = 0, adam_step = 0;
    if ((st = ckpt_require_kind(r, "train", "resuming training")) != RT_OK) goto cleanup;
    if ((st = check_resume_teacher(s, r)) != RT_OK) goto cleanup;
    if ((st = ckpt_check_config(r, &s->mc, "the run's [model] config")) != RT_OK) goto cleanup;
    if ((st = ckpt_read_model(r, s->m)) != RT_OK) goto cleanup;
    st = ckpt_read_optimizer(r, student_adam_m(s->m), student_adam_v(s->m), &adam_step);
    if (st != RT_OK) goto cleanup;
    if ((st = ckpt_read_array(r, "/state/step", CKPT_I64, 1, &step)) != RT_OK) goto cleanup;
    if (step != ckpt_reader_step(r) || adam_step != step) {
        st = rt_fail(RT_ERR_FORMAT, "%s: inconsistent step counters (%lld, %lld, %lld)",
                     s->resume_path, (long long)ckpt_reader_step(r), (long long)step,
                     (long long)adam_step);
        goto cleanup;
    }
    if (s->fp.n) {
        if (!ckpt_has(r, "/distill/projection")) {
            st = rt_fail(RT_ERR_FORMAT,
                         "%s: has no /distill/projection, but this run's feature_map needs one "
                         "(was it written with another distill config?)",
                         s->resume_path);
            goto cleanup;
        }
        if ((st = ckpt_read_array(r, "/distill/projection", CKPT_F32, s->fp.n, s->fp.w)) ||
            (st = ckpt_read_array(r, "/distill/projection_m", CKPT_F32, s->fp.n, s->fp.m)) ||
            (st = ckpt_read_array(r, "/distill/projection_v", CKPT_F32, s->fp.n, s->fp.v)))
            goto cleanup;
    }
    if ((st = load_side_state(s, r)) != RT_OK) goto cleanup;
    s->start_step = step;
cleanup:
    ckpt_reader_close(r);
    return st;
}

/* Mean CE over the first eval_tokens of the val shard: the evaluation
 * protocol (eval.h), windows split over the students and the sums
 * all-reduced. load_val has checked that the shard holds a window. */
static rt_status evaluate(student_run *s, double *loss) {
    const int T = s->rs.T;
    int64_t n_win = trainer_eval_n_windows(s->n_val, T);
    if (s->cfg.train.eval_tokens > 0 && s->cfg.train.eval_tokens / T < n_win)
        n_win = s->cfg.train.eval_tokens / T;
    if (n_win < 1) n_win = 1; /* eval_tokens < seq_len: one window */
    trainer_eval_sums e = {0};
    RT_TRY(trainer_eval_windows(s->m, NULL, s->val, NULL, n_win, s->rank, s->rs.R, s->rs.mb, 0,
                                0, &e));
    double sums[2] = {e.loss_sum, (double)e.tokens};
    RT_TRY(comm_allreduce_sum_double(sums, 2, s->roles));
    *loss = sums[0] / sums[1];
    return RT_OK;
}

/* Index of the largest of n floats (first on ties). Two vectorized passes
 * (the max, then where it is): a compare-and-track loop does not
 * vectorize, and over every row of V logits it cost a quarter of a
 * distillation step's CPU time. */
static int argmax(const float *x, int n) {
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return 0; /* NaN entries only */
}

/* Per-step sums, all-reduced over the students (then divided). */
enum { S_CE, S_KD, S_FEAT, S_AGREE, S_POS, S_WAIT, S_STOP, S_N };

/* One micro-batch: forward, loss and its gradient into dlogits (and the
 * hidden-state gradients), backward. */
static rt_status micro_step(student_run *s, int64_t step, int j, double *sums) {
    const run_shape *rs = &s->rs;
    const int T = rs->T, V = rs->V, n_pos = rs->mb * T;
    const int32_t *in = s->inputs + (size_t)j * n_pos, *tg = s->targets + (size_t)j * n_pos;
    student_qat_observe_next(s->m); /* QAT calibrates on training batches only */
    RT_TRY(student_forward(s->m, in, rs->mb));
    float *logits = student_logits(s->m), *dl = student_dlogits(s->m);
    const float per_rank = 1.0f / (float)((int64_t)rs->b * T); /* mean over this rank's rows */
    if (!s->distill) {
        sums[S_CE] += student_loss_ce(logits, tg, n_pos, V, dl, per_rank);
    } else {
        const trainer_config *c = &s->cfg;
        comm_record *r = &s->rec;
        size_t row0 = 0; /* this micro-batch's first row in r */
        if (s->cache) {
            /* one cache record holds the step's G rows, rank 0's first */
            if (j == 0) RT_TRY(trainer_labels_read(s->cache, step, r));
            row0 = (size_t)s->rank * rs->b + (size_t)j * rs->mb;
            for (int w = 0; w < rs->mb; w++)
                if (r->starts[row0 + w] != s->starts[(size_t)j * rs->mb + w])
                    return rt_fail(RT_ERR_MISMATCH,
                                   "%s: step %lld, row %zu: the cache's window starts at token "
                                   "%lld, this run's at %lld (data, seed or batch differ)",
                                   c->distill.labels_dir, (long long)step + 1, row0 + w,
                                   (long long)r->starts[row0 + w],
                                   (long long)s->starts[(size_t)j * rs->mb + w]);
        } else {
            double wait = 0.0;
            RT_TRY(comm_stream_recv(s->stream, &s->want, r, &wait));
            sums[S_WAIT] += wait;
            RT_TRY(comm_record_check_identity(r, record_seq(rs, step, j), s->rank,
                                              s->starts + (size_t)j * rs->mb, rs->mb));
        }
        /* before anything is read from it (the features especially) */
        RT_TRY(comm_record_check_shape(r, step, T, V, s->width, c->distill.n_feature_pairs,
                                       s->tc.d_model));
        const float Tk = (float)c->distill.temperature, a = (float)c->distill.alpha;
        const float ce_scale = (1.0f - a) * per_rank, kd_scale = a * Tk * Tk * per_rank;
        const size_t p0 = row0 * T; /* first position of this micro-batch in r */
        int k = r->k;
        const int32_t *ids = r->ids + p0 * r->k;
        const float *logp = r->logprobs + p0 * r->k, *tail = r->tail ? r->tail + p0 : NULL;
        if (r->hidden != COMM_HIDDEN_NONE) {
            /* the teacher's logits from its hidden states, then its dense
             * log-probabilities at T: the dense KD below */
            const int bf = r->hidden == COMM_HIDDEN_BF16;
            const size_t hw = (size_t)r->hidden_width;
            const void *hs = (const char *)r->hstate + p0 * hw * (bf ? 2 : 1);
            RT_TRY(student_hidden_head_logits(s->head, hs, bf, bf ? NULL : r->hscale + p0, n_pos,
                                              s->tlogp));
            RT_TRY(student_teacher_topk(student_loss_workspace(s->m), s->tlogp, n_pos, V, Tk, V,
                                        NULL, s->tlogp, s->ttail));
            k = V, ids = NULL, logp = s->tlogp, tail = NULL;
        }
        const int dense = k == V;
        student_loss_ws *ws = student_loss_workspace(s->m);
        double ce = 0.0, kd = 0.0;
        if (c->distill.divergence == TRAINER_DIV_KL) {
            RT_TRY(student_loss_distill(ws, logits, tg, n_pos, V, Tk, dense ? NULL : ids, logp,
                                        tail, k, dl, ce_scale, kd_scale, &ce, &kd));
        } else {
            ce = student_loss_ce(logits, tg, n_pos, V, dl, ce_scale);
            if (c->distill.divergence == TRAINER_DIV_JSD)
                RT_TRY(student_loss_jsd(ws, logits, n_pos, V, Tk, logp, dl, kd_scale, &kd));
            else
                kd = student_loss_rkl(logits, n_pos, V, Tk, logp, dl, kd_scale);
        }
        sums[S_CE] += ce;
        sums[S_KD] += kd;
        /* top-1 agreement: ids are sorted by probability unless dense (the
         * sample scheme's first id is the most drawn token, an estimate) */
        int64_t agree = 0;
#pragma omp parallel for reduction(+ : agree) schedule(static)
        for (int i = 0; i < n_pos; i++) {
            const int t1 = dense ? argmax(logp + (size_t)i * V, V) : ids[(size_t)i * k];
            agree += argmax(logits + (size_t)i * V, V) == t1;
        }
        sums[S_AGREE] += (double)agree;
        /* feature maps: gradient into the hidden state after block s-1 */
        for (int p = 0; p < s->fp.n_pairs; p++) {
            const int sl = c->distill.feature_pairs[p][0] - 1;
            const size_t pw = (size_t)s->fp.Cs * s->fp.Ct;
            double fl = 0.0;
            RT_TRY(student_feature_loss(
                student_hidden(s->m, sl), s->fp.n ? s->fp.w + p * pw : NULL,
                r->feat + (size_t)p * n_pos * r->feat_width, n_pos, s->fp.Cs, s->fp.Ct,
                c->distill.feature_loss == TRAINER_FEATURE_COSINE,
                (float)c->distill.beta / (float)rs->n_micro, student_hidden_grad(s->m, sl),
                s->fp.n ? s->fp.g + p * pw : NULL, s->fp.y, s->fp.dy, &fl));
            sums[S_FEAT] += fl / rs->n_micro;
        }
    }
    sums[S_POS] += n_pos;
    return student_backward(s->m, rs->mb);
}

/* 1 if run_dir holds a `latest` pointer or any step_*.h5. */
static int has_checkpoint(const char *run_dir) {
    char p[TRAINER_STR_MAX + 16];
    snprintf(p, sizeof p, "%s/latest", run_dir);
    if (access(p, F_OK) == 0) return 1;
    DIR *d = opendir(run_dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));)
        found = strncmp(e->d_name, "step_", 5) == 0 && strstr(e->d_name, ".h5") != NULL;
    closedir(d);
    return found;
}

/* Reads the val tokens evaluate() uses: the first eval_tokens (at least
 * one window of T + 1), or the whole shard when eval_tokens is 0, so the
 * memory follows the config, not the size of the shard. */
static rt_status load_val(const trainer_config *c, int64_t vocab, int T, int32_t **val,
                          int64_t *n_val) {
    data_shard *sh = NULL;
    RT_TRY(data_shard_open(c->data.val, &sh));
    rt_status st = RT_OK;
    const int64_t vv = data_shard_vocab_size(sh), have = data_shard_n_tokens(sh);
    const int64_t want = c->train.eval_tokens > 0
                             ? (c->train.eval_tokens > T ? c->train.eval_tokens : T) + 1
                             : have;
    const int64_t n = want < have ? want : have;
    if (vv != vocab) {
        st = rt_fail(RT_ERR_MISMATCH, "%s has a vocabulary of %lld, %s of %lld", c->data.val,
                     (long long)vv, c->data.train, (long long)vocab);
    } else if (trainer_eval_n_windows(n, T) == 0) {
        st = rt_fail(RT_ERR_FORMAT,
                     "%s: %lld tokens are fewer than one window of seq_len + 1 = %d tokens",
                     c->data.val, (long long)have, T + 1);
    } else if (!(*val = rt_alloc_aligned((size_t)n * sizeof **val))) {
        st = rt_fail(RT_ERR_NOMEM, "%s: out of memory for %lld tokens", c->data.val,
                     (long long)n);
    } else {
        st = data_shard_read(sh, 0, n, *val);
        *n_val = n;
    }
    data_shard_close(sh);
    return st;
}

/* labels = hidden: the teacher's output matrix (its tied wte), read once
 * through the model loader, and the buffers of its rebuilt log-probs. */
static rt_status load_teacher_head(student_run *s) {
    const char *tp = s->cfg.distill.teacher;
    student_model *tm = NULL;
    RT_TRY(ckpt_load_model_window(tp, s->mc.seq_len, 1, STUDENT_F32, 0, &tm, NULL));
    const student_config *tc = student_cfg(tm);
    student_tensor wte;
    student_tensor_info(tc, 0, &wte);
    rt_status st = RT_OK;
    if (tc->vocab_size != s->tc.vocab_size || tc->d_model != s->tc.d_model ||
        strcmp(wte.name, "transformer.wte.weight") != 0 || wte.shape[0] != tc->vocab_size ||
        wte.shape[1] != tc->d_model)
        st = rt_fail(RT_ERR_MISMATCH,
                     "%s: loaded with a %s of %lld x %lld, but the teacher's /config says "
                     "vocab %d x d_model %d (distill.labels = hidden needs its output matrix)",
                     tp, wte.name, (long long)wte.shape[0], (long long)wte.shape[1],
                     s->tc.vocab_size, s->tc.d_model);
    else
        st = student_hidden_head_create(student_params(tm) + wte.offset, tc->vocab_size,
                                        tc->d_model, &s->head);
    student_destroy(tm);
    RT_TRY(st);
    const size_t n_pos = (size_t)s->rs.mb * s->rs.T;
    s->tlogp = rt_alloc_aligned(n_pos * (size_t)s->rs.V * sizeof *s->tlogp);
    s->ttail = rt_alloc_aligned(n_pos * sizeof *s->ttail);
    if (!s->tlogp || !s->ttail)
        return rt_fail(RT_ERR_NOMEM, "out of memory for the teacher's logits of %zu positions",
                       n_pos);
    return RT_OK;
}

static rt_status student_setup(student_run *s, const char *resume_arg) {
    const trainer_config *c = &s->cfg;
    if (s->rank == 0) {
        /* before anything reads or writes the run folder */
        int n_stale = 0;
        RT_TRY(trainer_make_dirs(c->train.run_dir));
        RT_TRY(ckpt_run_lock_take(c->train.run_dir, &s->lock, &n_stale));
        if (n_stale > 0)
            fprintf(stderr, "retort: removed %d temporary file(s) of interrupted saves from %s\n",
                    n_stale, c->train.run_dir);
    }
    RT_TRY(data_shard_open(c->data.train, &s->train));
    const int64_t vocab = data_shard_vocab_size(s->train);
    RT_TRY(trainer_run_model_config(c, vocab, &s->mc));
    RT_TRY(load_val(c, vocab, s->mc.seq_len, &s->val, &s->n_val));
    RT_TRY(run_shape_make(c, comm_roles_n_students(s->roles), &s->mc, &s->rs));
    s->distill = c->distill.teachers > 0 || c->distill.labels_dir[0];
    if (s->distill) {
        if (c->distill.teacher[0]) {
            RT_TRY(trainer_check_teacher(c, &s->mc, &s->tc));
        } else { /* a label cache alone: the labels have the student's shape */
            s->tc = s->mc;
            RT_TRY(check_labels(c, s->mc.vocab_size));
        }
        const teacher_config tcfg = trainer_teacher_config(c, &s->tc, s->rs.mb);
        s->width = teacher_label_width(&tcfg);
        if (c->distill.labels == TEACHER_LABELS_HIDDEN) RT_TRY(load_teacher_head(s));
        if (c->distill.labels_dir[0]) {
            trainer_labels_meta want;
            RT_TRY(trainer_labels_meta_make(c, &tcfg, s->rs.T, &want));
            RT_TRY(trainer_labels_open(c->distill.labels_dir, &want, &s->cache));
        }
    }
    RT_TRY(data_sampler_create(c->data.train, data_shard_n_tokens(s->train), s->rs.T, s->rs.G,
                               s->rs.R, s->rank, (uint64_t)c->train.seed, &s->sampler));
    RT_TRY(student_create(&s->mc, s->rs.mb,
                          c->train.precision == TRAINER_PRECISION_BF16 ? STUDENT_BF16
                                                                        : STUDENT_F32,
                          STUDENT_TRAIN | (c->train.recompute ? STUDENT_RECOMPUTE : 0), &s->m));
    if (s->distill)
        RT_TRY(feature_proj_init(&s->fp, c->distill.n_feature_pairs, s->mc.d_model,
                                 s->tc.d_model, (int64_t)s->rs.mb * s->rs.T,
                                 (uint64_t)c->train.seed));
    s->inputs = malloc((size_t)s->rs.b * s->rs.T * sizeof *s->inputs);
    s->targets = malloc((size_t)s->rs.b * s->rs.T * sizeof *s->targets);
    s->starts = malloc((size_t)s->rs.b * sizeof *s->starts);
    if (!s->inputs || !s->targets || !s->starts)
        return rt_fail(RT_ERR_NOMEM, "out of memory for %d rows of %d tokens", s->rs.b,
                       s->rs.T);

    RT_TRY(make_provenance(s)); /* the teacher's CRC, which a resume checks */
    /* starting weights: a checkpoint to resume, train.init, or random */
    if (resume_arg && strcmp(resume_arg, "latest") == 0 && !has_checkpoint(c->train.run_dir)) {
        /* a first start under a requeue-friendly `--resume latest` */
        fprintf(stderr, "retort: no checkpoint in %s yet: starting from step 0\n",
                c->train.run_dir);
        resume_arg = NULL;
    }
    if (resume_arg) {
        RT_TRY(ckpt_resolve(resume_arg, c->train.run_dir, s->resume_path,
                            sizeof s->resume_path));
        RT_TRY(load_resume(s));
    } else if (c->train.init[0]) {
        ckpt_reader *r = NULL;
        RT_TRY(ckpt_open(c->train.init, &r));
        rt_status st = ckpt_read_model(r, s->m);
        if (st == RT_OK) st = load_side_state(s, r);
        ckpt_reader_close(r);
        RT_TRY(st);
        if (s->mask && c->prune.schedule == TRAINER_PRUNE_SCHEDULE_GRADUAL)
            return rt_fail(RT_ERR_ARGS, "train.init %s is already pruned (it has masks); "
                           "prune.schedule = gradual starts from a dense model",
                           c->train.init);
    } else {
        student_init_weights(s->m, (uint64_t)c->train.seed);
    }
    /* shared weights: the clusters of the starting (or resumed) weights,
     * which every later step keeps (their members move together) */
    if (c->train.shared_weights) {
        if (s->mask || c->prune.schedule == TRAINER_PRUNE_SCHEDULE_GRADUAL)
            return rt_fail(RT_ERR_ARGS, "train.shared_weights keeps equal weights equal, which "
                           "pruning masks would split: use one or the other");
        RT_TRY(student_shared_create(&s->mc, student_params(s->m), &s->shared));
        trainer_metrics_note(s->metrics, "shared weights: at most %d distinct values per linear "
                             "weight, each moved by the sum of its members' gradients",
                             student_shared_max_values(s->shared));
    }
    /* wanda and N:M masks need dense [in, out] weights (N:M: in a multiple
     * of M), known only now that the shape may come from train.init */
    if (c->prune.schedule == TRAINER_PRUNE_SCHEDULE_GRADUAL &&
        c->prune.method != TRAINER_PRUNE_MAGNITUDE) {
        if (student_is_lowrank(&s->mc))
            return rt_fail(RT_ERR_ARGS, "prune.method = %s prunes dense weights, but the model "
                           "is low-rank (train.init %s); use prune.method = magnitude",
                           c->prune.method == TRAINER_PRUNE_NM ? "nm" : "wanda", c->train.init);
        for (int k = 0; c->prune.method == TRAINER_PRUNE_NM && k < STUDENT_LIN_N; k++) {
            int64_t in, out;
            student_linear_shape(&s->mc, (student_linear)k, &in, &out);
            if (in % c->prune.nm_m != 0)
                return rt_fail(RT_ERR_ARGS, "prune.nm = %s: %s has %lld inputs, not a multiple "
                               "of M = %d", c->prune.nm, student_linear_name((student_linear)k),
                               (long long)in, c->prune.nm_m);
        }
    }
    RT_TRY(trainer_config_to_ini(c, &s->config_ini));
    if (c->distill.teachers > 0) {
        /* every record is refused unless it has this run's shape, and no
         * message larger than such a record is even received */
        const teacher_config tcfg = trainer_teacher_config(c, &s->tc, s->rs.mb);
        s->want = trainer_record_shape(&tcfg, s->rs.mb, s->rs.T, c->distill.n_feature_pairs);
        comm_stream_config scfg = comm_stream_config_default();
        scfg.depth = c->distill.depth;
        scfg.zstd_level = c->distill.zstd_level;
        scfg.max_record_bytes = comm_record_wire_bound(&s->want);
        RT_TRY(comm_stream_create(s->roles, &scfg, &s->stream));
    }
    return RT_OK;
}

/* What each rank moved over the network per step, for sizing a cluster's
 * network (docs/CLUSTER.md): the teacher records student 0 received
 * (measured: header + zstd frames), the gradient all-reduce payload of
 * every student and what a ring all-reduce of it sends (and receives) per
 * rank, 2 (R-1)/R of it, and the teacher's sends (its students' records,
 * taken as student 0's each). Control messages (credits, the per-step sums)
 * are a few dozen bytes and left out. */
static void network_note(student_run *s, int64_t steps_run, size_t nblock, double seconds) {
    const int R = s->rs.R;
    /* a run from a label cache distills with no stream (no teacher ranks) */
    if (steps_run <= 0 || (R < 2 && !s->stream)) return;
    const double grad = R > 1 ? 4.0 * (double)(nblock + s->fp.n) : 0.0;
    const double ring = grad * 2.0 * (R - 1) / R;
    char rec[160] = "";
    if (s->stream) {
        comm_stream_stats ss;
        comm_stream_get_stats(s->stream, &ss);
        const int t = comm_roles_teacher_of(s->roles, 0);
        int served = 0;
        for (int j = 0; j < R; j++) served += comm_roles_teacher_of(s->roles, j) == t;
        const double per = (double)ss.wire_bytes / (double)steps_run;
        snprintf(rec, sizeof rec,
                 "; teacher records: student 0 received %.0f B, its teacher (serving %d "
                 "student(s)) sent about %.0f B",
                 per, served, per * served);
    }
    char ar[160] = "no gradient all-reduce (one student)";
    if (R > 1)
        snprintf(ar, sizeof ar,
                 "gradient all-reduce of %.0f B per student, a ring sends and receives %.0f B "
                 "per student",
                 grad, ring);
    trainer_metrics_note(s->metrics, "network per step (%.1f ms): %s%s",
                         1e3 * seconds / (double)steps_run, ar, rec);
}

/* *stopped: a stop signal ended the run early (checkpoint saved). */
static rt_status student_train(student_run *s, int *stopped) {
    const trainer_config *c = &s->cfg;
    const run_shape *rs = &s->rs;
    const int64_t steps = c->train.steps, tokens_per_step = (int64_t)rs->G * rs->T;
    if (s->rank == 0) {
        RT_TRY(trainer_metrics_open(c->train.run_dir, steps, s->start_step, &s->metrics));
        trainer_metrics_set_tokens(s->metrics, s->start_step * tokens_per_step);
        if (s->start_step > 0)
            trainer_metrics_note(s->metrics, "resumed from %s at step %lld", s->resume_path,
                                 (long long)s->start_step);
        trainer_metrics_note(s->metrics,
                             "%s: %zu parameters (%d layers, d_model %d, %d heads, d_ff %d, "
                             "vocab %d, seq %d), %d student rank(s) x %d rows, %d teacher "
                             "rank(s), %lld steps, %lld windows per epoch",
                             s->distill ? "distilling" : "training",
                             student_param_count(&s->mc), s->mc.n_layer, s->mc.d_model,
                             s->mc.n_head, s->mc.d_ff, s->mc.vocab_size, s->mc.seq_len, rs->R,
                             rs->b, c->distill.teachers, (long long)steps,
                             (long long)data_sampler_n_windows(s->sampler));
        trainer_metrics_note(s->metrics, "student activations: %.2f MiB per student rank "
                             "(train.recompute = %s)",
                             (double)student_activation_bytes(s->m) / 1048576.0,
                             c->train.recompute ? "true" : "false");
    }
    if (s->start_step >= steps) {
        trainer_metrics_note(s->metrics, "%s is at step %lld of %lld: nothing left to train",
                             s->resume_path, (long long)s->start_step, (long long)steps);
        /* a run killed between its last step checkpoint and final.h5
         * finishes here: final.h5 is that checkpoint's state */
        if (s->rank == 0) RT_TRY(save_checkpoint(s, steps, 1));
        return RT_OK;
    }
    float *grads = student_grads(s->m);
    const size_t nblock = student_block_size(s->m);
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    double run_wait = 0.0;
    for (int64_t step = s->start_step; step < steps; step++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        const float lr = student_lr_at(step + 1, (float)c->train.lr, c->train.warmup, steps,
                                       (float)c->train.min_lr_ratio);
        if (c->qat.enabled && step >= c->qat.start_step && !student_qat_enabled(s->m)) {
            const student_qat_config qc = qat_config(c);
            RT_TRY(student_qat_enable(s->m, &qc));
            trainer_metrics_note(s->metrics, "step %lld: quantization-aware training on",
                                 (long long)step + 1);
        }
        RT_TRY(data_sampler_read(s->sampler, s->train, step, s->inputs, s->targets));
        RT_TRY(data_sampler_windows(s->sampler, step, s->starts));
        double sums[S_N] = {0};
        for (int j = 0; j < rs->n_micro; j++) RT_TRY(micro_step(s, step, j, sums));
        if (rs->R > 1) {
            RT_TRY(comm_allreduce_mean(grads, nblock, s->roles));
            if (s->fp.n) RT_TRY(comm_allreduce_mean(s->fp.g, s->fp.n, s->roles));
        }
        /* pruned weights get no gradient, so they neither move nor count
         * in the clipping norm */
        if (s->mask) student_apply_mask(grads, s->mask, nblock);
        /* shared weights: every member gets its cluster's summed gradient */
        if (s->shared) student_shared_grads(s->shared, grads);
        const double wait_here = sums[S_WAIT];
        /* the stop decision rides on the sums every student all-reduces
         * anyway: all of them see it after the same step */
        sums[S_STOP] = g_stop_signal != 0;
        RT_TRY(comm_allreduce_sum_double(sums, S_N, s->roles));
        /* clip on the global norm of all trainable gradients */
        double norm2 = student_grad_norm(s->m);
        norm2 *= norm2;
        for (size_t i = 0; i < s->fp.n; i++) norm2 += (double)s->fp.g[i] * s->fp.g[i];
        const double norm = sqrt(norm2);
        if (c->train.grad_clip > 0 && norm > c->train.grad_clip) {
            const float k = (float)(c->train.grad_clip / norm);
            student_grad_scale(s->m, k);
            for (size_t i = 0; i < s->fp.n; i++) s->fp.g[i] *= k;
        }
        if (!isfinite(norm))
            return rt_fail(RT_ERR_INTERNAL,
                           "step %lld: the gradient is not finite (loss diverged; lower "
                           "train.lr or raise train.warmup)",
                           (long long)step + 1);
        student_adamw_step(s->m, lr, (float)c->train.beta1, (float)c->train.beta2,
                           (float)c->train.eps, (float)c->train.weight_decay, step + 1);
        if (s->fp.n) {
            student_adamw_array(s->fp.w, s->fp.g, s->fp.m, s->fp.v, s->fp.n, lr,
                                (float)c->train.beta1, (float)c->train.beta2,
                                (float)c->train.eps, 0.0f, step + 1);
            memset(s->fp.g, 0, s->fp.n * sizeof(float));
        }
        /* defensive: masked weights stay exactly zero whatever the optimizer state */
        if (s->mask) student_apply_mask(student_params(s->m), s->mask, nblock);
        student_zero_grad(s->m);
        student_qat_step_end(s->m);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double step_s =
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        run_wait += wait_here;

        const int64_t done = step + 1;
        RT_TRY(gradual_prune(s, done));
        trainer_metrics_step(s->metrics, done, tokens_per_step);
        const double pos = sums[S_POS], a = s->distill ? c->distill.alpha : 0.0;
        const double Tk = c->distill.temperature;
        const double ce = sums[S_CE] / pos, kd = sums[S_KD] / pos, feat = sums[S_FEAT] / rs->R;
        const double loss =
            s->distill ? (1.0 - a) * ce + a * Tk * Tk * kd + c->distill.beta * feat : ce;
        /* eval_every = 0: only at the end */
        const int do_eval =
            done == steps || (c->train.eval_every > 0 && done % c->train.eval_every == 0);
        double val_loss = NAN;
        if (do_eval) RT_TRY(evaluate(s, &val_loss));
        if (done % c->train.log_every == 0 || done == steps || do_eval) {
            trainer_metrics_show(s->metrics, "loss", loss);
            if (s->distill) {
                trainer_metrics_show(s->metrics, "kd", kd);
                trainer_metrics_add(s->metrics, "ce", ce);
                if (c->distill.n_feature_pairs) trainer_metrics_add(s->metrics, "feat", feat);
                trainer_metrics_show(s->metrics, "agree", sums[S_AGREE] / pos);
                /* stall: share of the step spent waiting for teacher
                 * records, mean over the students */
                trainer_metrics_show(s->metrics, "stall", sums[S_WAIT] / rs->R / step_s);
                /* label bytes per token: on the wire (zstd records) or
                 * read from the cache's disk, beside dense f32 labels */
                if (s->stream) {
                    comm_stream_stats ss;
                    comm_stream_get_stats(s->stream, &ss);
                    if (ss.positions > 0) {
                        trainer_metrics_add(s->metrics, "wire_bytes_per_token",
                                            (double)ss.wire_bytes / (double)ss.positions);
                        trainer_metrics_add(s->metrics, "raw_bytes_per_token",
                                            (double)ss.raw_bytes / (double)ss.positions);
                    }
                } else {
                    int64_t bytes = 0, positions = 0;
                    trainer_labels_stats(s->cache, &bytes, &positions);
                    if (positions > 0)
                        trainer_metrics_add(s->metrics, "disk_bytes_per_token",
                                            (double)bytes / (double)positions);
                }
                trainer_metrics_add(s->metrics, "dense_bytes_per_token", 4.0 * rs->V);
            }
            if (do_eval) trainer_metrics_show(s->metrics, "val_loss", val_loss);
            if (student_qat_enabled(s->m))
                trainer_metrics_add(s->metrics, "qat_calibrating", student_qat_calibrating(s->m));
            trainer_metrics_add(s->metrics, "lr", lr);
            trainer_metrics_add(s->metrics, "grad_norm", norm);
            RT_TRY(trainer_metrics_log(s->metrics, done));
        }
        const int final = done == steps;
        const int stop = !final && sums[S_STOP] > 0;
        if (final || stop ||
            (c->train.checkpoint_every > 0 && done % c->train.checkpoint_every == 0)) {
            RT_TRY(verify_replicas(s, done));
            if (s->rank == 0) RT_TRY(save_checkpoint_alive(s, done, final));
        }
        if (stop) {
            /* an exit code other than 0 makes mpirun kill the job: nobody
             * leaves before student 0 has saved */
            double sync = 0.0; /* an all-reduce ends on no student before all reach it */
            RT_TRY(comm_allreduce_sum_double(&sync, 1, s->roles));
            trainer_metrics_note(s->metrics,
                                 "stopped at step %lld of %lld on %s: the checkpoint of step "
                                 "%lld is saved; continue with --resume latest",
                                 (long long)done, (long long)steps,
                                 g_stop_signal ? stop_signal_name(g_stop_signal)
                                               : "a stop signal to another rank",
                                 (long long)done);
            if (s->distill) {
                RT_TRY(comm_stream_stop(s->stream));
                RT_TRY(comm_stream_close(s->stream));
            }
            *stopped = 1;
            return RT_OK;
        }
    }
    if (s->stream) RT_TRY(comm_stream_close(s->stream));
    struct timespec ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    const double total =
        (double)(ts1.tv_sec - ts0.tv_sec) + 1e-9 * (double)(ts1.tv_nsec - ts0.tv_nsec);
    trainer_metrics_note(s->metrics, "done: %lld steps in %.1f s",
                         (long long)(steps - s->start_step), total);
    if (s->stream)
        trainer_metrics_note(s->metrics, "student 0 waited %.1f s (%.1f%%) for teacher records",
                             run_wait, total > 0 ? 100.0 * run_wait / total : 0.0);
    network_note(s, steps - s->start_step, nblock, total);
    return RT_OK;
}

/* ------------------------------------------------------------ entry */

static rt_status train_run(const trainer_config *cfg, const char *resume_arg, comm_roles *roles,
                           int *stopped) {
    rt_status st = RT_OK;
    if (comm_roles_role(roles) == COMM_ROLE_STUDENT) {
        student_run s;
        memset(&s, 0, sizeof s);
        comm_record_init(&s.rec);
        s.cfg = *cfg;
        s.roles = roles;
        s.rank = comm_roles_student_index(roles);
        st = student_setup(&s, resume_arg);
        /* the teachers learn where to start from the first student */
        int64_t start = s.start_step;
        if (st == RT_OK && cfg->distill.teachers > 0)
            st = comm_bcast_world(&start, sizeof start, cfg->distill.teachers, roles);
        if (st == RT_OK) st = student_train(&s, stopped);
        student_run_free(&s);
    } else {
        data_shard *train = NULL;
        int64_t start = 0;
        student_config sc, tc;
        st = data_shard_open(cfg->data.train, &train);
        if (st == RT_OK) st = trainer_run_model_config(cfg, data_shard_vocab_size(train), &sc);
        if (st == RT_OK) st = trainer_check_teacher(cfg, &sc, &tc);
        if (st == RT_OK)
            st = comm_bcast_world(&start, sizeof start, cfg->distill.teachers, roles);
        if (st == RT_OK) st = teacher_serve(cfg, roles, start, train, &sc, stopped);
        data_shard_close(train);
    }
    return st;
}

int trainer_cmd_train(int argc, char **argv) {
    /* first of all: a signal during start-up (MPI_Init, loading) must
     * not kill the run either; it stops it after the first step */
    install_stop_handlers();
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_train, argc, argv, &a);
    if (rc >= 0) return rc;
    int n_sets = 0;
    const char *const *sets = cli_list(a, "set", &n_sets);
    trainer_config cfg;
    rt_status st = trainer_config_load(cli_str(a, "config"), sets, n_sets, &cfg);
    const char *resume = cli_has(a, "resume") ? cli_str(a, "resume") : NULL;
    if (st == RT_OK && cfg.prune.method != TRAINER_PRUNE_NONE &&
        cfg.prune.schedule != TRAINER_PRUNE_SCHEDULE_GRADUAL)
        st = rt_fail(RT_ERR_UNSUPPORTED,
                     "prune.method: train prunes only with prune.schedule = gradual; for one-shot "
                     "pruning run `retort prune` on a checkpoint and fine-tune the result with "
                     "train.init (its masks stay fixed)");
    /* student_qat_enable refuses bf16 models; say so before any step runs
     * rather than at qat.start_step, hours into the run */
    if (st == RT_OK && cfg.qat.enabled && cfg.train.precision == TRAINER_PRECISION_BF16)
        st = rt_fail(RT_ERR_ARGS,
                     "qat.enabled = true needs train.precision = f32 (quantization-aware "
                     "training fake-quantizes f32 weights; bf16 students are not supported)");
    if (st == RT_OK && cfg.distill.teachers > 0 && !cfg.distill.teacher[0])
        st = rt_fail(RT_ERR_ARGS, "distill.teachers = %d needs distill.teacher (a checkpoint)",
                     cfg.distill.teachers);
    if (st == RT_OK && cfg.distill.labels_dir[0] && cfg.distill.teachers > 0)
        st = rt_fail(RT_ERR_ARGS,
                     "distill.labels_dir trains from a label cache without teacher ranks: set "
                     "distill.teachers = 0 (or drop labels_dir to distill online)");
    if (st == RT_OK && cfg.distill.labels_dir[0] && cfg.distill.n_feature_pairs > 0)
        st = rt_fail(RT_ERR_UNSUPPORTED,
                     "distill.feature_map: a label cache (distill.labels_dir) holds soft labels "
                     "only; distill with feature maps online (distill.teachers > 0)");
    if (st != RT_OK) {
        cli_args_free(a);
        return rt_report(st);
    }
    if ((st = comm_init(&argc, &argv)) != RT_OK) {
        cli_args_free(a);
        return rt_report(st);
    }
    comm_roles *roles = NULL;
    int stopped = 0;
    st = comm_set_timeout(cfg.distill.timeout);
    if (st == RT_OK) st = comm_roles_create(MPI_COMM_WORLD, cfg.distill.teachers, &roles);
    if (st == RT_OK) {
        st = train_run(&cfg, resume, roles, &stopped);
    }
    if (st != RT_OK) {
        int size = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        /* alone, a plain error exit; with peers, end the whole job so that
         * nobody waits for this rank until a timeout */
        if (size > 1) comm_abort(st == RT_ERR_ARGS ? 2 : 1, NULL);
        cli_args_free(a);
        comm_roles_destroy(roles);
        comm_finalize();
        return rt_report(st);
    }
    cli_args_free(a);
    comm_roles_destroy(roles);
    comm_finalize();
    return stopped ? TRAINER_EXIT_STOPPED : 0;
}
