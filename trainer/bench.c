/* `retort bench`: speed of retort's engines on synthetic data.
 *
 * `retort bench student` times exactly what a student rank does per step in
 * distillation, on random tokens and random dense teacher logits turned
 * into soft labels once (the teacher's work is not part of the step):
 * forward, loss = alpha*T^2*KL(p_T || q_T) + (1-alpha)*CE (fused vocabulary
 * kernel student_loss_distill writing dlogits), backward, gradient clipping +
 * AdamW + zeroing.
 * tests/bench/bench_student_torch.py runs the same step in PyTorch and
 * tests/bench/bench_student.sh runs both side by side.
 *
 * Reported FLOPs (stated in the output as the formula): 6 * N * tokens for
 * the matmul parameters (N = all parameters except wpe, which is a lookup;
 * wte counts once, as the LM head) plus 12 * L * B * T^2 * C for attention
 * (QK^T and PV over the full T x T, forward + 2x backward: the usual MFU
 * convention; retort computes only the causal staircase of query blocks,
 * about (nb + 1) / 2nb of it, so that saving shows as a higher fraction).
 * Every figure is also given in CPU time (student_cpu_seconds): the best
 * step's process CPU time over the thread count, against the peak matmul's
 * in CPU time, which time slices lost to other processes on a shared
 * machine do not move (run with OMP_WAIT_POLICY=passive). It is an upper
 * bound of the wall-clock fraction on an idle machine: a serial stretch
 * costs one thread's CPU time but every thread's wall time. */
#include "bench.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errno.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "data.h"
#include "labels_cache.h"
#include "cli.h"
#include "rt_rand.h"
#include "rt_status.h"
#include "student.h"
#include "teacher.h"
#include "train_internal.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double bench_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* ---------------------------------------------------------- bench peak */

/* The default shape of the peak measurement: large enough for oneDNN's
 * best kernels, small enough (~0.1 s per f32 run on 2 cores) that every
 * bench can measure its own peak in the same run. */
enum { PEAK_M = 4096, PEAK_K = 2048, PEAK_N = 2048, PEAK_REPS = 3 };

static const char *const peak_unit[STUDENT_PEAK_KINDS] = {"GFLOP/s", "GFLOP/s", "GOP/s"};

/* The peak of `kind` that a bench divides its throughput by: `given` when
 * > 0 (--peak), else measured now at the default shape. */
static rt_status bench_peak_of(student_peak_kind kind, double given, double *peak,
                               double *cpu_peak) {
    if (given > 0.0) {
        *peak = *cpu_peak = given;
        return RT_OK;
    }
    return student_matmul_peak(kind, PEAK_M, PEAK_K, PEAK_N, PEAK_REPS, peak, NULL, cpu_peak);
}

/* FLOPs of one forward over B full windows: 2 * N * tokens for the matmul
 * parameters (N = all parameters but wpe, a lookup; wte counts once, as the
 * LM head) plus 4 * L * B * T^2 * A for attention (QK^T and PV over the
 * full T x T, of which the causal blocks compute about half). A training
 * step is 3x this (backward = 2x). */
static double bench_forward_flops(const student_config *c, int B) {
    const double wpe = (double)c->seq_len * c->d_model;
    const double N = (double)student_param_count(c) - wpe, tok = (double)B * c->seq_len;
    return 2.0 * N * tok +
           4.0 * c->n_layer * tok * (double)c->seq_len * (double)student_attn_width(c);
}

static const cli_option peak_options[] = {
    {.name = "m", .type = CLI_INT, .metavar = "N", .def = "4096", .min = 1, .max = 1 << 20,
     .help = "Rows M of the source (tokens, in a model)."},
    {.name = "k", .type = CLI_INT, .metavar = "N", .def = "2048", .min = 1, .max = 1 << 20,
     .help = "Reduction size K."},
    {.name = "n", .type = CLI_INT, .metavar = "N", .def = "2048", .min = 1, .max = 1 << 20,
     .help = "Columns N of the weights."},
    {.name = "reps", .type = CLI_INT, .metavar = "N", .def = "3", .min = 1, .max = 10000,
     .help = "Timed runs per type after one untimed run; the best counts."},
    {.name = "type", .type = CLI_STRING, .metavar = "T", .def = "all",
     .help = "f32, bf16, u8s8 or all."},
    {.name = "json", .type = CLI_BOOL, .help = "Print one JSON object instead of text."},
    {0},
};

static const cli_spec peak_spec = {
    .name = "bench peak",
    .description =
        "Measure this machine's oneDNN matmul peak with the threads in use (OMP_NUM_THREADS): "
        "one M x K x N matmul per element type (f32; bf16 with f32 accumulation; u8 x s8 with "
        "s32 accumulation and f32 output, as int8 deploy files run), weights pre-packed in "
        "oneDNN's layout, best of --reps runs. 'retort bench student' and 'bench infer' "
        "divide their throughput by it (measured in their own run unless --peak is given).",
    .options = peak_options,
    .max_positional = 0,
    .epilog = "example:\n  OMP_NUM_THREADS=2 retort bench peak --m 4096 --k 2048 --n 2048 --json\n",
};

int trainer_bench_peak(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&peak_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    rt_status st = RT_OK;
    const int64_t M = cli_int(a, "m"), K = cli_int(a, "k"), N = cli_int(a, "n");
    const int reps = (int)cli_int(a, "reps"), json = cli_flag(a, "json");
    const char *type = cli_str(a, "type");
    int want[STUDENT_PEAK_KINDS] = {0}, any = 0;
    for (int k = 0; k < STUDENT_PEAK_KINDS; k++)
        any |= want[k] = !strcmp(type, "all") || !strcmp(type, student_peak_name(k));
    if (!any) {
        st = rt_fail(RT_ERR_ARGS, "bench peak: --type '%s' is not f32, bf16, u8s8 or all", type);
        goto cleanup;
    }
    double g[STUDENT_PEAK_KINDS] = {0}, ms[STUDENT_PEAK_KINDS] = {0};
    for (int k = 0; k < STUDENT_PEAK_KINDS; k++)
        if (want[k] && (st = student_matmul_peak(k, M, K, N, reps, &g[k], &ms[k], NULL)) != RT_OK)
            goto cleanup;
    if (json) {
        printf("{\"target\": \"peak\", \"threads\": %d, \"m\": %lld, \"k\": %lld, "
               "\"n\": %lld, \"reps\": %d",
               omp_get_max_threads(), (long long)M, (long long)K, (long long)N, reps);
        for (int k = 0; k < STUDENT_PEAK_KINDS; k++)
            if (want[k])
                printf(", \"%s_%s\": %.1f, \"%s_ms\": %.3f", student_peak_name(k),
                       k == STUDENT_PEAK_U8S8 ? "gop_per_s" : "gflop_per_s", g[k],
                       student_peak_name(k), ms[k]);
        printf("}\n");
    } else {
        printf("bench peak (%d threads): oneDNN matmul %lld x %lld x %lld, best of %d\n",
               omp_get_max_threads(), (long long)M, (long long)K, (long long)N, reps);
        for (int k = 0; k < STUDENT_PEAK_KINDS; k++)
            if (want[k])
                printf("  %-5s %9.1f %-8s (%.2f ms)\n", student_peak_name(k), g[k], peak_unit[k],
                       ms[k]);
    }
cleanup:
    cli_args_free(a);
    return rt_report(st);
}

/* ------------------------------------------------------- bench student */

