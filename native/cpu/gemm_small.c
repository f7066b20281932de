/*
 * Decode-time GEMM: a few rows (m <= EE_GEMM_SMALL_M) against a transposed weight, C[i][j] = alpha A_i . W_j + beta
 * C[i][j] with W = B stored n x k (bf16, f16 or f32). This is bandwidth bound: each weight row is streamed from
 * memory once, converted exactly to f32 in registers and dotted with all rows of A (which stay in L1/L2); rows of A
 * beyond one register tile re-read the tile's weight rows from L1, not memory. Parallel over n: equal runs of tiles
 * per thread, of which a thread done early takes what another has not started (ee_parallel_range_stealing). No
 * packing, so it beats sgemm, which would pack (and, for bf16, first convert) the whole weight for a handful of rows.
 * A stays f32: no vdpbf16ps, which would round A to bf16 (see ee_gemm in eetune.h).
 *
 * Register tile: MR rows of A x NR weight rows, one vector accumulator each, summed over k (vertically); only at
 * the end are the MR x NR accumulators reduced, 16 (AVX-512) or 8 (AVX2) at a time by a transpose-and-add tree that
 * leaves one sum per lane. With one reduction per accumulator (~8 shuffles and adds) instead, the reductions cost
 * as much as a quarter of the FMAs at k = 288. The tile is widest at m = 1 (16 weight rows on AVX-512, 8 on AVX2):
 * that keeps enough independent FMA chains and loads in flight to stream at memory speed.
 *
 * Widening is exact: f16 by F16C; bf16 by pairs: a 32-bit lane of the weight holds two bf16 values, the even one
 * (lower half) becomes f32 by a left shift of 16 and the odd one by masking off the lower half, one integer op per
 * 16 weights and no shuffle; the rows of A are split once per call into their even and odd elements to match.
 * The pair blocks start on a cache line (the elements before it and after the last block go 16 or 8 at a time, a
 * partial step as a whole step inside the row whose other lanes are masked out of the FMAs): weights mapped from a
 * checkpoint file sit wherever its header ends, and 64-byte loads that straddled two lines each made the 110M bf16
 * step's GEMVs ~1.4x slower (gemmbench step110m).
 */
#include "internal.h"
#if EE_X86
#include <immintrin.h>
#endif

/* What every kernel reads: A as m contiguous rows (lda apart) and, for bf16 weights on an x86 path, A's elements
 * head .. head + ldap - 1 split into even and odd elements per block of 2 x lanes (ap, ldap floats apart; ldap = k -
 * head rounded down to the block). head is the number of leading elements that puts every weight row's pair blocks
 * on cache-line boundaries (see ee_gemm_small); the head and what is left after the blocks go the plain way. */
typedef struct {
    const ee_gemm_args* g;
    const float* a;
    size_t lda;
    const float* ap;
    size_t ldap;
    int head;
    int nr; /* weight rows per tile: threads are handed runs of whole tiles */
} small_job;

/* C[i0 + i][j0 + j] = alpha dots[i * NR + j] + beta C (beta = 0 ignores C) for i < mr, j < nj */
EE_INLINE void store_tile(const ee_gemm_args* g, const float* dots, int nr, int i0, int mr, int j0, int nj) {
    for (int i = 0; i < mr; i++) {
        float* ci = g->c + (size_t)(i0 + i) * g->ldc + j0;
        for (int j = 0; j < nj; j++) ci[j] = g->beta == 0.0f ? g->alpha * dots[i * nr + j] : g->alpha * dots[i * nr + j] + g->beta * ci[j];
    }
}

#if EE_X86
/* Software prefetch of the next tile's weights, the line at the same place in the same row, one per line loaded now
 * (a tile ahead is 4.5-48 KiB, so the line is in L1 when its tile starts). The tile reads NR rows side by side, which
 * the hardware prefetchers follow poorly: on the project's 2-core EPYC (one thread, alternated with a build without
 * it, the machine shared) bf16 weights streamed 1.3x faster at the 110M shapes and 2.2-2.5x at the 15M ones, f32
 * 1.1-1.2x; with the weights in L2 it costs about 10% at m = 1. Prefetching the next tile as one block in memory
 * order instead streamed 0.75-0.85x as fast: its last rows arrive too late. A prefetch past the end is harmless. */
