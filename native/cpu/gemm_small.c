/*
 * Decode-time GEMM: a few rows (m <= EE_GEMM_SMALL_M) against a transposed weight, C[i][j] = alpha A_i . W_j + beta
 * C[i][j] with W = B stored n x k (bf16, f16 or f32). This is bandwidth bound: each weight row is streamed from
 * memory once, converted exactly to f32 in registers (bf16 by a 16-bit shift, f16 by F16C) and dotted with all rows
 * of A (which stay in L1/L2); rows of A beyond one register tile re-read the tile's weight rows from L1, not memory.
 * Parallel over n. No packing, so it beats sgemm, which would pack (and, for bf16, first convert) the whole weight
 * for a handful of rows. A stays f32: no vdpbf16ps, which would round A to bf16 (see ee_gemm in eetune.h).
 */
#include "internal.h"
#if EE_X86
#include <immintrin.h>
#endif

#define TILE_N 3 /* weight rows per AVX2 register tile, and the unit of work handed to threads */
#define TILE_M 3 /* rows of A per AVX2 register tile: 9 accumulators + 3 weight vectors + 1 A vector fit 16 ymm */

#if EE_X86
/* ---- AVX2 ------------------------------------------------------------------------------------------------------ */

EE_INLINE EE_AVX2 __m256 load8(const void* w, const int dtype, size_t i) {
    switch (dtype) {
    case EE_BF16: {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    }
    case EE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
    default: return _mm256_loadu_ps((const float*)w + i);
    }
}