static const cli_option student_options[] = {
    {.name = "layers", .type = CLI_INT, .metavar = "N", .def = "4", .min = 1, .max = 1024,
     .help = "Transformer blocks."},
    {.name = "dim", .type = CLI_INT, .metavar = "N", .def = "256", .min = 1, .max = 65536,
     .help = "Residual width d_model."},
    {.name = "heads", .type = CLI_INT, .metavar = "N", .def = "4", .min = 1, .max = 1024,
     .help = "Attention heads (must divide --dim)."},
    {.name = "ff", .type = CLI_INT, .metavar = "N", .def = "1024", .min = 1, .max = 262144,
     .help = "MLP hidden width d_ff."},
    {.name = "vocab", .type = CLI_INT, .metavar = "N", .def = "8192", .min = 2, .max = 1048576,
     .help = "Vocabulary size."},
    {.name = "seq", .type = CLI_INT, .metavar = "N", .def = "256", .min = 1, .max = 65536,
     .help = "Sequence length T of every row."},
    {.name = "batch", .type = CLI_INT, .metavar = "N", .def = "8", .min = 1, .max = 65536,
     .help = "Rows per step (one micro-batch)."},
    {.name = "steps", .type = CLI_INT, .metavar = "N", .def = "10", .min = 1, .max = 100000,
     .help = "Timed steps; the report averages them."},
    {.name = "warmup", .type = CLI_INT, .metavar = "N", .def = "2", .min = 0, .max = 100000,
     .help = "Untimed steps first (oneDNN JIT, page faults)."},
    {.name = "bf16", .type = CLI_BOOL,
     .help = "bf16 matmuls with f32 accumulation and f32 master weights (default f32)."},
    {.name = "recompute", .type = CLI_BOOL,
     .help = "Activation recomputation per block (train.recompute): keep one block's "
             "activations and recompute each block's forward before its backward."},
    {.name = "temperature", .type = CLI_REAL, .metavar = "T", .def = "2", .min = 0.01, .max = 100,
     .help = "Distillation temperature."},
    {.name = "alpha", .type = CLI_REAL, .metavar = "A", .def = "0.5", .min = 0, .max = 1,
     .help = "Weight of the KL term; CE gets 1 - A."},
    {.name = "topk", .type = CLI_INT, .metavar = "K", .def = "0", .min = 0, .max = 1048576,
     .help = "Soft labels as top-K + tail (0 = dense, K = vocab)."},
    {.name = "seed", .type = CLI_INT, .metavar = "S", .def = "1234",
     .help = "Seed of the weights and the random data."},
    {.name = "profile", .type = CLI_BOOL,
     .help = "Also report time per kernel class (matmuls, attention, LayerNorm, loss "
             "kernels, ...) per step."},
    {.name = "peak", .type = CLI_REAL, .metavar = "GFLOPS", .def = "0", .min = 0, .max = 1e9,
     .help = "Matmul peak of this machine for the precision run (f32 or bf16), as 'retort "
             "bench peak' prints it; 0 = measure it in this run (about a second)."},
    {.name = "json", .type = CLI_BOOL, .help = "Print one JSON object instead of text."},
    {0},
};

static const cli_spec student_spec = {
    .name = "bench student",
    .description =
        "Time a full distillation step of the student on random data: forward, loss = "
        "alpha*T^2*KL(p_T || q_T) + (1-alpha)*CE against random dense teacher soft labels, "
        "backward, gradient clipping to norm 1 and AdamW. Reports tokens/s, step time, a "
        "per-phase breakdown, achieved GFLOP/s (6*N*tokens + attention) and its fraction of "
        "the matmul peak of the precision run (see 'retort bench peak'), the model's "
        "activation memory and the process's peak RSS (which includes the random soft "
        "labels: tokens x topk floats). Threads: OMP_NUM_THREADS.",
    .options = student_options,
    .max_positional = 0,
    .epilog = "example:\n  retort bench student --layers 4 --dim 256 --heads 4 --ff 1024 "
              "--vocab 8192 --seq 256 --batch 8 --steps 10 --bf16 --json\n",
};

enum { PH_FWD, PH_LOSS, PH_BWD, PH_OPT, N_PHASES };
static const char *const phase_names[N_PHASES] = {"forward", "loss", "backward", "optimizer"};