#define PREFETCH_LINE(base, dtype, i) _mm_prefetch((const char*)(base) + (i) * ((dtype) == EE_F32 ? 4 : 2), _MM_HINT_T0)
/* GCC would rather fold a load of A into each FMA that uses it (MR x NR loads a step instead of MR, which makes the
 * larger tiles load bound): an empty asm that claims to change the value pins it in a register instead. The same
 * holds for the weight vectors of a tile with several rows of A (GCC folded each into the MR FMAs that use it: 32
 * loads per 24 FMAs at 8 x 3); pinned where the tile's accumulators, weights and A fit in the 32 registers. With the
 * weights in L2 (768 x 288, one thread, CPU time, machine shared) that took m = 8 from 0.037-0.040 to 0.030-0.032 ms,
 * m = 4 0.022 -> 0.017, m = 16 0.103-0.108 -> 0.086-0.087; streamed from memory the change was within the noise. */
#define KEEP_IN_REGISTER(v) __asm__("" : "+v"(v))
/* elements per cache line */
#define LINE_ELEMS(dtype) ((dtype) == EE_F32 ? 16 : 32)

/* ---- AVX-512 ----------------------------------------------------------------------------------------------------- */

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

/* One level of the reduction tree: pairs of vectors, each half of the result the sum of two halves of one input. */
EE_INLINE EE_AVX512 __m512 fold256(__m512 a, __m512 b) { return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE)); }
EE_INLINE EE_AVX512 __m512 fold128(__m512 a, __m512 b) { return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD)); }
EE_INLINE EE_AVX512 __m512 fold64(__m512 a, __m512 b) { return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE)); }
EE_INLINE EE_AVX512 __m512 fold32(__m512 a, __m512 b) { return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD)); }

/* Lane l of the result = the sum of the lanes of acc[l] (l < count; 0 beyond), with 15 adds and 30 shuffles for 16
 * vectors. The tree leaves input q + 4r in lane 4q + r, so it is fed acc[4q + r] there. */
EE_INLINE EE_AVX512 __m512 reduce16(const __m512* acc, const int count) {
    __m512 v[16], s[8], u[4];
    for (int i = 0; i < 16; i++) {
        const int src = 4 * (i % 4) + i / 4;
        v[i] = src < count ? acc[src] : _mm512_setzero_ps();
    }
    for (int i = 0; i < 8; i++) s[i] = fold256(v[2 * i], v[2 * i + 1]);
    for (int i = 0; i < 4; i++) u[i] = fold128(s[2 * i], s[2 * i + 1]);
    return fold32(fold64(u[0], u[1]), fold64(u[2], u[3]));
}

/* Accumulators of the largest tile, rounded up to whole reductions (fixed-size arrays: GCC keeps those in registers
 * once the loops over them are unrolled; it spills variable-length ones). */
#define TILE512_MAX 32

