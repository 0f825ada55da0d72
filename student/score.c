/* Log-likelihood of whole token sequences: what a bias probe (CrowS-Pairs
 * style sentence pairs, trainer/pairs.c) compares between two sentences.
 *
 * It is the full-window forward eval and training use, one sequence per
 * row: the row's first len-1 tokens are its inputs, padded with token 0 up
 * to seq_len (causal attention: later pads cannot change earlier
 * positions), and its targets are tokens 1..len-1 with every padded
 * position masked, so the masked cross-entropy of the row is exactly minus
 * the sum of its token log-probabilities. Any model the forward runs (f32,
 * bf16, int8 deploy) scores the same way. */
#include <stdlib.h>
#include <string.h>

#include "student.h"

rt_status student_seq_logprob(student_model *m, const int32_t *const *seqs, const int *lens,
                              int n, double *logprob) {
    const student_config *c = student_cfg(m);
    const int T = c->seq_len, V = c->vocab_size, maxb = student_max_batch(m);
    for (int i = 0; i < n; i++)
        if (lens[i] < 1 || lens[i] > T + 1)
            return rt_fail(RT_ERR_ARGS,
                           "sequence %d has %d tokens; a model of seq_len %d scores 1 to %d", i,
                           lens[i], T, T + 1);
    int32_t *inputs = malloc((size_t)maxb * (size_t)T * sizeof *inputs);
    int32_t *targets = malloc((size_t)maxb * (size_t)T * sizeof *targets);
    rt_status st = RT_OK;
    if (!inputs || !targets) {
        st = rt_fail(RT_ERR_NOMEM, "scoring sequences: out of memory for %d rows", maxb);
        goto cleanup;
    }
    for (int i0 = 0; i0 < n; i0 += maxb) {
        const int B = n - i0 < maxb ? n - i0 : maxb;
        for (int b = 0; b < B; b++) {
            const int32_t *s = seqs[i0 + b];
            const int len = lens[i0 + b];
            int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
            for (int t = 0; t < T; t++) {
                in[t] = t < len - 1 ? s[t] : 0;
                tg[t] = t < len - 1 ? s[t + 1] : -1;
            }
        }
        if ((st = student_forward(m, inputs, B)) != RT_OK) goto cleanup;
        const float *logits = student_logits(m);
        for (int b = 0; b < B; b++)
            logprob[i0 + b] = lens[i0 + b] < 2
                                  ? 0.0
                                  : -student_loss_ce(logits + (size_t)b * T * V,
                                                     targets + (size_t)b * T, T, V, NULL, 0);
    }
cleanup:
    free(inputs);
    free(targets);
    return st;
}