EE_INLINE EE_AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* dots[i][j] = A_i . W_j for i < mi, j < nj (compile-time constants once inlined, so acc lives in registers). */
EE_INLINE EE_AVX2 void dot_tile(const int mi, const int nj, const int dtype, const float* a, size_t lda, const void* w, size_t ldw, size_t w0, int k, float dots[TILE_M][TILE_N]) {
    __m256 acc[TILE_M][TILE_N];
    for (int i = 0; i < mi; i++)
        for (int j = 0; j < nj; j++) acc[i][j] = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 wv[TILE_N];
        for (int j = 0; j < nj; j++) wv[j] = load8(w, dtype, w0 + j * ldw + p);
        for (int i = 0; i < mi; i++) {
            __m256 av = _mm256_loadu_ps(a + i * lda + p);
            for (int j = 0; j < nj; j++) acc[i][j] = _mm256_fmadd_ps(av, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mi; i++)
        for (int j = 0; j < nj; j++) {
            float s = hsum8(acc[i][j]);
            for (int q = p; q < k; q++) s += a[i * lda + q] * ee_load_f32(w, dtype, w0 + j * ldw + q);
            dots[i][j] = s;
        }
}

EE_INLINE EE_AVX2 void weight_rows_avx2(const ee_gemm_args* g, const int dtype, const float* a, size_t lda, int j0, int nj) {
    for (int i0 = 0; i0 < g->m; i0 += TILE_M) {
        const int mi = ee_min(TILE_M, g->m - i0);
        const float* ai = a + i0 * lda;
        float dots[TILE_M][TILE_N];
        const size_t w0 = (size_t)j0 * g->ldb;
        if (nj == TILE_N) {
            if (mi == 3) dot_tile(3, TILE_N, dtype, ai, lda, g->b, g->ldb, w0, g->k, dots);
            else if (mi == 2) dot_tile(2, TILE_N, dtype, ai, lda, g->b, g->ldb, w0, g->k, dots);
            else dot_tile(1, TILE_N, dtype, ai, lda, g->b, g->ldb, w0, g->k, dots);
        } else {
            for (int j = 0; j < nj; j++) { /* the last one or two weight rows, one at a time */
                float one[TILE_M][TILE_N];
                const size_t wj = w0 + (size_t)j * g->ldb;
                if (mi == 3) dot_tile(3, 1, dtype, ai, lda, g->b, g->ldb, wj, g->k, one);
                else if (mi == 2) dot_tile(2, 1, dtype, ai, lda, g->b, g->ldb, wj, g->k, one);
                else dot_tile(1, 1, dtype, ai, lda, g->b, g->ldb, wj, g->k, one);
                for (int i = 0; i < mi; i++) dots[i][j] = one[i][0];
            }
        }
        for (int i = 0; i < mi; i++) {
            float* ci = g->c + (size_t)(i0 + i) * g->ldc + j0;
            for (int j = 0; j < nj; j++) ci[j] = g->beta == 0.0f ? g->alpha * dots[i][j] : g->alpha * dots[i][j] + g->beta * ci[j];
        }
    }
}

EE_AVX2 static void weight_rows_avx2_any(const ee_gemm_args* g, const float* a, size_t lda, int j0, int nj) {
    switch (g->b_dtype) {
    case EE_BF16: weight_rows_avx2(g, EE_BF16, a, lda, j0, nj); break;
    case EE_F16: weight_rows_avx2(g, EE_F16, a, lda, j0, nj); break;
    default: weight_rows_avx2(g, EE_F32, a, lda, j0, nj);
    }
}

/* ---- AVX-512: the same scheme with 16 lanes and an 8 x 3 tile (24 of the 32 zmm accumulate; 3 hold weights and one
 * a row of A), so that batch 8 reads each weight once, does 24 FMAs per 11 loads and stays bandwidth bound ------- */

#define TILE512_M 8
#define TILE512_N 3
_Static_assert(TILE512_N == TILE_N, "threads are handed tiles of TILE_N weight rows, whichever kernel runs");

/* 16 elements from w + i as f32 */
EE_INLINE EE_AVX512 __m512 load16(const void* w, const int dtype, size_t i) {
    if (dtype == EE_F32) return _mm512_loadu_ps((const float*)w + i);
    const __m256i h = _mm256_loadu_si256((const __m256i*)((const uint16_t*)w + i));
    if (dtype == EE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* count (< 16) elements from w + i as f32, zero past count; a 16-bit tail goes through a zeroed copy because masked
 * 16-bit loads need AVX512BW */
EE_INLINE EE_AVX512 __m512 load16_tail(const void* w, const int dtype, size_t i, int count) {
    if (dtype == EE_F32) return _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1), (const float*)w + i);
    uint16_t tail[16] = {0};
    memcpy(tail, (const uint16_t*)w + i, (size_t)count * sizeof(uint16_t));
    return load16(tail, dtype, 0);
}

EE_INLINE EE_AVX512 void dot_tile512(const int mi, const int nj, const int dtype, const float* a, size_t lda, const void* w, size_t ldw, size_t w0, int k, float dots[TILE512_M][TILE512_N]) {
    __m512 acc[TILE512_M][TILE512_N];
    for (int i = 0; i < mi; i++)
        for (int j = 0; j < nj; j++) acc[i][j] = _mm512_setzero_ps();
    int p = 0;
    for (; p + 16 <= k; p += 16) {
        __m512 wv[TILE512_N];
        for (int j = 0; j < nj; j++) wv[j] = load16(w, dtype, w0 + j * ldw + p);
        for (int i = 0; i < mi; i++) {
            const __m512 av = _mm512_loadu_ps(a + i * lda + p);
            for (int j = 0; j < nj; j++) acc[i][j] = _mm512_fmadd_ps(av, wv[j], acc[i][j]);
        }
    }
    if (p < k) {
        const int count = k - p;
        __m512 wv[TILE512_N];
        for (int j = 0; j < nj; j++) wv[j] = load16_tail(w, dtype, w0 + j * ldw + p, count);
        for (int i = 0; i < mi; i++) {
            const __m512 av = load16_tail(a, EE_F32, i * lda + p, count);
            for (int j = 0; j < nj; j++) acc[i][j] = _mm512_fmadd_ps(av, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mi; i++)
        for (int j = 0; j < nj; j++) dots[i][j] = _mm512_reduce_add_ps(acc[i][j]);
}

/* the tile for mi rows of A (a run-time value) and nj (TILE512_N or 1) weight rows, with both as constants */
#define EE_TILE512_CASES(nj)                                                                          \
    switch (mi) {                                                                                     \
    case 8: dot_tile512(8, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    case 7: dot_tile512(7, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    case 6: dot_tile512(6, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    case 5: dot_tile512(5, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    case 4: dot_tile512(4, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    case 3: dot_tile512(3, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    case 2: dot_tile512(2, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j); break;               \
    default: dot_tile512(1, nj, dtype, ai, lda, g->b, g->ldb, wj, g->k, dots_j);                     \
    }

EE_INLINE EE_AVX512 void weight_rows_avx512(const ee_gemm_args* g, const int dtype, const float* a, size_t lda, int j0, int nj) {
    for (int i0 = 0; i0 < g->m; i0 += TILE512_M) { /* rows of A past 8 re-read the same weight rows, now in L1 */
        const int mi = ee_min(TILE512_M, g->m - i0);
        const float* ai = a + i0 * lda;
        float dots[TILE512_M][TILE512_N];
        if (nj == TILE512_N) {
            const size_t wj = (size_t)j0 * g->ldb;
            float (*dots_j)[TILE512_N] = dots;
            EE_TILE512_CASES(TILE512_N)
        } else {
            for (int j = 0; j < nj; j++) { /* the last one or two weight rows, one at a time */
                float one[TILE512_M][TILE512_N] = {{0}};
                const size_t wj = (size_t)(j0 + j) * g->ldb;
                float (*dots_j)[TILE512_N] = one;
                EE_TILE512_CASES(1)
                for (int i = 0; i < mi; i++) dots[i][j] = one[i][0];
            }
        }
        for (int i = 0; i < mi; i++) {
            float* ci = g->c + (size_t)(i0 + i) * g->ldc + j0;
            for (int j = 0; j < nj; j++) ci[j] = g->beta == 0.0f ? g->alpha * dots[i][j] : g->alpha * dots[i][j] + g->beta * ci[j];
        }
    }
}

EE_AVX512 static void weight_rows_avx512_any(const ee_gemm_args* g, const float* a, size_t lda, int j0, int nj) {
    switch (g->b_dtype) {
    case EE_BF16: weight_rows_avx512(g, EE_BF16, a, lda, j0, nj); break;
    case EE_F16: weight_rows_avx512(g, EE_F16, a, lda, j0, nj); break;
    default: weight_rows_avx512(g, EE_F32, a, lda, j0, nj);
    }
}

#else /* only the portable kernel (cpu->avx2 and avx512 are 0 here) */
#define TILE512 TILE_N
#define weight_rows_avx2_any weight_rows_portable
#define weight_rows_avx512_any weight_rows_portable
#endif

/* ---- portable ------------------------------------------------------------------------------------------------------- */

/* One weight row at a time, converted to f32 a stack chunk at a time. */
#define PORTABLE_CHUNK 256

static void weight_rows_portable(const ee_gemm_args* g, const float* a, size_t lda, int j0, int nj) {
    float w[PORTABLE_CHUNK];
    for (int j = j0; j < j0 + nj; j++) {
        float dots[EE_GEMM_SMALL_M] = {0};
        for (int p0 = 0; p0 < g->k; p0 += PORTABLE_CHUNK) {
            const int len = ee_min(PORTABLE_CHUNK, g->k - p0);
            for (int p = 0; p < len; p++) w[p] = ee_load_f32(g->b, g->b_dtype, (size_t)j * g->ldb + p0 + p);
            for (int i = 0; i < g->m; i++) {
                const float* ai = a + i * lda + p0;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int p = 0; p < len; p++) s += ai[p] * w[p];
                dots[i] += s;
            }
        }
        for (int i = 0; i < g->m; i++) {
            float* cij = g->c + (size_t)i * g->ldc + j;
            *cij = g->beta == 0.0f ? g->alpha * dots[i] : g->alpha * dots[i] + g->beta * *cij;
        }
    }
}

/* Weight rows are handed out in tiles of TILE_N (= TILE512_N) rows, the unit all three kernels work in. */
typedef struct {
    const ee_gemm_args* g;
    const float* a;
    size_t lda;
} small_job;

static void small_tiles(void* p, int64_t t0, int64_t t1) {
    const small_job* job = p;
    const ee_cpu* cpu = ee_cpu_get();
    for (int64_t t = t0; t < t1; t++) {
        const int j0 = (int)t * TILE_N, nj = ee_min(TILE_N, job->g->n - j0);
        if (cpu->avx512)
            weight_rows_avx512_any(job->g, job->a, job->lda, j0, nj);
        else if (cpu->avx2)
            weight_rows_avx2_any(job->g, job->a, job->lda, j0, nj);
        else
            weight_rows_portable(job->g, job->a, job->lda, j0, nj);
    }
}

int ee_gemm_small(const ee_gemm_args* g) {
    const float* a = g->a;
    size_t lda = (size_t)g->lda;
    if (g->trans_a) { /* A as m contiguous rows */
        float* rows = ee_scratch(EE_SCRATCH_GEMM_SMALL, (size_t)g->m * g->k * sizeof(float));
        if (!rows) return ee_fail("ee_gemm: out of memory");
        for (int i = 0; i < g->m; i++)
            for (int p = 0; p < g->k; p++) rows[(size_t)i * g->k + p] = g->a[(size_t)p * g->lda + i];
        a = rows;
        lda = (size_t)g->k;
    }
    const small_job job = {g, a, lda};
    ee_parallel_range(ee_threads_for(EE_GEMV_WORK(g->m, g->n, g->k)), ee_ceil_div(g->n, TILE_N), small_tiles, (void*)&job);
    return 0;
}