/* acc[i * NR + j] += A_{i0+i}[p0..p1) . W_{j0+j}[p0..p1) with 16 weights a step, the last partial step zero-padded */
EE_INLINE EE_AVX512 void span512(const small_job* job, __m512* acc, const int MR, const int NR, const int dtype, const float* a, const size_t* row, int p0, int p1) {
    const ee_gemm_args* g = job->g;
    const size_t lda = job->lda, ahead = (size_t)NR * g->ldb; /* from a weight row to the same place in the next tile */
    int p = p0;
    for (; p + 16 <= p1; p += 16) {
        __m512 wv[16];
        for (int j = 0; j < NR; j++) {
            wv[j] = load16(g->b, dtype, row[j] + p);
            if (MR > 1 && MR * NR + NR + 1 <= 32) KEEP_IN_REGISTER(wv[j]);
            if (p % LINE_ELEMS(dtype) == 0) PREFETCH_LINE(g->b, dtype, row[j] + ahead + p);
        }
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_loadu_ps(a + i * lda + p);
            KEEP_IN_REGISTER(av);
            for (int j = 0; j < NR; j++) acc[i * NR + j] = _mm512_fmadd_ps(av, wv[j], acc[i * NR + j]);
        }
    }
    if (p < p1 && dtype != EE_F32 && g->k >= 16) { /* a whole step inside the row, its lanes outside [p, p1) left out */
        const int s = p + 16 <= g->k ? p : g->k - 16;
        const __mmask16 live = (__mmask16)(((1u << (p1 - p)) - 1) << (p - s));
        for (int j = 0; j < NR; j++) {
            const __m512 wv = load16(g->b, dtype, row[j] + s);
            for (int i = 0; i < MR; i++) acc[i * NR + j] = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(a + i * lda + s), wv, acc[i * NR + j], live);
        }
    } else if (p < p1) {
        const int count = p1 - p;
        for (int j = 0; j < NR; j++) {
            const __m512 wv = load16_tail(g->b, dtype, row[j] + p, count);
            for (int i = 0; i < MR; i++) acc[i * NR + j] = _mm512_fmadd_ps(load16_tail(a, EE_F32, i * lda + p, count), wv, acc[i * NR + j]);
        }
    }
}

/* dots[i * NR + j] = A_{i0+i} . W_{j0+j} for i < MR, j < NR, and the stores. MR, NR and dtype are constants once
 * inlined, so the accumulators live in registers. Weight rows past nj repeat the last one (computed, not stored). */
EE_INLINE EE_AVX512 void tile512(const small_job* job, const int MR, const int NR, const int dtype, int i0, int j0, int nj) {
    const ee_gemm_args* g = job->g;
    const float* a = job->a + (size_t)i0 * job->lda;
    size_t row[16];
    for (int j = 0; j < NR; j++) row[j] = (size_t)(j0 + (j < nj ? j : nj - 1)) * g->ldb;
    __m512 acc[TILE512_MAX];
    for (int q = 0; q < MR * NR; q++) acc[q] = _mm512_setzero_ps();
    int p = 0;
    if (dtype == EE_BF16 && job->ap) { /* 32 weights a step, one cache line, as even and odd halves of 16 pairs */
        span512(job, acc, MR, NR, dtype, a, row, 0, job->head);
        const float* ap = job->ap + (size_t)i0 * job->ldap;
        const uint16_t* b = (const uint16_t*)g->b + job->head;
        const size_t ahead = (size_t)NR * g->ldb;
        const __m512i odd = _mm512_set1_epi32((int)0xFFFF0000u);
        for (int q = 0; q < (int)job->ldap; q += 32) {
            if (MR <= NR) { /* A's halves in registers, then one weight row after another */
                __m512 ae[8], ao[8];
                for (int i = 0; i < MR; i++) {
                    ae[i] = _mm512_loadu_ps(ap + i * job->ldap + q), ao[i] = _mm512_loadu_ps(ap + i * job->ldap + q + 16);
                    KEEP_IN_REGISTER(ae[i]);
                    KEEP_IN_REGISTER(ao[i]);
                }
                for (int j = 0; j < NR; j++) {
                    const __m512i pair = _mm512_loadu_si512(b + row[j] + q);
                    PREFETCH_LINE(b, EE_BF16, row[j] + ahead + q);
                    const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16)), wo = _mm512_castsi512_ps(_mm512_and_si512(pair, odd));
                    for (int i = 0; i < MR; i++) acc[i * NR + j] = _mm512_fmadd_ps(ao[i], wo, _mm512_fmadd_ps(ae[i], we, acc[i * NR + j]));
                }
            } else { /* the tile's weights in registers, then one row of A after another */
                __m512 we[16], wo[16];
                for (int j = 0; j < NR; j++) {
                    const __m512i pair = _mm512_loadu_si512(b + row[j] + q);
                    PREFETCH_LINE(b, EE_BF16, row[j] + ahead + q);
                    we[j] = _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16)), wo[j] = _mm512_castsi512_ps(_mm512_and_si512(pair, odd));
                }
                for (int i = 0; i < MR; i++) {
                    __m512 ae = _mm512_loadu_ps(ap + i * job->ldap + q), ao = _mm512_loadu_ps(ap + i * job->ldap + q + 16);
                    KEEP_IN_REGISTER(ae);
                    KEEP_IN_REGISTER(ao);
                    for (int j = 0; j < NR; j++) acc[i * NR + j] = _mm512_fmadd_ps(ao, wo[j], _mm512_fmadd_ps(ae, we[j], acc[i * NR + j]));
                }
            }
        }
        p = job->head + (int)job->ldap;
    }
    span512(job, acc, MR, NR, dtype, a, row, p, g->k);
    float dots[TILE512_MAX];
    for (int q = 0; q < MR * NR; q += 16) _mm512_storeu_ps(dots + q, reduce16(acc + q, MR * NR - q < 16 ? MR * NR - q : 16));
    store_tile(g, dots, NR, i0, MR, j0, nj);
}

