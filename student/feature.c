/* Feature-map distillation loss: the distance between a student hidden
 * state and a teacher hidden state, through a learned linear projection
 * when the widths differ. The projection matmuls go through oneDNN's
 * row-major sgemm (y = h W, dW += h^T dy, dh += dy W^T). */
#include <math.h>

#include "student_internal.h"

static rt_status sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc) {
    rt_status st = RT_OK;
    STUDENT_DNNL_CHECK(dnnl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc));
cleanup:
    return st;
}

rt_status student_feature_loss(const float *h, const float *W, const float *t, int64_t n, int Cs,
                               int Ct, int cosine, float scale, float *dh, float *dW, float *y,
                               float *dy, double *loss) {
    rt_status st = RT_OK;
    RT_ASSERT(W || Cs == Ct);
    const float *yy = h;
    if (W) {
        RT_TRY(sgemm('N', 'N', n, Ct, Cs, h, Cs, W, Ct, 0.0f, y, Ct));
        yy = y;
    }
    double total = 0.0;
    if (!cosine) {
        const double inv = 1.0 / ((double)n * Ct);
#pragma omp parallel for reduction(+ : total) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int c = 0; c < Ct; c++) {
                const float d = yy[i * Ct + c] - t[i * Ct + c];
                s += (double)d * d;
                dy[i * Ct + c] = (float)(2.0 * inv * scale) * d;
            }
            total += s;
        }
        total *= inv;
    } else {
        /* 1 - cos(y, t); d/dy = -(t/(|y||t|) - cos * y/|y|^2) */
#pragma omp parallel for reduction(+ : total) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float *yi = yy + i * Ct, *ti = t + i * Ct;
            double yt = 0.0, y2 = 0.0, t2 = 0.0;
            for (int c = 0; c < Ct; c++) {
                yt += (double)yi[c] * ti[c];
                y2 += (double)yi[c] * yi[c];
                t2 += (double)ti[c] * ti[c];
            }
            const double ny = sqrt(y2) + 1e-8, nt = sqrt(t2) + 1e-8, cs = yt / (ny * nt);
            total += 1.0 - cs;
            const double g = (double)scale / (double)n;
            for (int c = 0; c < Ct; c++)
                dy[i * Ct + c] = (float)(-g * (ti[c] / (ny * nt) - cs * yi[c] / (ny * ny)));
        }
        total /= (double)n;
    }
    *loss = total;
    if (W) {
        if (dW) RT_TRY(sgemm('T', 'N', Cs, Ct, n, h, Cs, dy, Ct, 1.0f, dW, Ct));
        if (dh) RT_TRY(sgemm('N', 'T', n, Cs, Ct, dy, Ct, W, Ct, 1.0f, dh, Cs));
    } else if (dh) {
        student_add_inplace(dh, dy, (size_t)n * Ct);
    }
    return st;
}
