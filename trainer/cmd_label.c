/* `retort label`: the teacher's soft labels of a run's training windows,
 * computed once into an offline cache (labels_cache.h) that `retort train`
 * reads with distill.labels_dir = DIR instead of running teacher ranks.
 *
 * Every rank is a teacher: the chunks (chunk_steps steps each) are dealt
 * round-robin over the ranks. A step's G rows are those of the run's
 * sampler (data_sampler_global_windows, rank 0's rows first) and go through
 * the teacher in micro-batches of train.micro_batch rows (train.batch when
 * 0), as a one-student online run does, with the same sampling seeds
 * (teacher_run): training from the cache then gives the same weights as
 * that online run, bit for bit. Rerunning after a kill keeps every chunk
 * that is on disk and verifies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "cli.h"
#include "cmds.h"
#include "comm.h"
#include "config.h"
#include "data.h"
#include "labels_cache.h"
#include "teacher.h"
#include "train_internal.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static rt_status label_run(const trainer_config *cfg, const char *out, int chunk_steps,
                           comm_roles *roles) {
    rt_status st = RT_OK;
    const int rank = comm_roles_student_index(roles), P = comm_roles_n_students(roles);
    int32_t *inputs = NULL, *targets = NULL;
    data_shard *train = NULL;
    teacher *t = NULL;
    data_sampler *sampler = NULL;
    trainer_labels_writer *w = NULL;
    comm_record rec;
    comm_record_init(&rec);
    student_config sc, tcm;
    if ((st = data_shard_open(cfg->data.train, &train)) != RT_OK) goto cleanup;
    if ((st = trainer_run_model_config(cfg, data_shard_vocab_size(train), &sc)) != RT_OK)
        goto cleanup;
    if ((st = trainer_check_teacher(cfg, &sc, &tcm)) != RT_OK) goto cleanup;
    if (cfg->distill.n_feature_pairs > 0) {
        st = rt_fail(RT_ERR_UNSUPPORTED,
                     "distill.feature_map: label caches hold soft labels only; distill with "
                     "feature maps online (distill.teachers > 0)");
        goto cleanup;
    }
    const int G = cfg->train.batch, T = sc.seq_len, V = sc.vocab_size;
    const int mb = cfg->train.micro_batch > 0 ? cfg->train.micro_batch : G;
    if (mb > G || G % mb != 0) {
        st = rt_fail(RT_ERR_ARGS, "train.micro_batch = %d must divide train.batch = %d", mb, G);
        goto cleanup;
    }
    const teacher_config tc = trainer_teacher_config(cfg, &tcm, mb);
    const int W = teacher_label_width(&tc);
    trainer_labels_meta meta;
    if ((st = trainer_labels_meta_make(cfg, &tc, T, &meta)) != RT_OK) goto cleanup;
    meta.chunk_steps = chunk_steps;

    /* rank 0 creates (or checks) the cache before the others open it */
    if (rank == 0) st = trainer_labels_writer_open(out, &meta, 1, cfg->distill.zstd_level, &w);
    if (st != RT_OK) goto cleanup;
    double sync = 0.0; /* an all-reduce as the barrier */
    if ((st = comm_allreduce_sum_double(&sync, 1, roles)) != RT_OK) goto cleanup;
    if (rank != 0 &&
        (st = trainer_labels_writer_open(out, &meta, 0, cfg->distill.zstd_level, &w)) != RT_OK)
        goto cleanup;

    /* loaded as teacher ranks load it (train.c teacher_serve) */
    student_model *tm = NULL;
    st = ckpt_load_model_window(cfg->distill.teacher, T, mb,
                                cfg->distill.teacher_precision == TRAINER_PRECISION_BF16
                                    ? STUDENT_BF16
                                    : STUDENT_F32,
                                0, &tm, NULL);
    if (st != RT_OK) goto cleanup;
    if ((st = teacher_create_with(&tc, tm, &t)) != RT_OK) goto cleanup;
    if ((st = data_sampler_create(cfg->data.train, data_shard_n_tokens(train), T, G, 1, 0,
                                  (uint64_t)cfg->train.seed, &sampler)) != RT_OK)
        goto cleanup;
    inputs = malloc((size_t)G * T * sizeof *inputs);
    targets = malloc((size_t)G * T * sizeof *targets);
    if (!inputs || !targets) {
        st = rt_fail(RT_ERR_NOMEM, "out of memory for %d rows of %d tokens", G, T);
        goto cleanup;
    }
    const comm_record_shape shape = trainer_record_shape(teacher_cfg(t), G, T, 0);
    if ((st = comm_record_reserve_shape(&rec, &shape)) != RT_OK) goto cleanup;
    const size_t hw = (size_t)rec.hidden_width * (rec.hidden == COMM_HIDDEN_BF16 ? 2 : 1);
    rec.temperature = tc.temperature;
    rec.student = 0;

    const int64_t n_chunks = trainer_labels_n_chunks(&meta);
    double stats[4] = {0, 0, 0, 0}; /* chunks made, chunks kept, tokens, seconds */
    const double t0 = now_s();
    for (int64_t c = rank; c < n_chunks; c += P) {
        if (trainer_labels_chunk_done(w, c)) {
            stats[1] += 1;
            continue;
        }
        const int64_t first = c * chunk_steps;
        const int64_t last = first + chunk_steps < meta.steps ? first + chunk_steps : meta.steps;
        for (int64_t step = first; step < last; step++) {
            if ((st = data_sampler_read(sampler, train, step, inputs, targets)) != RT_OK ||
                (st = data_sampler_windows(sampler, step, rec.starts)) != RT_OK)
                goto cleanup;
            for (int j = 0; j < G / mb; j++) {
                const size_t p0 = (size_t)j * mb * T;
                /* micro-batch j's rows of the step's record */
                const teacher_out o = {
                    .ids = rec.ids + p0 * W,
                    .logp = rec.logprobs + p0 * W,
                    .tail = rec.tail ? rec.tail + p0 : NULL,
                    .hstate = rec.hstate ? (char *)rec.hstate + p0 * hw : NULL,
                    .hscale = rec.hscale ? rec.hscale + p0 : NULL,
                };
                st = teacher_run(t, inputs + p0, mb, (uint64_t)cfg->train.seed, step,
                                 rec.starts + (size_t)j * mb, &o);
                if (st != RT_OK) goto cleanup;
            }
            rec.step = step;
            if ((st = trainer_labels_append(w, &rec)) != RT_OK) goto cleanup;
            stats[2] += (double)G * T;
        }
        if ((st = trainer_labels_commit_chunk(w, c)) != RT_OK) goto cleanup;
        stats[0] += 1;
        if (rank == 0)
            fprintf(stderr, "label: chunk %lld/%lld (steps %lld..%lld) written\n",
                    (long long)c + 1, (long long)n_chunks, (long long)first + 1, (long long)last);
    }
    stats[3] = now_s() - t0;
    const double tok_s = stats[3] > 0 ? stats[2] / stats[3] : 0.0;
    double sums[4] = {stats[0], stats[1], stats[2], tok_s};
    if ((st = comm_allreduce_sum_double(sums, 4, roles)) != RT_OK) goto cleanup;
    if (rank == 0) {
        int64_t bytes = 0;
        if ((st = trainer_labels_finish(out, &meta, &bytes)) != RT_OK) goto cleanup;
        const double pos = (double)meta.steps * G * T;
        fprintf(stderr,
                "label: %s: %lld steps x %d rows x %d tokens, %s labels of width %d: %.1f MB "
                "(%.1f bytes/token; dense f32: %d); %lld chunks computed, %lld kept; %.0f "
                "tokens/s per rank (%d rank(s))\n",
                out, (long long)meta.steps, G, T, trainer_labels_scheme_name(cfg->distill.labels),
                W ? W : rec.hidden_width, (double)bytes / 1e6, (double)bytes / pos, 4 * V, (long long)sums[0],
                (long long)sums[1], sums[3] / P, P);
    }
