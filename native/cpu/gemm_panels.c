/*
 * Decode-time GEMM against a panel-packed weight (EE_F32_PANELS, see ee_pack_panels in eetune.h; EE_F16_PANELS and
 * EE_BF16_PANELS are the same layout with 16-bit elements, which the kernels widen exactly): C = alpha A W^T + beta C
 * for m <= EE_PANELS_MAX_M rows of A. A panel is EE_PANEL_ROWS = 32 weight rows interleaved by column,
 * so one step along k is 32 consecutive floats (two 64-byte vectors) and a whole panel is one sequential stream. The
 * kernel broadcasts A[i][p] and multiplies it into the step's two vectors: up to 8 rows x 2 vectors = 16
 * accumulators whose lanes are already 32 outputs, so nothing is summed across lanes at the end.
 *
 * Why: gemm_small.c's row tiles read 3 weight rows side by side at m = 8 (3 streams, plus prefetches), and those
 * loads stalled. At the 15M shapes with the weights streamed, one thread, CPU time (`eecpu_gemmbench 1 cpu gemv15m`,
 * f32p against f32, machine shared): m = 8 1.51x (0.94..1.52), m = 16 1.49x, m = 2-4 1.33-1.38x, m = 1 1.10x in a
 * run at load ~3.5, but 0.90-1.09x at m = 8 and 0.7-0.9x at m = 2-4 in runs at load 4+ (a single stream per core
 * seems to suffer more from other processes' memory traffic). A prototype with other widths (same session, same
 * conditions) had 16-column panels slower at m = 8 (8 broadcasts per 8 FMAs) and 48 or 64 no faster than 32.
 * Threads take contiguous runs of whole panels (one stream per thread), a thread done early the rest of another's.
 *
 * bf16 panels used to hold column pairs (a 32-bit word per row and two columns, widened by a shift and a mask), read
 * as two or four streams per thread by kernels of their own. The element layout streams better: the 110M layers at
 * m = 1 on a 2-core Zen 4 (a /tmp harness alternating the two layouts and f32 panels per pass, 31 passes, six runs,
 * the VM's memory at ~17.5 GB/s), pairs / element time per pass 1.07-1.17 (medians), the element layout at the plain
 * read's bandwidth, f32 / element 1.76-1.85; and one kernel now serves f32, f16 and bf16, each 16-bit form giving the
 * f32 panels' bits on its widened weights.
 */
#include "internal.h"

#include <math.h>
#if EE_X86
#include <immintrin.h>
#endif

EE_API int64_t ee_panels_size(int32_t n, int32_t k) {
    if (n < 0 || k < 0) {
        ee_fail("ee_panels_size: negative size %d x %d", n, k);
        return -1;
    }
    return (int64_t)ee_ceil_div(n, EE_PANEL_ROWS) * EE_PANEL_ROWS * k;
}

/* The rows j0 .. j0 + 7 of a panel as 32-bit words, dst[c * EE_PANEL_ROWS] = word c of row 0 (dst at the group's
 * first row), for the words 0 .. w - 1 it handles (a multiple of 8); returns w. Row i starts at src + i * ld bytes. */
typedef int (*words_8rows_fn)(uint32_t* dst, const char* src, size_t ld, int words);

static int words_8rows_none(uint32_t* dst, const char* src, size_t ld, int words) { return 0; }

#if EE_X86
/* 8 x 8 words at a time: eight rows' loads transposed in registers (unpack, shuffle, permute), eight 32-byte stores;
 * the scalar loop's stores, 128 bytes apart, made the packing of 110M's f32 layers 6 GB/s */
EE_AVX2 static int words_8rows_avx2(uint32_t* dst, const char* src, size_t ld, int words) {
    const int done = words & ~7;
    for (int c = 0; c < done; c += 8) {
        __m256 r[8], t[8], u[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps((const float*)(src + (size_t)i * ld) + c);
        for (int i = 0; i < 4; i++) t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]), t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        for (int i = 0; i < 2; i++)
            for (int h = 0; h < 2; h++) {
                u[4 * i + 2 * h] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + 2 + h], _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * i + 2 * h + 1] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + 2 + h], _MM_SHUFFLE(3, 2, 3, 2));
            }
        /* u[0..3]: rows 0-3 at words (0, 4), (1, 5), (2, 6), (3, 7) of each 128-bit half; u[4..7] rows 4-7 */
        for (int i = 0; i < 4; i++) {
            _mm256_storeu_ps((float*)dst + (size_t)(c + i) * EE_PANEL_ROWS, _mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
            _mm256_storeu_ps((float*)dst + (size_t)(c + 4 + i) * EE_PANEL_ROWS, _mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
        }
    }
    return done;
}
#endif

/* One panel as 32-bit words: dst[c * EE_PANEL_ROWS + j] = word c of row j (zero for j >= rows), c < words; row j
 * starts at src + j * ld bytes (f32 panels). */
static void pack_panel_words(uint32_t* dst, const char* src, size_t ld, int rows, int words, words_8rows_fn fast) {
    for (int j0 = 0; j0 < EE_PANEL_ROWS; j0 += 8) {
        const int done = j0 + 8 <= rows ? fast(dst + j0, src + (size_t)j0 * ld, ld, words) : 0;
        for (int j = j0; j < j0 + 8; j++)
            for (int c = done; c < words; c++) {
                uint32_t v = 0;
                if (j < rows) memcpy(&v, src + (size_t)j * ld + 4 * (size_t)c, 4);
                dst[(size_t)c * EE_PANEL_ROWS + j] = v;
            }
    }
}

typedef struct {
    void* dst;       /* float (f32 panels) or uint16_t (f16 and bf16 panels) */
    const void* w;   /* the same type */
    int n, k, ldw;
} pack_job;

/* the fastest words_8rows_fn this CPU runs */
static words_8rows_fn words_8rows(void) {
#if EE_X86
    if (ee_cpu_get()->avx2) return words_8rows_avx2;
#endif
    return words_8rows_none;
}

static void pack_range(void* p, int64_t q0, int64_t q1) {
    const pack_job* job = p;
    const words_8rows_fn fast = words_8rows();
    for (int64_t q = q0; q < q1; q++)
        pack_panel_words((uint32_t*)job->dst + q * job->k * EE_PANEL_ROWS, (const char*)job->w + (size_t)q * EE_PANEL_ROWS * job->ldw * 4, (size_t)job->ldw * 4,
                         (int)ee_min(EE_PANEL_ROWS, job->n - q * EE_PANEL_ROWS), job->k, fast);
}