/* The tile for a batch of m rows of A: NR weight rows by as many rows of A as leave 15-28 accumulators; up to m = 4
 * at most 16, one reduction per tile: where k is small the reduction costs as much as the FMAs (stories260K's layer,
 * k = 64 and 172, one thread: 3 rows 3 x 8 -> 3 x 5 11.8 -> 9.1 us, 4 rows 4 x 6 -> 4 x 4 13.5 -> 10.6 us; at the 15M
 * shapes, where the weights stream from memory, m = 4 within noise: gemmbench gemv15m f32 1597 / 1416 -> 1725 / 1233,
 * bf16 2161 / 2120 -> 2464 / 2317 tok/s). */
static int nr512(int m) { return m == 1 ? 16 : m == 2 ? 8 : m == 3 ? 5 : m <= 6 ? 4 : 3; }

EE_INLINE EE_AVX512 void tiles512_as(const small_job* job, const int dtype, int64_t t0, int64_t t1) {
    const ee_gemm_args* g = job->g;
    const int m = g->m, nr = job->nr;
    for (int64_t t = t0; t < t1; t++) {
        const int j0 = (int)t * nr, nj = ee_min(nr, g->n - j0);
        switch (m) {
        case 1: tile512(job, 1, 16, dtype, 0, j0, nj); break;
        case 2: tile512(job, 2, 8, dtype, 0, j0, nj); break;
        case 3: tile512(job, 3, 5, dtype, 0, j0, nj); break;
        case 4: tile512(job, 4, 4, dtype, 0, j0, nj); break;
        case 5: tile512(job, 5, 4, dtype, 0, j0, nj); break;
        case 6: tile512(job, 6, 4, dtype, 0, j0, nj); break;
        default: /* 8 x 3 tiles; rows of A past 8 re-read the same weight rows, now in L1 */
            for (int i0 = 0; i0 < m; i0 += 8) switch (ee_min(8, m - i0)) {
                case 8: tile512(job, 8, 3, dtype, i0, j0, nj); break;
                case 7: tile512(job, 7, 3, dtype, i0, j0, nj); break;
                case 6: tile512(job, 6, 3, dtype, i0, j0, nj); break;
                case 5: tile512(job, 5, 3, dtype, i0, j0, nj); break;
                case 4: tile512(job, 4, 3, dtype, i0, j0, nj); break;
                case 3: tile512(job, 3, 3, dtype, i0, j0, nj); break;
                case 2: tile512(job, 2, 3, dtype, i0, j0, nj); break;
                default: tile512(job, 1, 3, dtype, i0, j0, nj);
                }
        }
    }
}

EE_AVX512 static void tiles512(void* p, int64_t t0, int64_t t1) {
    const small_job* job = p;
    switch (job->g->b_dtype) {
    case EE_BF16: tiles512_as(job, EE_BF16, t0, t1); break;
    case EE_F16: tiles512_as(job, EE_F16, t0, t1); break;
    default: tiles512_as(job, EE_F32, t0, t1);
    }
}

