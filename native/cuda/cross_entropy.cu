/*
 * Fused linear + cross-entropy: logits = x W^T / T are never materialised beyond rows x chunk. Walk 1 computes each
 * chunk of logits with a GEMM into scratch and folds it into per-row online statistics (max, sum of exp, argmax,
 * target logit). Walk 2 (backward) recomputes each chunk (skipped when one chunk covers the vocabulary), overwrites
 * it with G = grad_weight * (softmax - onehot) / T, then dx (+)= G W_chunk and dw_chunk += G^T x.
 *
 * With cuBLAS and 16-bit W, x and G are rounded to W's dtype so that every GEMM runs on the tensor cores (fp32
 * accumulation, f32 logits, f32 dw); G is formed in fp32 and rounded once. The fallback GEMM keeps everything f32.
 */
#include "common.cuh"

#define THREADS 256

struct ce_rows {
    double* sum;  /* sum of exp(z - max) */
    float* max;
    float* best;  /* argmax value (== max unless NaN) */
    float* zt;    /* target logit */
    float* lse;
    int* idx;
};

__global__ void ce_init_kernel(ce_rows s, int rows) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    s.sum[r] = 0.0;
    s.max[r] = -INFINITY;
    s.best[r] = -INFINITY;
    s.zt[r] = NAN;
    s.idx[r] = 0x7fffffff;
}

/* One block per row: folds logits z[0, cc) (= vocabulary columns v0 + j) into the row's running statistics. */
__global__ void ce_stats_kernel(ce_rows s, const float* logits, int ld, int cc, int v0, const int32_t* targets) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double dshared[32];
    const int r = blockIdx.x;
    const float* z = logits + (int64_t)r * ld;
    float best = -INFINITY;
    int at = 0x7fffffff;
    for (int j = threadIdx.x; j < cc; j += blockDim.x) ee_argmax_merge(best, at, z[j], j);
    ee_block_argmax(best, at, sv, si);
    const float m_old = s.max[r], m_new = fmaxf(m_old, best);
    double sum = 0.0;
    for (int j = threadIdx.x; j < cc; j += blockDim.x) sum += expf(z[j] - m_new);
    sum = ee_block_sum(sum, dshared);
    if (threadIdx.x == 0) {
        s.sum[r] = s.sum[r] * (double)expf(m_old - m_new) + sum;
        s.max[r] = m_new;
        if (at != 0x7fffffff && (best > s.best[r] || s.idx[r] == 0x7fffffff)) { /* strict: earlier chunks win ties */
            s.best[r] = best;
            s.idx[r] = v0 + at;
        }
        int t = targets[r];
        if (t >= v0 && t < v0 + cc) s.zt[r] = z[t - v0];
    }
}

__global__ void ce_finish_kernel(ce_rows s, float* loss, int32_t* argmax_out, float* max_prob_out, const int32_t* targets, int rows, int vocab, ee_index_error* err) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float lse = s.max[r] + (float)log(s.sum[r]);
    s.lse[r] = lse;
    int t = targets[r];
    if (t >= vocab) ee_report_index(err, EE_BAD_TARGET, r, t, vocab);
    loss[r] = t < 0 ? 0.0f : t < vocab ? lse - s.zt[r] : NAN;
    if (argmax_out) argmax_out[r] = s.idx[r] == 0x7fffffff ? 0 : s.idx[r];
    if (max_prob_out) max_prob_out[r] = (float)(1.0 / s.sum[r]);
}

/* G = grad_weight * (exp(z - lse) - [v == target]) / T over one chunk, in place (f32) or into g16 (rounded once). */
__global__ void ce_grad_kernel(float* logits, void* g16, int g16_dtype, int ld, int cc, int v0, ce_rows s, const int32_t* targets,
                               const float* grad_weight, float inv_t, int rows) {
    const int64_t total = (int64_t)rows * cc;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int r = (int)(i / cc), j = (int)(i - (int64_t)r * cc);
        int64_t at = (int64_t)r * ld + j;
        int t = targets[r];
        float g = 0.0f;
        if (t >= 0) {
            float p = expf(logits[at] - s.lse[r]);
            g = grad_weight[r] * (p - (v0 + j == t ? 1.0f : 0.0f)) * inv_t;
        }
        if (g16) ee_store_f32(g16, g16_dtype, at, g);
        else logits[at] = g;
    }
}

