/* Elementwise kernels: dtype casts, add, axpby, bias, scale and the (deterministic) sum of squares. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

EE_API int32_t ee_cast(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n) {
    if (ee_cast_check(dst, dst_dtype, src, src_dtype, n)) return 1;
    if (n == 0) return 0;
    if (dst_dtype == src_dtype) {
        memmove(dst, src, (size_t)n * ee_dtype_size(src_dtype));
        return 0;
    }
    const int nt = ee_threads_for(4.0 * (double)n);
    const uint16_t* s16 = src;
    if (dst_dtype == EE_F32) {
        float* d = dst;
        if (src_dtype == EE_BF16)
            EE_PARALLEL_FOR(nt, i, n, d[i] = ee_bf16_to_f32(s16[i]));
        else
            EE_PARALLEL_FOR(nt, i, n, d[i] = ee_f16_to_f32(s16[i]));
        return 0;
    }
    /* to bf16 or f16, from f32 or from the other 16-bit type through an exact f32 */
    uint16_t* d = dst;
    if (dst_dtype == EE_BF16)
        EE_PARALLEL_FOR(nt, i, n, d[i] = ee_f32_to_bf16(ee_load_f32(src, src_dtype, i)));
    else
        EE_PARALLEL_FOR(nt, i, n, d[i] = ee_f32_to_f16(ee_load_f32(src, src_dtype, i)));
    return 0;
}

EE_API int32_t ee_add(float* out, const float* a, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_add: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_add: null pointer");
    EE_PARALLEL_FOR(ee_threads_for((double)n), i, n, out[i] = a[i] + b[i]);
    return 0;
}

EE_API int32_t ee_axpby(float* out, const float* a, float alpha, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_axpby: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_axpby: null pointer");
    EE_PARALLEL_FOR(ee_threads_for((double)n), i, n, out[i] = a[i] + alpha * b[i]);
    return 0;
}

static void add_row(float* x, const float* y, int32_t n) {
    for (int32_t j = 0; j < n; j++) x[j] += y[j];
}

EE_API int32_t ee_add_bias(float* x, const float* bias, int32_t rows, int32_t n) {
    if (rows <= 0 || n <= 0) return rows < 0 || n < 0 ? ee_fail("ee_add_bias: negative size") : 0;
    if (!x || !bias) return ee_fail("ee_add_bias: null pointer");
    EE_PARALLEL_FOR(ee_threads_for((double)rows * n), r, rows, add_row(x + r * n, bias, n));
    return 0;
}

EE_API int32_t ee_scale(float* x, float s, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_scale: negative count") : 0;
    if (!x) return ee_fail("ee_scale: null pointer");
    EE_PARALLEL_FOR(ee_threads_for((double)n), i, n, x[i] *= s);
    return 0;
}

/* Fixed-size blocks summed in order make the result independent of the thread count (e.g. for gradient clipping). */
#define SUM_BLOCK 16384

static double sum_squares_block(const float* x, int64_t lo, int64_t n) {
    const int64_t hi = lo + SUM_BLOCK < n ? lo + SUM_BLOCK : n;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
    return s;
}

EE_API double ee_sum_squares(const float* x, int64_t n) {
    if (n <= 0) return 0.0;
    if (!x) {
        ee_fail("ee_sum_squares: null pointer");
        return NAN;
    }
    int64_t blocks = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    double one_block, *partial = blocks == 1 ? &one_block : malloc((size_t)blocks * sizeof(double));
    if (!partial) {
        ee_fail("ee_sum_squares: out of memory");
        return NAN;
    }
    EE_PARALLEL_FOR(ee_threads_for((double)n), blk, blocks, partial[blk] = sum_squares_block(x, blk * SUM_BLOCK, n));
    double total = 0.0;
    for (int64_t blk = 0; blk < blocks; blk++) total += partial[blk];
    if (partial != &one_block) free(partial);
    return total;
}
