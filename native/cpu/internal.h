/*
 * Private declarations shared by the CPU kernels of libeecpu. Nothing here is exported: the library is built with
 * -fvisibility=hidden and only the EE_API functions of eetune.h are visible.
 */
#ifndef EE_CPU_INTERNAL_H
#define EE_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "eetune/eetune.h"

/* Code compiled for these targets is only called after the run-time check in info.c said the CPU has them. */
#define EE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define EE_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define EE_INLINE static inline __attribute__((always_inline))

/* ---- runtime (info.c) ---------------------------------------------------------------------------------------- */

/* cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) with LP64 ints. */
typedef void (*ee_sgemm_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
#define EE_CBLAS_ROW_MAJOR 101
#define EE_CBLAS_NO_TRANS 111
#define EE_CBLAS_TRANS 112

typedef struct {
    int avx2;           /* AVX2 + FMA + F16C kernels selected (not with EETUNE_NO_AVX2=1) */
    int avx512;         /* AVX-512F kernels selected (not with EETUNE_NO_AVX2=1 or EETUNE_NO_AVX512=1) */
    ee_sgemm_fn sgemm;  /* cblas_sgemm of the OpenBLAS found at run time, or 0 */
    void (*blas_set_num_threads)(int);
} ee_cpu;

/* CPU features and BLAS, detected once (thread-safe). */
const ee_cpu* ee_cpu_get(void);
/* Number of worker threads for a loop doing about `work` scalar operations: 1 when forking would cost more. */
int ee_threads_for(double work);
/* The same for a GEMM of m*n*k multiply-adds, which vectorise about 16 to one operation. */
#define EE_GEMM_WORK(m, n, k) ((double)(m) * (n) * (k) / 16.0)

/*
 * EE_PARALLEL_FOR(nt, i, n, statement): runs the statement for int64_t i in [0, n), statically split over nt (at
 * most n) OpenMP threads, or as a plain loop when that is 1 -- even a one-thread OpenMP region allocates a team
 * (about 0.5 us, more than a small kernel costs). EE_PARALLEL_FOR_DYNAMIC hands out iterations one at a time.
 */
#define EE_PARALLEL_FOR_SCHEDULE(kind, nt, i, n, ...)                                    \
    do {                                                                                 \
        const int64_t ee_n_ = (n);                                                       \
        const int ee_want_ = (nt), ee_nt_ = ee_n_ < ee_want_ ? (int)ee_n_ : ee_want_;    \
        if (ee_nt_ > 1) {                                                                \
            _Pragma(EE_STRINGIFY(omp parallel for num_threads(ee_nt_) schedule(kind)))   \
            for (int64_t i = 0; i < ee_n_; i++) { __VA_ARGS__; }                         \
        } else {                                                                         \
            for (int64_t i = 0; i < ee_n_; i++) { __VA_ARGS__; }                         \
        }                                                                                \
    } while (0)
#define EE_STRINGIFY(x) #x
#define EE_PARALLEL_FOR(nt, i, n, ...) EE_PARALLEL_FOR_SCHEDULE(static, nt, i, n, __VA_ARGS__)
#define EE_PARALLEL_FOR_DYNAMIC(nt, i, n, ...) EE_PARALLEL_FOR_SCHEDULE(dynamic, nt, i, n, __VA_ARGS__)

/* Records a printf-style message as this thread's last error and returns 1 (the failure code). */
int ee_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* 64-byte aligned memory (huge-page backed when large) released with free(); 0 if out of memory (memory.c). */
void* ee_alloc_host(size_t bytes);

/* Per-thread reusable 64-byte aligned buffers, grown on demand and freed at thread exit; 0 if out of memory.
 * Only called outside parallel regions; one slot per user so nested users never share a buffer. */
enum { EE_SCRATCH_GEMM_A, EE_SCRATCH_GEMM_B, EE_SCRATCH_GEMM_SMALL, EE_SCRATCH_BLAS_B, EE_SCRATCH_SLOTS };
void* ee_scratch(int slot, size_t bytes);

/* ---- dtype conversion ---------------------------------------------------------------------------------------- */

EE_INLINE float ee_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
EE_INLINE uint32_t ee_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

EE_INLINE float ee_bf16_to_f32(uint16_t h) { return ee_bits_f32((uint32_t)h << 16); }

EE_INLINE uint16_t ee_f32_to_bf16(float f) {
    uint32_t u = ee_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);                 /* round to nearest even */
}