/* Every ee_pack_panels*: the arguments checked, then `range` over the panels on the pool */
static int32_t pack_panels_with(const char* name, void* dst, const void* w, int32_t n, int32_t k, int32_t ldw, ee_range_fn range) {
    if (n < 0 || k < 0 || ldw < k) return ee_fail("%s: size %d x %d with rows %d apart", name, n, k, ldw);
    if (n == 0 || k == 0) return 0;
    if (!dst || !w) return ee_fail("%s: null pointer", name);
    const pack_job job = {dst, w, n, k, ldw};
    ee_parallel_range(ee_threads_for((double)n * k), ee_ceil_div(n, EE_PANEL_ROWS), range, (void*)&job);
    return 0;
}

EE_API int32_t ee_pack_panels(float* dst, const float* w, int32_t n, int32_t k, int32_t ldw) { return pack_panels_with("ee_pack_panels", dst, w, n, k, ldw, pack_range); }

#if EE_X86
/* dst[c * EE_PANEL_ROWS + i] = 16-bit unit c of row i, for 8 rows (src_stride bytes apart) of 8 units: eight 16-byte
 * loads transposed in SSE2 registers (16-, 32-, then 64-bit interleaves), eight 16-byte stores */
static void transpose_8x8_u16(uint16_t* dst, const char* src, size_t src_stride) {
    __m128i r[8], a[8], b[8];
    for (int i = 0; i < 8; i++) r[i] = _mm_loadu_si128((const __m128i*)(src + (size_t)i * src_stride));
    for (int i = 0; i < 4; i++) a[2 * i] = _mm_unpacklo_epi16(r[2 * i], r[2 * i + 1]), a[2 * i + 1] = _mm_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
    /* a[0]: rows 0-1 at units 0-3, a[1]: rows 0-1 at 4-7, a[2], a[3]: rows 2-3, ... */
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < 2; h++) {
            b[4 * i + 2 * h] = _mm_unpacklo_epi32(a[4 * i + h], a[4 * i + 2 + h]);
            b[4 * i + 2 * h + 1] = _mm_unpackhi_epi32(a[4 * i + h], a[4 * i + 2 + h]);
        }
    /* b[0..3]: rows 0-3 at units (0, 1), (2, 3), (4, 5), (6, 7); b[4..7]: rows 4-7 */
    for (int i = 0; i < 4; i++) {
        _mm_storeu_si128((__m128i*)(dst + (size_t)(2 * i) * EE_PANEL_ROWS), _mm_unpacklo_epi64(b[i], b[4 + i]));
        _mm_storeu_si128((__m128i*)(dst + (size_t)(2 * i + 1) * EE_PANEL_ROWS), _mm_unpackhi_epi64(b[i], b[4 + i]));
    }
}
#endif

/* f16 and bf16 panels: ee_pack_panels' layout with 16-bit elements, dst[c * EE_PANEL_ROWS + j] = half c of row j */
static void pack_panel_halves(uint16_t* dst, const char* src, size_t ld, int rows, int halves) {
    for (int j0 = 0; j0 < EE_PANEL_ROWS; j0 += 8) {
        int done = 0;
#if EE_X86
        if (j0 + 8 <= rows)
            for (; done + 8 <= halves; done += 8) transpose_8x8_u16(dst + j0 + (size_t)done * EE_PANEL_ROWS, src + (size_t)j0 * ld + 2 * (size_t)done, ld);
#endif
        for (int j = j0; j < j0 + 8; j++)
            for (int c = done; c < halves; c++) {
                uint16_t v = 0;
                if (j < rows) memcpy(&v, src + (size_t)j * ld + 2 * (size_t)c, 2);
                dst[(size_t)c * EE_PANEL_ROWS + j] = v;
            }
    }
}

static void pack_halves_range(void* p, int64_t q0, int64_t q1) {
    const pack_job* job = p;
    for (int64_t q = q0; q < q1; q++)
        pack_panel_halves((uint16_t*)job->dst + q * job->k * EE_PANEL_ROWS, (const char*)job->w + (size_t)q * EE_PANEL_ROWS * job->ldw * 2, (size_t)job->ldw * 2,
                          (int)ee_min(EE_PANEL_ROWS, job->n - q * EE_PANEL_ROWS), job->k);
}

/* ee_pack_panels_f16 and ee_pack_panels_bf16: the same copy of 16-bit elements */
EE_API int32_t ee_pack_panels_f16(uint16_t* dst, const uint16_t* w, int32_t n, int32_t k, int32_t ldw) { return pack_panels_with("ee_pack_panels_f16", dst, w, n, k, ldw, pack_halves_range); }

EE_API int32_t ee_pack_panels_bf16(uint16_t* dst, const uint16_t* w, int32_t n, int32_t k, int32_t ldw) { return pack_panels_with("ee_pack_panels_bf16", dst, w, n, k, ldw, pack_halves_range); }

/* C[i][j0 + j] = alpha v[j] + beta C (beta = 0 ignores C) for j < count */
EE_INLINE void store_row(const ee_gemm_args* g, const float* v, int i, int j0, int count) {
    float* c = g->c + (size_t)i * g->ldc + j0;
    for (int j = 0; j < count; j++) c[j] = g->beta == 0.0f ? g->alpha * v[j] : g->alpha * v[j] + g->beta * c[j];
}

/* Element index of the panel of weight rows q * 32 .. q * 32 + 31 as stored by ee_pack_panels (f32),
 * ee_pack_panels_f16 or ee_pack_panels_bf16: the kernels below read all three, a 16-bit step widened exactly (`elem`
 * is a constant once inlined), so that f16 and bf16 panels give the f32 panels' sums on the widened weights. */
EE_INLINE size_t panel_at(const ee_gemm_args* g, int64_t q) { return (size_t)q * g->k * EE_PANEL_ROWS; }
enum { ELEM_F32, ELEM_F16, ELEM_BF16 };

