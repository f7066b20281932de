/*
 * Private declarations shared by the CUDA kernels of libeecuda. Nothing here is exported: only the EE_API functions
 * of eetune.h are visible (-fvisibility=hidden).
 *
 * Execution model: every kernel and copy is issued on ee_stream(), which is the legacy default stream (stream 0), so
 * all work is ordered, and a synchronous cudaMemcpy to the host (ee_copy direction 2) waits for everything issued
 * before it. Only while ee_decode_steps captures a CUDA graph (layer.cu, EETUNE_CUDA_GRAPHS=1) is ee_stream() the
 * capturing stream of that thread; the graph then replays on the legacy stream, in order with everything else. Kernels are
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

#include "common.h"
#include "dtype.h"

/* ---- errors (runtime.cu; ee_fail and ee_fail_index are in common/) ------------------------------------------ */

/* ee_fail("<what>: <cuda error name>: <cuda error string>") and returns 1. */
int ee_cuda_fail(cudaError_t e, const char* what);
/* After a launch: 0, or the launch error recorded with ee_cuda_fail. */
int ee_launched(const char* what);

/* The first impossible index (kinds from common.h) a kernel met since the last check. A kernel cannot fail the call
 * that launched it, so it records the index here and writes NaN (or nothing) where it could not compute; the next
 * synchronizing call (ee_synchronize, ee_copy to the host) reports it through ee_fail_index and clears it. */
typedef struct {
    int kind, value, bound;
    long long row;
} ee_index_error;
/* The record in device memory (allocated on first use; 0 if that failed, and kernels then skip the report). */
ee_index_error* ee_index_error_record(void);
/* Call after the device is idle: 0, or 1 with the recorded index error (reported by `where`) as the last error. */
int ee_collect_index_error(const char* where);

/* Claims the record for the first report; later reports leave it as it is. */
__device__ __forceinline__ void ee_report_index(ee_index_error* e, int kind, int64_t row, int value, int bound) {
    if (e && atomicCAS(&e->kind, EE_INDEX_OK, kind) == EE_INDEX_OK) {
        e->row = row;
        e->value = value;
        e->bound = bound;
    }
}

/* The cell (seq * max_len + pos) of row r in a K/V cache, or -1 for a row outside it, reported once per row (by the
 * thread passing `report`): ee_kv_write's check, shared by every kernel that writes the cache. */
__device__ __forceinline__ int64_t ee_kv_cell(const int32_t* row_seq, const int32_t* row_pos, int64_t r, int n_seq, int max_len, ee_index_error* err, bool report) {
    const int s = row_seq[r], p = row_pos[r];
    if (s < 0 || s >= n_seq) {
        if (report) ee_report_index(err, EE_BAD_KV_SEQ, r, s, n_seq);
        return -1;
    }
    if (p < 0 || p >= max_len) {
        if (report) ee_report_index(err, EE_BAD_KV_POS, r, p, max_len);
        return -1;
    }
    return (int64_t)s * max_len + p;
}

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
/* Bumped whenever a scratch buffer is reallocated: a captured graph that used the old one is stale. */
int64_t ee_scratch_generation(void);
/* The stream kernels and async copies go to (`<<<grid, block, 0, ee_stream()>>>`): 0 except while capturing. */
cudaStream_t ee_stream(void);
void ee_set_stream(cudaStream_t stream);

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
/* ee_gemm's checks of B's dtype and layout for `caller`: 0, or 1 with the failure recorded. */
int ee_gemm_check_b(const char* caller, int trans_a, int trans_b, int m, int k, int b_dtype, int ldb);
/* The GEMMs of a layer, shapes and pointers valid as ee_gemm checks them, one after another (the CPU library's twin
 * runs them in one parallel region). Takes ee_op_lock. */
int ee_gemm_group(const ee_gemm_args* gs, int count);
/* Where a layer's GEMMs will run on cuBLAS with 16-bit B of b_dtype: scratch for their f32 A of `elements` rounded to
 * b_dtype, which the op writing A fills as it goes (ee_rmsnorm_rounded, ee_swiglu_rounded) instead of a cast launch;
 * else 0. The caller holds ee_op_lock until ee_gemm_group_rounded has read it. */
void* ee_gemm_rounded_input(int b_dtype, int64_t elements);
/* ee_gemm_group of GEMMs (trans_a = 0, lda = k, f32 A) whose A is given already rounded to their B dtype in a16. */
int ee_gemm_group_rounded(const ee_gemm_args* gs, int count, const void* a16);
/* ee_rmsnorm_fwd and ee_swiglu_fwd writing also their output rounded to dtype16 into out16 (when out16 is not 0) */
int ee_rmsnorm_rounded(float* out, float* inv_rms, const float* x, const float* w, int32_t rows, int32_t dim, float eps, void* out16, int dtype16);
int ee_swiglu_rounded(float* out, const float* gate, const float* up, int64_t n, void* out16, int dtype16);
/* B packed by ee_pack_panels, ee_pack_panels_f16, ee_pack_panels_bf16 or ee_pack_panels_i8 (b_dtype EE_F32_PANELS, EE_F16_PANELS, EE_BF16_PANELS or EE_I8_PANELS, f32 A, trans_a = 0, trans_b = 1, m <= EE_PANELS_MAX_M; checked by ee_gemm) */
int ee_gemm_panels(const ee_gemm_args* g);
/* 1 when GEMMs currently go through cuBLAS (so callers may prefer 16-bit operands), else 0. */
int ee_gemm_uses_cublas(void);
/* dst (rows x cols, packed) = src (rows x cols, leading dimension ld) converted to dst_dtype. */
int ee_cast_2d(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t rows, int64_t cols, int64_t ld);

/* ---- a layer's fused steps (rope.cu) ---------------------------------------------------------------------------- */

/* ee_rope of q (n_heads) and k (n_kv_heads) at row_pos, then with write_kv ee_kv_write of k and v: one launch, the
 * same bits and index reports; pointers checked by the caller (ee_decoder_layer_fwd). */
int ee_rope_qk_kv(float* q, float* k, const float* v, float* k_cache, float* v_cache, int write_kv, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq,
                  int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t interleaved, int32_t n_seq, int32_t max_len);

/* ---- launch helpers ------------------------------------------------------------------------------------------- */

static inline int64_t ee_ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Blocks for a grid-stride loop over n elements: enough to fill the device, never more than needed. */
static inline unsigned ee_grid_for(int64_t n, int threads) {
    int64_t want = ee_ceil_div64(n > 0 ? n : 1, threads), cap = (int64_t)ee_sm_count() * 32;
    return (unsigned)(want < cap ? want : cap);
}

/* ---- device helpers --------------------------------------------------------------------------------------------- */

#define EE_FULL_MASK 0xffffffffu

/* Grid-stride loop over the rows x width elements of a row-major matrix: f(i, r, j) for element i = r * width + j. */
template <typename F>
__device__ __forceinline__ void ee_for_row_elements(int64_t rows, int width, F f) {
    const int64_t total = rows * width;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / width;
        f(i, r, (int)(i - r * width));
    }
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