int trainer_bench_student(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&student_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    rt_status st = RT_OK;
    student_model *m = NULL;
    int32_t *tokens = NULL, *targets = NULL, *ids = NULL;
    float *tlogits = NULL, *logp = NULL, *tail = NULL;

    student_config c = {
        .n_layer = (int)cli_int(a, "layers"), .n_head = (int)cli_int(a, "heads"),
        .d_model = (int)cli_int(a, "dim"),    .d_ff = (int)cli_int(a, "ff"),
        .vocab_size = (int)cli_int(a, "vocab"), .seq_len = (int)cli_int(a, "seq"),
    };
    const int B = (int)cli_int(a, "batch"), steps = (int)cli_int(a, "steps"),
              warmup = (int)cli_int(a, "warmup"), json = cli_flag(a, "json");
    const int bf16 = cli_flag(a, "bf16"), profile = cli_flag(a, "profile"),
              recompute = cli_flag(a, "recompute");
    const float T = (float)cli_real(a, "temperature"), alpha = (float)cli_real(a, "alpha");
    int k = (int)cli_int(a, "topk");
    uint64_t seed = (uint64_t)cli_int(a, "seed");
    if (k == 0 || k > c.vocab_size) k = c.vocab_size;
    const int n = B * c.seq_len, V = c.vocab_size;

    if ((st = student_create(&c, B, bf16 ? STUDENT_BF16 : STUDENT_F32,
                             STUDENT_TRAIN | (recompute ? STUDENT_RECOMPUTE : 0), &m)) != RT_OK)
        goto cleanup;
    student_init_weights(m, seed);
    tokens = malloc((size_t)n * sizeof *tokens);
    targets = malloc((size_t)n * sizeof *targets);
    tlogits = malloc((size_t)n * V * sizeof *tlogits);
    /* dense soft labels carry no ids: tokens are in vocabulary order */
    ids = k < V ? malloc((size_t)n * k * sizeof *ids) : NULL;
    logp = malloc((size_t)n * k * sizeof *logp);
    tail = malloc((size_t)n * sizeof *tail);
    if (!tokens || !targets || !tlogits || (k < V && !ids) || !logp || !tail) {
        st = rt_fail(RT_ERR_NOMEM, "bench student: out of memory for %d x %d soft labels", n, V);
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        tokens[i] = (int32_t)(rt_splitmix64(&seed) % (uint64_t)V);
        targets[i] = (int32_t)(rt_splitmix64(&seed) % (uint64_t)V);
    }
    /* teacher logits ~ N(0, 2^2): soft labels with a realistic spread */
    for (size_t i = 0; i < (size_t)n * V; i += 2) {
        double u1 = ((double)(rt_splitmix64(&seed) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(rt_splitmix64(&seed) >> 11) * 0x1.0p-53;
        double r = 2.0 * sqrt(-2.0 * log(u1));
        tlogits[i] = (float)(r * cos(2.0 * M_PI * u2));
        if (i + 1 < (size_t)n * V) tlogits[i + 1] = (float)(r * sin(2.0 * M_PI * u2));
    }
    st = student_teacher_topk(student_loss_workspace(m), tlogits, n, V, T, k, ids, logp, tail);
    if (st != RT_OK) goto cleanup;
    free(tlogits);
    tlogits = NULL;
    const student_peak_kind pk = bf16 ? STUDENT_PEAK_BF16 : STUDENT_PEAK_F32;
    double peak = 0.0, cpu_peak = 0.0;
    if ((st = bench_peak_of(pk, cli_real(a, "peak"), &peak, &cpu_peak)) != RT_OK) goto cleanup;

    const float lr = 3e-4f, clip = 1.0f;
    double ph[N_PHASES] = {0}, loss = 0.0, t_total = 0.0, t_best = 0.0, cpu_best = 0.0;
    int n_clipped = 0; /* timed steps whose gradient was scaled by the clip */
    for (int s = 0; s < warmup + steps; s++) {
        double t[N_PHASES + 1];
        if (s == warmup) student_profile_reset(m, profile);
        const double c0 = student_cpu_seconds();
        t[0] = now_s();
        if ((st = student_forward(m, tokens, B)) != RT_OK) goto cleanup;
        t[1] = now_s();
        float *lg = student_logits(m), *dl = student_dlogits(m);
        double ce = 0.0, kl = 0.0;
        st = student_loss_distill(student_loss_workspace(m), lg, targets, n, V, T, ids, logp, tail,
                                  k, dl, (1.0f - alpha) / (float)n, alpha * T * T / (float)n, &ce,
                                  &kl);
        if (st != RT_OK) goto cleanup;
        loss = ((1.0 - alpha) * ce + alpha * T * T * kl) / n;
        t[2] = now_s();
        if ((st = student_backward(m, B)) != RT_OK) goto cleanup;
        t[3] = now_s();
        double norm = student_grad_norm(m);
        if (norm > clip) student_grad_scale(m, (float)(clip / norm));
        if (s >= warmup) n_clipped += norm > clip;
        student_adamw_step(m, student_lr_at(s + 1, lr, 1, warmup + steps, 0.1f), 0.9f, 0.95f, 1e-8f, 0.1f,
                           s + 1);
        student_zero_grad(m);
        t[4] = now_s();
        const double cpu = student_cpu_seconds() - c0;
        if (s >= warmup) {
            for (int p = 0; p < N_PHASES; p++) ph[p] += t[p + 1] - t[p];
            t_total += t[4] - t[0];
            if (t_best == 0.0 || t[4] - t[0] < t_best) t_best = t[4] - t[0];
            if (cpu_best == 0.0 || cpu < cpu_best) cpu_best = cpu;
        }
    }

    {
        const double step_s = t_total / steps, tok = (double)n;
        const double flops = 3.0 * bench_forward_flops(&c, B);
        /* CPU time per step over the thread count: what a step costs when
         * no time slice goes to another process (see student_matmul_peak) */
        const double cpu_step_s = cpu_best / omp_get_max_threads();
        /* The optimizer phase is bound by memory traffic: per parameter,
         * the norm reads g (4 B), clipping reads and writes g (8 B, on the
         * steps that clip), AdamW reads p, g, m, v and writes p, m, v
         * (28 B; + 2 B of bf16 weights in bf16 mode), zeroing writes g (4 B). */
        const double opt_bytes = (double)student_param_count(&c) *
                                 (36.0 + (bf16 ? 2.0 : 0.0) + 8.0 * n_clipped / steps);
        const double opt_gbs = opt_bytes / (ph[PH_OPT] / steps) * 1e-9;
        const double act_mb = (double)student_activation_bytes(m) * 1e-6,
                     rss_mb = bench_peak_rss_mb() * 1.048576;
        if (json) {
            printf("{\"target\": \"student\", \"impl\": \"retort\", \"precision\": \"%s\", "
                   "\"layers\": %d, \"dim\": %d, \"heads\": %d, \"ff\": %d, \"vocab\": %d, "
                   "\"seq\": %d, \"batch\": %d, \"steps\": %d, \"warmup\": %d, \"threads\": %d, "
                   "\"topk\": %d, \"params\": %zu, \"tokens_per_step\": %d, "
                   "\"step_ms\": %.3f, \"tokens_per_s\": %.1f, \"gflop_per_step\": %.3f, "
                   "\"gflop_per_s\": %.1f, \"peak_gflop_per_s\": %.1f, \"peak_measured\": %s, "
                   "\"fraction_of_peak\": %.4f, \"best_step_ms\": %.3f, "
                   "\"cpu_step_ms\": %.3f, \"peak_cpu_gflop_per_s\": %.1f, "
                   "\"fraction_of_peak_cpu\": %.4f, \"optimizer_gb_per_s\": %.2f, "
                   "\"recompute\": %s, \"activation_mb\": %.1f, \"peak_rss_mb\": %.1f, "
                   "\"phase_ms\": {",
                   bf16 ? "bf16" : "f32", c.n_layer, c.d_model, c.n_head, c.d_ff, V, c.seq_len, B,
                   steps, warmup, omp_get_max_threads(), k, student_param_count(&c), n,
                   1e3 * step_s, tok / step_s, flops * 1e-9, flops * 1e-9 / step_s, peak,
                   cli_real(a, "peak") > 0.0 ? "false" : "true", flops * 1e-9 / step_s / peak,
                   1e3 * t_best, 1e3 * cpu_step_s, cpu_peak,
                   flops * 1e-9 / cpu_step_s / cpu_peak, opt_gbs,
                   recompute ? "true" : "false", act_mb, rss_mb);
            for (int p = 0; p < N_PHASES; p++)
                printf("%s\"%s\": %.3f", p ? ", " : "", phase_names[p], 1e3 * ph[p] / steps);
            printf("}");
            if (profile) {
                const char *names[32];
                double sec[32];
                int np = student_profile_get(m, names, sec, 32);
                printf(", \"kernel_ms\": {");
                for (int i = 0; i < np; i++)
                    printf("%s\"%s\": %.3f", i ? ", " : "", names[i], 1e3 * sec[i] / steps);
                printf("}");
            }
            printf(", \"loss\": %.6f}\n", loss);
        } else {
            printf("bench student (%s, %d threads): L=%d C=%d H=%d F=%d V=%d T=%d B=%d, %zu "
                   "parameters\n",
                   bf16 ? "bf16" : "f32", omp_get_max_threads(), c.n_layer, c.d_model, c.n_head,
                   c.d_ff, V, c.seq_len, B, student_param_count(&c));
            printf("  step %.1f ms, %.0f tokens/s, %.1f GFLOP/s (%.2f GFLOP per step)\n",
                   1e3 * step_s, tok / step_s, flops * 1e-9 / step_s, flops * 1e-9);
            printf("  %.1f%% of the %s matmul peak (%.1f GFLOP/s, %s)\n",
                   100.0 * flops * 1e-9 / step_s / peak, student_peak_name(pk), peak,
                   cli_real(a, "peak") > 0.0 ? "given" : "measured in this run");
            printf("  best step %.1f ms; CPU time: %.1f ms per step and thread, %.1f%% of the "
                   "peak in CPU time (%.1f GFLOP/s)\n",
                   1e3 * t_best, 1e3 * cpu_step_s, 100.0 * flops * 1e-9 / cpu_step_s / cpu_peak,
                   cpu_peak);
            for (int p = 0; p < N_PHASES; p++)
                printf("  %-10s %8.2f ms%s", phase_names[p], 1e3 * ph[p] / steps,
                       p == PH_OPT ? "" : "\n");
            printf(" (%.2f GB/s: %.0f MB of parameters, gradients and moments)\n", opt_gbs,
                   opt_bytes * 1e-6);
            printf("  activations %.0f MB%s, peak RSS %.0f MB\n", act_mb,
                   recompute ? " (recomputed per block)" : "", rss_mb);
            if (profile) {
                const char *names[32];
                double sec[32];
                int np = student_profile_get(m, names, sec, 32);
                printf("  kernels per step (forward, backward, optimizer):\n");
                for (int i = 0; i < np; i++)
                    printf("    %-24s %8.2f ms\n", names[i], 1e3 * sec[i] / steps);
            }
            printf("  loss after %d steps: %.4f\n", warmup + steps, loss);
        }
    }
cleanup:
    student_destroy(m);
    free(tokens);
    free(targets);
    free(tlogits);
    free(ids);
    free(logp);
    free(tail);
    cli_args_free(a);
    return rt_report(st);
}

/* --------------------------------------------------------- bench infer */

/* `retort bench infer`: inference speed of a checkpoint or deploy file as
 * `retort eval` and `retort generate` run it (ckpt_load_model, so int8
 * deploy files run their int8 layers): prompt processing is the full-window
 * forward (B rows of seq_len tokens, what eval and a prompt cost), the
 * headline tokens_per_s; generation is KV-cache decoding, one token per
 * step after a prompt, reported separately because it is bound by memory
 * traffic rather than by matmul throughput. Random tokens: speed does not
 * depend on them. */
static const cli_option infer_options[] = {
    {.name = "model", .type = CLI_STRING, .flags = CLI_REQUIRED, .metavar = "FILE",
     .help = "Checkpoint or deploy file (f32 or int8)."},
    {.name = "batch", .type = CLI_INT, .metavar = "N", .def = "4", .min = 1, .max = 4096,
     .help = "Rows of seq_len tokens per prompt-processing forward."},
    {.name = "prompt-tokens", .type = CLI_INT, .metavar = "N", .def = "0", .min = 0,
     .max = 1048576,
     .help = "Prompt length before generation (0 = seq_len - new tokens, at least 1)."},
    {.name = "new-tokens", .type = CLI_INT, .metavar = "N", .def = "64", .min = 1, .max = 1048576,
     .help = "Tokens generated one at a time with the KV cache (capped at seq_len - prompt)."},
    {.name = "steps", .type = CLI_INT, .metavar = "N", .def = "5", .min = 1, .max = 100000,
     .help = "Timed prompt forwards and generation runs; the report averages them."},
    {.name = "warmup", .type = CLI_INT, .metavar = "N", .def = "1", .min = 0, .max = 100000,
     .help = "Untimed runs of each first (oneDNN JIT, page faults)."},
    {.name = "bf16", .type = CLI_BOOL,
     .help = "Run an f32 file's matmuls in bf16 (int8 files run int8 layers and an int8 head)."},
    {.name = "seed", .type = CLI_INT, .metavar = "S", .def = "1234", .help = "Seed of the tokens."},
    {.name = "profile", .type = CLI_BOOL,
     .help = "Also report the prompt forward's time per kernel class (ms per forward)."},
    {.name = "peak", .type = CLI_REAL, .metavar = "GFLOPS", .def = "0", .min = 0, .max = 1e9,
     .help = "Matmul peak of this machine for the file's precision (f32, bf16; u8s8 for int8 "
             "files), as 'retort bench peak' prints it; 0 = measure it in this run."},
    {.name = "json", .type = CLI_BOOL, .help = "Print one JSON object instead of text."},
    {0},
};

static const cli_spec infer_spec = {
    .name = "bench infer",
    .description =
        "Time inference of a model file: prompt processing (full-window forward over --batch "
        "rows of seq_len tokens, tokens/s; the headline, with its GFLOP/s as a fraction of the "
        "matmul peak of the file's precision, u8s8 for int8) and generation (KV-cache decoding "
        "of --new-tokens after a --prompt-tokens prompt, tokens/s), on random tokens. Int8 "
        "deploy files run their int8 layers. Threads: OMP_NUM_THREADS.",
    .options = infer_options,
    .max_positional = 0,
    .epilog = "example:\n  retort bench infer --model student.int8.h5 --json\n",
};

int trainer_bench_infer(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&infer_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    rt_status st = RT_OK;
    student_model *m = NULL;
    student_kv *kv = NULL;
    int32_t *tokens = NULL;
    float *lg = NULL;
    const char *path = cli_str(a, "model");
    const int B = (int)cli_int(a, "batch"), steps = (int)cli_int(a, "steps"),
              warmup = (int)cli_int(a, "warmup"), json = cli_flag(a, "json"),
              profile = cli_flag(a, "profile");
    uint64_t seed = (uint64_t)cli_int(a, "seed");
    if ((st = ckpt_load_model(path, B, cli_flag(a, "bf16") ? STUDENT_BF16 : STUDENT_F32, 0, &m,
                              NULL)) != RT_OK)
        goto cleanup;
    const student_config c = *student_cfg(m);
    const int T = c.seq_len, V = c.vocab_size;
    int gen = (int)cli_int(a, "new-tokens"), prompt = (int)cli_int(a, "prompt-tokens");
    if (gen > T - 1) gen = T - 1;
    if (prompt == 0) prompt = T - gen;
    if (prompt > T - 1) prompt = T - 1;
    if (prompt + gen > T) gen = T - prompt;
    tokens = malloc((size_t)B * T * sizeof *tokens);
    lg = malloc((size_t)V * sizeof *lg);
    if (!tokens || !lg) {
        st = rt_fail(RT_ERR_NOMEM, "bench infer: out of memory");
        goto cleanup;
    }
    for (int i = 0; i < B * T; i++) tokens[i] = (int32_t)(rt_splitmix64(&seed) % (uint64_t)V);
    if ((st = student_infer_create(m, prompt + gen, &kv)) != RT_OK) goto cleanup;
    const int int8 = student_int8_enabled(m);
    const student_peak_kind pk = int8                                 ? STUDENT_PEAK_U8S8
                                 : student_prec(m) == STUDENT_BF16 ? STUDENT_PEAK_BF16
                                                                   : STUDENT_PEAK_F32;
    double peak = 0.0, cpu_peak = 0.0;
    if ((st = bench_peak_of(pk, cli_real(a, "peak"), &peak, &cpu_peak)) != RT_OK) goto cleanup;

    double t_prompt = 0.0, t_kvprompt = 0.0, t_gen = 0.0, cpu_prompt = 0.0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) student_profile_reset(m, profile);
        const double c0 = student_cpu_seconds(), t0 = now_s();
        if ((st = student_forward(m, tokens, B)) != RT_OK) goto cleanup;
        const double t1 = now_s(), c1 = student_cpu_seconds() - c0;
        if (s >= warmup && (cpu_prompt == 0.0 || c1 < cpu_prompt)) cpu_prompt = c1;
        /* generation: the prompt through the cache, then greedy decoding */
        student_infer_reset(kv);
        if ((st = student_infer_step(m, kv, tokens, prompt, lg)) != RT_OK) goto cleanup;
        const double t2 = now_s();
        for (int g = 0; g < gen; g++) {
            int32_t best = 0;
            for (int v = 1; v < V; v++) best = lg[v] > lg[best] ? v : best;
            if ((st = student_infer_step(m, kv, &best, 1, lg)) != RT_OK) goto cleanup;
        }
        const double t3 = now_s();
        if (s >= warmup) t_prompt += t1 - t0, t_kvprompt += t2 - t1, t_gen += t3 - t2;
    }
    {
        const long long bytes = (long long)ckpt_model_bytes(path);
        const double pp = (double)B * T * steps / t_prompt, gp = (double)gen * steps / t_gen;
        const double kp = (double)prompt * steps / t_kvprompt;
        const double gf = bench_forward_flops(&c, B) * steps / t_prompt * 1e-9;
        /* the best prompt's CPU time over the thread count (student_matmul_peak) */
        const double cpu_s = cpu_prompt / omp_get_max_threads();
        const double gf_cpu = bench_forward_flops(&c, B) / cpu_s * 1e-9;
        const char *prec = int8 ? "int8" : student_prec(m) == STUDENT_BF16 ? "bf16" : "f32";
        if (json)
            printf("{\"target\": \"infer\", \"model\": \"%s\", \"precision\": \"%s\", "
                   "\"params\": %zu, \"file_bytes\": %lld, \"layers\": %d, \"dim\": %d, "
                   "\"heads\": %d, \"ff\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, "
                   "\"threads\": %d, \"steps\": %d, \"tokens_per_s\": %.1f, "
                   "\"prompt_tokens_per_s\": %.1f, \"prompt_ms\": %.3f, \"kv_prompt_tokens\": %d, "
                   "\"kv_prompt_tokens_per_s\": %.1f, \"gen_tokens\": %d, "
                   "\"gen_tokens_per_s\": %.1f, \"gen_ms_per_token\": %.3f, "
                   "\"prompt_gflop_per_s\": %.1f, \"peak_type\": \"%s\", "
                   "\"peak_gflop_per_s\": %.1f, \"peak_measured\": %s, "
                   "\"fraction_of_peak\": %.4f, \"prompt_cpu_ms\": %.3f, "
                   "\"prompt_tokens_per_cpu_s\": %.1f, \"peak_cpu_gflop_per_s\": %.1f, "
                   "\"fraction_of_peak_cpu\": %.4f",
                   path, prec, student_param_count(&c), bytes, c.n_layer, c.d_model, c.n_head,
                   c.d_ff, V, T, B, omp_get_max_threads(), steps, pp, pp,
                   1e3 * t_prompt / steps, prompt, kp, gen, gp, 1e3 * t_gen / steps / gen, gf,
                   student_peak_name(pk), peak, cli_real(a, "peak") > 0.0 ? "false" : "true",
                   gf / peak, 1e3 * cpu_s, (double)B * T / cpu_s, cpu_peak, gf_cpu / cpu_peak);
        else {
            printf("bench infer %s (%s, %d threads): L=%d C=%d H=%d F=%d V=%d T=%d, %zu "
                   "parameters, %lld bytes\n",
                   path, prec, omp_get_max_threads(), c.n_layer, c.d_model, c.n_head, c.d_ff, V,
                   T, student_param_count(&c), bytes);
            printf("  prompt processing  %10.0f tokens/s  (%d x %d tokens in %.2f ms)\n", pp, B,
                   T, 1e3 * t_prompt / steps);
            printf("                     %10.1f GFLOP/s = %.1f%% of the %s matmul peak (%.1f, "
                   "%s)\n",
                   gf, 100.0 * gf / peak, student_peak_name(pk), peak,
                   cli_real(a, "peak") > 0.0 ? "given" : "measured in this run");
            printf("  prompt, CPU time   %10.0f tokens per thread-second (%.2f ms per thread), "
                   "%.1f%% of the peak in CPU time (%.1f)\n",
                   (double)B * T / cpu_s, 1e3 * cpu_s, 100.0 * gf_cpu / cpu_peak, cpu_peak);
            printf("  KV-cache prompt    %10.0f tokens/s  (%d tokens)\n", kp, prompt);
            printf("  generation         %10.0f tokens/s  (%.3f ms per token, %d tokens)\n", gp,
                   1e3 * t_gen / steps / gen, gen);
        }
        if (profile) {
            const char *names[32];
            double sec[32];
            const int np = student_profile_get(m, names, sec, 32);
            if (json) printf(", \"kernel_ms\": {");
            else printf("  prompt forward per kernel class:\n");
            for (int i = 0, k = 0; i < np; i++) {
                if (sec[i] == 0.0) continue; /* backward and optimizer classes */
                if (json) printf("%s\"%s\": %.3f", k++ ? ", " : "", names[i], 1e3 * sec[i] / steps);
                else printf("    %-24s %8.3f ms\n", names[i], 1e3 * sec[i] / steps);
            }
            if (json) printf("}");
        }
        if (json) printf("}\n");
    }
cleanup:
    student_infer_destroy(kv);
    student_destroy(m);
    free(tokens);
    free(lg);
    cli_args_free(a);
    return rt_report(st);
}