#if EE_X86
/* 16 weights of a panel from element i, widened to f32 (bf16: its bits are the f32's upper half) */
EE_INLINE EE_AVX512 __m512 panel_load512(const void* w, size_t i, const int elem) {
    if (elem == ELEM_F32) return _mm512_loadu_ps((const float*)w + i);
    const __m256i h = _mm256_loadu_si256((const __m256i*)((const uint16_t*)w + i));
    return elem == ELEM_F16 ? _mm512_cvtph_ps(h) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* rows i0 .. i0 + MR - 1 of C against panel q; MR is a constant once inlined, so the 2 MR accumulators are registers */
EE_INLINE EE_AVX512 void panel512(const ee_gemm_args* g, const int MR, const int elem, int64_t q, int i0) {
    const size_t w = panel_at(g, q);
    const float* a = g->a + (size_t)i0 * g->lda;
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < g->k; p++) {
        const __m512 w0 = panel_load512(g->b, w + (size_t)p * EE_PANEL_ROWS, elem), w1 = panel_load512(g->b, w + (size_t)p * EE_PANEL_ROWS + 16, elem);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[(size_t)i * g->lda + p]);
            acc[i][0] = _mm512_fmadd_ps(ai, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, w1, acc[i][1]);
        }
    }
    /* C = alpha acc + beta C as vectors (a scalar store loop cost ~20% at m = 8, k = 288), the columns past n masked */
    const int j0 = (int)q * EE_PANEL_ROWS, count = ee_min(EE_PANEL_ROWS, g->n - j0);
    const __mmask16 live[2] = {(__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1), (__mmask16)(count >= 32 ? 0xFFFF : count <= 16 ? 0 : (1u << (count - 16)) - 1)};
    const __m512 alpha = _mm512_set1_ps(g->alpha), beta = _mm512_set1_ps(g->beta);
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < 2; v++) {
            float* c = g->c + (size_t)(i0 + i) * g->ldc + j0 + 16 * v;
            const __m512 r = g->beta == 0.0f ? _mm512_mul_ps(alpha, acc[i][v]) : _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(live[v], c), _mm512_mul_ps(alpha, acc[i][v]));
            _mm512_mask_storeu_ps(c, live[v], r);
        }
}

EE_INLINE EE_AVX512 void panels512_as(const ee_gemm_args* g, const int elem, int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; q++)
        for (int i0 = 0; i0 < g->m; i0 += 8) switch (ee_min(8, g->m - i0)) { /* rows past 8 re-read the panel from L1/L2 */
            case 8: panel512(g, 8, elem, q, i0); break;
            case 7: panel512(g, 7, elem, q, i0); break;
            case 6: panel512(g, 6, elem, q, i0); break;
            case 5: panel512(g, 5, elem, q, i0); break;
            case 4: panel512(g, 4, elem, q, i0); break;
            case 3: panel512(g, 3, elem, q, i0); break;
            case 2: panel512(g, 2, elem, q, i0); break;
            default: panel512(g, 1, elem, q, i0);
            }
}

EE_AVX512 static void panels512(void* p, int64_t q0, int64_t q1) { panels512_as(p, ELEM_F32, q0, q1); }
EE_AVX512 static void panels512_f16(void* p, int64_t q0, int64_t q1) { panels512_as(p, ELEM_F16, q0, q1); }
EE_AVX512 static void panels512_bf16(void* p, int64_t q0, int64_t q1) { panels512_as(p, ELEM_BF16, q0, q1); }

/* AVX2: a step is four 8-lane vectors; 2 rows x 4 = 8 accumulators, the 4 weight vectors and a broadcast fit the 16
 * registers, so rows of A go two at a time. The panel is walked in blocks of PANEL_BLOCK steps (8 KiB) that every
 * pair of rows reads in turn while the block is in L1, the partial sums kept in `sums` between blocks (each sum still
 * runs over k in order). Without the blocks every pair re-read the whole panel (36 KiB at k = 288) from L2 or memory:
 * 2-core Zen 2, 15M shapes, 2 threads (`eecpu_gemmbench 2 gemv15m`, f32p against f32), m = 8 0.60 -> 0.73x, m = 16
 * 0.53 -> 0.75x (in cache the pairs reach ~65 GFLOP/s of a core, the plain kernel's 3-row tiles ~78; groups of 6 rows
 * over half a panel were no faster); with the prefetch below m = 8 1.07x, m = 16 1.03x. */
#define PANEL_BLOCK 64

/* Blocks of 3 and more rows: the passes over a block in L1 leave the memory idle, so each pass prefetches its share
 * of the next block's lines (a step is 128 bytes of f32, 64 of f16 or bf16), a line every few steps, and the
 * memory streams while the FMAs run. Before, the first pass alone prefetched the next block (bf16) or nothing (f32):
 * the time was about the sum of the stream's and the FMAs', not the larger of them. 2-core Zen 2, the 32000 x 288
 * classifier from memory at m = 8, 2 threads (a /tmp harness alternating builds, medians of 31): bf16 panels
 * 1.66-1.73 -> 1.36-1.38 ms (bf16 panels of the column-pair layout they had then), f32 panels 2.62-2.74 -> 1.61-1.64
 * ms (the plain f32 kernel: 1.94-1.99 ms). One or two rows prefetch nothing: there the first pass is the only one. */
typedef struct {
    const char* line;
    int left, every, due;
} prefetch_run;

EE_INLINE prefetch_run prefetch_share(const void* next_block, int lines, int pass, int passes, int steps) {
    const int per = ee_ceil_div(lines, passes);
    return (prefetch_run){(const char*)next_block + (size_t)pass * per * 64, per, steps > per ? steps / per : 1, 0};
}

EE_INLINE void prefetch_due(prefetch_run* run) {
    if (run->left && run->due-- == 0) {
        _mm_prefetch(run->line, _MM_HINT_T0);
        run->line += 64, run->left--, run->due = run->every - 1;
    }
}

/* From 3 rows, blocks of one length of at most `most` steps (k = 288: f32 5 x 58 steps rather than 4 x 64 + 32, bf16
 * 3 x 24 steps of each half), so that no pass runs over a short block for the same cost of loading and storing its
 * sums (the 15M classifier at m = 8, bf16 panels, before their two chains: 1.38-1.44 -> 1.25-1.32 ms in the harness
 * above). */
EE_INLINE int even_block(int steps, int most) { return steps > 0 ? ee_ceil_div(steps, ee_ceil_div(steps, most)) : most; }

/* 8 weights of a panel from element i, widened to f32 */
EE_INLINE EE_AVX2 __m256 panel_load256(const void* w, size_t i, const int elem) {
    if (elem == ELEM_F32) return _mm256_loadu_ps((const float*)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i*)((const uint16_t*)w + i));
    return elem == ELEM_F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

EE_INLINE EE_AVX2 void panel256(const ee_gemm_args* g, const int MR, const int elem, size_t w, int i0, int p0, int p1, prefetch_run ahead, float (*sums)[EE_PANEL_ROWS]) {
    const float* a = g->a + (size_t)i0 * g->lda;
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[i][v] = p0 == 0 ? _mm256_setzero_ps() : _mm256_load_ps(sums[i0 + i] + 8 * v);
    for (int p = p0; p < p1; p++) {
        prefetch_due(&ahead);
        __m256 wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) wv[v] = panel_load256(g->b, w + (size_t)p * EE_PANEL_ROWS + 8 * v, elem);
#pragma GCC unroll 2
        for (int i = 0; i < MR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + (size_t)i * g->lda + p);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) acc[i][v] = _mm256_fmadd_ps(ai, wv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm256_store_ps(sums[i0 + i] + 8 * v, acc[i][v]);
}