/* ---- AVX2: the same scheme with 8 lanes and 16 registers -------------------------------------------------------- */

EE_INLINE EE_AVX2 __m256 load8(const void* w, const int dtype, size_t i) {
    switch (dtype) {
    case EE_BF16: {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    }
    case EE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
    default: return _mm256_loadu_ps((const float*)w + i);
    }
}

/* count (< 8) elements from w + i as f32, zero past count */
EE_INLINE EE_AVX2 __m256 load8_tail(const void* w, const int dtype, size_t i, int count) {
    if (dtype == EE_F32) {
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        return _mm256_maskload_ps((const float*)w + i, mask);
    }
    uint16_t tail[8] = {0};
    memcpy(tail, (const uint16_t*)w + i, (size_t)count * sizeof(uint16_t));
    return load8(tail, dtype, 0);
}

EE_INLINE EE_AVX2 __m256 fold128x(__m256 a, __m256 b) { return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)); }
EE_INLINE EE_AVX2 __m256 fold64x(__m256 a, __m256 b) { return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x44), _mm256_shuffle_ps(a, b, 0xEE)); }
EE_INLINE EE_AVX2 __m256 fold32x(__m256 a, __m256 b) { return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xDD)); }

/* Lane l = the sum of the lanes of acc[l] (l < count; 0 beyond); the tree leaves input 2r + h in lane 4h + r. */
EE_INLINE EE_AVX2 __m256 reduce8(const __m256* acc, const int count) {
    __m256 v[8], s[4];
    for (int i = 0; i < 8; i++) {
        const int src = 4 * (i % 2) + i / 2;
        v[i] = src < count ? acc[src] : _mm256_setzero_ps();
    }
    for (int i = 0; i < 4; i++) s[i] = fold128x(v[2 * i], v[2 * i + 1]);
    return fold32x(fold64x(s[0], s[1]), fold64x(s[2], s[3]));
}

#define TILE256_MAX 16

EE_INLINE EE_AVX2 void span256(const small_job* job, __m256* acc, const int MR, const int NR, const int dtype, const float* a, const size_t* row, int p0, int p1) {
    const ee_gemm_args* g = job->g;
    const size_t lda = job->lda, ahead = (size_t)NR * g->ldb;
    int p = p0;
    for (; p + 8 <= p1; p += 8) {
        __m256 wv[8];
        for (int j = 0; j < NR; j++) {
            wv[j] = load8(g->b, dtype, row[j] + p);
            if (p % LINE_ELEMS(dtype) == 0) PREFETCH_LINE(g->b, dtype, row[j] + ahead + p);
        }
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_loadu_ps(a + i * lda + p);
            KEEP_IN_REGISTER(av);
            for (int j = 0; j < NR; j++) acc[i * NR + j] = _mm256_fmadd_ps(av, wv[j], acc[i * NR + j]);
        }
    }
    if (p < p1 && dtype != EE_F32 && g->k >= 8) { /* a whole step inside the row, its lanes outside [p, p1) left out */
        const int s = p + 8 <= g->k ? p : g->k - 8;
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256 live = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(p - s - 1)), _mm256_cmpgt_epi32(_mm256_set1_epi32(p1 - s), lane)));
        for (int j = 0; j < NR; j++) {
            const __m256 wv = load8(g->b, dtype, row[j] + s);
            for (int i = 0; i < MR; i++) acc[i * NR + j] = _mm256_blendv_ps(acc[i * NR + j], _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + s), wv, acc[i * NR + j]), live);
        }
    } else if (p < p1) {
        const int count = p1 - p;
        for (int j = 0; j < NR; j++) {
            const __m256 wv = load8_tail(g->b, dtype, row[j] + p, count);
            for (int i = 0; i < MR; i++) acc[i * NR + j] = _mm256_fmadd_ps(load8_tail(a, EE_F32, i * lda + p, count), wv, acc[i * NR + j]);
        }
    }
}