EE_API int32_t ee_linear_cross_entropy(float* loss, float* dx, float* dw, int32_t* argmax_out, float* max_prob_out, const float* x, const void* w, int32_t w_dtype, const int32_t* targets, const float* grad_weight, int32_t rows, int32_t dim, int32_t vocab, int32_t chunk, float temperature) {
    if (rows < 0 || dim <= 0 || vocab <= 0) return ee_fail("ee_linear_cross_entropy: bad shape (rows %d, dim %d, vocab %d)", rows, dim, vocab);
    if (!(temperature > 0.0f)) return ee_fail("ee_linear_cross_entropy: temperature %g is not positive", temperature);
    if (!ee_is_float_dtype(w_dtype)) return ee_fail("ee_linear_cross_entropy: unsupported w dtype %d", w_dtype);
    if (rows == 0) return 0;
    if (!loss || !x || !w || !targets) return ee_fail("ee_linear_cross_entropy: null pointer");
    const bool backward = grad_weight && (dx || dw);
    /* chunk <= 0 or > vocab: the whole vocabulary at once, as in the CPU library */
    const int ld = chunk > 0 && chunk < vocab ? chunk : vocab, chunks = (vocab + ld - 1) / ld;
    const float inv_t = 1.0f / temperature;
    const size_t wsize = ee_dtype_size(w_dtype);

    ee_op_lock lock;
    const bool use16 = w_dtype != EE_F32 && ee_gemm_uses_cublas();
    float* logits = (float*)ee_scratch(EE_SCRATCH_CE_LOGITS, (size_t)rows * ld * sizeof(float));
    if (!logits) return 1;
    char* rs = (char*)ee_scratch(EE_SCRATCH_CE_ROWS, (size_t)rows * (sizeof(double) + 5 * sizeof(float)));
    if (!rs) return 1;
    ce_rows s;
    s.sum = (double*)rs;
    s.max = (float*)(s.sum + rows);
    s.best = s.max + rows;
    s.zt = s.best + rows;
    s.lse = s.zt + rows;
    s.idx = (int*)(s.lse + rows);
    const void* a = x;
    int a_dtype = EE_F32;
    void* g16 = 0;
    if (use16) {
        void* x16 = ee_scratch(EE_SCRATCH_CE_X16, (size_t)rows * dim * 2);
        if (!x16 || ee_cast_2d(x16, w_dtype, x, EE_F32, rows, dim, dim)) return 1;
        a = x16;
        a_dtype = w_dtype;
        if (backward) {
            g16 = ee_scratch(EE_SCRATCH_CE_G16, (size_t)rows * ld * 2);
            if (!g16) return 1;
        }
    }

    ce_init_kernel<<<(rows + THREADS - 1) / THREADS, THREADS>>>(s, rows);
    if (ee_launched("ee_linear_cross_entropy (init)")) return 1;
    for (int c = 0; c < chunks; c++) {
        const int v0 = c * ld, cc = vocab - v0 < ld ? vocab - v0 : ld;
        ee_gemm_args g = {0, 1, rows, cc, dim, inv_t, a, a_dtype, dim, (const char*)w + (size_t)v0 * dim * wsize, w_dtype, dim, 0.0f, logits, ld};
        if (ee_gemm_run(&g)) return 1;
        ce_stats_kernel<<<rows, THREADS>>>(s, logits, ld, cc, v0, targets);
        if (ee_launched("ee_linear_cross_entropy (statistics)")) return 1;
    }
    ce_finish_kernel<<<(rows + THREADS - 1) / THREADS, THREADS>>>(s, loss, argmax_out, max_prob_out, targets, rows, vocab, ee_index_error_record());
    if (ee_launched("ee_linear_cross_entropy (loss)")) return 1;
    if (!backward) return 0;

    for (int c = 0; c < chunks; c++) {
        const int v0 = c * ld, cc = vocab - v0 < ld ? vocab - v0 : ld;
        const void* wc = (const char*)w + (size_t)v0 * dim * wsize;
        if (chunks > 1) {
            ee_gemm_args g = {0, 1, rows, cc, dim, inv_t, a, a_dtype, dim, wc, w_dtype, dim, 0.0f, logits, ld};
            if (ee_gemm_run(&g)) return 1;
        }
        ce_grad_kernel<<<ee_grid_for((int64_t)rows * cc, THREADS), THREADS>>>(logits, g16, w_dtype, ld, cc, v0, s, targets, grad_weight, inv_t, rows);
        if (ee_launched("ee_linear_cross_entropy (gradient)")) return 1;
        const void* gmat = g16 ? g16 : (const void*)logits;
        const int g_dtype = g16 ? w_dtype : EE_F32;
        if (dx) { /* dx = sum over chunks of G_c W_c: written by the first chunk */
            ee_gemm_args g = {0, 0, rows, dim, cc, 1.0f, gmat, g_dtype, ld, wc, w_dtype, dim, c == 0 ? 0.0f : 1.0f, dx, dim};
            if (ee_gemm_run(&g)) return 1;
        }
        if (dw) { /* dw[v0 : v0 + cc] += G_c^T x */
            ee_gemm_args g = {1, 0, cc, dim, rows, 1.0f, gmat, g_dtype, ld, a, a_dtype, dim, 1.0f, dw + (size_t)v0 * dim, dim};
            if (ee_gemm_run(&g)) return 1;
        }
    }
    return 0;
}