EE_INLINE EE_AVX2 void panels256_as(const ee_gemm_args* g, const int elem, int64_t q0, int64_t q1) {
    _Alignas(32) float sums[EE_PANELS_MAX_M][EE_PANEL_ROWS];
    const int block = g->m <= 2 ? PANEL_BLOCK : even_block(g->k, PANEL_BLOCK);
    const int step_lines = elem == ELEM_F32 ? 2 : 1; /* a step's 32 weights: 128 or 64 bytes */
    for (int64_t q = q0; q < q1; q++) {
        const size_t w = panel_at(g, q);
        for (int p0 = 0; p0 < g->k; p0 += block) {
            const int p1 = ee_min(g->k, p0 + block);
            const int passes = (g->m + 1) / 2;
            const char* next = (const char*)g->b + (w + (size_t)(p0 + block) * EE_PANEL_ROWS) * (elem == ELEM_F32 ? 4 : 2);
            for (int i0 = 0; i0 < g->m; i0 += 2) { /* rows by two, the last one alone */
                const prefetch_run ahead = g->m > 2 ? prefetch_share(next, step_lines * block, i0 / 2, passes, p1 - p0) : (prefetch_run){0};
                if (i0 + 2 <= g->m) panel256(g, 2, elem, w, i0, p0, p1, ahead, sums);
                else panel256(g, 1, elem, w, i0, p0, p1, ahead, sums);
            }
        }
        const int j0 = (int)q * EE_PANEL_ROWS, count = ee_min(EE_PANEL_ROWS, g->n - j0);
        for (int i = 0; i < g->m; i++) store_row(g, sums[i], i, j0, count);
    }
}

EE_AVX2 static void panels256(void* p, int64_t q0, int64_t q1) { panels256_as(p, ELEM_F32, q0, q1); }
EE_AVX2 static void panels256_f16(void* p, int64_t q0, int64_t q1) { panels256_as(p, ELEM_F16, q0, q1); }
EE_AVX2 static void panels256_bf16(void* p, int64_t q0, int64_t q1) { panels256_as(p, ELEM_BF16, q0, q1); }

#endif

/* portable: one row of A at a time against the panel, the 32 outputs in a stack array the compiler vectorizes */
EE_INLINE void panels_portable_as(const ee_gemm_args* g, const int elem, int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; q++) {
        const size_t w = panel_at(g, q);
        const int j0 = (int)q * EE_PANEL_ROWS, count = ee_min(EE_PANEL_ROWS, g->n - j0);
        for (int i = 0; i < g->m; i++) {
            const float* a = g->a + (size_t)i * g->lda;
            float acc[EE_PANEL_ROWS] = {0};
            for (int c = 0; c < g->k; c++) {
                const float ai = a[c];
                const size_t wc = w + (size_t)c * EE_PANEL_ROWS;
                if (elem != ELEM_F32) {
                    const uint16_t* h = (const uint16_t*)g->b + wc;
#pragma omp simd
                    for (int j = 0; j < EE_PANEL_ROWS; j++) acc[j] += ai * (elem == ELEM_F16 ? ee_f16_to_f32(h[j]) : ee_bf16_to_f32(h[j]));
                } else {
                    const float* f = (const float*)g->b + wc;
#pragma omp simd
                    for (int j = 0; j < EE_PANEL_ROWS; j++) acc[j] += ai * f[j];
                }
            }
            store_row(g, acc, i, j0, count);
        }
    }
}

static void panels_portable(void* p, int64_t q0, int64_t q1) { panels_portable_as(p, ELEM_F32, q0, q1); }
static void panels_f16_portable(void* p, int64_t q0, int64_t q1) { panels_portable_as(p, ELEM_F16, q0, q1); }
static void panels_bf16_portable(void* p, int64_t q0, int64_t q1) { panels_portable_as(p, ELEM_BF16, q0, q1); }

/* ---- 8-bit panels (EE_I8_PANELS): scores for greedy decode's screen, not logits ------------------------------------
 * Panel q: 32 f32 scales, then ceil(k / 2) steps of 32 column pairs: byte 2j + t of step s holds row j's q_j[2s + t]
 * (0 past k). The rows of A are rounded to 8-bit integers too, once per call (quantize_a_i8), so that a step is
 * integer products summed into 32-bit lanes: on AVX-512 VNNI two steps interleaved (vpunpck[lh]wd) give each 32-bit
 * lane four columns of one row, one vpdpbusd per row of A and 16 weight rows (A's bytes offset by 128 to make them
 * unsigned, the offset's 128 sum(q) taken off once per block); vpmaddwd + vpaddd on the pairs on AVX2, where the f32
 * form needed two FMAs, a widening and a conversion. Integer sums are exact and the same in every order; they go to
 * f32 every EE_I8_BLOCK_PAIRS steps (far from overflowing: 512 columns of 255 * 127 < 2^31), and the block sums are
 * added in f32 in block order, then times the row's scale and A's: so every kernel here, and the CUDA twin, gives the
 * same bits. Why: at 8 rows of A the f32 form was bound by its FMAs (27% of a 15M batch-8 step's samples); 8-bit A
 * against 16-bit halves the VNNI kernel's instructions (vpdpbusd does as many per cycle as vpdpwssd, on twice the
 * products; the weights' widening goes): bench/screen-ab.c, 32000 x 288 on a Zen 4, 1.44x at 1 row and 1.71x at 8
 * on one core. The bound pays for it with A's rounding error, which callers measure per row (ee_screen_scale).
 * Why 8 bits: the screen streams the whole classifier every token, 22-60% of a token's bytes at the 110M and 15M
 * configs with a bf16 copy; half of that is a quarter of the f32 bytes. */
#define EE_I8_BLOCK_PAIRS 256
EE_INLINE int i8_pairs(int k) { return (k + 1) / 2; }
EE_INLINE int64_t panel_i8_bytes(int k) { return (int64_t)EE_PANEL_ROWS * (4 + 2 * i8_pairs(k)); }
EE_INLINE const float* panel_i8_scales(const ee_gemm_args* g, int64_t q) { return (const float*)((const char*)g->b + q * panel_i8_bytes(g->k)); }
EE_INLINE const int8_t* panel_i8_steps(const ee_gemm_args* g, int64_t q) { return (const int8_t*)(panel_i8_scales(g, q) + EE_PANEL_ROWS); }

EE_API int64_t ee_panels_i8_bytes(int32_t n, int32_t k) {
    if (n < 0 || k < 0) {
        ee_fail("ee_panels_i8_bytes: negative size %d x %d", n, k);
        return -1;
    }
    return (int64_t)ee_ceil_div(n, EE_PANEL_ROWS) * panel_i8_bytes(k);
}

typedef struct {
    char* dst;
    float *resid, *norm;
    const float* w;
    int n, k, ldw;
} pack_i8_job;

