/*
 * The portable GEMM: a BLIS-style cache-blocked loop nest around register-tile micro-kernels.
 *
 * op(A) is packed MC_ROWS x kc at a time into strips of MR rows (shared by all threads); each thread packs its own
 * kc x nb block of op(B) (converting bf16/f16 to f32 on the way) into strips of NR columns sized for L2. The
 * micro-kernel then keeps one MR x kc strip of A in L1 and sweeps the B strips, accumulating an MR x NR tile of C in
 * registers. Work is split into (B block, row range) tasks so every thread gets an equal share whatever the shape.
 *
 * Kernels: AVX-512 12x32 (24 zmm accumulators), AVX2/FMA 6x16 (12 ymm), and a plain C 4x8 tile that the compiler
 * vectorises for the x86-64 baseline.
 */

#include "internal.h"
#if EE_X86
#include <immintrin.h>
#endif

/* c = alpha * acc + beta * c for the valid mr x nr corner of the tile; beta = 0 never reads c. */
typedef void (*ukernel_fn)(int kc, const float* a, const float* b, float* c, int ldc, float alpha, float beta, int mr, int nr);

typedef struct {
    int mr, nr; /* register tile */
    int kc;     /* depth of a packed panel: an MR x kc strip of A stays in L1 */
    int nb;     /* columns of a thread's packed B block: kc x nb stays in L2 */
    ukernel_fn fn;
} ukernel;

/* Rows of A packed at once (kc x 3072 floats, 4.5 MiB at kc = 384). */
#define MC_ROWS 3072

/* ---- micro-kernels --------------------------------------------------------------------------------------------- */

#define PORT_MR 4
#define PORT_NR 8

static void ukernel_portable(int kc, const float* a, const float* b, float* c, int ldc, float alpha, float beta, int mr, int nr) {
    float acc[PORT_MR][PORT_NR] = {{0}};
    for (int p = 0; p < kc; p++, a += PORT_MR, b += PORT_NR)
        for (int i = 0; i < PORT_MR; i++)
            for (int j = 0; j < PORT_NR; j++) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < mr; i++) {
        float* ci = c + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) ci[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * ci[j];
    }
}

static const ukernel kernel_portable = {PORT_MR, PORT_NR, 256, 128, ukernel_portable};

#if EE_X86
EE_AVX2 static void ukernel_avx2_6x16(int kc, const float* a, const float* b, float* c, int ldc, float alpha, float beta, int mr, int nr) {
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++, a += 6, b += 16) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota), m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), iota);
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        if (i >= mr) break;
        float* ci = c + (size_t)i * ldc;
        __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
        if (nr == 16) {
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci + 8, r1);
        } else {
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
            }
            _mm256_maskstore_ps(ci, m0, r0);
            _mm256_maskstore_ps(ci + 8, m1, r1);
        }
    }
}

EE_AVX512 static void ukernel_avx512_12x32(int kc, const float* a, const float* b, float* c, int ldc, float alpha, float beta, int mr, int nr) {
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++, a += 12, b += 32) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        if (i >= mr) break;
        float* ci = c + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

static const ukernel kernel_avx2 = {6, 16, 256, 192, ukernel_avx2_6x16};
static const ukernel kernel_avx512 = {12, 32, 384, 480, ukernel_avx512_12x32};
#else /* only the portable kernel (cpu->avx2 and avx512 are 0 here) */
#define kernel_avx2 kernel_portable
#define kernel_avx512 kernel_portable
#endif

/* ---- packing ----------------------------------------------------------------------------------------------------- */

/* Both operands are packed with two moves, inlined per dtype so that the conversion folds into them:
 * pack_copy for runs that are contiguous in memory, pack_transpose for runs that are strided. */

/* dst[p * w + i] = src[origin + p * ld + i] for i < cnt, zero up to w, p < kc */
EE_INLINE void pack_copy(float* dst, int w, const void* src, const int dtype, size_t origin, size_t ld, int cnt, int kc) {
    for (int p = 0; p < kc; p++) {
        float* d = dst + (size_t)p * w;
        const size_t s = origin + (size_t)p * ld;
        for (int i = 0; i < cnt; i++) d[i] = ee_load_f32(src, dtype, s + i);
        for (int i = cnt; i < w; i++) d[i] = 0.0f;
    }
}

#if EE_X86
/* four consecutive elements as f32 (SSE2, the x86-64 baseline) */
EE_INLINE __m128 load4(const void* src, const int dtype, size_t i) {
    if (dtype == EE_BF16) return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64((const __m128i*)((const uint16_t*)src + i))));
    return _mm_loadu_ps((const float*)src + i);
}
#endif

