/* The matmul wrapper: one oneDNN matmul primitive per shape, built once
 * and run on retort's own buffers through memory objects whose data
 * handles are set per call. Operands are described by dims and element
 * strides, so transposed operands (X^T for weight gradients, W^T for input
 * gradients, wte^T for the LM head) and per-head slices of the fused QKV
 * buffer are views, never copies. oneDNN picks its brgemm kernels for the
 * 2-D shapes and jit gemm for the strided 4-D attention batches. A weight
 * that is a parameter can be packed (student_mm_shape.pack): the primitive
 * takes the layout oneDNN prefers and a reorder made here writes it once
 * per weight update (docs/ARCHITECTURE.md, "Weights are packed once per
 * update"). */
#include "student_internal.h"

void student_mm_shape_2d(student_mm_shape *s, int64_t M, int64_t K, int64_t N, int src_t,
                         int wei_t, dnnl_data_type_t dt, int bias, int accumulate) {
    memset(s, 0, sizeof *s);
    s->ndims = 2;
    s->dims[0][0] = M, s->dims[0][1] = K;
    s->dims[1][0] = K, s->dims[1][1] = N;
    s->dims[2][0] = M, s->dims[2][1] = N;
    s->strides[0][0] = src_t ? 1 : K, s->strides[0][1] = src_t ? M : 1;
    s->strides[1][0] = wei_t ? 1 : N, s->strides[1][1] = wei_t ? K : 1;
    s->strides[2][0] = N, s->strides[2][1] = 1;
    s->dt = dt, s->bias = bias, s->accumulate = accumulate;
}

rt_status student_mm_create(student_mm *mm, dnnl_engine_t eng, const student_mm_shape *s) {
    rt_status st = RT_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_memory_desc_t md[3], bmd, wmd;
    dnnl_matmul_desc_t desc;
    memset(mm, 0, sizeof *mm);
    for (int i = 0; i < 3; i++)
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_strides(&md[i], s->ndims, s->dims[i],
                                                             i == 2 ? dnnl_f32 : s->dt,
                                                             s->strides[i]));
    /* the weight's dims and plain strides as oneDNN's 12-entry arrays */
    dnnl_dims_t wdims = {0}, wstrides = {0};
    for (int d = 0; d < s->ndims; d++) wdims[d] = s->dims[1][d], wstrides[d] = s->strides[1][d];
    wmd = md[1];
    if (s->pack && s->pack_as)
        wmd = *s->pack_as;
    else if (s->pack)
        STUDENT_DNNL_CHECK(
            dnnl_memory_desc_init_by_tag(&wmd, s->ndims, wdims, s->dt, dnnl_format_tag_any));
    if (s->bias) {
        /* bias broadcasts over every dim but the last */
        dnnl_dims_t bd;
        for (int d = 0; d < s->ndims; d++) bd[d] = 1;
        bd[s->ndims - 1] = s->dims[2][s->ndims - 1];
        const dnnl_format_tag_t tag[5] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd};
        STUDENT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&bmd, s->ndims, bd, dnnl_f32, tag[s->ndims]));
    }
    STUDENT_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    if (s->accumulate) {
        STUDENT_DNNL_CHECK(dnnl_post_ops_create(&po));
        STUDENT_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        STUDENT_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    STUDENT_DNNL_CHECK(
        dnnl_matmul_desc_init(&desc, &md[0], &wmd, s->bias ? &bmd : NULL, &md[2]));
    if (s->pack_as && dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL) != dnnl_success) {
        /* no kernel for another plan's packed layout at this M: plain weights */
        pd = NULL;
        wmd = md[1];
        STUDENT_DNNL_CHECK(
            dnnl_matmul_desc_init(&desc, &md[0], &wmd, s->bias ? &bmd : NULL, &md[2]));
    }
    if (!pd) STUDENT_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL));
    if (s->pack) {
        wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (!dnnl_memory_desc_equal(&wmd, &md[1])) {
            dnnl_memory_desc_t f32md;
            STUDENT_DNNL_CHECK(
                dnnl_memory_desc_init_by_strides(&f32md, s->ndims, wdims, dnnl_f32, wstrides));
            STUDENT_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, &f32md, eng, &wmd, eng, NULL));
            STUDENT_DNNL_CHECK(dnnl_primitive_create(&mm->pack, rpd));
            STUDENT_DNNL_CHECK(dnnl_memory_create(&mm->pack_src, &f32md, eng, DNNL_MEMORY_NONE));
            STUDENT_DNNL_CHECK(dnnl_memory_create(&mm->pack_dst, &wmd, eng, DNNL_MEMORY_NONE));
            mm->wei_md = wmd;
            mm->wei_bytes = dnnl_memory_desc_get_size(&wmd);
        }
    }
    STUDENT_DNNL_CHECK(dnnl_primitive_create(&mm->prim, pd));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&mm->src, &md[0], eng, DNNL_MEMORY_NONE));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&mm->wei, &wmd, eng, DNNL_MEMORY_NONE));
    STUDENT_DNNL_CHECK(dnnl_memory_create(&mm->dst, &md[2], eng, DNNL_MEMORY_NONE));
    if (s->bias) STUDENT_DNNL_CHECK(dnnl_memory_create(&mm->bias, &bmd, eng, DNNL_MEMORY_NONE));
cleanup:
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != RT_OK) student_mm_destroy(mm);
    return st;
}

rt_status student_mm_run(student_mm *mm, dnnl_stream_t strm, const void *src, const void *wei,
                         const float *bias, float *dst) {
    rt_status st = RT_OK;
    /* oneDNN takes non-const handles; it only reads src, wei and bias. */
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(mm->src, (void *)src));
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(mm->wei, (void *)wei));
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(mm->dst, dst));
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, mm->src}, {DNNL_ARG_WEIGHTS, mm->wei}, {DNNL_ARG_DST, mm->dst}, {0, NULL}};
    int nargs = 3;
    if (mm->bias) {
        STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(mm->bias, (void *)bias));
        args[nargs].arg = DNNL_ARG_BIAS, args[nargs].memory = mm->bias, nargs++;
    }
    STUDENT_DNNL_CHECK(dnnl_primitive_execute(mm->prim, strm, nargs, args));
cleanup:
    return st;
}

rt_status student_mm_pack(student_mm *mm, dnnl_stream_t strm, const float *plain, void *packed) {
    rt_status st = RT_OK;
    RT_ASSERT(mm->pack != NULL);
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(mm->pack_src, (void *)plain));
    STUDENT_DNNL_CHECK(dnnl_memory_set_data_handle(mm->pack_dst, packed));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, mm->pack_src}, {DNNL_ARG_TO, mm->pack_dst}};
    STUDENT_DNNL_CHECK(dnnl_primitive_execute(mm->pack, strm, 2, args));
cleanup:
    return st;
}

void student_mm_destroy(student_mm *mm) {
    if (mm->pack) dnnl_primitive_destroy(mm->pack);
    if (mm->pack_src) dnnl_memory_destroy(mm->pack_src);
    if (mm->pack_dst) dnnl_memory_destroy(mm->pack_dst);
    if (mm->prim) dnnl_primitive_destroy(mm->prim);
    if (mm->src) dnnl_memory_destroy(mm->src);
    if (mm->wei) dnnl_memory_destroy(mm->wei);
    if (mm->bias) dnnl_memory_destroy(mm->bias);
    if (mm->dst) dnnl_memory_destroy(mm->dst);
    memset(mm, 0, sizeof *mm);
}