/* ROUNDED: the 8-bit packing and the rounding of A take v * inv exactly (in double: 24 x 24 bits) and round it to the
 * nearest integer, ties to even, by adding and subtracting 1.5 * 2^52: where the compiler fuses the product and the
 * add into an FMA (AVX2 builds, aarch64) the result is the same, the product being exact either way, so every ISA
 * and CUDA (rint of the double product) give the same integers. Rounding an f32 product this way (1.5 * 2^23) gave
 * other integers near .5 where the product was fused (CI's qemu-aarch64 selftest; the AVX2 and plain builds' copies
 * of a 32000 x 288 matrix differed); lrintf of it was slower (a copy 10.3-10.6 against 8.6-9.1 ms, alternated). The
 * packing's AVX kernels (round_row_512, round_row_256) round the same exact product with a rounding instruction. */
#define ROUND_MAGIC 0x1.8p52

/* v * inv rounded to the nearest integer (see ROUNDED), within [-lim, lim] */
EE_INLINE double round_scaled(float v, float inv, double lim) {
    const double r = ((double)v * inv + ROUND_MAGIC) - ROUND_MAGIC;
    return r > lim ? lim : r < -lim ? -lim : r;
}

/* Whether a row with this max |v| can be scaled to 8 bits: 127 / max |v| overflows f32 below 127 / FLT_MAX (such a row
 * is treated as one with a value that is not finite: NaN scale, +inf residual, NaN scores; the exact logits decide) */
EE_INLINE int i8_scalable(float top) { return top == 0.0f || isfinite(127.0f / top); }

/* max |v| over n values, and whether all of them are finite (the scale of a row of either 8-bit copy) */
EE_INLINE float row_top(const float* v, int n, int* finite) {
    float top = 0.0f, bad = 0.0f;
#pragma omp simd reduction(max : top) reduction(+ : bad)
    for (int c = 0; c < n; c++) {
        const float a = fabsf(v[c]);
        top = a > top ? a : top;
        bad += v[c] - v[c]; /* NaN where a value is not finite */
    }
    *finite = bad == 0.0f;
    return top;
}
/* Columns of a panel's rows rounded at a time (a stack buffer of EE_PANEL_ROWS x this many bytes; even) */
#define EE_PACK_I8_COLS 256

/* out[c] = w[c] * inv rounded (see ROUNDED), c < n, and the sums of (w - used out)^2 and w^2 added to *err, *sum */
typedef void (*round_row_fn)(const float* w, int n, float inv, float used, int8_t* out, double* err, double* sum);

/* plain: `omp simd` made SSE2 code two doubles wide with its reductions spilled, 1.6x slower than this loop */
static void round_row(const float* w, int n, float inv, float used, int8_t* out, double* err, double* sum) {
    double e = 0.0, t = 0.0;
    for (int c = 0; c < n; c++) {
        const double v = round_scaled(w[c], inv, 127.0);
        out[c] = (int8_t)(int)v;
        const double d = (double)w[c] - (double)used * v;
        e += d * d, t += (double)w[c] * w[c];
    }
    *err += e, *sum += t;
}

#if EE_X86
/* round_row 16 columns at a time: GCC vectorises the plain loop two doubles wide (the float -> double -> int8 widths),
 * half the copy's time. Rounding the exact double product to the nearest, ties to even, and clamping give round_scaled's
 * integers. */
EE_AVX512 static void round_row_512(const float* w, int n, float inv, float used, int8_t* out, double* err, double* sum) {
    const __m512d iv = _mm512_set1_pd(inv), us = _mm512_set1_pd(used), lo = _mm512_set1_pd(-127.0), hi = _mm512_set1_pd(127.0);
    __m512d e = _mm512_setzero_pd(), t = _mm512_setzero_pd();
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        __m256i q[2];
        for (int h = 0; h < 2; h++) {
            const __m512d x = _mm512_cvtps_pd(_mm256_loadu_ps(w + c + 8 * h));
            __m512d v = _mm512_roundscale_pd(_mm512_mul_pd(x, iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_pd(_mm512_max_pd(v, lo), hi);
            q[h] = _mm512_cvtpd_epi32(v);
            const __m512d d = _mm512_sub_pd(x, _mm512_mul_pd(us, v));
            e = _mm512_fmadd_pd(d, d, e), t = _mm512_fmadd_pd(x, x, t);
        }
        _mm_storeu_si128((__m128i*)(out + c), _mm512_cvtepi32_epi8(_mm512_inserti64x4(_mm512_castsi256_si512(q[0]), q[1], 1)));
    }
    *err += _mm512_reduce_add_pd(e), *sum += _mm512_reduce_add_pd(t);
    if (c < n) round_row(w + c, n - c, inv, used, out + c, err, sum);
}

EE_AVX2 static void round_row_256(const float* w, int n, float inv, float used, int8_t* out, double* err, double* sum) {
    const __m256d iv = _mm256_set1_pd(inv), us = _mm256_set1_pd(used), lo = _mm256_set1_pd(-127.0), hi = _mm256_set1_pd(127.0);
    __m256d e = _mm256_setzero_pd(), t = _mm256_setzero_pd();
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        __m128i q[4];
        for (int h = 0; h < 4; h++) {
            const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(w + c + 4 * h));
            __m256d v = _mm256_round_pd(_mm256_mul_pd(x, iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_min_pd(_mm256_max_pd(v, lo), hi);
            q[h] = _mm256_cvtpd_epi32(v);
            const __m256d d = _mm256_sub_pd(x, _mm256_mul_pd(us, v));
            e = _mm256_fmadd_pd(d, d, e), t = _mm256_fmadd_pd(x, x, t);
        }
        _mm_storeu_si128((__m128i*)(out + c), _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])));
    }
    __m128d e2 = _mm_add_pd(_mm256_castpd256_pd128(e), _mm256_extractf128_pd(e, 1)), t2 = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    *err += _mm_cvtsd_f64(_mm_add_sd(e2, _mm_unpackhi_pd(e2, e2))), *sum += _mm_cvtsd_f64(_mm_add_sd(t2, _mm_unpackhi_pd(t2, t2)));
    if (c < n) round_row(w + c, n - c, inv, used, out + c, err, sum);
}
#endif

/* dst[s * EE_PANEL_ROWS + j] = the s-th 16-bit pair of block row j, s < pairs: on x86 8 x 8 pairs at a time in
 * SSE2 registers (the scalar loop, one 256-byte stride per pair, took a third of a copy's time) */
