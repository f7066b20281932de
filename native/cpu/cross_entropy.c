/*
 * Fused output projection + cross-entropy that computes every logit once and never holds all rows x vocab of them.
 * The rows are walked in blocks: a block gets its full rows x vocab logits = x W^T / T in a bounded scratch (one
 * GEMM), each row is reduced (max, argmax, sum of exponentials, target logit: the loss) and, with a backward, turned
 * in place into dlogits = grad_weight * (softmax - onehot) / T; then dx_block = dlogits W and dw += dlogits^T x_block
 * (two GEMMs). A loss is terminal, so its gradient is complete as soon as the row's softmax is: no second walk over the
 * vocabulary and no recomputed logits (walking the vocabulary in chunks instead would need every row's log-sum-exp
 * before the first dw update, hence a second walk). All products go through ee_gemm_run (OpenBLAS or the packed
 * fallback, bf16/f16 weights included); the per-row work runs on the pool through ee_parallel_range.
 */
#include <math.h>

#include "internal.h"

/* Logits held at once: 8 Mi floats = 32 MiB, e.g. 262 rows of a 32000-word vocabulary (at least one row whatever the vocabulary). */
#define CE_SCRATCH_LOGITS ((size_t)8 << 20)

typedef struct {
    float* z;               /* block logits, rb x vocab, become dlogits in place */
    float* loss;
    int32_t* argmax_out;
    float* max_prob_out;
    const int32_t* targets; /* of the block's first row */
    const float* grad_weight; /* of the block's first row, or 0 = no gradient */
    int vocab;
    float inv_t;
} ce_block;

/* Rows [begin, end) of a block: loss, argmax and max probability; then dlogits in place of the logits. */
static void ce_rows(void* ctx, int64_t begin, int64_t end) {
    const ce_block* b = ctx;
    const int v = b->vocab;
    for (int64_t r = begin; r < end; r++) {
        float* z = b->z + r * v;
        const int32_t t = b->targets[r];
        const int64_t arg = ee_row_argmax(z, v);
        const float max = z[arg];
        const float zt = t >= 0 ? z[t] : 0.0f;
        /* softmax = exp(z - max) / sum: shifting by the max (not a rounded log-sum-exp) keeps full precision */
        const double sum = ee_row_exp(b->grad_weight ? z : 0, z, v, max, 1.0f, 1.0f);
        /* logsumexp - target = (max - target) + log(sum), in double: a confident row's loss is a small difference */
        b->loss[r] = t < 0 ? 0.0f : (float)(((double)max - zt) + log(sum));
        if (b->argmax_out) b->argmax_out[r] = (int32_t)arg;
        if (b->max_prob_out) b->max_prob_out[r] = (float)(1.0 / sum);
        if (!b->grad_weight) continue;
        if (t < 0) {
            memset(z, 0, (size_t)v * sizeof(float));
            continue;
        }
        const float scale = b->grad_weight[r] * b->inv_t;
        const float s = (float)(scale / sum);
        for (int j = 0; j < v; j++) z[j] *= s;
        z[t] -= scale;
    }
}

EE_API int32_t ee_linear_cross_entropy(float* loss, float* dx, float* dw, int32_t* argmax_out, float* max_prob_out, const float* x, const void* w, int32_t w_dtype, const int32_t* targets, const float* grad_weight, int32_t rows, int32_t dim, int32_t vocab, int32_t row_block, float temperature) {
    if (!ee_is_float_dtype(w_dtype)) return ee_fail("ee_linear_cross_entropy: unsupported weight dtype %d", w_dtype);
    if (rows < 0 || dim <= 0 || vocab <= 0) return ee_fail("ee_linear_cross_entropy: bad shape rows %d, dim %d, vocab %d", rows, dim, vocab);
    if (!(temperature > 0.0f)) return ee_fail("ee_linear_cross_entropy: temperature %g is not positive", temperature);
    if (rows == 0) return 0;
    if (!loss || !x || !w || !targets) return ee_fail("ee_linear_cross_entropy: null pointer");
    for (int32_t r = 0; r < rows; r++)
        if (targets[r] >= vocab) return ee_fail_index(EE_BAD_TARGET, r, targets[r], vocab, "");
    const int backward = grad_weight && (dx || dw);
    const size_t fit = CE_SCRATCH_LOGITS / (size_t)vocab; /* rows whose logits fit the scratch bound */
    int rb = fit < 1 ? 1 : fit < (size_t)rows ? (int)fit : rows;
    if (row_block > 0 && row_block < rb) rb = row_block;
    float* logits = ee_scratch(EE_SCRATCH_CE_LOGITS, (size_t)rb * vocab * sizeof(float));
    if (!logits) return ee_fail("ee_linear_cross_entropy: out of memory for %d x %d logits", rb, vocab);
    const float inv_t = 1.0f / temperature;

    for (int r0 = 0; r0 < rows; r0 += rb) {
        const int n = ee_min(rb, rows - r0);
        const float* xb = x + (size_t)r0 * dim;
        const ee_gemm_args zg = {0, 1, n, vocab, dim, inv_t, 0.0f, xb, dim, w, w_dtype, dim, logits, vocab};
        int rc = ee_gemm_run(&zg);
        if (rc) return rc;
        ce_block b = {logits, loss + r0, argmax_out ? argmax_out + r0 : 0, max_prob_out ? max_prob_out + r0 : 0, targets + r0,
                      backward ? grad_weight + r0 : 0, vocab, inv_t};
        ee_parallel_range(ee_threads_for(20.0 * n * vocab), n, ce_rows, &b);
        if (!backward) continue;
        if (dx) { /* dx_block = dlogits W */
            const ee_gemm_args g = {0, 0, n, dim, vocab, 1.0f, 0.0f, logits, vocab, w, w_dtype, dim, dx + (size_t)r0 * dim, dim};
            if ((rc = ee_gemm_run(&g))) return rc;
        }
        if (dw) { /* dw += dlogits^T x_block */
            const ee_gemm_args g = {1, 0, vocab, dim, n, 1.0f, 1.0f, logits, vocab, xb, EE_F32, dim, dw, dim};
            if ((rc = ee_gemm_run(&g))) return rc;
        }
    }
    return 0;
}
