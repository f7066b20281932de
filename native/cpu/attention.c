/*
 * Causal grouped-query attention: the forward against a KV cache (packed rows of any sequences and positions), the
 * backward for dense batches (recomputing probabilities from the forward's log-sum-exp), and the cache row moves.
 *
 * The fast path puts up to 16 "query slots" -- (row, head) pairs of one sequence whose heads share one KV head -- in
 * the 16 lanes of a vector: Q and dO are transposed once per slot block to head_dim x 16, so that the scores of a
 * key for all slots are head_dim broadcast-FMAs (K rows are read once for all of them), the softmax, causal mask and
 * log-sum-exp run lane-wise, and O^T += V^T P^T is again broadcast-FMAs. Keys go in blocks of KB with an online
 * softmax (forward) or the forward's log-sum-exp (backward). The code is written once with GCC vector extensions
 * (16 floats) and instantiated for the baseline, AVX2 and AVX-512 with register tiles sized for each. Blocks with
 * few slots (decode: one row per sequence) and head_dim > DMAX use the per-(row, head) path below, or for tiny heads
 * the keys-in-lanes kernel (attention_lanes.h: 16 keys in the lanes on AVX-512, 8 on AVX2, all queries of a KV head
 * sharing their transpose; on AVX2 it serves every row of tiny heads).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdatomic.h>

#include "internal.h"
#include "row_sums.h"

/* The kernels below are written once as always-inline bodies and instantiated for the baseline, AVX2 and AVX-512
 * (see the *_any dispatchers), so that the compiler vectorises their head_dim loops for the CPU at hand. */

EE_INLINE void axpy(float* y, float alpha, const float* x, int32_t n) {
#pragma omp simd
    for (int32_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Keys are scored a block at a time; the running max/sum (online softmax) rescales the output once per block. */
#define KEY_BLOCK 64

/* 8-float vectors for the decode path (ymm on AVX2/AVX-512, two halves elsewhere): heads are often small (8..64),
 * where a 16-lane reduction per key costs more than the products */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));

EE_INLINE float hsum8(v8 a) { /* a fixed pairwise order */
    a += __builtin_shuffle(a, (v8i){4, 5, 6, 7, 0, 1, 2, 3});
    a += __builtin_shuffle(a, (v8i){2, 3, 0, 1, 6, 7, 4, 5});
    a += __builtin_shuffle(a, (v8i){1, 0, 3, 2, 5, 4, 7, 6});
    return a[0];
}

/* q.k over D: 8-wide partial sums (two chains from D = 16 on), then the tail */
EE_INLINE float dot8(const float* q, const float* k, int32_t D) {
    v8 a0 = (v8){0}, a1 = (v8){0};
    int32_t d = 0;
    for (; d + 16 <= D; d += 16) {
        a0 += *(const v8u*)(q + d) * *(const v8u*)(k + d);
        a1 += *(const v8u*)(q + d + 8) * *(const v8u*)(k + d + 8);
    }
    if (d + 8 <= D) a0 += *(const v8u*)(q + d) * *(const v8u*)(k + d), d += 8;
    float s = hsum8(a0 + a1);
    for (; d < D; d++) s += q[d] * k[d];
    return s;
}

/* A decode row reads its head's slice of every cached key and value (D floats, kv_width apart): a few lines per
 * ~1 KiB stride, which the hardware prefetchers follow too late when the cache comes from DRAM, as it does in decode
 * (the weights streamed since the layer's last step have evicted it). So the lines of the key KEY_PREFETCH ahead are
 * prefetched, and a block's value rows while its scores are computed. 15M shape (6 heads of 48), rows at position
 * 200, the cache evicted before each step, one thread, CPU time per step of 6 layers, machine shared, alternated
 * with the build without it: 8 rows 1.94 (1.84..2.54) -> 1.43 (1.29..1.60) ms, median of 6; 1 row 0.26 and 0.30 ->
 * 0.21 and 0.21 ms. 4, 8, 16 and 32 keys ahead were within noise of each other; taking a row's heads together (its
 * cache rows read as one contiguous run) gained nothing more, and scoring 8 keys at a time with one transpose-and-add
 * reduction was slower. A prefetch past the cache's end is harmless: it never faults. */
#define KEY_PREFETCH 8
EE_INLINE void prefetch_head(const float* row, int32_t D) {
    for (int32_t d = 0; d < D; d += 16) __builtin_prefetch(row + d);
    __builtin_prefetch(row + D - 1);
}

/* out = softmax(scale q.K^T) V over n_keys keys, K and V rows kv_width apart; writes the log-sum-exp when asked.
 * The decode path: one (row, head) at a time. Output columns are accumulated 8 at a time in a register over a
 * block's keys. Max by comparison, not fmaxf (a libm call without -ffast-math); a NaN score is skipped as fmaxf does. */
EE_INLINE void attend(float* out, float* lse, const float* q, const float* k, const float* v, size_t kv_width, int32_t n_keys, int32_t D, float scale) {
    float running_max = -INFINITY, running_sum = 0.0f, score[KEY_BLOCK];
    for (int32_t i = 0; i < D; i++) out[i] = 0.0f;
    for (int32_t p0 = 0; p0 < n_keys; p0 += KEY_BLOCK) {
        const int32_t nb = ee_min(KEY_BLOCK, n_keys - p0);
        const float* kb = k + (size_t)p0 * kv_width;
        const float* vb = v + (size_t)p0 * kv_width;
        float block_max = -INFINITY;
        for (int32_t j = 0; j < nb; j++) {
            prefetch_head(kb + (size_t)(j + KEY_PREFETCH) * kv_width, D);
            prefetch_head(vb + (size_t)j * kv_width, D); /* for the value loop below */
            score[j] = scale * dot8(q, kb + (size_t)j * kv_width, D);
        }
        for (int32_t j = 0; j < nb; j++) block_max = score[j] > block_max ? score[j] : block_max;
        const float new_max = block_max > running_max ? block_max : running_max;
        const float correction = expf(running_max - new_max); /* 0 on the first block */
        running_sum *= correction;
        running_sum += (float)ee_row_exp(score, score, nb, new_max, 1.0f, 1.0f);
        int32_t d = 0;
        for (; d + 8 <= D; d += 8) {
            v8 o = *(v8u*)(out + d) * correction;
            for (int32_t j = 0; j < nb; j++) o += score[j] * *(const v8u*)(vb + (size_t)j * kv_width + d);
            *(v8u*)(out + d) = o;
        }
        for (; d < D; d++) {
            float o = out[d] * correction;
            for (int32_t j = 0; j < nb; j++) o += score[j] * vb[(size_t)j * kv_width + d];
            out[d] = o;
        }
        running_max = new_max;
    }
    const float inv_sum = 1.0f / running_sum;
    for (int32_t i = 0; i < D; i++) out[i] *= inv_sum;
    if (lse) *lse = running_max + logf(running_sum);
}

#define ROW_MAX_HEADS 64 /* the per-row kernels' stack arrays */

/* score[h][j] = scale q_h.k for keys p0 .. p0 + nb - 1 (rows of all KV heads), every query head h (KV head h / group) */
EE_INLINE void score_rows(float (*score)[KEY_BLOCK], const float* q, const float* k, size_t kv_width, int32_t p0, int32_t nb, int32_t n_heads, int32_t group, int32_t D, float scale) {
    for (int32_t j = 0; j < nb; j++) {
        const float* kr = k + (size_t)(p0 + j) * kv_width;
        for (int32_t h = 0; h < n_heads; h++) score[h][j] = scale * dot8(q + (size_t)h * D, kr + (size_t)(h / group) * D, D);
    }
}