static void transpose_pairs(const int8_t (*block)[EE_PACK_I8_COLS], int pairs, uint16_t* dst) {
    int s0 = 0;
#if EE_X86
    for (; s0 + 8 <= pairs; s0 += 8)
        for (int j0 = 0; j0 < EE_PANEL_ROWS; j0 += 8) transpose_8x8_u16(dst + (size_t)s0 * EE_PANEL_ROWS + j0, (const char*)(block[j0] + 2 * s0), EE_PACK_I8_COLS);
#endif
    for (int s = s0; s < pairs; s++)
        for (int j = 0; j < EE_PANEL_ROWS; j++) {
            uint16_t pair;
            memcpy(&pair, block[j] + 2 * s, 2);
            dst[(size_t)s * EE_PANEL_ROWS + j] = pair;
        }
}

/* The copy of one panel (rows q*EE_PANEL_ROWS ..): each row's scale, its values, ||w - scale q|| and ||w|| rounded up.
 * Any q is a valid copy (resid says how far it is); 127 / max |w| rounds differently from w / scale in the last bit
 * at most, and the residual is computed from the q and scale stored: each w_p - scale q_p exactly in double (24 + 8
 * bits). The rows' values go to contiguous rows first (round_row), then a block of columns of all the panel's rows is
 * transposed into the steps as 16-bit pairs; writing each byte into its step as it was rounded (a 64-byte stride)
 * and the plain loop's two-double vectors took a 32000 x 288 copy 8.7-9.1 ms. */
EE_INLINE void pack_i8_panel(const pack_i8_job* job, int64_t q, round_row_fn round) {
    const int k = job->k;
    float* scales = (float*)(job->dst + q * panel_i8_bytes(k));
    uint16_t* steps = (uint16_t*)(scales + EE_PANEL_ROWS); /* step s, row j: steps[s * EE_PANEL_ROWS + j] */
    const int rows = (int)ee_min(EE_PANEL_ROWS, job->n - q * EE_PANEL_ROWS);
    float inv[EE_PANEL_ROWS];
    int finite[EE_PANEL_ROWS];
    double err[EE_PANEL_ROWS] = {0}, sum[EE_PANEL_ROWS] = {0};
    for (int j = 0; j < rows; j++) {
        const float top = row_top(job->w + (q * EE_PANEL_ROWS + j) * job->ldw, k, &finite[j]);
        finite[j] = finite[j] && i8_scalable(top);
        scales[j] = finite[j] ? top / 127.0f : NAN;
        inv[j] = finite[j] && top > 0.0f ? 127.0f / top : 0.0f;
    }
    for (int j = rows; j < EE_PANEL_ROWS; j++) scales[j] = 0.0f;
    _Alignas(64) int8_t block[EE_PANEL_ROWS][EE_PACK_I8_COLS];
    for (int c0 = 0; c0 < k; c0 += EE_PACK_I8_COLS) {
        const int c1 = ee_min(k, c0 + EE_PACK_I8_COLS), pairs = (c1 - c0 + 1) / 2;
        for (int j = 0; j < EE_PANEL_ROWS; j++) {
            if ((c1 - c0) & 1) block[j][c1 - c0] = 0; /* the high half of an odd k's last pair */
            if (j < rows && finite[j]) round(job->w + (q * EE_PANEL_ROWS + j) * job->ldw + c0, c1 - c0, inv[j], scales[j], block[j], &err[j], &sum[j]);
            else memset(block[j], 0, (size_t)(c1 - c0));
        }
        transpose_pairs(block, pairs, steps + (size_t)(c0 / 2) * EE_PANEL_ROWS);
    }
    /* the square roots and sums in double are within a few 2^-53 of exact: one float step up covers them */
    for (int j = 0; j < rows; j++) {
        const int64_t row = q * EE_PANEL_ROWS + j;
        if (job->resid) job->resid[row] = finite[j] ? nextafterf((float)sqrt(err[j]), INFINITY) : INFINITY;
        if (job->norm) job->norm[row] = finite[j] ? nextafterf((float)sqrt(sum[j]), INFINITY) : INFINITY;
    }
}

/* panels q0 .. q1 - 1 with the ISA's round_row */
EE_INLINE void pack_i8_panels(const pack_i8_job* job, int64_t q0, int64_t q1, round_row_fn round) {
    for (int64_t q = q0; q < q1; q++) pack_i8_panel(job, q, round);
}

static void pack_i8_range(void* p, int64_t q0, int64_t q1) { pack_i8_panels(p, q0, q1, round_row); }

#if EE_X86
EE_AVX2 static void pack_i8_range_avx2(void* p, int64_t q0, int64_t q1) { pack_i8_panels(p, q0, q1, round_row_256); }
EE_AVX512 static void pack_i8_range_512(void* p, int64_t q0, int64_t q1) { pack_i8_panels(p, q0, q1, round_row_512); }
#endif

EE_API int32_t ee_pack_panels_i8(void* dst, float* resid, float* norm, const float* w, int32_t n, int32_t k, int32_t ldw) {
    if (n < 0 || k < 0 || ldw < k) return ee_fail("ee_pack_panels_i8: size %d x %d with rows %d apart", n, k, ldw);
    if (n == 0 || k == 0) return 0;
    if (!dst || !w) return ee_fail("ee_pack_panels_i8: null pointer");
    const pack_i8_job job = {dst, resid, norm, w, n, k, ldw};
    ee_range_fn kernel = pack_i8_range;
#if EE_X86
    if (ee_cpu_get()->avx512) kernel = pack_i8_range_512;
    else if (ee_cpu_get()->avx2) kernel = pack_i8_range_avx2;
#endif
    ee_parallel_range(ee_threads_for((double)n * k), ee_ceil_div(n, EE_PANEL_ROWS), kernel, (void*)&job);
    return 0;
}

/* A call's rows of A rounded to 8-bit integers: a_i ~ scale_i x_i, x = a times 127 / max |a_i| (in f32) rounded to
 * the nearest as the weights are (|x| <= 127), scale = max |a_i| / 127; NaN for a row with a value that is not finite
 * (its scores become NaN), 0 for a zero row. As 16-bit pairs (x[i * kp + s] holds x_i[2s] in its low, x_i[2s + 1] in
 * its high half) for the pair kernels, and for the VNNI kernel as quads of unsigned bytes x + 128
 * (xq[i * kq + t] holds x_i[4t .. 4t + 3], 128 past k). */
typedef struct {
    const ee_gemm_args* g;
    const int32_t* x;
    const uint32_t* xq;
    int kp, kq;
    float scale[EE_PANELS_MAX_M];
} i8_job;

