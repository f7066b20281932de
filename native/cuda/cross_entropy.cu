/*
 * Fused linear + cross-entropy, each logit computed once: the rows are walked in blocks whose full rows x vocab
 * logits fit a bounded scratch (CE_SCRATCH_LOGITS). A block's logits come from one GEMM into scratch; one thread block
 * per row reduces them (max, sum of exp, argmax, target logit) to the loss; with a backward they are overwritten by
 * G = grad_weight * (softmax - onehot) / T, then dx_block = G W and dw += G^T x_block. The loss is terminal, so its
 * gradient is complete once the row's softmax is: no second walk over the vocabulary, no recomputed logits.
 *
 * With cuBLAS and 16-bit W, x and G are rounded to W's dtype so that every GEMM runs on the tensor cores (fp32
 * accumulation, f32 logits, f32 dw); G is formed in fp32 and rounded once. The fallback GEMM keeps everything f32.
 */
#include "common.cuh"

#define THREADS 256
/* Logits held at once: 64 Mi floats = 256 MiB (the CPU library holds 128 MiB; a GPU has the memory, and taller blocks
 * keep the dw update, which reads and writes all of dw once per block, from being bound by memory). */
#define CE_SCRATCH_LOGITS ((size_t)64 << 20)

/*
 * One thread block per row of a block's logits z (n x vocab): loss, argmax and max probability of the row; lse[r]
 * keeps the row's log-sum-exp for the gradient. row0 is the block's first row (for the index error).
 */
__global__ void ce_row_kernel(float* lse, float* loss, int32_t* argmax_out, float* max_prob_out, const float* logits, int vocab, const int32_t* targets,
                              int row0, ee_index_error* err) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double dshared[32];
    const int r = blockIdx.x;
    const float* z = logits + (int64_t)r * vocab;
    float best = -INFINITY;
    int at = 0x7fffffff;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) ee_argmax_merge(best, at, z[j], j);
    ee_block_argmax(best, at, sv, si);
    const float max = fmaxf(-INFINITY, best); /* -inf, not NaN, when the argmax is a NaN */
    double sum = 0.0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(z[j] - max);
    sum = ee_block_sum(sum, dshared);
    if (threadIdx.x == 0) {
        const float l = max + (float)log(sum);
        lse[r] = l;
        const int t = targets[r];
        if (t >= vocab) ee_report_index(err, EE_BAD_TARGET, row0 + r, t, vocab);
        loss[r] = t < 0 ? 0.0f : t < vocab ? l - z[t] : NAN;
        if (argmax_out) argmax_out[r] = at == 0x7fffffff ? 0 : at;
        if (max_prob_out) max_prob_out[r] = (float)(1.0 / sum);
    }
}

/* G = grad_weight * (exp(z - lse) - [j == target]) / T over a block's n x vocab logits, in place (f32) or into g16
 * (rounded once). */
__global__ void ce_grad_kernel(float* logits, void* g16, int g16_dtype, int vocab, const float* lse, const int32_t* targets, const float* grad_weight,
                               float inv_t, int n) {
    const int64_t total = (int64_t)n * vocab;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int r = (int)(i / vocab), j = (int)(i - (int64_t)r * vocab);
        int t = targets[r];
        float g = 0.0f;
        if (t >= 0) {
            float p = expf(logits[i] - lse[r]);
            g = grad_weight[r] * (p - (j == t ? 1.0f : 0.0f)) * inv_t;
        }
        if (g16) ee_store_f32(g16, g16_dtype, i, g);
        else logits[i] = g;
    }
}