/* out_h += score[h][j] v_j for the same keys and heads, key after key */
EE_INLINE void add_value_rows(float* out, float (*score)[KEY_BLOCK], const float* v, size_t kv_width, int32_t p0, int32_t nb, int32_t n_heads, int32_t group, int32_t D) {
    for (int32_t j = 0; j < nb; j++) {
        const float* vr = v + (size_t)(p0 + j) * kv_width;
        for (int32_t h = 0; h < n_heads; h++) {
            float* o = out + (size_t)h * D;
            const float* vh = vr + (size_t)(h / group) * D;
            const float s = score[h][j];
            int32_t d = 0;
            for (; d + 8 <= D; d += 8) *(v8u*)(o + d) = *(v8u*)(o + d) + s * *(const v8u*)(vh + d);
            for (; d < D; d++) o[d] = o[d] + s * vh[d];
        }
    }
}

/* One decode row with all its heads (query head h reads KV head h / group): every key's and value's row is read
 * whole, kv_width contiguous floats that the hardware prefetchers stream, instead of one head's slice per pass over
 * the cache (a few lines per ~1 KiB stride). The arithmetic of each head is attend()'s, in the same order (the
 * compiler may still round the two differently: an ASan build did, in the last bits). */
EE_INLINE void attend_row(float* out, float* lse, const float* q, const float* k, const float* v, size_t kv_width, int32_t n_keys, int32_t n_heads, int32_t group, int32_t D, float scale) {
    float score[ROW_MAX_HEADS][KEY_BLOCK], running_max[ROW_MAX_HEADS], running_sum[ROW_MAX_HEADS];
    for (int32_t i = 0; i < n_heads * D; i++) out[i] = 0.0f;
    for (int32_t h = 0; h < n_heads; h++) running_max[h] = -INFINITY, running_sum[h] = 0.0f;
    for (int32_t p0 = 0; p0 < n_keys; p0 += KEY_BLOCK) {
        const int32_t nb = ee_min(KEY_BLOCK, n_keys - p0);
        score_rows(score, q, k, kv_width, p0, nb, n_heads, group, D, scale);
        for (int32_t h = 0; h < n_heads; h++) {
            float block_max = -INFINITY;
            for (int32_t j = 0; j < nb; j++) block_max = score[h][j] > block_max ? score[h][j] : block_max;
            const float new_max = block_max > running_max[h] ? block_max : running_max[h];
            const float correction = expf(running_max[h] - new_max);
            running_sum[h] *= correction;
            running_sum[h] += (float)ee_row_exp(score[h], score[h], nb, new_max, 1.0f, 1.0f);
            running_max[h] = new_max;
            float* o = out + (size_t)h * D;
            int32_t d = 0;
            for (; d + 8 <= D; d += 8) *(v8u*)(o + d) = *(v8u*)(o + d) * correction;
            for (; d < D; d++) o[d] = o[d] * correction;
        }
        add_value_rows(out, score, v, kv_width, p0, nb, n_heads, group, D);
    }
    for (int32_t h = 0; h < n_heads; h++) {
        const float inv_sum = 1.0f / running_sum[h];
        for (int32_t i = 0; i < D; i++) out[(size_t)h * D + i] *= inv_sum;
        if (lse) lse[h] = running_max[h] + logf(running_sum[h]);
    }
}

#define ROW_ARGS float *out, float *lse, const float *q, const float *k, const float *v, size_t kv_width, int32_t n_keys, int32_t n_heads, int32_t group, int32_t D, float scale
static void attend_row_base(ROW_ARGS) { attend_row(out, lse, q, k, v, kv_width, n_keys, n_heads, group, D, scale); }
EE_AVX2 static void attend_row_avx2(ROW_ARGS) { attend_row(out, lse, q, k, v, kv_width, n_keys, n_heads, group, D, scale); }
EE_AVX512 static void attend_row_avx512(ROW_ARGS) { attend_row(out, lse, q, k, v, kv_width, n_keys, n_heads, group, D, scale); }

/* Decode rows whose cache rows are wide (WIDE_KV_ROW floats and more): a row's keys in chunks of ROW_CHUNK, one
 * chunk of a row with all its heads (query head h reads KV head h / group) per task. Each key's and value's row is
 * read whole, a chunk's rows are one contiguous run that the hardware prefetchers stream, and the chunks of a row
 * spread over the threads (split-K, as flash-decoding does); then per head out = sum_c e^(m_c - M) o_c / sum_c
 * e^(m_c - M) l_c over the chunks in order. The chunks are fixed key ranges and every decode row of such a model
 * takes this path, so a row's result depends on its position only, not on the batch or the thread count.
 * Why: the per-(row, head) tasks read a head's slice of every cached row, a few lines per 3 KiB stride at 110M, where
 * the prefetchers fall behind: 2-core Zen 2, 110M shape (12 heads of 64), one row at position 255, the 12 layers'
 * caches on huge pages and evicted before each call, one thread: one task per row with all its heads 1.71x the
 * per-head tasks; 2 threads over the heads ran no faster than that one thread, 2 threads over chunks 1.40x (1.30..1.76)
 * the per-head tasks. At the 15M shape (288-float rows) the chunks lost 4-7% of batch-1 decode in two of three rounds
 * (bench/batch.jsh), so narrower rows keep the per-head tasks (and attend_row for batches). */
#define ROW_CHUNK KEY_BLOCK /* a chunk is one block of keys */
#define WIDE_KV_ROW 512
EE_INLINE void attend_chunk(float* out, float* max, float* sum, const float* q, const float* k, const float* v, size_t kv_width, int32_t p0, int32_t p1, int32_t n_heads, int32_t group, int32_t D, float scale) {
    float score[ROW_MAX_HEADS][KEY_BLOCK];
    const int32_t nb = p1 - p0;
    score_rows(score, q, k, kv_width, p0, nb, n_heads, group, D, scale);
    for (int32_t h = 0; h < n_heads; h++) {
        float m = -INFINITY;
        for (int32_t j = 0; j < nb; j++) m = score[h][j] > m ? score[h][j] : m;
        max[h] = m;
        sum[h] = (float)ee_row_exp(score[h], score[h], nb, m, 1.0f, 1.0f);
    }
    for (int32_t i = 0; i < n_heads * D; i++) out[i] = 0.0f;
    add_value_rows(out, score, v, kv_width, p0, nb, n_heads, group, D);
}

#define CHUNK_ARGS float *out, float *max, float *sum, const float *q, const float *k, const float *v, size_t kv_width, int32_t p0, int32_t p1, int32_t n_heads, int32_t group, int32_t D, float scale
#define CHUNK_CALL attend_chunk(out, max, sum, q, k, v, kv_width, p0, p1, n_heads, group, D, scale)
static void attend_chunk_base(CHUNK_ARGS) { CHUNK_CALL; }
EE_AVX2 static void attend_chunk_avx2(CHUNK_ARGS) { CHUNK_CALL; }
EE_AVX512 static void attend_chunk_avx512(CHUNK_ARGS) { CHUNK_CALL; }

#define ATTEND_ARGS float *out, float *lse, const float *q, const float *k, const float *v, size_t kv_width, int32_t n_keys, int32_t D, float scale
static void attend_base(ATTEND_ARGS) { attend(out, lse, q, k, v, kv_width, n_keys, D, scale); }
EE_AVX2 static void attend_avx2(ATTEND_ARGS) { attend(out, lse, q, k, v, kv_width, n_keys, D, scale); }
EE_AVX512 static void attend_avx512(ATTEND_ARGS) { attend(out, lse, q, k, v, kv_width, n_keys, D, scale); }

