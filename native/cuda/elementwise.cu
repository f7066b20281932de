/*
 * Elementwise and row-move kernels: casts, add/axpby/bias/scale, the deterministic sum of squares, SwiGLU, AdamW,
 * embedding lookup and its scatter-add backward, KV-cache writes and row gathers. Grid-stride loops with 64-bit
 * indices; fp32 arithmetic in the same order as the CPU library.
 */
#include "common.cuh"

#define THREADS 256

/* ---- casts ----------------------------------------------------------------------------------------------------- */

__global__ void cast_kernel(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        ee_store(dst, dst_dtype, i, ee_load(src, src_dtype, i));
}

/* rows x cols of a matrix with leading dimension ld, packed into dst. */
__global__ void cast_2d_kernel(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t rows, int64_t cols, int64_t ld) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i - r * cols;
        ee_store(dst, dst_dtype, i, ee_load(src, src_dtype, r * ld + c));
    }
}

int ee_cast_2d(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t rows, int64_t cols, int64_t ld) {
    if (rows <= 0 || cols <= 0) return 0;
    cast_2d_kernel<<<ee_grid_for(rows * cols, THREADS), THREADS>>>(dst, dst_dtype, src, src_dtype, rows, cols, ld);
    return ee_launched("cast_2d_kernel");
}

EE_API int32_t ee_cast(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n) {
    if (!ee_is_float_dtype(dst_dtype) || !ee_is_float_dtype(src_dtype))
        return ee_fail("ee_cast: unsupported dtypes %d -> %d", src_dtype, dst_dtype);
    if (n < 0) return ee_fail("ee_cast: negative count");
    if (n == 0) return 0;
    if (!dst || !src) return ee_fail("ee_cast: null pointer");
    if (dst_dtype == src_dtype) {
        cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * ee_dtype_size(src_dtype), cudaMemcpyDeviceToDevice, 0);
        return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_cast");
    }
    cast_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(dst, dst_dtype, src, src_dtype, n);
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
    axpby_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(out, a, 1.0f, b, n, 1);
    return ee_launched("ee_add");
}

EE_API int32_t ee_axpby(float* out, const float* a, float alpha, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_axpby: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_axpby: null pointer");
    axpby_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(out, a, alpha, b, n, 0);
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
    add_bias_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(x, bias, total, n);
    return ee_launched("ee_add_bias");
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] *= s;
}

EE_API int32_t ee_scale(float* x, float s, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_scale: negative count") : 0;
    if (!x) return ee_fail("ee_scale: null pointer");
    scale_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(x, s, n);
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
    sum_squares_partial_kernel<<<blocks, THREADS>>>(partial, x, n);
    sum_partials_kernel<<<1, THREADS>>>(partial + SUM_BLOCKS_MAX, partial, blocks);
    if (ee_launched("ee_sum_squares")) return NAN;
    double total = NAN;
    cudaError_t e = cudaMemcpy(&total, partial + SUM_BLOCKS_MAX, sizeof total, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        ee_cuda_fail(e, "ee_sum_squares");
        return NAN;
    }
    return total;
}

/* ---- SwiGLU ------------------------------------------------------------------------------------------------------ */

__global__ void swiglu_fwd_kernel(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_fwd: negative count") : 0;
    if (!out || !gate || !up) return ee_fail("ee_swiglu_fwd: null pointer");
    swiglu_fwd_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(out, gate, up, n);
    return ee_launched("ee_swiglu_fwd");
}

/* With s = sigmoid(g): d silu(g)/dg = s (1 + g (1 - s)). Each thread reads its inputs before writing (aliasing ok). */
__global__ void swiglu_bwd_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = 1.0f / (1.0f + expf(-g));
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
        dup[i] = d * g * s;
    }
}

EE_API int32_t ee_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_bwd: negative count") : 0;
    if (!dgate || !dup || !dout || !gate || !up) return ee_fail("ee_swiglu_bwd: null pointer");
    swiglu_bwd_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(dgate, dup, dout, gate, up, n);
    return ee_launched("ee_swiglu_bwd");
}

/* ---- AdamW ------------------------------------------------------------------------------------------------------- */

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
                             float weight_decay, float inv_bias1, float inv_bias2, float grad_scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i];
        p[i] = pi - lr * (mi * inv_bias1 / (sqrtf(vi * inv_bias2) + eps) + weight_decay * pi);
    }
}

EE_API int32_t ee_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, float bias1, float bias2, float grad_scale) {
    if (n <= 0) return n < 0 ? ee_fail("ee_adamw: negative count") : 0;
    if (!p || !g || !m || !v) return ee_fail("ee_adamw: null pointer");
    adamw_kernel<<<ee_grid_for(n, THREADS), THREADS>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, 1.0f / bias1, 1.0f / bias2, grad_scale);
    return ee_launched("ee_adamw");
}

/* ---- embedding ------------------------------------------------------------------------------------------------- */

