/* The machine's matmul peak as oneDNN delivers it: one large 2-D matmul
 * per element type (f32, bf16 with f32 accumulation, u8 x s8 with an f32
 * output like the int8 deploy layers), run on the OpenMP threads in use,
 * weights in the layout oneDNN asks for (format_tag_any, reordered once
 * outside the timing). It is the yardstick `retort bench` divides its own
 * throughput by, so that a figure means the same on any machine; the
 * operand values do not matter for speed (a constant byte pattern that is
 * a small normal number in every type). */
#include <time.h>

#include "student_internal.h"

static double peak_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double student_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *student_peak_name(student_peak_kind kind) {
    switch (kind) {
    case STUDENT_PEAK_F32: return "f32";
    case STUDENT_PEAK_BF16: return "bf16";
    case STUDENT_PEAK_U8S8: return "u8s8";
    default: return "?";
    }
}

rt_status student_matmul_peak(student_peak_kind kind, int64_t M, int64_t K, int64_t N, int reps,
                              double *gops, double *best_ms, double *cpu_gops) {
    rt_status st = RT_OK;
    dnnl_engine_t eng = NULL;
    dnnl_stream_t strm = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL, reorder = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_memory_t src = NULL, wei = NULL, wplain = NULL, dst = NULL;
    RT_ASSERT(M > 0 && K > 0 && N > 0 && reps > 0);
    const dnnl_data_type_t ts = kind == STUDENT_PEAK_F32    ? dnnl_f32
                                : kind == STUDENT_PEAK_BF16 ? dnnl_bf16
                                                            : dnnl_u8;
    const dnnl_data_type_t tw = kind == STUDENT_PEAK_U8S8 ? dnnl_s8 : ts;
    const dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N};
    dnnl_memory_desc_t smd, wmd, wpmd, dmd;
    dnnl_matmul_desc_t desc;

    STUDENT_DNNL_CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    STUDENT_DNNL_CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&smd, 2, sd, ts, dnnl_ab));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, tw, dnnl_format_tag_any));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wpmd, 2, wd, tw, dnnl_ab));
    STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab));
    STUDENT_DNNL_CHECK(dnnl_matmul_desc_init(&desc, &smd, &wmd, NULL, &dmd));
    STUDENT_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    STUDENT_DNNL_CHECK(dnnl_primitive_create(&prim, pd));
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);

    STUDENT_DNNL_CHECK(dnnl_memory_create(&src, &smd, eng, DNNL_MEMORY_ALLOCATE));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&wplain, &wpmd, eng, DNNL_MEMORY_ALLOCATE));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&wei, wq, eng, DNNL_MEMORY_ALLOCATE));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&dst, &dmd, eng, DNNL_MEMORY_ALLOCATE));
    {
        /* 0x3c in every byte: 0.0115 as f32 and bf16, 60 as u8 and s8 */
        void *p = NULL;
        STUDENT_DNNL_CHECK(dnnl_memory_get_data_handle(src, &p));
        memset(p, 0x3c, dnnl_memory_desc_get_size(&smd));
        STUDENT_DNNL_CHECK(dnnl_memory_get_data_handle(wplain, &p));
        memset(p, 0x3c, dnnl_memory_desc_get_size(&wpmd));
    }
    STUDENT_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, &wpmd, eng, wq, eng, NULL));
    STUDENT_DNNL_CHECK(dnnl_primitive_create(&reorder, rpd));
    {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, wplain}, {DNNL_ARG_TO, wei}};
        STUDENT_DNNL_CHECK(dnnl_primitive_execute(reorder, strm, 2, ra));
        STUDENT_DNNL_CHECK(dnnl_stream_wait(strm));
    }

    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    double best = 0.0, best_cpu = 0.0;
    for (int r = -1; r < reps; r++) { /* r = -1: untimed (JIT, first touch) */
        const double t0 = peak_now_s(), c0 = student_cpu_seconds();
        STUDENT_DNNL_CHECK(dnnl_primitive_execute(prim, strm, 3, args));
        STUDENT_DNNL_CHECK(dnnl_stream_wait(strm));
        const double t = peak_now_s() - t0, c = student_cpu_seconds() - c0;
        if (r >= 0 && (best == 0.0 || t < best)) best = t;
        if (r >= 0 && c > 0.0 && (best_cpu == 0.0 || c < best_cpu)) best_cpu = c;
    }
    const double flop = 2.0 * (double)M * (double)K * (double)N;
    *gops = flop / best * 1e-9;
    if (best_ms) *best_ms = 1e3 * best;
    if (cpu_gops)
        *cpu_gops = best_cpu > 0.0 ? flop / (best_cpu / omp_get_max_threads()) * 1e-9 : *gops;
cleanup:
    if (reorder) dnnl_primitive_destroy(reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (src) dnnl_memory_destroy(src);
    if (wei) dnnl_memory_destroy(wei);
    if (wplain) dnnl_memory_destroy(wplain);
    if (dst) dnnl_memory_destroy(dst);
    if (strm) dnnl_stream_destroy(strm);
    if (eng) dnnl_engine_destroy(eng);
    return st;
}