/*
 * FlashAttention-style backward of one query head of one sequence (rows q_width apart, its kv head's rows kv_width
 * apart). With P = exp(scale q.k - lse) and D = dout.out for a query row: dS = P * (dout.v - D);
 * dq = scale * sum dS k; dk += scale * dS q; dv += P dout.
 */
EE_INLINE void attend_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t seq, size_t q_width, size_t kv_width, int32_t n_heads, int32_t D, float scale) {
    for (int32_t t = 0; t < seq; t++) {
        const size_t qt = (size_t)t * q_width;
        const float *qh = q + qt, *g = dout + qt;
        const float row_lse = lse[(size_t)t * n_heads], row_d = ee_dot(g, out + qt, D);
        float* dqh = dq + qt;
        for (int32_t i = 0; i < D; i++) dqh[i] = 0.0f;
        for (int32_t j = 0; j <= t; j++) {
            const size_t kj = (size_t)j * kv_width;
            const float p = expf(scale * ee_dot(qh, k + kj, D) - row_lse);
            const float ds = p * (ee_dot(g, v + kj, D) - row_d);
            axpy(dqh, ds, k + kj, D);
            axpy(dk + kj, scale * ds, qh, D);
            axpy(dv + kj, p, g, D);
        }
        for (int32_t i = 0; i < D; i++) dqh[i] *= scale;
    }
}

#define ATTEND_BWD_ARGS float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse, const float *q, const float *k, const float *v, int32_t seq, size_t q_width, size_t kv_width, int32_t n_heads, int32_t D, float scale
#define ATTEND_BWD_CALL attend_bwd(dq, dk, dv, dout, out, lse, q, k, v, seq, q_width, kv_width, n_heads, D, scale)
static void attend_bwd_base(ATTEND_BWD_ARGS) { ATTEND_BWD_CALL; }
EE_AVX2 static void attend_bwd_avx2(ATTEND_BWD_ARGS) { ATTEND_BWD_CALL; }
EE_AVX512 static void attend_bwd_avx512(ATTEND_BWD_ARGS) { ATTEND_BWD_CALL; }


/* ---- slot-vector path ---------------------------------------------------------------------------------------- */

#define LANES 16     /* query slots per block: the lanes of one v16 */
#define DMAX 128     /* largest head_dim of the slot path (stack buffers are DMAX x 16 floats) */
#define KB 64        /* keys per block */
/* Fewer slots than this in a forward block: rows go to the per-(row, head) path. On AVX-512 the slot path costs the
 * same for 2-16 slots (head_dim 8, position 200: 8.1-8.4 us) and beat the per-(row, head) path from 3 slots with a warm
 * cache, from ~5 with the cache evicted (head_dim 48/64, as in 15M/110M decode). */
#define MIN_SLOTS 6
/* Tiny heads (the keys-in-lanes kernel, all queries of a run of rows sharing one transpose of the keys) take that kernel
 * for every call whose sequences have at most this many rows each: it computes each query alike whatever queries share
 * the transpose, so a decode pass's rows get the bits they get alone (ee_attention_rows_alike: the early-exit pipeline
 * and the deferred rows regroup rows freely). Longer runs (prompts) take the slot path, which costs about the same for
 * 2-16 slots: at 4 and more rows of a sequence it is the faster one (stories260K's 8 heads of 8 in groups of 2, one
 * thread, 2-core Zen 4, position 30 / 70 / 200: 4 rows 1.90 / 3.60 / 9.02 us against the lanes kernel's 2.49 / 3.40 /
 * 7.61, 8 rows 2.31 / 3.98 / 9.40 against 4.83 / 6.44 / 13.79, 16 rows 4.96 / 8.28 / 19.13 against 9.83 / 13.43 /
 * 28.30), a price paid by the few decode passes that hold 4-16 rows of one sequence (many deferred rows, a
 * self-speculative verification, a short prompt). On AVX2 every row of tiny heads takes the lanes kernel. */
#define LANES_ALIKE_ROWS 16

/* only inside always-inline functions, so the vector ABI warning does not apply */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));

EE_INLINE v16 vsel(v16i m, v16 a, v16 b) { return (v16)(((v16i)a & m) | ((v16i)b & ~m)); }
EE_INLINE v16 vmax(v16 a, v16 b) { return vsel(a > b, a, b); }
EE_INLINE v16 vsplat(float x) { return (v16){0} + x; }
EE_INLINE v8 vsel8(v8i m, v8 a, v8 b) { return (v8)(((v8i)a & m) | ((v8i)b & ~m)); }
#if EE_X86
#include <immintrin.h>
/* max as vsel8(a > b, a, b) gives it, NaN included (b when either is NaN), in one instruction instead of four (the
 * 8-float helpers serve only the AVX2 kernels) */
EE_INLINE EE_AVX2 v8 vmax8(v8 a, v8 b) { return (v8)_mm256_max_ps((__m256)a, (__m256)b); }
#endif
EE_INLINE v8 vsplat8(float x) { return (v8){0} + x; }

/* exp as in exp.c (Cephes polynomial, about 1 ulp) for the arguments of a softmax, x - max <= 0 (up to rounding):
 * no clamp above (exp.c's 88.38 never applies, so the bits are the same); arguments below -87.3 (and -inf, NaN) give
 * 0. Round to nearest by the 1.5 * 2^23 trick, exact for the clamped range. One body for 16- and 8-float vectors. */
#define VEXP_BODY(V, VI, max, splat)                                                                                   \
    const VI under = ~(x >= -87.33654f);                                                                               \
    x = max(x, splat(-87.33654f));                                                                                     \
    const V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;                                               \
    V r = x - n * 0.693359375f;                                                                                        \
    r = r - n * -2.12194440e-4f;                                                                                       \
    V p = splat(1.9875691500e-4f);                                                                                     \
    p = p * r + 1.3981999507e-3f;                                                                                      \
    p = p * r + 8.3334519073e-3f;                                                                                      \
    p = p * r + 4.1665795894e-2f;                                                                                      \
    p = p * r + 1.6666665459e-1f;                                                                                      \
    p = p * r + 5.0000001201e-1f;                                                                                      \
    p = p * (r * r) + (r + 1.0f);                                                                                      \
    const VI pow2n = (__builtin_convertvector(n, VI) + 127) << 23;                                                     \
    return (V)((VI)(p * (V)pow2n) & ~under);
EE_INLINE v16 vexp(v16 x) { VEXP_BODY(v16, v16i, vmax, vsplat) }
#if EE_X86
EE_INLINE EE_AVX2 v8 vexp8(v8 x) { VEXP_BODY(v8, v8i, vmax8, vsplat8) }
#endif

/* st[j] = sum_d k[j][d] qt[d] for j < nb (k rows ldk apart): kt keys per register tile */
EE_INLINE void slot_scores(v16* st, const float* k, size_t ldk, int nb, const v16* qt, int D, const int kt) {
    int j = 0;
    for (; j + kt <= nb; j += kt) {
        v16 acc[8];
        const float* kj = k + (size_t)j * ldk;
#pragma GCC unroll 8
        for (int kk = 0; kk < kt; kk++) acc[kk] = (v16){0};
        for (int d = 0; d < D; d++) {
            const v16 qd = qt[d];
#pragma GCC unroll 8
            for (int kk = 0; kk < kt; kk++) acc[kk] += kj[kk * ldk + d] * qd;
        }
#pragma GCC unroll 8
        for (int kk = 0; kk < kt; kk++) st[j + kk] = acc[kk];
    }
    for (; j < nb; j++) {
        const float* kj = k + (size_t)j * ldk;
        v16 a = (v16){0}; /* the same sum order as the tiles: a lane's result does not depend on the block */
        for (int d = 0; d < D; d++) a += kj[d] * qt[d];
        st[j] = a;
    }
}