static void quantize_a_i8(const ee_gemm_args* g, int32_t* x, uint32_t* xq, float* scale) {
    const int kp = i8_pairs(g->k), kq = (kp + 1) / 2;
    for (int i = 0; i < g->m; i++) {
        const float* a = g->a + (size_t)i * g->lda;
        int finite;
        const float top = row_top(a, g->k, &finite);
        finite = finite && i8_scalable(top);
        const float inv = finite && top > 0.0f ? 127.0f / top : 0.0f;
        scale[i] = finite ? top / 127.0f : NAN;
        int16_t* halves = (int16_t*)(x + (size_t)i * kp);
        for (int p = 0; p < 2 * kp; p++) halves[p] = (int16_t)(finite && p < g->k ? round_scaled(a[p], inv, 127.0) : 0.0); /* little-endian: column 2s low */
        if (!xq) continue;
        for (int t = 0; t < kq; t++) {
            uint32_t quad = 0;
            for (int c = 0; c < 4; c++) quad |= (uint32_t)(uint8_t)((4 * t + c < 2 * kp ? halves[4 * t + c] : 0) + 128) << (8 * c);
            xq[(size_t)i * kq + t] = quad;
        }
    }
}

/* y_j = (block sums in f32, in order) * scale_j * scale_i, then alpha and beta: the one rounding sequence of every kernel */
EE_INLINE void store_i8_row(const i8_job* job, const float* sums, int64_t q, int i) {
    const ee_gemm_args* g = job->g;
    const float* scales = panel_i8_scales(g, q);
    float v[EE_PANEL_ROWS];
    for (int j = 0; j < EE_PANEL_ROWS; j++) v[j] = sums[j] * scales[j] * job->scale[i];
    const int j0 = (int)q * EE_PANEL_ROWS;
    store_row(g, v, i, j0, ee_min(EE_PANEL_ROWS, g->n - j0));
}

#if EE_X86
#define EE_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))

/* acc[i] += row i's quad times steps 2t and 2t + 1 (zeros for the second where there is none: an odd k's last step):
 * four columns of 16 weight rows in each of two vectors, lane l of 128-bit part L
 * holding row 8L + l (w0) and 8L + 4 + l (w1); acc[MR] += the weights' sums there (what A's offset of 128 adds) */
EE_INLINE EE_AVX512VNNI void i8_quad_512(const int MR, __m512i (*acc)[2], const int8_t* steps, const int second, const uint32_t* xq, int kq) {
    const __m512i a = _mm512_loadu_si512((const void*)steps), b = _mm512_maskz_loadu_epi16(second ? ~0u : 0u, steps + 2 * EE_PANEL_ROWS); /* masked off: nothing read */
    const __m512i w0 = _mm512_unpacklo_epi16(a, b), w1 = _mm512_unpackhi_epi16(a, b), ones = _mm512_set1_epi8(1);
    acc[MR][0] = _mm512_dpbusd_epi32(acc[MR][0], ones, w0);
    acc[MR][1] = _mm512_dpbusd_epi32(acc[MR][1], ones, w1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        const __m512i xi = _mm512_set1_epi32((int)xq[(size_t)i * kq]);
        acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], xi, w0);
        acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], xi, w1);
    }
}

/* rows i0 .. i0 + MR - 1 against panel q, CH chains over alternate quads (MR, CH constants once inlined): one chain of
 * vpdpbusd per accumulator would wait on its latency for every 128 bytes at 1-3 rows */
EE_INLINE EE_AVX512VNNI void panel_i8_512(const i8_job* job, const int MR, const int CH, int64_t q, int i0) {
    const ee_gemm_args* g = job->g;
    const int8_t* w = panel_i8_steps(g, q);
    const uint32_t* xq = job->xq + (size_t)i0 * job->kq;
    const __m512i rows_lo = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), rows_hi = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4); /* back to row order */
    _Alignas(64) float sums[8][EE_PANEL_ROWS];
    for (int s0 = 0; s0 < job->kp; s0 += EE_I8_BLOCK_PAIRS) {
        const int t0 = s0 / 2, t1 = (ee_min(job->kp, s0 + EE_I8_BLOCK_PAIRS) + 1) / 2; /* s0 is even: a block's quads are its own */
        /* per chain c, from row c (MR + 1): MR rows, then the weights' sums (9 rows at most: chains only below 4 rows;
         * one array small enough for the compiler to keep in registers) */
        __m512i acc[9][2];
#pragma GCC unroll 9
        for (int i = 0; i < CH * (MR + 1); i++) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
        /* the quads the chains leave over go first (the integer sums do not depend on the order), so that the main
         * loop flows into the epilogue: after it, their merges made GCC copy and spill the accumulators every step */
        int lo = t0, hi = t1;
        if (2 * hi > job->kp) hi--, i8_quad_512(MR, acc, w + (size_t)hi * 4 * EE_PANEL_ROWS, 0, xq + hi, job->kq); /* an odd k's last pair alone */
        if ((hi - lo) % CH) i8_quad_512(MR, acc, w + (size_t)lo * 4 * EE_PANEL_ROWS, 1, xq + lo, job->kq), lo++;
        for (int t = lo; t < hi; t += CH)
#pragma GCC unroll 2
            for (int c = 0; c < CH; c++) i8_quad_512(MR, acc + c * (MR + 1), w + (size_t)(t + c) * 4 * EE_PANEL_ROWS, 1, xq + t + c, job->kq);
        __m512i offset[2];
        for (int h = 0; h < 2; h++) offset[h] = _mm512_slli_epi32(CH == 2 ? _mm512_add_epi32(acc[MR][h], acc[2 * MR + 1][h]) : acc[MR][h], 7);
        for (int i = 0; i < MR; i++) {
            __m512i part[2]; /* exact: within a block */
            for (int h = 0; h < 2; h++) part[h] = _mm512_sub_epi32(CH == 2 ? _mm512_add_epi32(acc[i][h], acc[MR + 1 + i][h]) : acc[i][h], offset[h]);
            const __m512 f0 = _mm512_cvtepi32_ps(_mm512_permutex2var_epi64(part[0], rows_lo, part[1])), f1 = _mm512_cvtepi32_ps(_mm512_permutex2var_epi64(part[0], rows_hi, part[1]));
            _mm512_store_ps(sums[i], s0 == 0 ? f0 : _mm512_add_ps(_mm512_load_ps(sums[i]), f0));
            _mm512_store_ps(sums[i] + 16, s0 == 0 ? f1 : _mm512_add_ps(_mm512_load_ps(sums[i] + 16), f1));
        }
    }
    for (int i = 0; i < MR; i++) store_i8_row(job, sums[i], q, i0 + i);
}

EE_AVX512VNNI static void panels_i8_512(void* p, int64_t q0, int64_t q1) {
    const i8_job* job = p;
    for (int64_t q = q0; q < q1; q++)
        for (int i0 = 0; i0 < job->g->m; i0 += 8) switch (ee_min(8, job->g->m - i0)) { /* rows past 8 re-read the panel from L1/L2 */
            case 8: panel_i8_512(job, 8, 1, q, i0); break;
            case 7: panel_i8_512(job, 7, 1, q, i0); break;
            case 6: panel_i8_512(job, 6, 1, q, i0); break;
            case 5: panel_i8_512(job, 5, 1, q, i0); break;
            case 4: panel_i8_512(job, 4, 1, q, i0); break;
            case 3: panel_i8_512(job, 3, 2, q, i0); break;
            case 2: panel_i8_512(job, 2, 2, q, i0); break;
            default: panel_i8_512(job, 1, 2, q, i0);
            }
}