/* ---------------------------------------------------------- bench data */

static const cli_option data_options[] = {
    {.name = "tokens", .type = CLI_INT, .metavar = "N", .def = "100000000", .min = 2,
     .max = 1e13, .help = "Tokens in the synthetic train shard (2 bytes each at vocab <= 65536)."},
    {.name = "vocab", .type = CLI_INT, .metavar = "N", .def = "50257", .min = 2,
     .max = 2147483647, .help = "Vocabulary size of the shard."},
    {.name = "seq", .type = CLI_INT, .metavar = "N", .def = "1024", .min = 1, .max = 1 << 20,
     .help = "Window length T."},
    {.name = "batch", .type = CLI_INT, .metavar = "N", .def = "8", .min = 1, .max = 65536,
     .help = "Windows per step (one rank, the global batch)."},
    {.name = "steps", .type = CLI_INT, .metavar = "N", .def = "2000", .min = 1, .max = 1e9,
     .help = "Steps read through the sampler, as training reads them."},
    {.name = "out", .type = CLI_STRING, .metavar = "PATH",
     .help = "Write the shard here and keep it (default: a temporary folder, removed)."},
    {.name = "json", .type = CLI_BOOL, .help = "Print one JSON object instead of text."},
    {0},
};

static const cli_spec data_spec = {
    .name = "bench data",
    .description =
        "Measure the data path at any shard size: write a synthetic token shard through the "
        "streaming shard writer (what 'retort prepare' uses), then read --steps steps of "
        "--batch random windows through the sampler and hyperslab reads (what every "
        "training rank does). Reports write MB/s, windows/s and the process's peak RSS, "
        "which stays a few tens of MB whatever --tokens is.",
    .options = data_options,
    .max_positional = 0,
    .epilog = "example:\n  retort bench data --tokens 5000000000 --seq 1024 --batch 8 --json   "
              "# a 10 GB shard\n",
};