/* ot[d] += sum_j v[j][d] pt[j] for d < D, j < nb (v rows ldv apart): dt head dims per register tile */
EE_INLINE void slot_accum(v16* ot, const v16* pt, const float* v, size_t ldv, int nb, int D, const int dt) {
    int d = 0;
    for (; d + dt <= D; d += dt) {
        v16 acc[8];
#pragma GCC unroll 8
        for (int dd = 0; dd < dt; dd++) acc[dd] = ot[d + dd];
        for (int j = 0; j < nb; j++) {
            const v16 p = pt[j];
            const float* vj = v + (size_t)j * ldv + d;
#pragma GCC unroll 8
            for (int dd = 0; dd < dt; dd++) acc[dd] += vj[dd] * p;
        }
#pragma GCC unroll 8
        for (int dd = 0; dd < dt; dd++) ot[d + dd] = acc[dd];
    }
    for (; d < D; d++) {
        v16 a = ot[d];
        for (int j = 0; j < nb; j++) a += v[(size_t)j * ldv + d] * pt[j];
        ot[d] = a;
    }
}

EE_INLINE void add_row16(float* dst, v16 a, int w) {
    if (w == LANES) {
        *(v16u*)dst = *(const v16u*)dst + a;
    } else {
        for (int l = 0; l < w; l++) dst[l] += a[l];
    }
}

/* dst[j][d] += sum_{s < ns} wt[j][s] rows[s][d] for j < nb, d < D (dst rows ldd apart; rows[s] holds DMAX / 16
 * vectors, zero past D): kt keys per register tile */
EE_INLINE void slot_rows(float* dst, size_t ldd, const v16* wt, const v16* rows, int ns, int nb, int D, const int kt) {
    for (int c = 0; c * LANES < D; c++) {
        const int w = ee_min(LANES, D - c * LANES);
        int j = 0;
        for (; j + kt <= nb; j += kt) {
            v16 acc[8];
#pragma GCC unroll 8
            for (int kk = 0; kk < kt; kk++) acc[kk] = (v16){0};
            for (int s = 0; s < ns; s++) {
                const v16 r = rows[s * (DMAX / LANES) + c];
#pragma GCC unroll 8
                for (int kk = 0; kk < kt; kk++) acc[kk] += wt[j + kk][s] * r;
            }
#pragma GCC unroll 8
            for (int kk = 0; kk < kt; kk++) add_row16(dst + (size_t)(j + kk) * ldd + c * LANES, acc[kk], w);
        }
        for (; j < nb; j++) {
            v16 a = (v16){0};
            for (int s = 0; s < ns; s++) a += wt[j][s] * rows[s * (DMAX / LANES) + c];
            add_row16(dst + (size_t)j * ldd + c * LANES, a, w);
        }
    }
}

/* scores of keys past a slot's last position become -inf (exp gives 0) */
EE_INLINE void slot_mask(v16* st, int j0, int nb, v16i lim) {
    const v16 ninf = vsplat(-INFINITY);
    for (int j = 0; j < nb; j++) st[j] = vsel((v16i){0} + (j0 + j) > lim, ninf, st[j]);
}

/*
 * Forward of one slot block: rows r (q, out rows q_width apart from the block's first row; positions pos[r]) times
 * heads h0 .. h0 + nh - 1, slot s = r * nh + (h - h0); k, v: the sequence's cache at the KV head, rows kv_width apart.
 */
EE_INLINE void fwd_block(float* out, float* lse, const float* q, const int32_t* pos, int nr, int h0, int nh, size_t q_width, int32_t n_heads, const float* k, const float* v, size_t kv_width, int D, float scale, const int kt, const int dt) {
    v16 qt[DMAX], ot[DMAX], st[KB];
    v16i lim = (v16i){0};
    const int ns = nr * nh;
    int min_lim = pos[0], max_lim = pos[0];
    for (int r = 0; r < nr; r++) min_lim = pos[r] < min_lim ? pos[r] : min_lim, max_lim = pos[r] > max_lim ? pos[r] : max_lim;
    for (int d = 0; d < D; d++) qt[d] = (v16){0}, ot[d] = (v16){0};
    for (int s = 0; s < LANES; s++) {
        if (s < ns) {
            const float* qs = q + (size_t)(s / nh) * q_width + (size_t)(h0 + s % nh) * D;
            for (int d = 0; d < D; d++) qt[d][s] = scale * qs[d];
            lim[s] = pos[s / nh];
        } else {
            lim[s] = max_lim; /* padding: zero scores, never written */
        }
    }
    v16 m = vsplat(-INFINITY), l = (v16){0};
    for (int j0 = 0; j0 <= max_lim; j0 += KB) {
        const int nb = ee_min(KB, max_lim + 1 - j0);
        slot_scores(st, k + (size_t)j0 * kv_width, kv_width, nb, qt, D, kt);
        if (j0 + nb - 1 > min_lim) slot_mask(st, j0, nb, lim);
        v16 bm = st[0];
        for (int j = 1; j < nb; j++) bm = vmax(bm, st[j]);
        const v16 mn = vmax(m, bm), corr = vexp(m - mn); /* 0 on the first block */
        v16 sum = (v16){0};
        for (int j = 0; j < nb; j++) sum += st[j] = vexp(st[j] - mn);
        l = l * corr + sum;
        if (j0) for (int d = 0; d < D; d++) ot[d] *= corr;
        slot_accum(ot, st, v + (size_t)j0 * kv_width, kv_width, nb, D, dt);
        m = mn;
    }
    const v16 inv = 1.0f / l;
    for (int s = 0; s < ns; s++) {
        const size_t o = (size_t)(s / nh) * q_width + (size_t)(h0 + s % nh) * D;
        for (int d = 0; d < D; d++) out[o + d] = ot[d][s] * inv[s];
        if (lse) lse[(size_t)(s / nh) * n_heads + h0 + s % nh] = m[s] + logf(l[s]);
    }
}

#define LANES_MAX_D 16 /* largest head_dim of the keys-in-lanes kernel */
#if EE_X86
#include <immintrin.h>

/* Keys in lanes: a chunk of LANE_KEYS keys (steps of 16 keys on AVX-512, 8 on AVX2) is transposed once (K and V
 * columns, 16 KiB at head_dim 16) and then read by every query of the KV head; at most LANE_QUERIES queries keep their
 * running state at a time. */
#define LANE_KEYS 128
#define LANE_QUERIES 16

/* t[d] = column d of 16 rows of 8 floats (row j at base + j * stride; rows from valid on are zeros, not read), keys in
 * lanes in order: rows j and j + 8 share a register, then the 8 x 8 transpose of unpacks and shuffles runs in both
 * 256-bit halves at once. */