/* AVX2 (and AVX-512 CPUs without VNNI): half a panel (16 rows, two vectors of 8 pairs) at a time, up to 4 rows of x per
 * widening: 8 accumulators, the two widened vectors and a broadcast within the 16 registers. One chain: the adds
 * take a cycle. */
EE_INLINE EE_AVX2 void panel_i8_256(const i8_job* job, const int MR, int64_t q, int half, int i0, float (*sums)[EE_PANEL_ROWS]) {
    const int8_t* w = panel_i8_steps(job->g, q) + 32 * half;
    const int32_t* x = job->x + (size_t)i0 * job->kp;
    for (int s0 = 0; s0 < job->kp; s0 += EE_I8_BLOCK_PAIRS) {
        const int s1 = ee_min(job->kp, s0 + EE_I8_BLOCK_PAIRS);
        __m256i acc[4][2];
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
        for (int s = s0; s < s1; s++) {
            const int8_t* step = w + (size_t)s * 2 * EE_PANEL_ROWS;
            const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)step)), w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(step + 16)));
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++) {
                const __m256i xi = _mm256_set1_epi32(x[(size_t)i * job->kp + s]);
                acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(xi, w0));
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(xi, w1));
            }
        }
        for (int i = 0; i < MR; i++)
            for (int h = 0; h < 2; h++) {
                float* out = sums[i0 + i] + 16 * half + 8 * h;
                const __m256 f = _mm256_cvtepi32_ps(acc[i][h]);
                _mm256_storeu_ps(out, s0 == 0 ? f : _mm256_add_ps(_mm256_loadu_ps(out), f));
            }
    }
}

EE_AVX2 static void panels_i8_256(void* p, int64_t q0, int64_t q1) {
    const i8_job* job = p;
    float sums[EE_PANELS_MAX_M][EE_PANEL_ROWS];
    for (int64_t q = q0; q < q1; q++) {
        for (int half = 0; half < 2; half++)
            for (int i0 = 0; i0 < job->g->m; i0 += 4) switch (ee_min(4, job->g->m - i0)) {
                case 4: panel_i8_256(job, 4, q, half, i0, sums); break;
                case 3: panel_i8_256(job, 3, q, half, i0, sums); break;
                case 2: panel_i8_256(job, 2, q, half, i0, sums); break;
                default: panel_i8_256(job, 1, q, half, i0, sums);
                }
        for (int i = 0; i < job->g->m; i++) store_i8_row(job, sums[i], q, i);
    }
}
#endif

/* portable 8-bit panels: one row of x at a time */
static void panels_i8_portable(void* p, int64_t q0, int64_t q1) {
    const i8_job* job = p;
    for (int64_t q = q0; q < q1; q++) {
        const int8_t* w = panel_i8_steps(job->g, q);
        for (int i = 0; i < job->g->m; i++) {
            const int32_t* x = job->x + (size_t)i * job->kp;
            float sums[EE_PANEL_ROWS];
            for (int s0 = 0; s0 < job->kp; s0 += EE_I8_BLOCK_PAIRS) {
                int32_t acc[EE_PANEL_ROWS] = {0};
                for (int s = s0; s < ee_min(job->kp, s0 + EE_I8_BLOCK_PAIRS); s++) {
                    const int32_t lo = (int16_t)(x[s] & 0xFFFF), hi = (int16_t)((uint32_t)x[s] >> 16);
                    const int8_t* step = w + (size_t)s * 2 * EE_PANEL_ROWS;
                    for (int j = 0; j < EE_PANEL_ROWS; j++) acc[j] += lo * step[2 * j] + hi * step[2 * j + 1];
                }
                for (int j = 0; j < EE_PANEL_ROWS; j++) sums[j] = s0 == 0 ? (float)acc[j] : sums[j] + (float)acc[j];
            }
            store_i8_row(job, sums, q, i);
        }
    }
}

static int gemm_panels_i8(const ee_gemm_args* g) {
    i8_job job = {g, 0, 0, i8_pairs(g->k), (i8_pairs(g->k) + 1) / 2, {0}};
    ee_range_fn kernel = panels_i8_portable;
    int quads = 0;
#if EE_X86
    const ee_cpu* cpu = ee_cpu_get();
    if (cpu->avx512vnni) kernel = panels_i8_512, quads = 1;
    else if (cpu->avx2) kernel = panels_i8_256;
#endif
    int32_t* x = ee_scratch(EE_SCRATCH_I8_A, (size_t)g->m * (job.kp + (quads ? job.kq : 0)) * sizeof(int32_t));
    if (!x) return ee_fail("ee_gemm: out of memory");
    uint32_t* xq = quads ? (uint32_t*)(x + (size_t)g->m * job.kp) : 0;
    quantize_a_i8(g, x, xq, job.scale);
    job.x = x, job.xq = xq;
    const int nt = ee_threads_for(EE_GEMV_WORK(g->m, g->n, g->k)), panels = ee_ceil_div(g->n, EE_PANEL_ROWS);
    ee_parallel_range_stealing(nt, panels, ee_steal_block(panels, nt), kernel, &job);
    return 0;
}

int ee_gemm_panels(const ee_gemm_args* g) {
    if (g->b_dtype == EE_I8_PANELS) return gemm_panels_i8(g);
    const int elem = g->b_dtype == EE_BF16_PANELS ? ELEM_BF16 : g->b_dtype == EE_F16_PANELS ? ELEM_F16 : ELEM_F32;
    static const ee_range_fn portable[3] = {panels_portable, panels_f16_portable, panels_bf16_portable};
    ee_range_fn kernel = portable[elem];
#if EE_X86
    static const ee_range_fn avx512[3] = {panels512, panels512_f16, panels512_bf16}, avx2[3] = {panels256, panels256_f16, panels256_bf16};
    const ee_cpu* cpu = ee_cpu_get();
    if (cpu->avx512) kernel = avx512[elem];
    else if (cpu->avx2) kernel = avx2[elem];
#endif
    const int nt = ee_threads_for(EE_GEMV_WORK(g->m, g->n, g->k)), panels = ee_ceil_div(g->n, EE_PANEL_ROWS);
    ee_parallel_range_stealing(nt, panels, ee_steal_block(panels, nt), kernel, (void*)g); /* as ee_gemm_small: see there */
    return 0;
}