int trainer_bench_data(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&data_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    rt_status st = RT_OK;
    const int64_t n = cli_int(a, "tokens"), vocab = cli_int(a, "vocab");
    const int64_t steps = cli_int(a, "steps");
    const int32_t T = (int32_t)cli_int(a, "seq"), B = (int32_t)cli_int(a, "batch");
    const int json = cli_flag(a, "json");
    const char *out = cli_str(a, "out");
    char dir[64] = "", path[4096];
    int32_t *buf = NULL, *in = NULL, *tg = NULL;
    data_shard_writer *w = NULL;
    data_shard *sh = NULL;
    data_sampler *smp = NULL;
    if (out) {
        snprintf(path, sizeof path, "%s", out);
    } else {
        snprintf(dir, sizeof dir, "/tmp/retort_bench_data_XXXXXX");
        if (!mkdtemp(dir)) {
            st = rt_fail(RT_ERR_IO, "bench data: cannot make a folder under /tmp (%s)",
                         strerror(errno));
            dir[0] = '\0';
            goto cleanup;
        }
        snprintf(path, sizeof path, "%s/train.h5", dir);
    }
    enum { PIECE = 1 << 20 };
    buf = malloc(PIECE * sizeof *buf);
    in = malloc((size_t)B * T * sizeof *in);
    tg = malloc((size_t)B * T * sizeof *tg);
    if (!buf || !in || !tg) {
        st = rt_fail(RT_ERR_NOMEM, "bench data: out of memory");
        goto cleanup;
    }
    double t0 = now_s();
    if ((st = data_shard_writer_create(path, vocab, "retort bench data: synthetic tokens", n,
                                       &w)) != RT_OK)
        goto cleanup;
    uint64_t rng = 0x5eedULL;
    for (int64_t i = 0; i < n; i += PIECE) {
        const int64_t k = n - i < PIECE ? n - i : PIECE;
        for (int64_t j = 0; j < k; j++) buf[j] = (int32_t)(rt_splitmix64(&rng) % (uint64_t)vocab);
        if ((st = data_shard_writer_append(w, buf, k)) != RT_OK) goto cleanup;
    }
    st = data_shard_writer_finish(w);
    w = NULL;
    if (st != RT_OK) goto cleanup;
    const double write_s = now_s() - t0, rss_write = bench_peak_rss_mb();
    struct stat sb;
    const double file_mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0.0;
    if ((st = data_shard_open(path, &sh)) != RT_OK ||
        (st = data_sampler_create(path, n, T, B, 1, 0, 1234, &smp)) != RT_OK)
        goto cleanup;
    t0 = now_s();
    for (int64_t s = 0; s < steps; s++)
        if ((st = data_sampler_read(smp, sh, s, in, tg)) != RT_OK) goto cleanup;
    const double read_s = now_s() - t0, rss = bench_peak_rss_mb();
    const double win_s = (double)steps * B / read_s;
    if (json) {
        printf("{\"target\": \"data\", \"tokens\": %lld, \"vocab\": %lld, \"file_mb\": %.1f, "
               "\"write_mb_per_s\": %.1f, \"seq\": %d, \"batch\": %d, \"steps\": %lld, "
               "\"windows_per_s\": %.0f, \"tokens_per_s\": %.0f, \"peak_rss_mb_after_write\": "
               "%.1f, \"peak_rss_mb\": %.1f}\n",
               (long long)n, (long long)vocab, file_mb, file_mb / write_s, T, B,
               (long long)steps, win_s, win_s * T, rss_write, rss);
    } else {
        printf("bench data: %lld tokens (vocab %lld) = %.1f MB shard %s\n", (long long)n,
               (long long)vocab, file_mb, path);
        printf("  write   %.1f MB/s (%.1f s), peak RSS %.1f MB\n", file_mb / write_s, write_s,
               rss_write);
        printf("  read    %lld steps x %d windows of %d: %.0f windows/s (%.0f tokens/s), "
               "peak RSS %.1f MB\n",
               (long long)steps, B, T, win_s, win_s * T, rss);
    }
cleanup:
    data_shard_writer_abort(w);
    data_sampler_destroy(smp);
    data_shard_close(sh);
    free(buf);
    free(in);
    free(tg);
    if (dir[0]) {
        unlink(path);
        rmdir(dir);
    }
    cli_args_free(a);
    return rt_report(st);
}