EE_API int32_t ee_linear_cross_entropy(float* loss, float* dx, float* dw, int32_t* argmax_out, float* max_prob_out, const float* x, const void* w, int32_t w_dtype, const int32_t* targets, const float* grad_weight, int32_t rows, int32_t dim, int32_t vocab, int32_t row_block, float temperature) {
    if (rows < 0 || dim <= 0 || vocab <= 0) return ee_fail("ee_linear_cross_entropy: bad shape (rows %d, dim %d, vocab %d)", rows, dim, vocab);
    if (!(temperature > 0.0f)) return ee_fail("ee_linear_cross_entropy: temperature %g is not positive", temperature);
    if (!ee_is_float_dtype(w_dtype)) return ee_fail("ee_linear_cross_entropy: unsupported w dtype %d", w_dtype);
    if (rows == 0) return 0;
    if (!loss || !x || !w || !targets) return ee_fail("ee_linear_cross_entropy: null pointer");
    const bool backward = grad_weight && (dx || dw);
    const size_t fit = CE_SCRATCH_LOGITS / (size_t)vocab; /* rows whose logits fit the scratch bound */
    int rb = fit < 1 ? 1 : fit < (size_t)rows ? (int)fit : rows;
    if (row_block > 0 && row_block < rb) rb = row_block;
    const float inv_t = 1.0f / temperature;

    ee_op_lock lock;
    const bool use16 = w_dtype != EE_F32 && ee_gemm_uses_cublas();
    float* logits = (float*)ee_scratch(EE_SCRATCH_CE_LOGITS, (size_t)rb * vocab * sizeof(float));
    if (!logits) return 1;
    float* lse = (float*)ee_scratch(EE_SCRATCH_CE_ROWS, (size_t)rb * sizeof(float));
    if (!lse) return 1;
    const void* a = x; /* x, or x rounded to W's dtype: rows x dim */
    int a_dtype = EE_F32;
    void* g16 = 0;
    if (use16) {
        void* x16 = ee_scratch(EE_SCRATCH_CE_X16, (size_t)rows * dim * 2);
        if (!x16 || ee_cast_2d(x16, w_dtype, x, EE_F32, rows, dim, dim)) return 1;
        a = x16;
        a_dtype = w_dtype;
        if (backward) {
            g16 = ee_scratch(EE_SCRATCH_CE_G16, (size_t)rb * vocab * 2);
            if (!g16) return 1;
        }
    }
    const size_t a_row = (size_t)dim * (use16 ? 2 : sizeof(float));

    for (int r0 = 0; r0 < rows; r0 += rb) {
        const int n = rows - r0 < rb ? rows - r0 : rb;
        const void* ab = (const char*)a + r0 * a_row;
        const int32_t* tb = targets + r0;
        ee_gemm_args g = {0, 1, n, vocab, dim, inv_t, ab, a_dtype, dim, w, w_dtype, dim, 0.0f, logits, vocab};
        if (ee_gemm_run(&g)) return 1;
        ce_row_kernel<<<n, THREADS, 0, ee_stream()>>>(lse, loss + r0, argmax_out ? argmax_out + r0 : 0, max_prob_out ? max_prob_out + r0 : 0, logits, vocab, tb, r0,
                                      ee_index_error_record());
        if (ee_launched("ee_linear_cross_entropy (loss)")) return 1;
        if (!backward) continue;
        ce_grad_kernel<<<ee_grid_for((int64_t)n * vocab, THREADS), THREADS, 0, ee_stream()>>>(logits, g16, w_dtype, vocab, lse, tb, grad_weight + r0, inv_t, n);
        if (ee_launched("ee_linear_cross_entropy (gradient)")) return 1;
        const void* gmat = g16 ? g16 : (const void*)logits;
        const int g_dtype = g16 ? w_dtype : EE_F32;
        if (dx) { /* dx_block = G W */
            ee_gemm_args gx = {0, 0, n, dim, vocab, 1.0f, gmat, g_dtype, vocab, w, w_dtype, dim, 0.0f, dx + (size_t)r0 * dim, dim};
            if (ee_gemm_run(&gx)) return 1;
        }
        if (dw) { /* dw += G^T x_block */
            ee_gemm_args gw = {1, 0, vocab, dim, n, 1.0f, gmat, g_dtype, vocab, ab, a_dtype, dim, 1.0f, dw, dim};
            if (ee_gemm_run(&gw)) return 1;
        }
    }
    return 0;
}
