/*
 * SwiGLU gate: out = silu(gate) * up, forward and backward. The AVX2 and AVX-512 paths take exp from vexp.h (about
 * 1 ulp) where the portable path calls libm's expf; the formulas and their order of operations are the same.
 */
#include <math.h>

#include "internal.h"
#include "vexp.h"

typedef struct {
    float *out, *dgate, *dup;
    const float *gate, *up, *dout;
} swiglu_job;

/* With s = sigmoid(g): d silu(g)/dg = s * (1 + g * (1 - s)). Inputs are read before either output is written. */
static inline void swiglu_grad(float* dgate, float* dup, float d, float g, float u) {
    const float s = 1.0f / (1.0f + expf(-g));
    *dgate = d * u * s * (1.0f + g * (1.0f - s));
    *dup = d * g * s;
}

static void fwd_portable(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    for (int64_t i = i0; i < i1; i++) j->out[i] = j->gate[i] / (1.0f + expf(-j->gate[i])) * j->up[i];
}

static void bwd_portable(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    for (int64_t i = i0; i < i1; i++) swiglu_grad(j->dgate + i, j->dup + i, j->dout[i], j->gate[i], j->up[i]);
}

#if EE_X86
/* the first min(left, 8) lanes: tails go through the same exp as whole vectors, so no element's value depends on
 * where a thread's range ends */
EE_INLINE EE_AVX2 __m256i lanes8(int64_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

EE_AVX2 static void fwd_avx2(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = i0; i < i1; i += 8) {
        const __m256i m = lanes8(i1 - i);
        const __m256 g = _mm256_maskload_ps(j->gate + i, m), e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_maskstore_ps(j->out + i, m, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_maskload_ps(j->up + i, m)));
    }
}

EE_AVX2 static void bwd_avx2(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = i0; i < i1; i += 8) {
        const __m256i m = lanes8(i1 - i);
        const __m256 g = _mm256_maskload_ps(j->gate + i, m), u = _mm256_maskload_ps(j->up + i, m), d = _mm256_maskload_ps(j->dout + i, m);
        const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        const __m256 ds = _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, s)));
        _mm256_maskstore_ps(j->dgate + i, m, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, u), s), ds));
        _mm256_maskstore_ps(j->dup + i, m, _mm256_mul_ps(_mm256_mul_ps(d, g), s));
    }
}

EE_AVX512 static void fwd_avx512(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 m = i1 - i >= 16 ? 0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(m, j->gate + i), e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        _mm512_mask_storeu_ps(j->out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, j->up + i)));
    }
}

EE_AVX512 static void bwd_avx512(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 m = i1 - i >= 16 ? 0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(m, j->gate + i), u = _mm512_maskz_loadu_ps(m, j->up + i), d = _mm512_maskz_loadu_ps(m, j->dout + i);
        const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        const __m512 ds = _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s)));
        _mm512_mask_storeu_ps(j->dgate + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, u), s), ds));
        _mm512_mask_storeu_ps(j->dup + i, m, _mm512_mul_ps(_mm512_mul_ps(d, g), s));
    }
}
#else /* only the portable kernels (cpu->avx2 and avx512 are 0 here) */
#define fwd_avx2 fwd_portable
#define bwd_avx2 bwd_portable
#define fwd_avx512 fwd_portable
#define bwd_avx512 bwd_portable
#endif

EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_fwd: negative count") : 0;
    if (!out || !gate || !up) return ee_fail("ee_swiglu_fwd: null pointer");
    swiglu_job job = {.out = out, .gate = gate, .up = up};
    const ee_cpu* cpu = ee_cpu_get();
    ee_parallel_range(ee_threads_for(20.0 * (double)n), n, cpu->avx512 ? fwd_avx512 : cpu->avx2 ? fwd_avx2 : fwd_portable, &job);
    return 0;
}

EE_API int32_t ee_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_bwd: negative count") : 0;
    if (!dgate || !dup || !dout || !gate || !up) return ee_fail("ee_swiglu_bwd: null pointer");
    swiglu_job job = {.dgate = dgate, .dup = dup, .gate = gate, .up = up, .dout = dout};
    const ee_cpu* cpu = ee_cpu_get();
    ee_parallel_range(ee_threads_for(20.0 * (double)n), n, cpu->avx512 ? bwd_avx512 : cpu->avx2 ? bwd_avx2 : bwd_portable, &job);
    return 0;
}
