/* Weight initialisation, AdamW, gradient norm/clipping and the learning
 * rate schedule. All walk the tensor table (params.c), so padding between
 * tensors is never touched.
 *
 * Weight decay applies only to the matmul weights (decay = 1 in the table).
 * LayerNorm gains and biases are excluded because decaying them pulls the
 * normalisation scale toward 0 (not its neutral 1) and shifts toward 0 for
 * no regularising benefit; the embeddings (wte, tied to the LM head, and
 * wpe) are excluded because they are lookup tables: a row is touched only
 * when its token or position occurs, and decoupled decay would shrink the
 * rows of rare tokens every step regardless (the minGPT/GPT-2 recipe). */
#include <math.h>
#include <omp.h>

#include "student_internal.h"
#include "rt_rand.h"

/* --------------------------------------------------------------- init */


enum { INIT_CHUNK = 4096 };

void student_init_weights(student_model *m, uint64_t seed) {
    const double std = 0.02, proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    float *p = student_params(m);
    memset(p, 0, m->block_floats * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const student_tensor t = m->tensors[i];
        float *w = p + t.offset;
        const size_t len = strlen(t.name);
        if (strstr(t.name, ".ln_") || strstr(t.name, "ln_f.")) {
            /* LayerNorm: weight 1, bias 0 */
            if (len > 7 && strcmp(t.name + len - 7, ".weight") == 0)
                for (size_t j = 0; j < t.numel; j++) w[j] = 1.0f;
            continue;
        }
        if (t.ndim == 1) continue; /* biases stay 0 */
        const double sd = strstr(t.name, "c_proj.weight") ? proj_std : std;
        /* Each chunk of a tensor has its own stream, seeded from (seed,
         * tensor, chunk): the result does not depend on the thread count. */
        const int64_t nchunk = (int64_t)((t.numel + INIT_CHUNK - 1) / INIT_CHUNK);
#pragma omp parallel for schedule(static)
        for (int64_t ch = 0; ch < nchunk; ch++) {
            uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(i + 1));
            s = rt_splitmix64(&s) ^ (uint64_t)ch * 0x9E3779B97F4A7C15ull;
            const size_t j0 = (size_t)ch * INIT_CHUNK;
            const size_t j1 = j0 + INIT_CHUNK < t.numel ? j0 + INIT_CHUNK : t.numel;
            for (size_t j = j0; j < j1; j += 2) {
                /* Box-Muller: two normals per pair of uniforms */
                double r = sqrt(-2.0 * log(rt_uniform01(&s))), th = 2.0 * M_PI * rt_uniform01(&s);
                w[j] = (float)(sd * r * cos(th));
                if (j + 1 < j1) w[j + 1] = (float)(sd * r * sin(th));
            }
        }
    }
}

/* -------------------------------------------------------------- AdamW */

/* One AdamW update of element j, in torch.optim.AdamW's (foreach=False)
 * order: p *= keep (= 1 - lr*wd); m, v updated; p -= step_size * m /
 * (sqrt(v)/sqrt_bc2 + eps). Shared by the model block and plain arrays. */
static inline float adamw_elem(float *p, const float *g, float *mm, float *vv, int64_t j,
                               float beta1, float beta2, float eps, float keep, float step_size,
                               float sqrt_bc2) {
    float gj = g[j];
    float mj = beta1 * mm[j] + (1.0f - beta1) * gj;
    float vj = beta2 * vv[j] + (1.0f - beta2) * gj * gj;
    mm[j] = mj, vv[j] = vj;
    float pj = p[j] * keep - step_size * mj / (sqrtf(vj) / sqrt_bc2 + eps);
    p[j] = pj;
    return pj;
}

void student_adamw_array(float *p, const float *g, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    RT_ASSERT(step >= 1);
    const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    const float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
    const float keep = 1.0f - lr * weight_decay;
#pragma omp parallel for simd schedule(static)
    for (int64_t j = 0; j < (int64_t)n; j++)
        adamw_elem(p, g, m, v, j, beta1, beta2, eps, keep, step_size, sqrt_bc2);
}

void student_adamw_step(student_model *m, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t step) {
    RT_ASSERT(m->training && step >= 1);
    /* bias corrections in double, as PyTorch computes them in Python */
    const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    const float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
    const double t0 = omp_get_wtime();
    /* One parallel region for all tensors, no barrier between them: a
     * region per tensor costs a barrier each, which is what hurts when the
     * cores are shared with other processes. */
#pragma omp parallel
    for (int i = 0; i < m->n_tensors; i++) {
        const student_tensor t = m->tensors[i];
        float *p = m->params + t.offset, *g = m->grads + t.offset;
        float *mm = m->adam_m + t.offset, *vv = m->adam_v + t.offset;
        const float keep = t.decay ? 1.0f - lr * weight_decay : 1.0f;
        const int64_t n = (int64_t)t.numel;
        /* In bf16 mode the bf16 weight copy is written in the same pass. */
        uint16_t *pb = m->params_bf ? m->params_bf + t.offset : NULL;
#pragma omp for simd schedule(static) nowait
        for (int64_t j = 0; j < n; j++) {
            float pj = adamw_elem(p, g, mm, vv, j, beta1, beta2, eps, keep, step_size, sqrt_bc2);
            if (pb) pb[j] = student_f2bf(pj);
        }
    }
    /* params_bf is current unless it was stale before this step (someone
     * wrote the parameters): then padding and all are refreshed */
    student_sync_bf16(m);
    m->pack_stale = 1; /* packed copies are made at the next forward */
    if (m->prof_on) m->prof[SPF_ADAMW] += omp_get_wtime() - t0;
}

double student_grad_norm(student_model *m) {
    RT_ASSERT(m->training);
    const double t0 = omp_get_wtime();
    double total = 0.0;
    /* one region, each thread its share of every tensor (see AdamW) */
#pragma omp parallel reduction(+ : total)
    {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        for (int i = 0; i < m->n_tensors; i++) {
            const float *g = m->grads + m->offset[i];
            const int64_t n = (int64_t)m->tensors[i].numel;
            const int64_t j0 = n * id / nt, j1 = n * (id + 1) / nt;
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t j = j0; j < j1; j++) s += (double)g[j] * (double)g[j];
            total += s;
        }
    }
    if (m->prof_on) m->prof[SPF_GRADNORM] += omp_get_wtime() - t0;
    return sqrt(total);
}

void student_grad_scale(student_model *m, float s) {
    RT_ASSERT(m->training);
    float *g = m->grads;
    const int64_t n = (int64_t)m->block_floats; /* padding is 0 and stays 0 */
    const double t0 = omp_get_wtime();
#pragma omp parallel for simd schedule(static)
    for (int64_t j = 0; j < n; j++) g[j] *= s;
    if (m->prof_on) m->prof[SPF_GRADNORM] += omp_get_wtime() - t0;
}

/* ----------------------------------------------------------- schedule */

float student_lr_at(int64_t step, float lr, int64_t warmup, int64_t total, float min_ratio) {
    const double min_lr = (double)min_ratio * lr;
    if (warmup > 0 && step <= warmup) return (float)((double)lr * (double)step / warmup);
    if (step >= total || total <= warmup) return (float)min_lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * progress)));
}