EE_INLINE EE_AVX512 void transpose16x8(__m512* t, const float* base, size_t stride, int valid) {
    __m512 r[8], u[8], w[8];
    const float *lo = base, *hi = base + 8 * stride;
    for (int i = 0; i < 8; i++, lo += stride, hi += stride) {
        __asm__("" : "+r"(lo), "+r"(hi)); /* walk the rows: GCC would keep 16 row offsets in stack slots and reload them */
        const __m256 a = i < valid ? _mm256_loadu_ps(lo) : _mm256_setzero_ps(), b = i + 8 < valid ? _mm256_loadu_ps(hi) : _mm256_setzero_ps();
        r[i] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(a)), _mm256_castps_pd(b), 1));
    }
    for (int i = 0; i < 8; i += 2) u[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), u[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        w[i] = _mm512_shuffle_ps(u[i], u[i + 2], 0x44), w[i + 1] = _mm512_shuffle_ps(u[i], u[i + 2], 0xEE);
        w[i + 2] = _mm512_shuffle_ps(u[i + 1], u[i + 3], 0x44), w[i + 3] = _mm512_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
    }
    const __m512i low = _mm512_set_epi32(27, 26, 25, 24, 11, 10, 9, 8, 19, 18, 17, 16, 3, 2, 1, 0);
    const __m512i high = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 23, 22, 21, 20, 7, 6, 5, 4);
    for (int i = 0; i < 4; i++) t[i] = _mm512_permutex2var_ps(w[i], low, w[i + 4]), t[i + 4] = _mm512_permutex2var_ps(w[i], high, w[i + 4]);
}

/* t[d] = column d of 8 rows of 8 floats (row j at base + j * stride; rows from valid on are zeros, not read): the 8 x 8
 * transpose of unpacks, shuffles and 128-bit lane swaps. */
EE_INLINE EE_AVX2 void transpose8x8(__m256* t, const float* base, size_t stride, int valid) {
    __m256 r[8], u[8], w[8];
    const float* row = base;
    for (int i = 0; i < 8; i++, row += stride) {
        __asm__("" : "+r"(row)); /* walk the rows, as transpose16x8 */
        r[i] = i < valid ? _mm256_loadu_ps(row) : _mm256_setzero_ps();
    }
    for (int i = 0; i < 8; i += 2) u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        w[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44), w[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
        w[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44), w[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) t[i] = _mm256_permute2f128_ps(w[i], w[i + 4], 0x20), t[i + 4] = _mm256_permute2f128_ps(w[i], w[i + 4], 0x31);
}

EE_INLINE EE_AVX2 float hmax8(v8 a) {
    a = vmax8(a, __builtin_shuffle(a, (v8i){4, 5, 6, 7, 0, 1, 2, 3}));
    a = vmax8(a, __builtin_shuffle(a, (v8i){2, 3, 0, 1, 6, 7, 4, 5}));
    a = vmax8(a, __builtin_shuffle(a, (v8i){1, 0, 3, 2, 5, 4, 7, 6}));
    return a[0];
}

/* s[i] = the sum of v[i]'s 16 lanes, i < 8, by a tree of shuffles shared across the 8 vectors: each sum adds the same
 * lanes in the same order as _mm512_reduce_add_ps (lane j + j + 8, then + 4, + 2, + 1), so the same bits for a third
 * of the instructions. */
EE_INLINE EE_AVX512 void sum8x16(float* s, const __m512* v) {
    __m512 t[4], u[2];
    for (int i = 0; i < 4; i++) /* v[2i]'s 8 partial sums in the low half, v[2i + 1]'s in the high half */
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++) /* 128-bit chunk c: 4 partial sums of v[4i + c] */
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88), _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
    const __m512 p = _mm512_add_ps(_mm512_unpacklo_ps(u[0], u[1]), _mm512_unpackhi_ps(u[0], u[1]));
    const __m512 x = _mm512_add_ps(p, _mm512_permute_ps(p, 0x4E)); /* chunk c: v[c]'s sum, v[4 + c]'s sum, ... */
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    _mm256_storeu_ps(s, _mm512_castps512_ps256(_mm512_permutexvar_ps(order, x)));
}