EE_INLINE EE_AVX2 void tile256(const small_job* job, const int MR, const int NR, const int dtype, int i0, int j0, int nj) {
    const ee_gemm_args* g = job->g;
    const float* a = job->a + (size_t)i0 * job->lda;
    size_t row[16];
    for (int j = 0; j < NR; j++) row[j] = (size_t)(j0 + (j < nj ? j : nj - 1)) * g->ldb;
    __m256 acc[TILE256_MAX];
    for (int q = 0; q < MR * NR; q++) acc[q] = _mm256_setzero_ps();
    int p = 0;
    if (dtype == EE_BF16 && job->ap) { /* 16 weights a step as even and odd halves of 8 pairs */
        span256(job, acc, MR, NR, dtype, a, row, 0, job->head);
        const float* ap = job->ap + (size_t)i0 * job->ldap;
        const uint16_t* b = (const uint16_t*)g->b + job->head;
        const size_t ahead = (size_t)NR * g->ldb;
        const __m256i odd = _mm256_set1_epi32((int)0xFFFF0000u);
        for (int q = 0; q < (int)job->ldap; q += 16) {
            const int line = q % LINE_ELEMS(EE_BF16) == 0; /* a step reads half a line */
            if (MR <= NR) { /* A's halves in registers, then one weight row after another */
                __m256 ae[4], ao[4];
                for (int i = 0; i < MR; i++) {
                    ae[i] = _mm256_loadu_ps(ap + i * job->ldap + q), ao[i] = _mm256_loadu_ps(ap + i * job->ldap + q + 8);
                    KEEP_IN_REGISTER(ae[i]);
                    KEEP_IN_REGISTER(ao[i]);
                }
                for (int j = 0; j < NR; j++) {
                    const __m256i pair = _mm256_loadu_si256((const __m256i*)(b + row[j] + q));
                    if (line) PREFETCH_LINE(b, EE_BF16, row[j] + ahead + q);
                    const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(pair, 16)), wo = _mm256_castsi256_ps(_mm256_and_si256(pair, odd));
                    for (int i = 0; i < MR; i++) acc[i * NR + j] = _mm256_fmadd_ps(ao[i], wo, _mm256_fmadd_ps(ae[i], we, acc[i * NR + j]));
                }
            } else { /* the tile's weights in registers, then one row of A after another */
                __m256 we[8], wo[8];
                for (int j = 0; j < NR; j++) {
                    const __m256i pair = _mm256_loadu_si256((const __m256i*)(b + row[j] + q));
                    if (line) PREFETCH_LINE(b, EE_BF16, row[j] + ahead + q);
                    we[j] = _mm256_castsi256_ps(_mm256_slli_epi32(pair, 16)), wo[j] = _mm256_castsi256_ps(_mm256_and_si256(pair, odd));
                }
                for (int i = 0; i < MR; i++) {
                    __m256 ae = _mm256_loadu_ps(ap + i * job->ldap + q), ao = _mm256_loadu_ps(ap + i * job->ldap + q + 8);
                    KEEP_IN_REGISTER(ae);
                    KEEP_IN_REGISTER(ao);
                    for (int j = 0; j < NR; j++) acc[i * NR + j] = _mm256_fmadd_ps(ao, wo[j], _mm256_fmadd_ps(ae, we[j], acc[i * NR + j]));
                }
            }
        }
        p = job->head + (int)job->ldap;
    }
    span256(job, acc, MR, NR, dtype, a, row, p, g->k);
    float dots[TILE256_MAX];
    for (int q = 0; q < MR * NR; q += 8) _mm256_storeu_ps(dots + q, reduce8(acc + q, MR * NR - q < 8 ? MR * NR - q : 8));
    store_tile(g, dots, NR, i0, MR, j0, nj);
}

/* 8 accumulators at m = 1 and 2, 9 to 12 beyond (3 weight vectors and the accumulators fill the 16 registers; A is
 * read by the FMAs from L1) */
static int nr256(int m) { return m == 1 ? 8 : m == 2 ? 4 : 3; }

