/*
 * Fused output projection + cross-entropy that computes every logit once and never holds all rows x vocab of them.
 * The rows are walked in blocks: a block gets its full rows x vocab logits = x W^T / T in a bounded scratch (one
 * GEMM), and each row is reduced in two passes over its logits (max with its first index; then the exponentials
 * e = exp(z - max), written in place, with their sum: the loss). A loss is terminal, so its gradient is complete as
 * soon as the row's softmax is: dlogits[r] = s_r e[r] - c_r onehot(t_r) with c_r = grad_weight[r] / T and
 * s_r = c_r / sum_r, no second walk over the vocabulary and no recomputed logits (walking the vocabulary in chunks
 * instead would need every row's log-sum-exp before the first dw update, hence a second walk). The per-row factors
 * are not applied to the rows x vocab exponentials (a third pass over the largest array) but to the small sides of
 * the two backward GEMMs: dx_block = diag(s) (e W) - c onehot W, and dw += e^T (diag(s) x_block) - onehot^T (c x_block),
 * the one-hot terms being one row of W or dw per row. All products go through ee_gemm_run (OpenBLAS or the packed
 * fallback, bf16/f16 weights included); the per-row work runs on the pool through ee_parallel_range.
 */
#include <math.h>

#include "internal.h"

/* dx_block = e W is cut along the vocabulary into this many parts, summed in a fixed order (the same bits for every
 * thread count): sliced by rows or columns of dx instead, every thread would read the whole rows x vocab block. */
#define CE_DX_PARTS 8

/* Logits held at once: 32 Mi floats = 128 MiB, e.g. 1048 rows of a 32000-word vocabulary (at least one row whatever
 * the vocabulary). Every block's three GEMMs have OpenBLAS pack W (or the block's exponentials) again: with 32 MiB
 * blocks (262 rows) that packing was ~7% of an EE-Tuning step (perf); TuningStepReport, 4 alternations on the 2-core
 * Zen 5: step / sgemm 0.82, 0.81, 0.82, 0.80 -> 0.87, 0.84, 0.89, 0.86 (64 MiB: 0.83, 0.83; 256 MiB: 0.83, 0.85). */
#define CE_SCRATCH_LOGITS ((size_t)32 << 20)

typedef struct {
    float* z;               /* block logits, rb x vocab, become e = exp(z - max) in place with a backward */
    float* loss;
    int32_t* argmax_out;
    float* max_prob_out;
    float* e_scale;         /* s_r: dlogits[r] = s_r e[r] - c_r onehot(t_r) (0 for an ignored row, whose e is zeroed) */
    const int32_t* targets; /* of the block's first row */
    const float* grad_weight; /* of the block's first row, or 0 = no gradient */
    int vocab;
    float inv_t;
} ce_block;

/* Rows [begin, end) of a block: loss, argmax and max probability; with a backward, e in place of the logits and s_r. */
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
        const double sum = ee_row_exp(b->grad_weight && t >= 0 ? z : 0, z, v, max, 1.0f, 1.0f);
        /* logsumexp - target = (max - target) + log(sum), in double: a confident row's loss is a small difference */
        b->loss[r] = t < 0 ? 0.0f : (float)(((double)max - zt) + log(sum));
        if (b->argmax_out) b->argmax_out[r] = (int32_t)arg;
        if (b->max_prob_out) b->max_prob_out[r] = (float)(1.0 / sum);
        if (!b->grad_weight) continue;
        if (t < 0) {
            memset(z, 0, (size_t)v * sizeof(float));
            b->e_scale[r] = 0.0f;
            continue;
        }
        b->e_scale[r] = (float)(b->grad_weight[r] * b->inv_t / sum);
    }
}

/* Part p of dx_block = e W over vocabulary entries [vocab p / P, vocab (p + 1) / P) (multiples of 16), into its own
 * n x dim buffer; ee_gemm_run runs alone on the calling thread here (a nested region). */
typedef struct {
    const float* e;
    const void* w;
    int w_dtype, n, dim, vocab;
    float* parts;
    _Atomic int rc;
} dx_job;