/* ------------------------------------------------------- bench teacher */

/* `retort bench teacher`: what a teacher rank does per micro-batch
 * (trainer/train.c, teacher_serve): teacher_run, the forward then the
 * record's labels in the run's scheme, written into a comm_record laid out
 * by trainer_record_shape, then the record's compression (comm_codec at
 * distill.zstd_level, as comm_stream_send encodes it; reported apart, as
 * RETORT_TEACHER_STATS does). MPI is not involved. The label settings start from the config's
 * defaults and each option goes through the config's own parser
 * (trainer_config_set), so the names, bounds and messages are those of
 * `retort train`; trainer_teacher_config turns them into the teacher's
 * settings. The split forward / labels is teacher_run's own
 * (teacher_stats), the one RETORT_TEACHER_STATS prints. */
static const cli_option teacher_options[] = {
    {.name = "model", .type = CLI_STRING, .metavar = "PATH",
     .help = "Teacher file as distill.teacher takes it (checkpoint, deploy file or Hugging Face "
             "folder), loaded as a teacher rank loads it; without it, random weights of the "
             "shape below."},
    {.name = "layers", .type = CLI_INT, .metavar = "N", .def = "12", .min = 1, .max = 1024,
     .help = "Transformer blocks (random weights)."},
    {.name = "dim", .type = CLI_INT, .metavar = "N", .def = "768", .min = 1, .max = 65536,
     .help = "Residual width d_model (random weights)."},
    {.name = "heads", .type = CLI_INT, .metavar = "N", .def = "12", .min = 1, .max = 1024,
     .help = "Attention heads, dividing --dim (random weights)."},
    {.name = "ff", .type = CLI_INT, .metavar = "N", .def = "3072", .min = 1, .max = 262144,
     .help = "MLP hidden width d_ff (random weights)."},
    {.name = "vocab", .type = CLI_INT, .metavar = "N", .def = "50257", .min = 2, .max = 1048576,
     .help = "Vocabulary size (random weights)."},
    {.name = "seq", .type = CLI_INT, .metavar = "N", .def = "1024", .min = 1, .max = 65536,
     .help = "Positions T per row; with --model, the student's window (default the file's)."},
    {.name = "batch", .type = CLI_INT, .metavar = "N", .def = "1", .min = 1, .max = 65536,
     .help = "Rows per teacher_run (train.micro_batch rows in a run)."},
    {.name = "steps", .type = CLI_INT, .metavar = "N", .def = "3", .min = 1, .max = 100000,
     .help = "Timed batches; the report averages them."},
    {.name = "warmup", .type = CLI_INT, .metavar = "N", .def = "1", .min = 0, .max = 100000,
     .help = "Untimed batches first (oneDNN JIT, page faults)."},
    {.name = "f32", .type = CLI_BOOL,
     .help = "Forward in f32 (distill.teacher_precision = f32); default bf16."},
    {.name = "labels", .type = CLI_STRING, .metavar = "SCHEME",
     .def = "topk",
     .help = "distill.labels: topk, sample, topk+sample or hidden (here topk unless given; "
             "the other label options default to the config's)."},
    {.name = "topk", .type = CLI_INT, .metavar = "K",
     .help = "distill.topk (default: the config's; the vocabulary size = dense)."},
    {.name = "samples", .type = CLI_INT, .metavar = "N",
     .help = "distill.samples, draws per position (default: the config's)."},
    {.name = "hidden", .type = CLI_STRING, .metavar = "TYPE",
     .help = "distill.hidden, int8 or bf16, for --labels hidden (default: the config's)."},
    {.name = "temperature", .type = CLI_REAL, .metavar = "T",
     .help = "distill.temperature (default: the config's)."},
    {.name = "zstd-level", .type = CLI_INT, .metavar = "L",
     .help = "distill.zstd_level of the records' compression (default: the config's)."},
    {.name = "feature-map", .type = CLI_STRING, .metavar = "PAIRS",
     .help = "distill.feature_map, \"s1:t2,s3:t5\": the teacher also copies its hidden states "
             "after blocks t into the record."},
    {.name = "seed", .type = CLI_INT, .metavar = "S", .def = "1234",
     .help = "Seed of the random weights, tokens and draws."},
    {.name = "peak", .type = CLI_REAL, .metavar = "GFLOPS", .def = "0", .min = 0, .max = 1e9,
     .help = "Matmul peak of this machine for the forward's precision (bf16 or f32), as "
             "'retort bench peak' prints it; 0 = measure it in this run."},
    {.name = "json", .type = CLI_BOOL, .help = "Print one JSON object instead of text."},
    {0},
};

