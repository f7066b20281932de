/*
 * Vectorised row reductions around exp, shared by softmax, sampling, attention and the fused cross-entropy (where
 * the exponentials of rows x vocab logits would otherwise cost more than the GEMMs). exp is vexp.h's (about 1 ulp);
 * the portable path uses libm's expf. Sums of exponentials are accumulated in double.
 */
#include <math.h>

#include "internal.h"
#include "vexp.h"

/* ---- portable -------------------------------------------------------------------------------------------------- */

static float max_scalar(const float* x, int64_t n) {
    float m = x[0];
    for (int64_t j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

static double exp_scalar(float* y, const float* x, int64_t n, float shift, float mul, float scale) {
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        const float e = expf((x[j] - shift) * mul);
        sum += e;
        if (y) y[j] = scale * e;
    }
    return sum;
}

#if EE_X86
/* ---- AVX2 ---------------------------------------------------------------------------------------------------------- */

EE_INLINE EE_AVX2 __m256i tail_mask8(int64_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

EE_AVX2 static float max_avx2(const float* x, int64_t n) {
    __m256 m = _mm256_set1_ps(x[0]);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; j < n; j++) r = x[j] > r ? x[j] : r;
    return r;
}

/* First index of the max in one pass: each lane keeps its max and the first index where it was reached (a strictly
 * greater value replaces it), then the lowest index among the lanes holding the overall max wins. Returns -1 when a
 * NaN was seen, for the caller's two-pass path to decide as before. */
EE_AVX2 static int64_t argmax_avx2(const float* x, int64_t n) {
    __m256 m = _mm256_set1_ps(x[0]);
    __m256i idx = _mm256_setzero_si256(), at = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 nan = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8, at = _mm256_add_epi32(at, _mm256_set1_epi32(8))) {
        const __m256 v = _mm256_loadu_ps(x + j), gt = _mm256_cmp_ps(v, m, _CMP_GT_OQ);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        m = _mm256_blendv_ps(m, v, gt);
        idx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(idx), _mm256_castsi256_ps(at), gt));
    }
    if (_mm256_movemask_ps(nan)) return -1;
    float lane_max[8];
    int32_t lane_idx[8];
    _mm256_storeu_ps(lane_max, m);
    _mm256_storeu_si256((__m256i*)lane_idx, idx);
    float best = lane_max[0];
    int64_t arg = lane_idx[0];
    for (int l = 1; l < 8; l++)
        if (lane_max[l] > best || (lane_max[l] == best && lane_idx[l] < arg)) best = lane_max[l], arg = lane_idx[l];
    for (; j < n; j++) {
        if (x[j] != x[j]) return -1;
        if (x[j] > best) best = x[j], arg = j;
    }
    return arg;
}

EE_AVX2 static double exp_avx2(float* y, const float* x, int64_t n, float shift, float mul, float scale) {
    const __m256 vshift = _mm256_set1_ps(shift), vmul = _mm256_set1_ps(mul), vscale = _mm256_set1_ps(scale);
    __m256d sum = _mm256_setzero_pd();
    for (int64_t j = 0; j < n; j += 8) {
        const __m256i mask = tail_mask8(n - j);
        const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(mask), exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + j, mask), vshift), vmul)));
        sum = _mm256_add_pd(sum, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1))));
        if (y) _mm256_maskstore_ps(y + j, mask, _mm256_mul_ps(vscale, e));
    }
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(sum), _mm256_extractf128_pd(sum, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* ---- AVX-512 ------------------------------------------------------------------------------------------------------ */

EE_AVX512 static float max_avx512(const float* x, int64_t n) {
    __m512 m = _mm512_set1_ps(x[0]);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 mask = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        m = _mm512_mask_max_ps(m, mask, m, _mm512_maskz_loadu_ps(mask, x + j));
    }
    return _mm512_reduce_max_ps(m);
}

/* as argmax_avx2 */
EE_AVX512 static int64_t argmax_avx512(const float* x, int64_t n) {
    __m512 m = _mm512_set1_ps(x[0]);
    __m512i idx = _mm512_setzero_si512(), at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __mmask16 nan = 0;
    for (int64_t j = 0; j < n; j += 16, at = _mm512_add_epi32(at, _mm512_set1_epi32(16))) {
        const __mmask16 mask = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(mask, x + j);
        const __mmask16 gt = _mm512_mask_cmp_ps_mask(mask, v, m, _CMP_GT_OQ);
        nan |= _mm512_mask_cmp_ps_mask(mask, v, v, _CMP_UNORD_Q);
        m = _mm512_mask_mov_ps(m, gt, v);
        idx = _mm512_mask_mov_epi32(idx, gt, at);
    }
    if (nan) return -1;
    const __mmask16 top = _mm512_cmp_ps_mask(m, _mm512_set1_ps(_mm512_reduce_max_ps(m)), _CMP_EQ_OQ);
    return _mm512_mask_reduce_min_epi32(top, idx);
}

EE_AVX512 static double exp_avx512(float* y, const float* x, int64_t n, float shift, float mul, float scale) {
    const __m512 vshift = _mm512_set1_ps(shift), vmul = _mm512_set1_ps(mul), vscale = _mm512_set1_ps(scale);
    __m512d sum = _mm512_setzero_pd();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 mask = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(mask, exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + j), vshift), vmul)));
        sum = _mm512_add_pd(sum, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(e)), _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)))));
        if (y) _mm512_mask_storeu_ps(y + j, mask, _mm512_mul_ps(vscale, e));
    }
    return _mm512_reduce_add_pd(sum);
}

#else /* only the portable kernels (cpu->avx2 and avx512 are 0 here) */
#define max_avx2 max_scalar
#define max_avx512 max_scalar
#define exp_avx2 exp_scalar
#define argmax_avx2(x, n) ((int64_t)-1)
#define argmax_avx512(x, n) ((int64_t)-1)
#define exp_avx512 exp_scalar
#endif

/* ---- dispatch ---------------------------------------------------------------------------------------------------- */

float ee_row_max(const float* x, int64_t n) {
    const ee_cpu* cpu = ee_cpu_get();
    return cpu->avx512 ? max_avx512(x, n) : cpu->avx2 ? max_avx2(x, n) : max_scalar(x, n);
}

double ee_row_exp(float* y, const float* x, int64_t n, float shift, float mul, float scale) {
    const ee_cpu* cpu = ee_cpu_get();
    return cpu->avx512 ? exp_avx512(y, x, n, shift, mul, scale) : cpu->avx2 ? exp_avx2(y, x, n, shift, mul, scale) : exp_scalar(y, x, n, shift, mul, scale);
}

int64_t ee_row_argmax(const float* x, int64_t n) {
    const ee_cpu* cpu = ee_cpu_get();
    if (n <= INT32_MAX) { /* the one-pass kernels count in 32-bit lanes */
        const int64_t arg = cpu->avx512 ? argmax_avx512(x, n) : cpu->avx2 ? argmax_avx2(x, n) : -1;
        if (arg >= 0) return arg;
    }
    /* portable, or a NaN in the row: the max, then its first index */
    const float m = ee_row_max(x, n);
    for (int64_t j = 0; j < n; j++)
        if (x[j] == m) return j;
    return 0; /* only NaNs */
}