EE_INLINE EE_AVX2 void tiles256_as(const small_job* job, const int dtype, int64_t t0, int64_t t1) {
    const ee_gemm_args* g = job->g;
    const int m = g->m, nr = job->nr;
    for (int64_t t = t0; t < t1; t++) {
        const int j0 = (int)t * nr, nj = ee_min(nr, g->n - j0);
        switch (m) {
        case 1: tile256(job, 1, 8, dtype, 0, j0, nj); break;
        case 2: tile256(job, 2, 4, dtype, 0, j0, nj); break;
        default:
            for (int i0 = 0; i0 < m; i0 += 4) switch (ee_min(4, m - i0)) {
                case 4: tile256(job, 4, 3, dtype, i0, j0, nj); break;
                case 3: tile256(job, 3, 3, dtype, i0, j0, nj); break;
                case 2: tile256(job, 2, 3, dtype, i0, j0, nj); break;
                default: tile256(job, 1, 3, dtype, i0, j0, nj);
                }
        }
    }
}

EE_AVX2 static void tiles256(void* p, int64_t t0, int64_t t1) {
    const small_job* job = p;
    switch (job->g->b_dtype) {
    case EE_BF16: tiles256_as(job, EE_BF16, t0, t1); break;
    case EE_F16: tiles256_as(job, EE_F16, t0, t1); break;
    default: tiles256_as(job, EE_F32, t0, t1);
    }
}
#endif

/* ---- portable ------------------------------------------------------------------------------------------------------- */

/* One weight row at a time, converted to f32 a stack chunk at a time. */
#define PORTABLE_CHUNK 256

static void tiles_portable(void* p, int64_t t0, int64_t t1) {
    const small_job* job = p;
    const ee_gemm_args* g = job->g;
    float w[PORTABLE_CHUNK];
    for (int j = (int)t0; j < (int)t1; j++) { /* tiles of one row */
        float dots[EE_GEMM_SMALL_M] = {0};
        for (int p0 = 0; p0 < g->k; p0 += PORTABLE_CHUNK) {
            const int len = ee_min(PORTABLE_CHUNK, g->k - p0);
            for (int q = 0; q < len; q++) w[q] = ee_load_f32(g->b, g->b_dtype, (size_t)j * g->ldb + p0 + q);
            for (int i = 0; i < g->m; i++) {
                const float* ai = job->a + i * job->lda + p0;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int q = 0; q < len; q++) s += ai[q] * w[q];
                dots[i] += s;
            }
        }
        store_tile(g, dots, 1, 0, g->m, j, 1);
    }
}

/* Several GEMVs of one A in one parallel region: their tiles are numbered one after another and each thread takes
 * one contiguous run of them (the matrices it crosses are streamed in turn), so a decoder layer's q/k/v and gate/up
 * projections pay one region's start, wait and imbalance instead of three and two. Every output is computed by the
 * same tile as in a call of its own: the results do not depend on the grouping. */
typedef struct {
    small_job jobs[EE_GEMM_GROUP_MAX];
    int64_t first[EE_GEMM_GROUP_MAX + 1]; /* tiles of jobs[i]: [first[i], first[i + 1]) */
    ee_range_fn kernel;
    int count;
} group_job;

static void group_tiles(void* p, int64_t t0, int64_t t1) {
    const group_job* grp = p;
    for (int i = 0; i < grp->count; i++) {
        const int64_t lo = t0 > grp->first[i] ? t0 : grp->first[i], hi = t1 < grp->first[i + 1] ? t1 : grp->first[i + 1];
        if (lo < hi) grp->kernel((void*)&grp->jobs[i], lo - grp->first[i], hi - grp->first[i]);
    }
}