static const cli_spec teacher_spec = {
    .name = "bench teacher",
    .description =
        "Time what a teacher rank does per micro-batch: the forward (bf16 unless --f32) over "
        "--batch rows of random tokens, then the record's soft labels in the distill.labels "
        "scheme (top-k of softmax(z / T) with the tail mass, sampled rows, or hidden states) "
        "and the feature maps of --feature-map. Reports tokens/s, ms per batch for the "
        "forward and for the labels with the labels' share, the forward's GFLOP/s (2*N*tokens "
        "+ attention) as a fraction of the matmul peak (see 'retort bench peak'), the same in "
        "CPU time, and peak RSS. Threads: OMP_NUM_THREADS (run with OMP_WAIT_POLICY=passive "
        "on a shared machine).",
    .options = teacher_options,
    .max_positional = 0,
    .epilog = "examples:\n  OMP_WAIT_POLICY=passive retort bench teacher --labels topk --json   "
              "# GPT-2-small shape, random weights\n  retort bench teacher --model gpt2/ --seq "
              "512 --batch 2 --labels topk+sample\n",
};

/* The run config's label settings with the options given applied through
 * the config's parser; the feature map's pairs parsed as validation would. */
static rt_status bench_teacher_distill(const cli_args *a, trainer_config *cfg) {
    static const char *const keys[][2] = {
        {"labels", "labels"}, {"topk", "topk"},           {"samples", "samples"},
        {"hidden", "hidden"}, {"temperature", "temperature"}, {"feature-map", "feature_map"},
        {"zstd-level", "zstd_level"},
    };
    trainer_config_defaults(cfg);
    cfg->distill.teacher_precision =
        cli_flag(a, "f32") ? TRAINER_PRECISION_F32 : TRAINER_PRECISION_BF16;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char origin[64];
        snprintf(origin, sizeof origin, "bench teacher --%s", keys[i][0]);
        if (cli_str(a, keys[i][0]))
            RT_TRY(trainer_config_set(cfg, "distill", keys[i][1], cli_str(a, keys[i][0]), origin));
    }
    return trainer_parse_feature_map(cfg->distill.feature_map, cfg->distill.feature_pairs,
                                     TRAINER_MAX_FEATURE_PAIRS, &cfg->distill.n_feature_pairs);
}

