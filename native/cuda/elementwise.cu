/*
 * Elementwise kernels: casts, add/axpby/bias/scale and the deterministic sum of squares. Grid-stride loops with
 * 64-bit indices; fp32 arithmetic in the same order as the CPU library (cpu/elementwise.c).
 */
#include "common.cuh"

#define THREADS 256

/* ---- casts ----------------------------------------------------------------------------------------------------- */

__global__ void cast_kernel(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        ee_store_f32(dst, dst_dtype, i, ee_load_f32(src, src_dtype, i));
}

/* rows x cols of a matrix with leading dimension ld, packed into dst. */
__global__ void cast_2d_kernel(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t rows, int64_t cols, int64_t ld) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i - r * cols;
        ee_store_f32(dst, dst_dtype, i, ee_load_f32(src, src_dtype, r * ld + c));
    }
}

int ee_cast_2d(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t rows, int64_t cols, int64_t ld) {
    if (rows <= 0 || cols <= 0) return 0;
    cast_2d_kernel<<<ee_grid_for(rows * cols, THREADS), THREADS, 0, ee_stream()>>>(dst, dst_dtype, src, src_dtype, rows, cols, ld);
    return ee_launched("cast_2d_kernel");
}

EE_API int32_t ee_cast(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n) {
    if (ee_cast_check(dst, dst_dtype, src, src_dtype, n)) return 1;
    if (n == 0) return 0;
    if (dst_dtype == src_dtype) {
        cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * ee_dtype_size(src_dtype), cudaMemcpyDeviceToDevice, ee_stream());
        return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_cast");
    }
    cast_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(dst, dst_dtype, src, src_dtype, n);
    return ee_launched("ee_cast");
}

/* ---- add, axpby, bias, scale ------------------------------------------------------------------------------------- */

__global__ void axpby_kernel(float* out, const float* a, float alpha, const float* b, int64_t n, int plain_add) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = plain_add ? a[i] + b[i] : a[i] + alpha * b[i];
}

EE_API int32_t ee_add(float* out, const float* a, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_add: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_add: null pointer");
    axpby_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(out, a, 1.0f, b, n, 1);
    return ee_launched("ee_add");
}

EE_API int32_t ee_axpby(float* out, const float* a, float alpha, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_axpby: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_axpby: null pointer");
    axpby_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(out, a, alpha, b, n, 0);
    return ee_launched("ee_axpby");
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t total, int n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += bias[i % n];
}

EE_API int32_t ee_add_bias(float* x, const float* bias, int32_t rows, int32_t n) {
    if (rows <= 0 || n <= 0) return rows < 0 || n < 0 ? ee_fail("ee_add_bias: negative size") : 0;
    if (!x || !bias) return ee_fail("ee_add_bias: null pointer");
    int64_t total = (int64_t)rows * n;
    add_bias_kernel<<<ee_grid_for(total, THREADS), THREADS, 0, ee_stream()>>>(x, bias, total, n);
    return ee_launched("ee_add_bias");
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] *= s;
}

EE_API int32_t ee_scale(float* x, float s, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_scale: negative count") : 0;
    if (!x) return ee_fail("ee_scale: null pointer");
    scale_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(x, s, n);
    return ee_launched("ee_scale");
}

/* ---- sum of squares: per-block double partials, then one block adds them in order (deterministic) --------------- */

#define SUM_BLOCKS_MAX 1024

__global__ void sum_squares_partial_kernel(double* partial, const float* x, int64_t n) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) s += (double)x[i] * x[i];
    s = ee_block_sum(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(double* out, const double* partial, int count) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = ee_block_sum(s, shared);
    if (threadIdx.x == 0) *out = s;
}

EE_API double ee_sum_squares(const float* x, int64_t n) {
    if (n <= 0) return 0.0;
    if (!x) {
        ee_fail("ee_sum_squares: null pointer");
        return NAN;
    }
    ee_op_lock lock;
    double* partial = (double*)ee_scratch(EE_SCRATCH_REDUCE, (SUM_BLOCKS_MAX + 1) * sizeof(double));
    if (!partial) return NAN;
    int64_t want = ee_ceil_div64(n, 4 * THREADS);
    int blocks = (int)(want < SUM_BLOCKS_MAX ? want : SUM_BLOCKS_MAX); /* depends on n only: same result every run */
    sum_squares_partial_kernel<<<blocks, THREADS, 0, ee_stream()>>>(partial, x, n);
    sum_partials_kernel<<<1, THREADS, 0, ee_stream()>>>(partial + SUM_BLOCKS_MAX, partial, blocks);
    if (ee_launched("ee_sum_squares")) return NAN;
    double total = NAN;
    cudaError_t e = cudaMemcpy(&total, partial + SUM_BLOCKS_MAX, sizeof total, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        ee_cuda_fail(e, "ee_sum_squares");
        return NAN;
    }
    return total;
}