/* dst[p * w + i] = src[origin + i * ld + p] for i < cnt, zero up to w, p < kc: 4 x 4 blocks through registers */
EE_INLINE void pack_transpose(float* dst, int w, const void* src, const int dtype, size_t origin, size_t ld, int cnt, int kc) {
    int i = 0;
#if EE_X86
    for (; dtype != EE_F16 && i + 4 <= cnt; i += 4) {
        const size_t row = origin + (size_t)i * ld;
        int p = 0;
        for (; p + 4 <= kc; p += 4) {
            __m128 r0 = load4(src, dtype, row + p), r1 = load4(src, dtype, row + ld + p);
            __m128 r2 = load4(src, dtype, row + 2 * ld + p), r3 = load4(src, dtype, row + 3 * ld + p);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float* d = dst + (size_t)p * w + i;
            _mm_storeu_ps(d, r0);
            _mm_storeu_ps(d + w, r1);
            _mm_storeu_ps(d + 2 * w, r2);
            _mm_storeu_ps(d + 3 * w, r3);
        }
        for (; p < kc; p++)
            for (int q = 0; q < 4; q++) dst[(size_t)p * w + i + q] = ee_load_f32(src, dtype, row + q * ld + p);
    }
#endif
    for (; i < cnt; i++)
        for (int p = 0; p < kc; p++) dst[(size_t)p * w + i] = ee_load_f32(src, dtype, origin + (size_t)i * ld + p);
    for (; i < w; i++)
        for (int p = 0; p < kc; p++) dst[(size_t)p * w + i] = 0.0f;
}

/* Rows [i0, i0 + rows) x depth [p0, p0 + kc) of op(A) as kc columns of MR values; rows past the edge are zero.
 * A transposed A is packed one depth row at a time instead (see panel). */
static void pack_a_strip(float* dst, const ee_gemm_args* g, int i0, int rows, int p0, int kc, int mr) {
    const size_t lda = (size_t)g->lda;
    if (!g->trans_a)
        pack_transpose(dst, mr, g->a, EE_F32, (size_t)i0 * lda + p0, lda, rows, kc);
    else
        pack_copy(dst, mr, g->a, EE_F32, (size_t)p0 * lda + i0, lda, rows, kc);
}

/* Strips [s0, s1) of NR columns x depth [p0, p0 + kc) of op(B) in f32, each as kc rows of NR values; columns past
 * the edge are zero. Untransposed, each row of B is walked once for all strips, which matters for TLB misses when
 * rows are far apart. */
EE_INLINE void pack_b_block_as(float* dst, const ee_gemm_args* g, const int dtype, int s0, int s1, int p0, int kc, int nr) {
    const size_t ldb = (size_t)g->ldb, strip = (size_t)kc * nr;
    if (!g->trans_b) {
        for (int p = 0; p < kc; p++)
            for (int s = s0; s < s1; s++)
                pack_copy(dst + (s - s0) * strip + (size_t)p * nr, nr, g->b, dtype, (size_t)(p0 + p) * ldb + (size_t)s * nr, ldb, ee_min(nr, g->n - s * nr), 1);
    } else {
        for (int s = s0; s < s1; s++)
            pack_transpose(dst + (s - s0) * strip, nr, g->b, dtype, (size_t)s * nr * ldb + p0, ldb, ee_min(nr, g->n - s * nr), kc);
    }
}

static void pack_b_block(float* dst, const ee_gemm_args* g, int s0, int s1, int p0, int kc, int nr) {
    switch (g->b_dtype) {
    case EE_BF16: pack_b_block_as(dst, g, EE_BF16, s0, s1, p0, kc, nr); break;
    case EE_F16: pack_b_block_as(dst, g, EE_F16, s0, s1, p0, kc, nr); break;
    default: pack_b_block_as(dst, g, EE_F32, s0, s1, p0, kc, nr);
    }
}

/* ---- the loop nest ------------------------------------------------------------------------------------------------ */

/* One depth panel p0..p0+kc of rows i0..i0+mc of C: the work of one parallel region. */
typedef struct {
    const ee_gemm_args* g;
    const ukernel* uk;
    int i0, mc, p0, kc;
    float beta;
    float *a_pack, *b_pack; /* shared A panel; nt B blocks of b_block floats */
    size_t b_block;
    int n_blocks, parts;    /* B blocks of about uk->nb columns, each split into `parts` row ranges */
} panel_job;

