/*
 * Private declarations shared by the CUDA kernels of libeecuda. Nothing here is exported: only the EE_API functions
 * of eetune.h are visible (-fvisibility=hidden).
 *
 * Execution model: every kernel and copy is issued on the legacy default stream (stream 0), so all work is ordered,
 * and a synchronous cudaMemcpy to the host (ee_copy direction 2) waits for everything issued before it. Kernels are
 * asynchronous: a launch error is reported by the call that issued it, an error during execution by a later call
 * (ee_synchronize or a device-to-host copy). fp32 accumulation everywhere; no fast-math.
 */
#ifndef EE_CUDA_COMMON_CUH
#define EE_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "eetune/eetune.h"

/* ---- errors (runtime.cu) ------------------------------------------------------------------------------------- */

/* Records a printf-style message as this thread's last error and returns 1 (the failure code). */
int ee_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* ee_fail("<what>: <cuda error name>: <cuda error string>") and returns 1. */
int ee_cuda_fail(cudaError_t e, const char* what);
/* After a launch: 0, or the launch error recorded with ee_cuda_fail. */
int ee_launched(const char* what);

/* Errors that kernels find (bad ids or positions) cannot be returned by the call that issued them: kernels set a bit
 * in a device word instead (and write NaN where they could not compute), and ee_synchronize reports and clears it. */
enum {
    EE_DERR_EMBEDDING_ID = 1,
    EE_DERR_ATTENTION_ROW = 2,
    EE_DERR_KV_ROW = 4,
    EE_DERR_GATHER_INDEX = 8,
    EE_DERR_TARGET = 16,
};
/* The device error word (allocated on first use; 0 if that failed, and kernels then skip the report). */
int* ee_device_error_word(void);

/* ---- scratch and locking (runtime.cu) -------------------------------------------------------------------------- */

/* Reusable device buffers, grown on demand and kept for the life of the process. Only valid while the caller holds
 * ee_op_lock: with all work on one stream, a buffer is free again for the next holder as soon as it is released. */
enum {
    EE_SCRATCH_GEMM_A,
    EE_SCRATCH_GEMM_B,
    EE_SCRATCH_CE_LOGITS,
    EE_SCRATCH_CE_X16,
    EE_SCRATCH_CE_G16,
    EE_SCRATCH_CE_ROWS,
    EE_SCRATCH_REDUCE,
    EE_SCRATCH_ATTN,
    EE_SCRATCH_SAMPLE,
    EE_SCRATCH_SLOTS
};
void* ee_scratch(int slot, size_t bytes);

/* Serialises calls that use scratch buffers or cuBLAS (one op's kernels must not interleave with another's). */
struct ee_op_lock {
    ee_op_lock();
    ~ee_op_lock();
    ee_op_lock(const ee_op_lock&) = delete;
    ee_op_lock& operator=(const ee_op_lock&) = delete;
};

/* Multiprocessor count of the current device (cached; 132 if unknown). */
int ee_sm_count(void);

/* ---- GEMM (gemm.cu), also used by the fused cross-entropy ---------------------------------------------------------- */

/* C = alpha op(A) op(B) + beta C, row-major like ee_gemm, but A may be 16-bit too. C is always f32. */
typedef struct {
    int trans_a, trans_b, m, n, k;
    float alpha;
    const void* a;
    int a_dtype, lda;
    const void* b;
    int b_dtype, ldb;
    float beta;
    float* c;
    int ldc;
} ee_gemm_args;

/* Runs one GEMM on the current path (cuBLAS or the fallback kernel); the caller holds ee_op_lock. */
int ee_gemm_run(const ee_gemm_args* g);
/* 1 when GEMMs currently go through cuBLAS (so callers may prefer 16-bit operands), else 0. */
int ee_gemm_uses_cublas(void);
/* dst (rows x cols, packed) = src (rows x cols, leading dimension ld) converted to dst_dtype. */
int ee_cast_2d(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t rows, int64_t cols, int64_t ld);

/* ---- launch helpers ------------------------------------------------------------------------------------------- */