EE_INLINE float ee_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24 is exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return ee_bits_f32(sign | 0x7f800000u | (mant << 13));
    return ee_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round to nearest even, overflow to infinity (after F. Giesen's float_to_half_fast3_rtne). */
EE_INLINE uint16_t ee_f32_to_f16(float f) {
    uint32_t u = ee_f32_bits(f), sign = (u >> 16) & 0x8000;
    u &= 0x7fffffffu;
    if (u >= 0x47800000u) return (uint16_t)(sign | (u > 0x7f800000u ? 0x7e00 : 0x7c00)); /* >= 65536, inf, NaN */
    if (u < 0x38800000u) { /* f16 subnormal or zero: adding 0.5 puts the rounded bits at the bottom of the mantissa */
        return (uint16_t)(sign | (ee_f32_bits(ee_bits_f32(u) + 0.5f) - 0x3f000000u));
    }
    u += ((uint32_t)(15 - 127) << 23) + 0xfff + ((u >> 13) & 1); /* rebias; a mantissa carry rounds up the exponent */
    return (uint16_t)(sign | (u >> 13));
}

/* Element i of an array of dtype EE_F32 / EE_BF16 / EE_F16 as f32. Inlined with a constant dtype, the switch folds. */
EE_INLINE float ee_load_f32(const void* p, int dtype, size_t i) {
    switch (dtype) {
    case EE_BF16: return ee_bf16_to_f32(((const uint16_t*)p)[i]);
    case EE_F16: return ee_f16_to_f32(((const uint16_t*)p)[i]);
    default: return ((const float*)p)[i];
    }
}

EE_INLINE size_t ee_dtype_size(int dtype) { return dtype == EE_BF16 || dtype == EE_F16 ? 2 : 4; }
EE_INLINE int ee_is_float_dtype(int dtype) { return dtype == EE_F32 || dtype == EE_BF16 || dtype == EE_F16; }

/* ---- vectorised row reductions (exp.c) --------------------------------------------------------------------------- */

/* max of x[0..n), n >= 1 */
float ee_row_max(const float* x, int64_t n);
/* first index of the max of x[0..n), n >= 1 */
int64_t ee_row_argmax(const float* x, int64_t n);
/* returns sum_j e_j in double with e_j = exp((x[j] - shift) * mul); writes y[j] = scale * e_j unless y is 0 (y may
 * be x). Arguments are expected to be <= 0, as they are after subtracting a max or a log-sum-exp. */
double ee_row_exp(float* y, const float* x, int64_t n, float shift, float mul, float scale);

/* ---- GEMM (gemm.c, gemm_kernel.c, gemm_small.c) --------------------------------------------------------------- */

/* One C = alpha op(A) op(B) + beta C problem, as in ee_gemm; m, n, k > 0 and alpha != 0 by the time it runs. */
typedef struct {
    int trans_a, trans_b, m, n, k;
    float alpha, beta;
    const float* a;
    int lda;
    const void* b;
    int b_dtype, ldb;
    float* c;
    int ldc;
} ee_gemm_args;

/* ee_gemm without argument checks, choosing the path like ee_gemm does; used by the fused kernels too. */
int ee_gemm_run(const ee_gemm_args* g);
/* The cache-blocked, packed fallback (any shape, trans and B dtype). */
int ee_gemm_blocked(const ee_gemm_args* g);
/* The decode path for m <= EE_GEMM_SMALL_M with trans_b = 1: each weight row is read once, parallel over n. */
#define EE_GEMM_SMALL_M 8
int ee_gemm_small(const ee_gemm_args* g);

EE_INLINE int ee_ceil_div(int a, int b) { return (a + b - 1) / b; }
EE_INLINE int ee_min(int a, int b) { return a < b ? a : b; }

#endif /* EE_CPU_INTERNAL_H */