static void dx_part(void* ctx, int64_t begin, int64_t end) {
    dx_job* job = ctx;
    const int units = ee_ceil_div(job->vocab, 16);
    for (int64_t p = begin; p < end; p++) {
        const int k0 = ee_min(job->vocab, (int)(units * p / CE_DX_PARTS) * 16), k1 = ee_min(job->vocab, (int)(units * (p + 1) / CE_DX_PARTS) * 16);
        float* part = job->parts + (size_t)p * job->n * job->dim;
        if (k0 == k1) {
            memset(part, 0, (size_t)job->n * job->dim * sizeof(float));
            continue;
        }
        const char* wk = (const char*)job->w + (size_t)k0 * job->dim * ee_dtype_size(job->w_dtype);
        const ee_gemm_args g = {0, 0, job->n, job->dim, k1 - k0, 1.0f, 0.0f, job->e + k0, job->vocab, wk, job->w_dtype, job->dim, part, job->dim};
        const int rc = ee_gemm_run(&g);
        if (rc) job->rc = rc;
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
    /* the block's logits, then s_r, diag(s) x_block and the parts of dx_block for the backward */
    const size_t logit_floats = (size_t)rb * vocab, side_floats = backward ? (size_t)rb * (1 + dim + CE_DX_PARTS * dim) : 0;
    float* logits = ee_scratch(EE_SCRATCH_CE_LOGITS, (logit_floats + side_floats) * sizeof(float));
    if (!logits) return ee_fail("ee_linear_cross_entropy: out of memory for %d x %d logits", rb, vocab);
    float* e_scale = logits + logit_floats;
    float* xs = e_scale + rb;
    float* dx_parts = xs + (size_t)rb * dim;
    const float inv_t = 1.0f / temperature;

    for (int r0 = 0; r0 < rows; r0 += rb) {
        const int n = ee_min(rb, rows - r0);
        const float* xb = x + (size_t)r0 * dim;
        const int32_t* tb = targets + r0;
        const ee_gemm_args zg = {0, 1, n, vocab, dim, inv_t, 0.0f, xb, dim, w, w_dtype, dim, logits, vocab};
        int rc = ee_gemm_run(&zg);
        if (rc) return rc;
        ce_block b = {logits, loss + r0, argmax_out ? argmax_out + r0 : 0, max_prob_out ? max_prob_out + r0 : 0, e_scale, tb,
                      backward ? grad_weight + r0 : 0, vocab, inv_t};
        ee_parallel_range(ee_threads_for(20.0 * n * vocab), n, ce_rows, &b);
        if (!backward) continue;
        if (dx) { /* dx_block = diag(s) (e W) - c onehot W */
            float* dxb = dx + (size_t)r0 * dim;
            dx_job job = {logits, w, w_dtype, n, dim, vocab, dx_parts, 0};
            ee_parallel_range(ee_threads_for(EE_GEMM_WORK(n, dim, vocab)), CE_DX_PARTS, dx_part, &job);
            if (job.rc) return job.rc;
            for (int r = 0; r < n; r++) {
                float* d = dxb + (size_t)r * dim;
                for (int i = 0; i < dim; i++) {
                    float sum = 0.0f;
                    for (int p = 0; p < CE_DX_PARTS; p++) sum += dx_parts[((size_t)p * n + r) * dim + i];
                    d[i] = sum;
                }
                if (tb[r] < 0) continue; /* e is 0: so is the product, as the gradient */
                const float s = e_scale[r], c = grad_weight[r0 + r] * inv_t;
                const size_t wt = (size_t)tb[r] * dim;
                for (int i = 0; i < dim; i++) d[i] = s * d[i] - c * ee_load_f32(w, w_dtype, wt + i);
            }
        }
        if (dw) { /* dw += e^T (diag(s) x_block) - onehot^T (c x_block) */
            for (int r = 0; r < n; r++)
                for (int i = 0; i < dim; i++) xs[(size_t)r * dim + i] = e_scale[r] * xb[(size_t)r * dim + i];
            const ee_gemm_args g = {1, 0, vocab, dim, n, 1.0f, 1.0f, logits, vocab, xs, EE_F32, dim, dw, dim};
            if ((rc = ee_gemm_run(&g))) return rc;
            for (int r = 0; r < n; r++) {
                if (tb[r] < 0) continue;
                const float c = grad_weight[r0 + r] * inv_t;
                float* d = dw + (size_t)tb[r] * dim;
                for (int i = 0; i < dim; i++) d[i] -= c * xb[(size_t)r * dim + i];
            }
        }
    }
    return 0;
}