/* A negative id (the CPU library refuses those) gives a NaN row and a device error report. */
__global__ void embedding_fwd_kernel(float* out, const void* table, int dtype, const int32_t* ids, int64_t n, int dim, int* err) {
    const int64_t total = n * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / dim, j = i - r * dim;
        int id = ids[r];
        if (id < 0) {
            out[i] = NAN;
            if (err && j == 0) atomicOr(err, EE_DERR_EMBEDDING_ID);
            continue;
        }
        out[i] = ee_load(table, dtype, (int64_t)id * dim + j);
    }
}

EE_API int32_t ee_embedding_fwd(float* out, const void* table, int32_t table_dtype, const int32_t* ids, int32_t n, int32_t dim) {
    if (!ee_is_float_dtype(table_dtype)) return ee_fail("ee_embedding_fwd: unsupported table dtype %d", table_dtype);
    if (n <= 0 || dim <= 0) return n < 0 || dim < 0 ? ee_fail("ee_embedding_fwd: negative size") : 0;
    if (!out || !table || !ids) return ee_fail("ee_embedding_fwd: null pointer");
    int64_t total = (int64_t)n * dim;
    embedding_fwd_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(out, table, table_dtype, ids, n, dim, ee_device_error_word());
    return ee_launched("ee_embedding_fwd");
}

/* Scatter-add with f32 atomics: repeated ids accumulate in an unspecified order (not bitwise deterministic). */
__global__ void embedding_bwd_kernel(float* dtable, const float* dout, const int32_t* ids, int64_t n, int dim, int* err) {
    const int64_t total = n * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / dim, j = i - r * dim;
        int id = ids[r];
        if (id < 0) {
            if (err && j == 0) atomicOr(err, EE_DERR_EMBEDDING_ID);
            continue;
        }
        atomicAdd(dtable + (int64_t)id * dim + j, dout[i]);
    }
}

EE_API int32_t ee_embedding_bwd(float* dtable, const float* dout, const int32_t* ids, int32_t n, int32_t dim) {
    if (n <= 0 || dim <= 0) return n < 0 || dim < 0 ? ee_fail("ee_embedding_bwd: negative size") : 0;
    if (!dtable || !dout || !ids) return ee_fail("ee_embedding_bwd: null pointer");
    int64_t total = (int64_t)n * dim;
    embedding_bwd_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(dtable, dout, ids, n, dim, ee_device_error_word());
    return ee_launched("ee_embedding_bwd");
}

/* ---- KV-cache writes and row gathers ------------------------------------------------------------------------------ */

__global__ void kv_write_kernel(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int64_t rows, int width, int max_len, int* err) {
    const int64_t total = rows * width;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / width, j = i - r * width;
        int s = row_seq[r], p = row_pos[r];
        if (s < 0 || p < 0 || p >= max_len) {
            if (err && j == 0) atomicOr(err, EE_DERR_KV_ROW);
            continue;
        }
        cache[((int64_t)s * max_len + p) * width + j] = src[i];
    }
}

EE_API int32_t ee_kv_write(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t width, int32_t max_len) {
    if (rows < 0 || width < 0 || max_len <= 0) return ee_fail("ee_kv_write: bad shape");
    if (rows == 0 || width == 0) return 0;
    if (!cache || !src || !row_seq || !row_pos) return ee_fail("ee_kv_write: null pointer");
    int64_t total = (int64_t)rows * width;
    kv_write_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(cache, src, row_seq, row_pos, rows, width, max_len, ee_device_error_word());
    return ee_launched("ee_kv_write");
}

__global__ void gather_rows_kernel(float* dst, const float* src, const int32_t* idx, int64_t rows, int width, int* err) {
    const int64_t total = rows * width;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / width, j = i - r * width;
        int s = idx[r];
        if (s < 0) {
            dst[i] = NAN;
            if (err && j == 0) atomicOr(err, EE_DERR_GATHER_INDEX);
            continue;
        }
        dst[i] = src[(int64_t)s * width + j];
    }
}

/* Rows move in parallel, so when dst may overlap the rows read (in-place compaction, dst == src, is a natural use)
 * the rows are gathered into scratch first and copied back. */
EE_API int32_t ee_gather_rows(float* dst, const float* src, const int32_t* idx, int32_t rows, int32_t width) {
    if (rows < 0 || width < 0) return ee_fail("ee_gather_rows: negative size");
    if (rows == 0 || width == 0) return 0;
    if (!dst || !src || !idx) return ee_fail("ee_gather_rows: null pointer");
    int64_t total = (int64_t)rows * width;
    bool disjoint = dst + total <= src; /* rows read start at src; anything at or above src may be read */
    if (disjoint) {
        gather_rows_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(dst, src, idx, rows, width, ee_device_error_word());
        return ee_launched("ee_gather_rows");
    }
    ee_op_lock lock;
    float* tmp = (float*)ee_scratch(EE_SCRATCH_GEMM_A, (size_t)total * sizeof(float));
    if (!tmp) return 1;
    gather_rows_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(tmp, src, idx, rows, width, ee_device_error_word());
    if (ee_launched("ee_gather_rows")) return 1;
    cudaError_t e = cudaMemcpyAsync(dst, tmp, (size_t)total * sizeof(float), cudaMemcpyDeviceToDevice, 0);
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_gather_rows");
}