int trainer_bench_teacher(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&teacher_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    rt_status st = RT_OK;
    student_model *m = NULL;
    teacher *t = NULL;
    comm_codec *codec = NULL;
    int32_t *tokens = NULL;
    int64_t *starts = NULL;
    comm_record rec;
    comm_record_init(&rec);
    const char *path = cli_str(a, "model");
    const int B = (int)cli_int(a, "batch"), steps = (int)cli_int(a, "steps"),
              warmup = (int)cli_int(a, "warmup"), json = cli_flag(a, "json");
    uint64_t seed = (uint64_t)cli_int(a, "seed");
    trainer_config cfg;
    if ((st = bench_teacher_distill(a, &cfg)) != RT_OK) goto cleanup;
    const student_precision prec =
        cfg.distill.teacher_precision == TRAINER_PRECISION_BF16 ? STUDENT_BF16 : STUDENT_F32;
    static const char *const shape_opts[] = {"layers", "dim", "heads", "ff", "vocab"};
    for (size_t i = 0; path && i < sizeof shape_opts / sizeof shape_opts[0]; i++)
        if (cli_has(a, shape_opts[i])) {
            st = rt_fail(RT_ERR_ARGS, "bench teacher: --%s is for random weights; --model %s "
                         "brings its own shape", shape_opts[i], path);
            goto cleanup;
        }
    if (path) {
        st = ckpt_load_model_window(path, cli_has(a, "seq") ? (int)cli_int(a, "seq") : 0, B, prec,
                                    0, &m, NULL);
    } else {
        const student_config c = {
            .n_layer = (int)cli_int(a, "layers"), .n_head = (int)cli_int(a, "heads"),
            .d_model = (int)cli_int(a, "dim"),    .d_ff = (int)cli_int(a, "ff"),
            .vocab_size = (int)cli_int(a, "vocab"), .seq_len = (int)cli_int(a, "seq"),
        };
        if ((st = student_create(&c, B, prec, 0, &m)) == RT_OK) student_init_weights(m, seed);
    }
    if (st != RT_OK) goto cleanup;
    const student_config c = *student_cfg(m);
    const int T = c.seq_len, V = c.vocab_size, n = B * T;
    teacher_config tc = trainer_teacher_config(&cfg, &c, B);
    st = teacher_create_with(&tc, m, &t);
    m = NULL; /* the teacher owns it now, also when that failed */
    if (st != RT_OK) goto cleanup;
    tc = *teacher_cfg(t);
    const comm_record_shape shape = trainer_record_shape(&tc, B, T, tc.n_features);
    if ((st = comm_record_reserve_shape(&rec, &shape)) != RT_OK) goto cleanup;
    const teacher_out out = {rec.ids, rec.logprobs, rec.tail, rec.hstate, rec.hscale,
                             tc.n_features ? rec.feat : NULL};
    tokens = malloc((size_t)n * sizeof *tokens);
    starts = malloc((size_t)B * sizeof *starts);
    if (!tokens || !starts) {
        st = rt_fail(RT_ERR_NOMEM, "bench teacher: out of memory for %d tokens", n);
        goto cleanup;
    }
    for (int i = 0; i < n; i++) tokens[i] = (int32_t)(rt_splitmix64(&seed) % (uint64_t)V);
    for (int r = 0; r < B; r++) starts[r] = (int64_t)r * T;
    memcpy(rec.starts, starts, (size_t)B * sizeof *starts);
    rec.temperature = tc.temperature;
    if ((st = comm_codec_create(cfg.distill.zstd_level, &codec)) != RT_OK) goto cleanup;
    const student_peak_kind pk = prec == STUDENT_BF16 ? STUDENT_PEAK_BF16 : STUDENT_PEAK_F32;
    double peak = 0.0, cpu_peak = 0.0;
    if ((st = bench_peak_of(pk, cli_real(a, "peak"), &peak, &cpu_peak)) != RT_OK) goto cleanup;

    double best_fwd_cpu = 0.0; /* the best forward's CPU time, as bench student/infer */
    double zip_s = 0.0, zip_cpu = 0.0;
    size_t wire_bytes = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) teacher_stats_reset(t);
        const teacher_stats before = teacher_get_stats(t);
        if ((st = teacher_run(t, tokens, B, seed, s, starts, &out)) != RT_OK) goto cleanup;
        const double fc = teacher_get_stats(t).forward_cpu_s - before.forward_cpu_s;
        if (s >= warmup && (best_fwd_cpu == 0.0 || fc < best_fwd_cpu)) best_fwd_cpu = fc;
        rec.step = s;
        const double z0 = now_s(), zc0 = student_cpu_seconds();
        const void *wire = NULL;
        if ((st = comm_codec_encode(codec, &rec, &wire, &wire_bytes)) != RT_OK) goto cleanup;
        if (s >= warmup) zip_s += now_s() - z0, zip_cpu += student_cpu_seconds() - zc0;
    }
    {
        const teacher_stats ts = teacher_get_stats(t);
        const int threads = omp_get_max_threads();
        const double fwd = ts.forward_s / steps, lab = ts.labels_s / steps, tot = fwd + lab;
        /* CPU time per batch and thread (see student_matmul_peak) */
        const double fwd_cpu = ts.forward_cpu_s / steps / threads;
        const double lab_cpu = ts.labels_cpu_s / steps / threads;
        const double flops = bench_forward_flops(&c, B);
        const double gf = flops / fwd * 1e-9, gf_cpu = flops / (best_fwd_cpu / threads) * 1e-9;
        const char *scheme = trainer_labels_scheme_name(tc.labels);
        const double rec_bytes = (double)comm_record_raw_bytes(&rec) / n;
        /* zstd runs on one thread: its CPU time is not divided */
        const double zip = zip_s / steps, zip_c = zip_cpu / steps;
        if (json) {
            printf("{\"target\": \"teacher\", \"model\": \"%s\", \"precision\": \"%s\", "
                   "\"labels\": \"%s\", \"topk\": %d, \"samples\": %d, \"label_width\": %d, "
                   "\"temperature\": %g, \"features\": %d, \"layers\": %d, \"dim\": %d, "
                   "\"heads\": %d, \"ff\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, "
                   "\"threads\": %d, \"steps\": %d, \"warmup\": %d, \"params\": %zu, "
                   "\"tokens_per_batch\": %d, \"batch_ms\": %.3f, \"tokens_per_s\": %.1f, "
                   "\"forward_ms\": %.3f, \"forward_tokens_per_s\": %.1f, \"labels_ms\": %.3f, "
                   "\"labels_share\": %.4f, \"forward_cpu_ms\": %.3f, \"labels_cpu_ms\": %.3f, "
                   "\"labels_share_cpu\": %.4f, \"record_bytes_per_token\": %.1f, "
                   "\"zstd_level\": %d, \"compress_ms\": %.3f, \"compress_cpu_ms\": %.3f, "
                   "\"wire_bytes_per_token\": %.1f, "
                   "\"gflop_per_batch\": %.6f, \"gflop_per_s\": %.3f, \"peak_type\": \"%s\", "
                   "\"peak_gflop_per_s\": %.1f, \"peak_measured\": %s, "
                   "\"fraction_of_peak\": %.6f, \"best_forward_cpu_ms\": %.3f, "
                   "\"peak_cpu_gflop_per_s\": %.1f, \"fraction_of_peak_cpu\": %.6f, "
                   "\"peak_rss_mb\": %.1f}\n",
                   path ? path : "random", student_peak_name(pk), scheme, tc.topk, tc.samples,
                   teacher_label_width(&tc), (double)tc.temperature, tc.n_features, c.n_layer,
                   c.d_model, c.n_head, c.d_ff, V, T, B, threads, steps, warmup,
                   student_param_count(&c), n, 1e3 * tot, n / tot, 1e3 * fwd, n / fwd, 1e3 * lab,
                   lab / tot, 1e3 * fwd_cpu, 1e3 * lab_cpu, lab_cpu / (fwd_cpu + lab_cpu),
                   rec_bytes, cfg.distill.zstd_level, 1e3 * zip, 1e3 * zip_c,
                   (double)wire_bytes / n, flops * 1e-9, gf, student_peak_name(pk), peak,
                   cli_real(a, "peak") > 0.0 ? "false" : "true", gf / peak,
                   1e3 * best_fwd_cpu / threads, cpu_peak, gf_cpu / cpu_peak, bench_peak_rss_mb());
        } else {
            printf("bench teacher, %s (%s, %d threads): L=%d C=%d H=%d F=%d V=%d T=%d B=%d, %zu "
                   "parameters\n",
                   path ? path : "random weights", student_peak_name(pk), threads, c.n_layer,
                   c.d_model, c.n_head, c.d_ff, V, T, B, student_param_count(&c));
            printf("  labels %s (width %d, T = %g), %d feature maps: %.1f record bytes per "
                   "token\n",
                   scheme, teacher_label_width(&tc), (double)tc.temperature, tc.n_features,
                   rec_bytes);
            printf("  batch    %10.2f ms  %10.0f tokens/s\n", 1e3 * tot, n / tot);
            printf("  forward  %10.2f ms  %10.0f tokens/s, %.1f GFLOP/s = %.1f%% of the %s "
                   "matmul peak (%.1f, %s)\n",
                   1e3 * fwd, n / fwd, gf, 100.0 * gf / peak, student_peak_name(pk), peak,
                   cli_real(a, "peak") > 0.0 ? "given" : "measured in this run");
            printf("  labels   %10.2f ms  = %.2f%% of the batch\n", 1e3 * lab, 100.0 * lab / tot);
            printf("  CPU time per thread: forward %.2f ms, labels %.2f ms = %.2f%%; best "
                   "forward %.1f%% of the peak in CPU time (%.1f)\n",
                   1e3 * fwd_cpu, 1e3 * lab_cpu, 100.0 * lab_cpu / (fwd_cpu + lab_cpu),
                   100.0 * gf_cpu / cpu_peak, cpu_peak);
            printf("  compress %10.2f ms  (zstd level %d, one thread: %.2f ms CPU) to %.1f wire "
                   "bytes per token\n",
                   1e3 * zip, cfg.distill.zstd_level, 1e3 * zip_c, (double)wire_bytes / n);
            printf("  peak RSS %.1f MB\n", bench_peak_rss_mb());
        }
    }
cleanup:
    comm_codec_destroy(codec);
    teacher_destroy(t);
    student_destroy(m);
    comm_record_free(&rec);
    free(tokens);
    free(starts);
    cli_args_free(a);
    return rt_report(st);
}

/* --------------------------------------------------------------- bench */

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} bench_target;

static const bench_target targets_table[] = {
    {"peak", "measure this machine's oneDNN matmul peak (f32, bf16, u8s8)", trainer_bench_peak},
    {"student", "time a full distillation training step of the student", trainer_bench_student},
    {"infer", "time prompt processing and KV-cache generation of a model file",
     trainer_bench_infer},
    {"data", "write a synthetic shard and read training windows: MB/s, peak RSS",
     trainer_bench_data},
    {"teacher", "time a teacher rank's forward and soft labels per micro-batch",
     trainer_bench_teacher},
};
enum { N_TARGETS = (int)(sizeof targets_table / sizeof targets_table[0]) };

static void bench_usage(FILE *f) {
    fprintf(f, "usage: retort bench <target> [options]\n"
               "       retort bench <target> --help\n\n"
               "Measure the speed of retort's engines on synthetic data. Prints text, or one\n"
               "JSON object per run with --json.\n\ntargets:\n");
    for (int i = 0; i < N_TARGETS; i++)
        fprintf(f, "  %-10s %s\n", targets_table[i].name, targets_table[i].summary);
    fprintf(f, "\noptions:\n  -h, --help  show this help and exit\n");
}

int trainer_cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "retort: bench needs a target (");
        for (int i = 0; i < N_TARGETS; i++) fprintf(stderr, "%s%s", i ? ", " : "", targets_table[i].name);
        fprintf(stderr, "); see 'retort bench --help'\n");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        bench_usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_TARGETS; i++)
        if (strcmp(argv[1], targets_table[i].name) == 0) return targets_table[i].run(argc - 1, argv + 1);
    fprintf(stderr, "retort: bench: unknown target '%s'; see 'retort bench --help'\n", argv[1]);
    return 2;
}
