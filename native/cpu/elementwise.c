/* Elementwise kernels: dtype casts, add, axpby, bias, scale and the (deterministic) sum of squares. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "row_sums.h"
#if EE_X86
#include <immintrin.h>
#endif

typedef struct {
    void* dst;
    const void* src;
    int32_t dst_dtype, src_dtype;
} cast_job;

/* f32 <-> bf16/f16 and bf16 <-> f16 (through an exact f32) */
static void cast_range(void* ctx, int64_t i0, int64_t i1) {
    const cast_job* j = ctx;
    if (j->dst_dtype == EE_F32) {
        float* d = j->dst;
        const uint16_t* s16 = j->src;
        if (j->src_dtype == EE_BF16)
            for (int64_t i = i0; i < i1; i++) d[i] = ee_bf16_to_f32(s16[i]);
        else
            for (int64_t i = i0; i < i1; i++) d[i] = ee_f16_to_f32(s16[i]);
    } else if (j->dst_dtype == EE_BF16) {
        uint16_t* d = j->dst;
        for (int64_t i = i0; i < i1; i++) d[i] = ee_f32_to_bf16(ee_load_f32(j->src, j->src_dtype, i));
    } else {
        uint16_t* d = j->dst;
        for (int64_t i = i0; i < i1; i++) d[i] = ee_f32_to_f16(ee_load_f32(j->src, j->src_dtype, i));
    }
}

EE_API int32_t ee_cast(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n) {
    if (ee_cast_check(dst, dst_dtype, src, src_dtype, n)) return 1;
    if (n == 0) return 0;
    if (dst_dtype == src_dtype) {
        memmove(dst, src, (size_t)n * ee_dtype_size(src_dtype));
        return 0;
    }
    cast_job job = {dst, src, dst_dtype, src_dtype};
    ee_parallel_range(ee_threads_for(4.0 * (double)n), n, cast_range, &job);
    return 0;
}

/* out = a + alpha * b over a range (ee_add is alpha = 1: the multiply by one is exact) */
typedef struct {
    float* out;
    const float *a, *b;
    float alpha;
} axpby_job;

static void axpby_range(void* ctx, int64_t i0, int64_t i1) {
    const axpby_job* j = ctx;
    float* out = j->out;
    const float *a = j->a, *b = j->b, alpha = j->alpha;
    for (int64_t i = i0; i < i1; i++) out[i] = a[i] + alpha * b[i];
}

EE_API int32_t ee_add(float* out, const float* a, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_add: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_add: null pointer");
    axpby_job job = {out, a, b, 1.0f};
    ee_parallel_range(ee_threads_for((double)n), n, axpby_range, &job);
    return 0;
}

EE_API int32_t ee_axpby(float* out, const float* a, float alpha, const float* b, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_axpby: negative count") : 0;
    if (!out || !a || !b) return ee_fail("ee_axpby: null pointer");
    axpby_job job = {out, a, b, alpha};
    ee_parallel_range(ee_threads_for((double)n), n, axpby_range, &job);
    return 0;
}

typedef struct {
    float* x;
    const float* bias;
    int32_t n;
    float s;
} rows_job;

static void bias_rows(void* ctx, int64_t r0, int64_t r1) {
    const rows_job* j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        float* x = j->x + r * j->n;
        for (int32_t c = 0; c < j->n; c++) x[c] += j->bias[c];
    }
}

EE_API int32_t ee_add_bias(float* x, const float* bias, int32_t rows, int32_t n) {
    if (rows <= 0 || n <= 0) return rows < 0 || n < 0 ? ee_fail("ee_add_bias: negative size") : 0;
    if (!x || !bias) return ee_fail("ee_add_bias: null pointer");
    rows_job job = {x, bias, n, 0.0f};
    ee_parallel_range(ee_threads_for((double)rows * n), rows, bias_rows, &job);
    return 0;
}

static void scale_range(void* ctx, int64_t i0, int64_t i1) {
    const rows_job* j = ctx;
    float* x = j->x;
    const float s = j->s;
    for (int64_t i = i0; i < i1; i++) x[i] *= s;
}