int ee_gemm_small_group(const ee_gemm_args* gs, int count) {
    if (count < 1 || count > EE_GEMM_GROUP_MAX) return ee_fail("ee_gemm: a group of %d GEMMs (1..%d)", count, EE_GEMM_GROUP_MAX);
    const ee_gemm_args* g = &gs[0]; /* all of the group share m, k, A and trans_a */
    ee_range_fn kernel = tiles_portable;
    int nr = 1, pair_block = 0; /* pair_block: elements of A split into even and odd halves at a time (bf16) */
#if EE_X86
    const ee_cpu* cpu = ee_cpu_get();
    if (cpu->avx512) kernel = tiles512, nr = nr512(g->m), pair_block = 32;
    else if (cpu->avx2) kernel = tiles256, nr = nr256(g->m), pair_block = 16;
#endif
    group_job grp = {.kernel = kernel, .count = count};
    size_t ap_floats = 0;
    double work = 0;
    for (int i = 0; i < count; i++) {
        small_job* job = &grp.jobs[i];
        *job = (small_job){&gs[i], g->a, (size_t)g->lda, 0, 0, 0, nr};
        if (gs[i].b_dtype == EE_BF16 && pair_block) {
            /* Checkpoint files put tensors at any even offset (a safetensors header has any length; the 110M test copy's
             * start 8 bytes past a line), and then every 64-byte load of the pair loop straddled two cache lines. Where
             * all rows share one alignment, the first elements up to a line boundary go the plain way instead (gemmbench
             * step110m, 1 thread, shared machine, best of 30 passes in 3 alternations: 10.1-11.3 -> 7.3-7.4 ms). */
            const uintptr_t addr = (uintptr_t)gs[i].b;
            if (addr % 4 == 0 && (size_t)gs[i].ldb * sizeof(uint16_t) % 64 == 0) job->head = ee_min(g->k, (int)((64 - addr % 64) % 64 / sizeof(uint16_t)));
            job->ldap = (size_t)((g->k - job->head) / pair_block * pair_block);
            ap_floats += (size_t)g->m * job->ldap;
        }
        grp.first[i + 1] = grp.first[i] + ee_ceil_div(gs[i].n, nr);
        work += EE_GEMV_WORK(g->m, gs[i].n, g->k);
    }
    const size_t rows_floats = g->trans_a ? (size_t)g->m * g->k : 0;
    if (rows_floats || ap_floats) {
        float* scratch = ee_scratch(EE_SCRATCH_GEMM_SMALL, (rows_floats + ap_floats) * sizeof(float));
        if (!scratch) return ee_fail("ee_gemm: out of memory");
        const float* a = g->a;
        size_t lda = (size_t)g->lda;
        if (g->trans_a) { /* A as m contiguous rows */
            for (int i = 0; i < g->m; i++)
                for (int p = 0; p < g->k; p++) scratch[(size_t)i * g->k + p] = g->a[(size_t)p * g->lda + i];
            a = scratch;
            lda = (size_t)g->k;
        }
        float* ap = scratch + rows_floats;
        for (int x = 0; x < count; x++) {
            small_job* job = &grp.jobs[x];
            job->a = a, job->lda = lda;
            if (!job->ldap) continue;
            /* per block: its even elements, then its odd ones */
            const int half = pair_block / 2;
            for (int i = 0; i < g->m; i++) {
                const float* ai = a + (size_t)i * lda + job->head;
                for (size_t p0 = 0; p0 < job->ldap; p0 += (size_t)pair_block)
                    for (int t = 0; t < half; t++) {
                        ap[(size_t)i * job->ldap + p0 + t] = ai[p0 + 2 * t];
                        ap[(size_t)i * job->ldap + p0 + half + t] = ai[p0 + 2 * t + 1];
                    }
            }
            job->ap = ap;
            ap += (size_t)g->m * job->ldap;
        }
    }
    /* Stealing rather than fixed halves: a decode step is ~100 of these regions back to back, and one thread held up
     * (another process on its core, the JVM's compiler threads) used to stall each of them for the whole delay. */
    const int nt = ee_threads_for(work);
    const int64_t tiles = grp.first[count], block = ee_steal_block(tiles, nt);
    if (count == 1) ee_parallel_range_stealing(nt, tiles, block, kernel, &grp.jobs[0]);
    else ee_parallel_range_stealing(nt, tiles, block, group_tiles, &grp);
    return 0;
}

int ee_gemm_small(const ee_gemm_args* g) { return ee_gemm_small_group(g, 1); }