cleanup:
    trainer_labels_writer_close(w);
    data_sampler_destroy(sampler);
    teacher_destroy(t);
    comm_record_free(&rec);
    free(inputs);
    free(targets);
    data_shard_close(train);
    return st;
}

int trainer_cmd_label(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_label, argc, argv, &a);
    if (rc >= 0) return rc;
    int n_sets = 0;
    const char *const *sets = cli_list(a, "set", &n_sets);
    trainer_config cfg;
    rt_status st = trainer_config_load(cli_str(a, "config"), sets, n_sets, &cfg);
    const int chunk_steps = (int)cli_int(a, "chunk-steps");
    if (st == RT_OK && !cfg.distill.teacher[0])
        st = rt_fail(RT_ERR_ARGS, "distill.teacher: `retort label` needs the teacher checkpoint");
    if (st == RT_OK && (st = comm_init(&argc, &argv)) == RT_OK) {
        comm_roles *roles = NULL;
        st = comm_roles_create(MPI_COMM_WORLD, 0, &roles);
        if (st == RT_OK) st = label_run(&cfg, cli_str(a, "out"), chunk_steps, roles);
        if (st != RT_OK) {
            int size = 1;
            MPI_Comm_size(MPI_COMM_WORLD, &size);
            if (size > 1) comm_abort(st == RT_ERR_ARGS ? 2 : 1, NULL);
        }
        comm_roles_destroy(roles);
        comm_finalize();
    }
    cli_args_free(a);
    return st == RT_OK ? 0 : rt_report(st);
}