EE_API int32_t ee_scale(float* x, float s, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_scale: negative count") : 0;
    if (!x) return ee_fail("ee_scale: null pointer");
    rows_job job = {x, 0, 0, s};
    ee_parallel_range(ee_threads_for((double)n), n, scale_range, &job);
    return 0;
}

/*
 * Sum of squares, every square and sum in double (f32 squares summed in f32 would lose ~1e-4 relative over a large
 * gradient, and the CUDA twin must agree to 1e-12). Fixed-size blocks summed in order make the result independent of
 * the thread count (e.g. for gradient clipping); within a block the SIMD paths keep several double accumulators,
 * which hides the add latency and changes only the rounding (in the last bits) from one path to another.
 */
#define SUM_BLOCK 16384

static double sum_squares_portable(const float* x, int64_t n) { return ee_row_sum_squares(x, n); }

#if EE_X86
EE_AVX2 static double sum_squares_avx2(const float* x, int64_t n) {
    __m256d acc[8];
    for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int a = 0; a < 8; a++) {
            const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * a));
            acc[a] = _mm256_fmadd_pd(v, v, acc[a]);
        }
    for (; i + 4 <= n; i += 4) {
        const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        acc[0] = _mm256_fmadd_pd(v, v, acc[0]);
    }
    const __m256d t = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])),
                                    _mm256_add_pd(_mm256_add_pd(acc[4], acc[5]), _mm256_add_pd(acc[6], acc[7])));
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

EE_AVX512 static double sum_squares_avx512(const float* x, int64_t n) {
    __m512d acc[8];
    for (int a = 0; a < 8; a++) acc[a] = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int a = 0; a < 8; a++) {
            const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * a));
            acc[a] = _mm512_fmadd_pd(v, v, acc[a]);
        }
    for (; i + 8 <= n; i += 8) {
        const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        acc[0] = _mm512_fmadd_pd(v, v, acc[0]);
    }
    if (i < n) { /* the last 1..7 elements, masked */
        const __m512d v = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i)));
        acc[1] = _mm512_fmadd_pd(v, v, acc[1]);
    }
    const __m512d t = _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])),
                                    _mm512_add_pd(_mm512_add_pd(acc[4], acc[5]), _mm512_add_pd(acc[6], acc[7])));
    return _mm512_reduce_add_pd(t);
}
#else /* the run-time check never selects these elsewhere */
#define sum_squares_avx2 sum_squares_portable
#define sum_squares_avx512 sum_squares_portable
#endif

typedef struct {
    const float* x;
    int64_t n;
    double* partial;
    double (*block)(const float* x, int64_t n);
} sum_job;

static void sum_blocks(void* ctx, int64_t blk0, int64_t blk1) {
    const sum_job* j = ctx;
    for (int64_t blk = blk0; blk < blk1; blk++) {
        const int64_t lo = blk * SUM_BLOCK, len = j->n - lo < SUM_BLOCK ? j->n - lo : SUM_BLOCK;
        j->partial[blk] = j->block(j->x + lo, len);
    }
}

EE_API double ee_sum_squares(const float* x, int64_t n) {
    if (n <= 0) return 0.0;
    if (!x) {
        ee_fail("ee_sum_squares: null pointer");
        return NAN;
    }
    const ee_cpu* cpu = ee_cpu_get();
    double (*block)(const float*, int64_t) = cpu->avx512 ? sum_squares_avx512 : cpu->avx2 ? sum_squares_avx2 : sum_squares_portable;
    if (n <= SUM_BLOCK) return block(x, n);
    const int64_t blocks = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    double on_stack[256], *partial = blocks <= 256 ? on_stack : malloc((size_t)blocks * sizeof(double));
    if (!partial) {
        ee_fail("ee_sum_squares: out of memory");
        return NAN;
    }
    sum_job job = {x, n, partial, block};
    ee_parallel_range(ee_threads_for((double)n), blocks, sum_blocks, &job);
    double total = 0.0;
    for (int64_t blk = 0; blk < blocks; blk++) total += partial[blk];
    if (partial != on_stack) free(partial);
    return total;
}
