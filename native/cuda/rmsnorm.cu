/* RMSNorm forward and backward (row statistics in double, like the CPU library: cpu/rmsnorm.c). */
#include "common.cuh"

#define THREADS 256

/* One block per row: inv = 1 / sqrt(mean(x^2) + eps); out = x * inv * w (out may alias x: the sum is taken first);
 * with out16 also out rounded to dtype16, as ee_cast_2d would round it (a layer's GEMMs then need no cast launch). */
__global__ void rmsnorm_fwd_kernel(float* out, float* inv_rms, const float* x, const float* w, int dim, float eps, void* out16, int dtype16) {
    __shared__ double shared[32];
    const float* xr = x + (int64_t)blockIdx.x * dim;
    float* o = out + (int64_t)blockIdx.x * dim;
    double ss = 0.0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) ss += (double)xr[j] * xr[j];
    ss = ee_block_sum(ss, shared);
    float inv = (float)(1.0 / sqrt(ss / dim + eps));
    if (inv_rms && threadIdx.x == 0) inv_rms[blockIdx.x] = inv;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        const float y = xr[j] * inv * w[j];
        o[j] = y;
        if (out16) ee_store_f32(out16, dtype16, (int64_t)blockIdx.x * dim + j, y);
    }
}

int ee_rmsnorm_rounded(float* out, float* inv_rms, const float* x, const float* w, int32_t rows, int32_t dim, float eps, void* out16, int dtype16) {
    if (rows <= 0 || dim <= 0) return rows < 0 || dim < 0 ? ee_fail("ee_rmsnorm_fwd: negative size") : 0;
    if (!out || !x || !w) return ee_fail("ee_rmsnorm_fwd: null pointer");
    rmsnorm_fwd_kernel<<<rows, THREADS, 0, ee_stream()>>>(out, inv_rms, x, w, dim, eps, out16, dtype16);
    return ee_launched("ee_rmsnorm_fwd");
}

EE_API int32_t ee_rmsnorm_fwd(float* out, float* inv_rms, const float* x, const float* w, int32_t rows, int32_t dim, float eps) {
    return ee_rmsnorm_rounded(out, inv_rms, x, w, rows, dim, eps, 0, 0);
}

/* dw partials: block (column tile, row chunk) sums dout * x * inv over its rows in row order. */
#define DW_ROWS 256

__global__ void rmsnorm_dw_partial_kernel(float* partial, const float* dout, const float* x, const float* inv_rms, int rows, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    int r0 = blockIdx.y * DW_ROWS, r1 = min(r0 + DW_ROWS, rows);
    float s = 0.0f;
    for (int r = r0; r < r1; r++) s += dout[(int64_t)r * dim + j] * x[(int64_t)r * dim + j] * inv_rms[r];
    partial[(int64_t)blockIdx.y * dim + j] = s;
}

/* dw[j] += the chunk partials, added in chunk order (deterministic). */
__global__ void rmsnorm_dw_sum_kernel(float* dw, const float* partial, int chunks, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += partial[(int64_t)c * dim + j];
    dw[j] += s;
}

/* With g = dout * w: dx = inv * (g - x * inv^2 * mean(g * x)). dx may alias dout: each element is read by the thread
 * that writes it, after the block-wide dot product. */
__global__ void rmsnorm_dx_kernel(float* dx, const float* dout, const float* x, const float* w, const float* inv_rms, int dim) {
    __shared__ double shared[32];
    const int64_t off = (int64_t)blockIdx.x * dim;
    const float *g = dout + off, *xr = x + off;
    float* d = dx + off;
    const float inv = inv_rms[blockIdx.x];
    double dot = 0.0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dot += (double)g[j] * w[j] * xr[j];
    dot = ee_block_sum(dot, shared);
    float c = (float)(dot / dim) * inv * inv;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) d[j] = inv * (g[j] * w[j] - xr[j] * c);
}

EE_API int32_t ee_rmsnorm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* inv_rms, int32_t rows, int32_t dim) {
    if (rows <= 0 || dim <= 0) return rows < 0 || dim < 0 ? ee_fail("ee_rmsnorm_bwd: negative size") : 0;
    if (!dout || !x || !w || !inv_rms) return ee_fail("ee_rmsnorm_bwd: null pointer");
    if (dw) { /* first, so that dx may alias dout */
        ee_op_lock lock;
        int chunks = (rows + DW_ROWS - 1) / DW_ROWS;
        float* partial = (float*)ee_scratch(EE_SCRATCH_REDUCE, (size_t)chunks * dim * sizeof(float));
        if (!partial) return 1;
        dim3 grid((dim + THREADS - 1) / THREADS, chunks);
        rmsnorm_dw_partial_kernel<<<grid, THREADS, 0, ee_stream()>>>(partial, dout, x, inv_rms, rows, dim);
        rmsnorm_dw_sum_kernel<<<(dim + THREADS - 1) / THREADS, THREADS, 0, ee_stream()>>>(dw, partial, chunks, dim);
        if (ee_launched("ee_rmsnorm_bwd (dw)")) return 1;
    }
    if (dx) {
        rmsnorm_dx_kernel<<<rows, THREADS, 0, ee_stream()>>>(dx, dout, x, w, inv_rms, dim);
        if (ee_launched("ee_rmsnorm_bwd (dx)")) return 1;
    }
    return 0;
}