/* Thread tid of nth (0 of 1 when called alone), run by ee_parallel. */
static void panel(void* p, int tid, int nth) {
    const panel_job* job = p;
    const ee_gemm_args* g = job->g;
    const int MR = job->uk->mr, NR = job->uk->nr, n = g->n, kc = job->kc, mc = job->mc;
    const int a_strips = ee_ceil_div(mc, MR), b_strips = ee_ceil_div(n, NR), tasks = job->n_blocks * job->parts;
    float* c = g->c + (size_t)job->i0 * g->ldc;
    if (!g->trans_a) {
        for (int s = tid * a_strips / nth; s < (tid + 1) * a_strips / nth; s++)
            pack_a_strip(job->a_pack + (size_t)s * MR * kc, g, job->i0 + s * MR, ee_min(MR, mc - s * MR), job->p0, kc, MR);
    } else { /* a row of A^T at a time for all strips: one pass over memory, and few TLB misses when lda is large */
        for (int p = tid * kc / nth; p < (tid + 1) * kc / nth; p++)
            for (int s = 0; s < a_strips; s++)
                pack_a_strip(job->a_pack + (size_t)s * MR * kc + (size_t)p * MR, g, job->i0 + s * MR, ee_min(MR, mc - s * MR), job->p0 + p, 1, MR);
    }
    ee_team_barrier(nth);
    float* b_own = job->b_pack + (size_t)tid * job->b_block;
    int packed = -1; /* the B block this thread holds: consecutive tasks share it */
    for (int t = tid * tasks / nth; t < (tid + 1) * tasks / nth; t++) {
        const int blk = t / job->parts, part = t % job->parts;
        const int s0 = blk * b_strips / job->n_blocks, s1 = (blk + 1) * b_strips / job->n_blocks;
        const int r0 = part * a_strips / job->parts, r1 = (part + 1) * a_strips / job->parts;
        if (r0 == r1) continue;
        if (packed != blk) {
            pack_b_block(b_own, g, s0, s1, job->p0, kc, NR);
            packed = blk;
        }
        for (int r = r0; r < r1; r++) {
            const float* a_strip = job->a_pack + (size_t)r * MR * kc;
            float* c_row = c + (size_t)r * MR * g->ldc;
            const int rows = ee_min(MR, mc - r * MR);
            for (int s = s0; s < s1; s++)
                job->uk->fn(kc, a_strip, b_own + (size_t)(s - s0) * kc * NR, c_row + (size_t)s * NR, g->ldc, g->alpha, job->beta, rows, ee_min(NR, n - s * NR));
        }
    }
}

int ee_gemm_blocked(const ee_gemm_args* g) {
    const ee_cpu* cpu = ee_cpu_get();
    const ukernel* uk = cpu->avx512 ? &kernel_avx512 : cpu->avx2 ? &kernel_avx2 : &kernel_portable;
    const int MR = uk->mr, NR = uk->nr, m = g->m, n = g->n, k = g->k;
    const int nt = ee_threads_for(EE_GEMM_WORK(m, n, k));
    const int kc_max = ee_min(uk->kc, k), mc_max = ee_min(MC_ROWS, ee_ceil_div(m, MR) * MR);
    /* B blocks of at most uk->nb columns, each split into nt row ranges (one task per block and range), so all
     * threads get equal work whatever the shape; with a multiple of nt blocks, each thread packs only its own. */
    const int b_strips = ee_ceil_div(n, NR), min_blocks = ee_ceil_div(b_strips, uk->nb / NR);
    const int n_blocks = min_blocks == 1 ? 1 : ee_min(ee_ceil_div(min_blocks, nt) * nt, b_strips);
    const size_t b_block = (size_t)kc_max * ee_ceil_div(b_strips, n_blocks) * NR;
    float* a_pack = ee_scratch(EE_SCRATCH_GEMM_A, (size_t)mc_max * kc_max * sizeof(float));
    float* b_pack = ee_scratch(EE_SCRATCH_GEMM_B, nt * b_block * sizeof(float));
    if (!a_pack || !b_pack) return ee_fail("ee_gemm: out of memory for packing buffers");

    for (int i0 = 0; i0 < m; i0 += MC_ROWS) {
        const int mc = ee_min(MC_ROWS, m - i0);
        for (int p0 = 0; p0 < k; p0 += kc_max) {
            const int kc = ee_min(kc_max, k - p0);
            const float beta = p0 == 0 ? g->beta : 1.0f; /* later depth panels add to the first one's result */
            panel_job job = {g, uk, i0, mc, p0, kc, beta, a_pack, b_pack, b_block, n_blocks, nt};
            ee_parallel(nt, panel, &job);
        }
    }
    return 0;
}
