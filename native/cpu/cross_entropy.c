/*
 * Fused output projection + cross-entropy: logits = x W^T / T are only ever materialised `chunk` vocabulary columns
 * at a time. Walk 1 keeps a running (online) max and sum of exponentials per row, the argmax and the target logit;
 * walk 2 (the backward) turns each chunk into dlogits = grad_weight * (softmax - onehot) / T in place and feeds it
 * to two GEMMs: dx += dlogits W_chunk and dw_chunk += dlogits^T x. All products go through ee_gemm_run (OpenBLAS or
 * the packed fallback, bf16 weights included); the GEMMs are parallel inside and each dw chunk has its own rows.
 * Walk 2 runs the chunks in reverse so that the last chunk, still in the buffer from walk 1, is not recomputed.
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

typedef struct {
    double sum;    /* sum of exp(logit - max) over the columns seen so far */
    float max;     /* running max logit */
    float target;  /* logit of the target column */
    int32_t arg;   /* column of the max (first one on ties) */
} row_state;

/* logits[r][j] = (x_r . W_{c0 + j}) / T for a chunk of cs columns */
static int chunk_logits(float* logits, const float* x, const void* w, int32_t w_dtype, int rows, int dim, int c0, int cs, float inv_t) {
    const ee_gemm_args g = {0, 1, rows, cs, dim, inv_t, 0.0f, x, dim, (const char*)w + (size_t)c0 * dim * ee_dtype_size(w_dtype), w_dtype, dim, logits, cs};
    return ee_gemm_run(&g);
}

static void online_update(row_state* st, const float* z, int c0, int cs, int32_t target) {
    const int best = (int)ee_row_argmax(z, cs);
    if (z[best] > st->max) { /* strict, so an earlier chunk keeps a tie */
        st->sum *= exp((double)st->max - z[best]);
        st->max = z[best];
        st->arg = c0 + best;
    }
    st->sum += ee_row_exp(0, z, cs, st->max, 1.0f, 1.0f);
    if (target >= c0 && target < c0 + cs) st->target = z[target - c0];
}

/* z = scale * (softmax - onehot(target)) in place of the logits z; ignored rows (target < 0) get zeros.
 * softmax = exp(z - max) / sum: shifting by the max (not a rounded log-sum-exp) keeps full precision. */
static void dlogits_row(float* z, const row_state* st, float scale, int c0, int cs, int32_t target) {
    if (target < 0) {
        memset(z, 0, (size_t)cs * sizeof(float));
        return;
    }
    ee_row_exp(z, z, cs, st->max, 1.0f, (float)(scale / st->sum));
    if (target >= c0 && target < c0 + cs) z[target - c0] -= scale;
}

EE_API int32_t ee_linear_cross_entropy(float* loss, float* dx, float* dw, int32_t* argmax_out, float* max_prob_out, const float* x, const void* w, int32_t w_dtype, const int32_t* targets, const float* grad_weight, int32_t rows, int32_t dim, int32_t vocab, int32_t chunk, float temperature) {
    if (!ee_is_float_dtype(w_dtype)) return ee_fail("ee_linear_cross_entropy: unsupported weight dtype %d", w_dtype);
    if (rows < 0 || dim <= 0 || vocab <= 0) return ee_fail("ee_linear_cross_entropy: bad shape rows %d, dim %d, vocab %d", rows, dim, vocab);
    if (!(temperature > 0.0f)) return ee_fail("ee_linear_cross_entropy: temperature %g is not positive", temperature);
    if (rows == 0) return 0;
    if (!loss || !x || !w || !targets) return ee_fail("ee_linear_cross_entropy: null pointer");
    for (int32_t r = 0; r < rows; r++)
        if (targets[r] >= vocab) return ee_fail_index(EE_BAD_TARGET, r, targets[r], vocab, "");
    if (chunk <= 0 || chunk > vocab) chunk = vocab;
    const int n_chunks = ee_ceil_div(vocab, chunk);
    const float inv_t = 1.0f / temperature;
    const size_t w_row = (size_t)dim * ee_dtype_size(w_dtype);

    float* logits = ee_alloc_host((size_t)rows * chunk * sizeof(float));
    row_state* st = malloc((size_t)rows * sizeof(row_state));
    if (!logits || !st) {
        free(logits);
        free(st);
        return ee_fail("ee_linear_cross_entropy: out of memory for %d x %d logits", rows, chunk);
    }
    int rc = 0;
    for (int32_t r = 0; r < rows; r++) st[r] = (row_state){0.0, -INFINITY, 0.0f, 0};

    /* walk 1: loss, argmax and max probability */
    for (int c = 0; c < n_chunks; c++) {
        const int c0 = c * chunk, cs = ee_min(chunk, vocab - c0);
        rc = chunk_logits(logits, x, w, w_dtype, rows, dim, c0, cs, inv_t);
        if (rc) break;
        EE_PARALLEL_FOR(ee_threads_for(20.0 * rows * cs), r, rows, online_update(&st[r], logits + r * cs, c0, cs, targets[r]));
    }
    if (rc) goto done;
    for (int32_t r = 0; r < rows; r++) {
        /* logsumexp - target = (max - target) + log(sum), in double: a confident row's loss is a small difference */
        loss[r] = targets[r] < 0 ? 0.0f : (float)(((double)st[r].max - st[r].target) + log(st[r].sum));
        if (argmax_out) argmax_out[r] = st[r].arg;
        if (max_prob_out) max_prob_out[r] = (float)(1.0 / st[r].sum);
    }
    if (!grad_weight || (!dx && !dw)) goto done;

    /* walk 2: gradient of sum_r grad_weight[r] * loss[r], last chunk first (its logits are still in the buffer) */
    for (int c = n_chunks - 1; c >= 0; c--) {
        const int c0 = c * chunk, cs = ee_min(chunk, vocab - c0);
        if (c != n_chunks - 1 && (rc = chunk_logits(logits, x, w, w_dtype, rows, dim, c0, cs, inv_t))) break;
        EE_PARALLEL_FOR(ee_threads_for(20.0 * rows * cs), r, rows, dlogits_row(logits + r * cs, &st[r], grad_weight[r] * inv_t, c0, cs, targets[r]));
        const void* w_chunk = (const char*)w + (size_t)c0 * w_row;
        if (dx) {
            const ee_gemm_args g = {0, 0, rows, dim, cs, 1.0f, c == n_chunks - 1 ? 0.0f : 1.0f, logits, cs, w_chunk, w_dtype, dim, dx, dim};
            if ((rc = ee_gemm_run(&g))) break;
        }
        if (dw) {
            const ee_gemm_args g = {1, 0, cs, dim, rows, 1.0f, 1.0f, logits, cs, x, EE_F32, dim, dw + (size_t)c0 * dim, dim};
            if ((rc = ee_gemm_run(&g))) break;
        }
    }
done:
    free(logits);
    free(st);
    return rc;
}