/* The same for 8 vectors of 8 lanes, in hsum8's order (lane j + j + 4, then + 2, + 1) */
EE_INLINE EE_AVX2 void sum8x8(float* s, const __m256* v) {
    __m256 t[4], u[2];
    for (int i = 0; i < 4; i++) /* v[2i]'s 4 partial sums in the low 128 bits, v[2i + 1]'s in the high */
        t[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20), _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    for (int i = 0; i < 2; i++) /* per 128 bits: 2 partial sums of one vector, then 2 of another */
        u[i] = _mm256_add_ps(_mm256_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44), _mm256_shuffle_ps(t[2 * i], t[2 * i + 1], 0xEE));
    const __m256 x = _mm256_add_ps(_mm256_shuffle_ps(u[0], u[1], 0x88), _mm256_shuffle_ps(u[0], u[1], 0xDD)); /* v0 v2 v4 v6 | v1 v3 v5 v7 */
    _mm256_storeu_ps(s, _mm256_permutevar8x32_ps(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* The keys-in-lanes kernel, written once (cpu/attention_lanes.h) for 16 lanes on AVX-512 and 8 on AVX2. */
#define LV v16
#define LVI v16i
#define LW 16
#define LTARGET EE_AVX512
#define LNAME(x) x##_avx512
#define LEXP vexp
#define LSEL vsel
#define LMAX vmax
#define LSPLAT vsplat
#define LTRANSPOSE8(t, base, stride, valid) transpose16x8((__m512*)(t), base, stride, valid)
#define LREDUCE_MAX(a) _mm512_reduce_max_ps((__m512)(a))
#define LREDUCE_ADD(a) _mm512_reduce_add_ps((__m512)(a))
#define LREDUCE_ADD8(s, v) sum8x16(s, (const __m512*)(v))
#include "attention_lanes.h"

#define LV v8
#define LVI v8i
#define LW 8
#define LTARGET EE_AVX2
#define LNAME(x) x##_avx2
#define LEXP vexp8
#define LSEL vsel8
#define LMAX vmax8
#define LSPLAT vsplat8
#define LTRANSPOSE8(t, base, stride, valid) transpose8x8((__m256*)(t), base, stride, valid)
#define LREDUCE_MAX(a) hmax8(a)
#define LREDUCE_ADD(a) hsum8(a)
#define LREDUCE_ADD8(s, v) sum8x8(s, (const __m256*)(v))
#include "attention_lanes.h"
#endif

typedef struct {
    float *out, *lse;
    const float *q, *k_cache, *v_cache;
    const int32_t *row_seq, *row_pos;
    int32_t rows, n_heads, n_kv_heads, D, max_len, rows_per_item, head_chunks, heads_per_chunk;
    float scale;
    void (*attend)(ATTEND_ARGS); /* the per-(row, head) kernel of rows outside slot blocks */
    void (*attend_row)(ROW_ARGS); /* the per-row kernel of decode batches */
    void (*attend_chunk)(CHUNK_ARGS); /* the per-(row, chunk) kernel of decode rows with wide cache rows */
    int32_t* row_chunk0; /* decode rows: the first chunk item of row r; row_chunk0[rows] = the items */
    float* chunks;       /* decode rows: per chunk item n_heads * D partial outputs, then n_heads maxima and sums */
    /* the keys-in-lanes kernel of rows outside slot blocks (AVX-512 or AVX2, head_dim <= 16), or 0 */
    void (*lanes)(float* out, float* lse, const float* q, const int32_t* pos, int nr, int nh, size_t q_width, int32_t n_heads, const float* k, const float* v, size_t kv_width, int D, float scale);
} fwd_ctx;

/* Dynamic scheduling on the pool: each thread takes the next item from a shared counter, since items differ in work
 * (later positions attend to more keys). */
typedef struct {
    void (*item)(const void* ctx, int64_t i);
    const void* ctx;
    int64_t n;
    _Atomic int64_t next;
} dynamic_job;

static void dynamic_team(void* p, int tid, int nt) {
    dynamic_job* job = p;
    for (int64_t i; (i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed)) < job->n;) job->item(job->ctx, i);
}

static void parallel_dynamic(int nt, int64_t n, void (*item)(const void*, int64_t), const void* ctx) {
    if (nt <= 1 || n <= 1) {
        for (int64_t i = 0; i < n; i++) item(ctx, i);
        return;
    }
    dynamic_job job = {item, ctx, n, 0};
    ee_parallel(nt < n ? nt : (int)n, dynamic_team, &job);
}

/* Rows r0 .. r1 - 1 (of one sequence) times query heads h0 .. h0 + nh - 1 (one KV head's) outside a slot block */
static void attend_rows_heads(const fwd_ctx* c, int64_t r0, int64_t r1, int h0, int nh) {
    const int64_t D = c->D;
    const size_t q_width = (size_t)c->n_heads * D, kv_width = (size_t)c->n_kv_heads * D;
    const size_t kv = (size_t)c->row_seq[r0] * c->max_len * kv_width + (size_t)(h0 / (c->n_heads / c->n_kv_heads)) * D;
    if (c->lanes) {
        c->lanes(c->out + r0 * q_width + h0 * D, c->lse ? c->lse + r0 * c->n_heads + h0 : 0, c->q + r0 * q_width + h0 * D, c->row_pos + r0, (int)(r1 - r0), nh, q_width, c->n_heads, c->k_cache + kv, c->v_cache + kv, kv_width, (int)D, c->scale);
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        for (int h = h0; h < h0 + nh; h++)
            c->attend(c->out + r * q_width + h * D, c->lse ? c->lse + r * c->n_heads + h : 0, c->q + r * q_width + h * D, c->k_cache + kv, c->v_cache + kv, kv_width, c->row_pos[r] + 1, (int32_t)D, c->scale);
}

/* decode-like item = (row, head) */
static void fwd_row_head(const void* p, int64_t i) {
    const fwd_ctx* c = p;
    const int64_t r = i / c->n_heads;
    attend_rows_heads(c, r, r + 1, (int)(i % c->n_heads), 1);
}

/* decode item of a batch = one row, all heads */
static void fwd_row(const void* p, int64_t r) {
    const fwd_ctx* c = p;
    const size_t q_width = (size_t)c->n_heads * c->D, kv_width = (size_t)c->n_kv_heads * c->D;
    c->attend_row(c->out + r * q_width, c->lse ? c->lse + r * c->n_heads : 0, c->q + r * q_width, c->k_cache + (size_t)c->row_seq[r] * c->max_len * kv_width,
        c->v_cache + (size_t)c->row_seq[r] * c->max_len * kv_width, kv_width, c->row_pos[r] + 1, c->n_heads, c->n_heads / c->n_kv_heads, c->D, c->scale);
}

/* decode item = one chunk of one row, all heads (rows found by bisection of row_chunk0) */
static void fwd_row_chunk(const void* p, int64_t i) {
    const fwd_ctx* c = p;
    int32_t lo = 0, hi = c->rows - 1;
    while (lo < hi) {
        const int32_t mid = (lo + hi + 1) / 2;
        if (c->row_chunk0[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    const int32_t r = lo, p0 = (int32_t)(i - c->row_chunk0[r]) * ROW_CHUNK, p1 = ee_min(c->row_pos[r] + 1, p0 + ROW_CHUNK);
    const size_t q_width = (size_t)c->n_heads * c->D, kv_width = (size_t)c->n_kv_heads * c->D, seq = (size_t)c->row_seq[r] * c->max_len * kv_width;
    float* part = c->chunks + (size_t)i * (q_width + 2 * c->n_heads);
    c->attend_chunk(part, part + q_width, part + q_width + c->n_heads, c->q + r * q_width, c->k_cache + seq, c->v_cache + seq, kv_width, p0, p1, c->n_heads, c->n_heads / c->n_kv_heads, c->D, c->scale);
}

/* out and lse of row r from its chunks, in chunk order */
static void combine_chunks(const fwd_ctx* c, int32_t r) {
    const int32_t H = c->n_heads, D = c->D, n = c->row_chunk0[r + 1] - c->row_chunk0[r];
    const size_t q_width = (size_t)H * D, width = q_width + 2 * (size_t)H;
    const float* first = c->chunks + (size_t)c->row_chunk0[r] * width;
    for (int32_t h = 0; h < H; h++) {
        float m = -INFINITY, l = 0.0f;
        for (int32_t j = 0; j < n; j++) m = first[j * width + q_width + h] > m ? first[j * width + q_width + h] : m;
        float* o = c->out + r * q_width + (size_t)h * D;
        for (int32_t d = 0; d < D; d++) o[d] = 0.0f;
        for (int32_t j = 0; j < n; j++) {
            const float* part = first + j * width;
            const float w = expf(part[q_width + h] - m);
            l += w * part[q_width + H + h];
            for (int32_t d = 0; d < D; d++) o[d] += w * part[(size_t)h * D + d];
        }
        const float inv = 1.0f / l;
        for (int32_t d = 0; d < D; d++) o[d] *= inv;
        if (c->lse) c->lse[(size_t)r * H + h] = m + logf(l);
    }
}

/* item of the keys-in-lanes kernel = (row, KV head): the rows of one sequence from a row at a run's start or at a
 * multiple of LANE_ROWS up to the next such row are taken by that row's item (the others have nothing to do), so
 * that their queries share the transposed keys and a long run (a prompt) still spreads over the threads */
#define LANE_ROWS 8
static void fwd_run_kv_head(const void* p, int64_t i) {
    const fwd_ctx* c = p;
    const int64_t r0 = i / c->n_kv_heads;
    if (r0 > 0 && r0 % LANE_ROWS != 0 && c->row_seq[r0 - 1] == c->row_seq[r0]) return;
    int64_t r1 = r0 + 1;
    while (r1 < c->rows && r1 % LANE_ROWS != 0 && c->row_seq[r1] == c->row_seq[r0]) r1++;
    const int group = c->n_heads / c->n_kv_heads;
    attend_rows_heads(c, r0, r1, (int)(i % c->n_kv_heads) * group, group);
}

/* item = (chunk of rows_per_item rows, KV head, chunk of its query heads); the rows split where the sequence changes */
EE_INLINE void fwd_item(const fwd_ctx* c, int64_t item, const int kt, const int dt) {
    const int group = c->n_heads / c->n_kv_heads, D = c->D;
    const int hc = (int)(item % c->head_chunks), kvh = (int)(item / c->head_chunks % c->n_kv_heads);
    const int r_begin = (int)(item / c->head_chunks / c->n_kv_heads) * c->rows_per_item, r_end = ee_min(c->rows, r_begin + c->rows_per_item);
    const int h0 = kvh * group + hc * c->heads_per_chunk, nh = ee_min(c->heads_per_chunk, (kvh + 1) * group - h0);
    const size_t q_width = (size_t)c->n_heads * D, kv_width = (size_t)c->n_kv_heads * D;
    for (int r0 = r_begin, r1; r0 < r_end; r0 = r1) {
        for (r1 = r0 + 1; r1 < r_end && c->row_seq[r1] == c->row_seq[r0];) r1++;
        const size_t kv = (size_t)c->row_seq[r0] * c->max_len * kv_width + (size_t)kvh * D;
        if ((r1 - r0) * nh >= MIN_SLOTS && D <= DMAX) {
            fwd_block(c->out + r0 * q_width, c->lse ? c->lse + (size_t)r0 * c->n_heads : 0, c->q + r0 * q_width, c->row_pos + r0, r1 - r0, h0, nh, q_width, c->n_heads, c->k_cache + kv, c->v_cache + kv, kv_width, D, c->scale, kt, dt);
        } else {
            attend_rows_heads(c, r0, r1, h0, nh);
        }
    }
}

static void fwd_item_base(const void* c, int64_t item) { fwd_item(c, item, 2, 2); }
EE_AVX2 static void fwd_item_avx2(const void* c, int64_t item) { fwd_item(c, item, 4, 4); }
EE_AVX512 static void fwd_item_avx512(const void* c, int64_t item) { fwd_item(c, item, 8, 8); }

/* decode rows by chunks of keys: the chunk items in parallel, then each row's combination */
static int32_t fwd_rows_chunked(fwd_ctx* c, int nt) {
    const ee_cpu* cpu = ee_cpu_get();
    c->attend_chunk = cpu->avx512 ? attend_chunk_avx512 : cpu->avx2 ? attend_chunk_avx2 : attend_chunk_base;
    int64_t items = 0;
    for (int32_t r = 0; r < c->rows; r++) items += ee_ceil_div(c->row_pos[r] + 1, ROW_CHUNK);
    /* one block: the chunks' partial results, then the index of each row's first chunk */
    const size_t width = (size_t)c->n_heads * c->D + 2 * (size_t)c->n_heads;
    c->chunks = malloc((size_t)items * width * sizeof(float) + ((size_t)c->rows + 1) * sizeof(int32_t));
    if (!c->chunks) return ee_fail("ee_attention_fwd: out of memory for %lld key chunks", (long long)items);
    c->row_chunk0 = (int32_t*)(c->chunks + (size_t)items * width);
    for (int32_t r = 0, at = 0; r <= c->rows; r++) {
        c->row_chunk0[r] = at;
        if (r < c->rows) at += (int32_t)ee_ceil_div(c->row_pos[r] + 1, ROW_CHUNK);
    }
    parallel_dynamic(nt, items, fwd_row_chunk, c);
    for (int32_t r = 0; r < c->rows; r++) combine_chunks(c, r);
    free(c->chunks);
    return 0;
}

/* heads of a group per slot block (<= LANES, near-equal chunks) and rows per block */
static void slot_shape(int group, int* head_chunks, int* heads_per_chunk, int* rows_per_block) {
    *head_chunks = (group + LANES - 1) / LANES;
    *heads_per_chunk = (group + *head_chunks - 1) / *head_chunks;
    *rows_per_block = LANES / *heads_per_chunk;
}

int32_t ee_attention_rows_alike(int32_t n_heads, int32_t n_kv_heads, int32_t head_dim) {
#if EE_X86
    const ee_cpu* cpu = ee_cpu_get();
    if (head_dim > LANES_MAX_D || n_kv_heads <= 0 || n_heads % n_kv_heads || !(cpu->avx512 || cpu->avx2)) return 0;
    return cpu->avx512 ? LANES_ALIKE_ROWS : INT32_MAX; /* AVX2: every row of tiny heads takes the keys-in-lanes kernel */
#else
    (void)n_heads, (void)n_kv_heads, (void)head_dim;
    return 0;
#endif
}

EE_API int32_t ee_attention_fwd(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t n_seq, int32_t max_len, float scale) {
    if (rows < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_seq <= 0 || max_len <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_fwd: bad shape (heads %d, kv heads %d, head_dim %d, n_seq %d, max_len %d)", n_heads, n_kv_heads, head_dim, n_seq, max_len);
    if (rows == 0) return 0;
    if (!out || !q || !k_cache || !v_cache || !row_seq || !row_pos) return ee_fail("ee_attention_fwd: null pointer");
    double keys = 0.0;
    int32_t runs = 0, longest = 0; /* maximal groups of consecutive rows of one sequence, the most rows of one */
    for (int32_t r = 0, run = 0; r < rows; r++) {
        if (row_seq[r] < 0 || row_seq[r] >= n_seq) return ee_fail_index(EE_BAD_ATTENTION_SEQ, r, row_seq[r], n_seq, "");
        if (row_pos[r] < 0 || row_pos[r] >= max_len) return ee_fail_index(EE_BAD_ATTENTION_POS, r, row_pos[r], max_len, "");
        keys += row_pos[r] + 1;
        const int starts = r == 0 || row_seq[r] != row_seq[r - 1];
        runs += starts;
        run = starts ? 1 : run + 1;
        if (run > longest) longest = run;
    }
    fwd_ctx c = {.out = out, .lse = lse, .q = q, .k_cache = k_cache, .v_cache = v_cache, .row_seq = row_seq, .row_pos = row_pos, .rows = rows, .n_heads = n_heads,
        .n_kv_heads = n_kv_heads, .D = head_dim, .max_len = max_len, .scale = scale};
    slot_shape(n_heads / n_kv_heads, &c.head_chunks, &c.heads_per_chunk, &c.rows_per_item);
    const ee_cpu* cpu = ee_cpu_get();
    c.attend = cpu->avx512 ? attend_avx512 : cpu->avx2 ? attend_avx2 : attend_base;
#if EE_X86
    if (head_dim <= LANES_MAX_D) c.lanes = cpu->avx512 ? attend_lanes_avx512 : cpu->avx2 ? attend_lanes_avx2 : 0;
#endif
    /* On AVX2 the slot path of tiny heads is an order of magnitude slower than the keys-in-lanes kernel (3 rows of
     * stories260K at position 200: 76 against 7.6 us on AVX-512's slot path; lanes on AVX2 1 row 2.9, 2 rows 4.8), so
     * there every row takes the lanes kernel. */
    if (head_dim > DMAX || (c.lanes && (!cpu->avx512 || longest <= LANES_ALIKE_ROWS)) || (!c.lanes && (int64_t)rows * c.heads_per_chunk < (int64_t)MIN_SLOTS * runs)) {
        /* decode-like (about one row per sequence): with the lanes kernel (rows, KV head) per task; wide cache rows
         * by chunks of keys (attend_chunk); else one (row, head) per task, the heads of a row after another so that a
         * sequence's cache rows are used while they are in cache, and a batch with at least two rows per thread a row
         * with all its heads per task (attend_row: whole K/V rows; 2-core Zen 2, 15M, batch 8 decode 1.09-1.11x,
         * docs/benchmarks.md) */
        const int nt = ee_threads_for(4.0 * keys * n_heads * head_dim);
        if (c.lanes) parallel_dynamic(nt, (int64_t)rows * n_kv_heads, fwd_run_kv_head, &c);
        else if (n_heads <= ROW_MAX_HEADS && (size_t)n_kv_heads * head_dim >= WIDE_KV_ROW) return fwd_rows_chunked(&c, nt);
        else if (rows >= 2 * nt && n_heads <= ROW_MAX_HEADS) {
            c.attend_row = cpu->avx512 ? attend_row_avx512 : cpu->avx2 ? attend_row_avx2 : attend_row_base;
            parallel_dynamic(nt, rows, fwd_row, &c);
        } else parallel_dynamic(nt, (int64_t)rows * n_heads, fwd_row_head, &c);
        return 0;
    }
    void (*item_any)(const void*, int64_t) = cpu->avx512 ? fwd_item_avx512 : cpu->avx2 ? fwd_item_avx2 : fwd_item_base;
    const int64_t items = (int64_t)ee_ceil_div(rows, c.rows_per_item) * n_kv_heads * c.head_chunks;
    /* later positions attend to more keys: dynamic scheduling balances the causal triangle */
    parallel_dynamic(ee_threads_for(4.0 * keys * n_heads * head_dim), items, item_any, &c);
    return 0;
}

/*
 * Backward of one slot block (rows t0 .. t0 + nr - 1 of one sequence, heads h0 .. h0 + nh - 1 of one KV head; all
 * pointers at the sequence's first row and the KV head). P = exp(s - lse) with s = scale q.k, Dv = dout.out:
 * dS = P (dout.v - Dv); dq = scale dS K (written), dk += scale dS^T Q, dv += P^T dout.
 */
EE_INLINE void bwd_block(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int t0, int nr, int h0, int nh, size_t q_width, size_t kv_width, int32_t n_heads, int D, float scale, const int kt, const int dt) {
    v16 qt[DMAX], gt[DMAX], dqt[DMAX], qr[LANES * DMAX / LANES], gr[LANES * DMAX / LANES], pt[KB], dst[KB];
    v16 lsev = vsplat(INFINITY), dvec = (v16){0};
    v16i lim = (v16i){0};
    const int ns = nr * nh, max_lim = t0 + nr - 1;
    for (int d = 0; d < D; d++) qt[d] = gt[d] = dqt[d] = (v16){0};
    for (int s = 0; s < ns; s++) {
        const size_t o = (size_t)(t0 + s / nh) * q_width + (size_t)(h0 + s % nh) * D;
        float* qs = (float*)(qr + s * (DMAX / LANES));
        float* gs = (float*)(gr + s * (DMAX / LANES));
        float dsum = 0.0f;
        for (int d = 0; d < D; d++) {
            qt[d][s] = qs[d] = scale * q[o + d];
            gt[d][s] = gs[d] = dout[o + d];
            dsum += dout[o + d] * out[o + d];
        }
        for (int d = D; d < ee_ceil_div(D, LANES) * LANES; d++) qs[d] = gs[d] = 0.0f;
        dvec[s] = dsum;
        lsev[s] = lse[(size_t)(t0 + s / nh) * n_heads + h0 + s % nh];
        lim[s] = t0 + s / nh;
    }
    for (int s = ns; s < LANES; s++) lim[s] = max_lim; /* padding: lse = inf gives P = 0 */
    for (int j0 = 0; j0 <= max_lim; j0 += KB) {
        const int nb = ee_min(KB, max_lim + 1 - j0);
        const float *kj = k + (size_t)j0 * kv_width, *vj = v + (size_t)j0 * kv_width;
        slot_scores(pt, kj, kv_width, nb, qt, D, kt);
        slot_scores(dst, vj, kv_width, nb, gt, D, kt);
        if (j0 + nb - 1 > t0) slot_mask(pt, j0, nb, lim);
        for (int j = 0; j < nb; j++) {
            const v16 p = vexp(pt[j] - lsev);
            pt[j] = p;
            dst[j] = p * (dst[j] - dvec);
        }
        slot_accum(dqt, dst, kj, kv_width, nb, D, dt);
        slot_rows(dk + (size_t)j0 * kv_width, kv_width, dst, qr, ns, nb, D, kt);
        slot_rows(dv + (size_t)j0 * kv_width, kv_width, pt, gr, ns, nb, D, kt);
    }
    for (int s = 0; s < ns; s++) {
        float* dqs = dq + (size_t)(t0 + s / nh) * q_width + (size_t)(h0 + s % nh) * D;
        for (int d = 0; d < D; d++) dqs[d] = scale * dqt[d][s];
    }
}

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *out, *lse, *q, *k, *v;
    int32_t seq, n_heads, n_kv_heads, D, rows_per_block, head_chunks, heads_per_chunk;
    float scale;
    void (*attend_bwd)(ATTEND_BWD_ARGS); /* the kernel for head_dim > DMAX */
} bwd_ctx;

/* task = (batch, KV head): it owns the dk/dv rows of that KV head and the dq rows of the heads sharing it */
EE_INLINE void bwd_task(const bwd_ctx* c, int64_t task, const int kt, const int dt) {
    const int group = c->n_heads / c->n_kv_heads, D = c->D;
    const int64_t b = task / c->n_kv_heads, kvh = task % c->n_kv_heads;
    const size_t q_width = (size_t)c->n_heads * D, kv_width = (size_t)c->n_kv_heads * D;
    const size_t qo = (size_t)b * c->seq * q_width, kv = (size_t)b * c->seq * kv_width + (size_t)kvh * D;
    for (int hc = 0; hc < c->head_chunks; hc++) {
        const int h0 = (int)kvh * group + hc * c->heads_per_chunk, nh = ee_min(c->heads_per_chunk, (int)(kvh + 1) * group - h0);
        for (int t0 = 0; t0 < c->seq; t0 += c->rows_per_block)
            bwd_block(c->dq + qo, c->dk + kv, c->dv + kv, c->dout + qo, c->out + qo, c->lse + (size_t)b * c->seq * c->n_heads, c->q + qo, c->k + kv, c->v + kv, t0, ee_min(c->rows_per_block, c->seq - t0), h0, nh, q_width, kv_width, c->n_heads, D, c->scale, kt, dt);
    }
}

static void bwd_task_base(const void* c, int64_t task) { bwd_task(c, task, 2, 2); }
EE_AVX2 static void bwd_task_avx2(const void* c, int64_t task) { bwd_task(c, task, 4, 4); }
EE_AVX512 static void bwd_task_avx512(const void* c, int64_t task) { bwd_task(c, task, 8, 8); }

/* the same task for head_dim > DMAX: one head at a time */
static void bwd_task_wide(const void* p, int64_t task) {
    const bwd_ctx* c = p;
    const int32_t group = c->n_heads / c->n_kv_heads, D = c->D, seq = c->seq, n_heads = c->n_heads;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)c->n_kv_heads * D;
    const int64_t b = task / c->n_kv_heads, kvh = task % c->n_kv_heads;
    const size_t kv = (size_t)b * seq * kv_width + (size_t)kvh * D;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
        const size_t qo = (size_t)b * seq * q_width + (size_t)h * D;
        c->attend_bwd(c->dq + qo, c->dk + kv, c->dv + kv, c->dout + qo, c->out + qo, c->lse + (size_t)b * seq * n_heads + h, c->q + qo, c->k + kv, c->v + kv, seq, q_width, kv_width, n_heads, D, c->scale);
    }
}

EE_API int32_t ee_attention_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t batch, int32_t seq, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, float scale) {
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_bwd: bad shape (heads %d, kv heads %d, head_dim %d)", n_heads, n_kv_heads, head_dim);
    if (batch == 0 || seq == 0) return 0;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v) return ee_fail("ee_attention_bwd: null pointer");
    const int32_t group = n_heads / n_kv_heads, D = head_dim;
    const ee_cpu* cpu = ee_cpu_get();
    const double work = 10.0 * batch * n_heads * D * 0.5 * seq * (seq + 1.0);
    bwd_ctx c = {dq, dk, dv, dout, out, lse, q, k, v, seq, n_heads, n_kv_heads, D, 0, 0, 0, scale, 0};
    if (D <= DMAX) {
        slot_shape(group, &c.head_chunks, &c.heads_per_chunk, &c.rows_per_block);
        void (*task_any)(const void*, int64_t) = cpu->avx512 ? bwd_task_avx512 : cpu->avx2 ? bwd_task_avx2 : bwd_task_base;
        parallel_dynamic(ee_threads_for(work), (int64_t)batch * n_kv_heads, task_any, &c);
        return 0;
    }
    c.attend_bwd = cpu->avx512 ? attend_bwd_avx512 : cpu->avx2 ? attend_bwd_avx2 : attend_bwd_base;
    parallel_dynamic(ee_threads_for(work), (int64_t)batch * n_kv_heads, bwd_task_wide, &c);
    return 0;
}