static inline int64_t ee_ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Blocks for a grid-stride loop over n elements: enough to fill the device, never more than needed. */
static inline unsigned ee_grid_for(int64_t n, int threads) {
    int64_t want = ee_ceil_div64(n > 0 ? n : 1, threads), cap = (int64_t)ee_sm_count() * 32;
    return (unsigned)(want < cap ? want : cap);
}

static inline int ee_is_float_dtype(int d) { return d == EE_F32 || d == EE_BF16 || d == EE_F16; }
static inline size_t ee_dtype_size(int d) { return d == EE_BF16 || d == EE_F16 ? 2 : 4; }

/* ---- device helpers --------------------------------------------------------------------------------------------- */

#define EE_FULL_MASK 0xffffffffu

/* bf16 / f16 conversions, bit-identical to the CPU library's (native/cpu/internal.h). */
__device__ __forceinline__ float ee_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ uint16_t ee_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);                 /* round to nearest even */
}

__device__ __forceinline__ float ee_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    return __uint_as_float(sign | ((exp + 112) << 23) | (mant << 13));
}

__device__ __forceinline__ uint16_t ee_f32_to_f16(float f) {
    uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000;
    u &= 0x7fffffffu;
    if (u >= 0x47800000u) return (uint16_t)(sign | (u > 0x7f800000u ? 0x7e00 : 0x7c00));
    if (u < 0x38800000u) return (uint16_t)(sign | (__float_as_uint(__uint_as_float(u) + 0.5f) - 0x3f000000u));
    u += ((uint32_t)(15 - 127) << 23) + 0xfff + ((u >> 13) & 1);
    return (uint16_t)(sign | (u >> 13));
}

/* Element i of an f32 / bf16 / f16 array as f32. */
__device__ __forceinline__ float ee_load(const void* p, int dtype, int64_t i) {
    if (dtype == EE_BF16) return ee_bf16_to_f32(((const uint16_t*)p)[i]);
    if (dtype == EE_F16) return ee_f16_to_f32(((const uint16_t*)p)[i]);
    return ((const float*)p)[i];
}

__device__ __forceinline__ void ee_store(void* p, int dtype, int64_t i, float v) {
    if (dtype == EE_BF16) ((uint16_t*)p)[i] = ee_f32_to_bf16(v);
    else if (dtype == EE_F16) ((uint16_t*)p)[i] = ee_f32_to_f16(v);
    else ((float*)p)[i] = v;
}

template <typename T>
__device__ __forceinline__ T ee_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(EE_FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float ee_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(EE_FULL_MASK, v, o));
    return v;
}

/* Block-wide sum (fixed order: deterministic for a given block size); every thread gets the result. `shared` holds
 * at least 32 values; the function syncs before reusing it, so back-to-back calls with one buffer are safe. */
template <typename T>
__device__ T ee_block_sum(T v, T* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = ee_warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) { /* only warp 0 reads the partials: no other warp races with its write of the total */
        T total = lane < warps ? shared[lane] : (T)0;
        total = ee_warp_sum(total);
        if (lane == 0) shared[0] = total;
    }
    __syncthreads();
    return shared[0];
}

__device__ inline float ee_block_max(float v, float* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = ee_warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float m = lane < warps ? shared[lane] : -INFINITY;
        m = ee_warp_max(m);
        if (lane == 0) shared[0] = m;
    }
    __syncthreads();
    return shared[0];
}

/* (value, index) maximum with the lowest index winning ties; NaN never wins over a number. */
__device__ __forceinline__ void ee_argmax_merge(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i) || (v != v && ov == ov)) {
        v = ov;
        i = oi;
    }
}

__device__ inline void ee_block_argmax(float& v, int& i, float* sv, int* si) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(EE_FULL_MASK, v, o);
        int oi = __shfl_xor_sync(EE_FULL_MASK, i, o);
        ee_argmax_merge(v, i, ov, oi);
    }
    __syncthreads();
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? sv[lane] : -INFINITY;
        i = lane < warps ? si[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(EE_FULL_MASK, v, o);
            int oi = __shfl_xor_sync(EE_FULL_MASK, i, o);
            ee_argmax_merge(v, i, ov, oi);
        }
        if (lane == 0) {
            sv[0] = v;
            si[0] = i;
        }
    }
    __syncthreads();
    v = sv[0];
    i = si[0];
}

#endif /* EE_CUDA_COMMON_CUH */
