/*
 * Causal grouped-query attention: the forward against a KV cache (packed rows of any sequences and positions), the
 * backward for dense batches (recomputing probabilities from the forward's log-sum-exp), and the cache row moves.
 */
#include <math.h>

#include "internal.h"

/* The kernels below are written once as always-inline bodies and instantiated for the baseline, AVX2 and AVX-512
 * (see the *_any dispatchers), so that the compiler vectorises their head_dim loops for the CPU at hand. */

EE_INLINE float dot(const float* a, const float* b, int32_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int32_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

EE_INLINE void axpy(float* y, float alpha, const float* x, int32_t n) {
#pragma omp simd
    for (int32_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Keys are scored a block at a time; the running max/sum (online softmax) rescales the output once per block. */
#define KEY_BLOCK 64

/* out = softmax(scale q.K^T) V over n_keys keys, K and V rows kv_width apart; writes the log-sum-exp when asked */
EE_INLINE void attend(float* out, float* lse, const float* q, const float* k, const float* v, size_t kv_width, int32_t n_keys, int32_t D, float scale) {
    float running_max = -INFINITY, running_sum = 0.0f, score[KEY_BLOCK];
    for (int32_t i = 0; i < D; i++) out[i] = 0.0f;
    for (int32_t p0 = 0; p0 < n_keys; p0 += KEY_BLOCK) {
        const int32_t nb = ee_min(KEY_BLOCK, n_keys - p0);
        float block_max = -INFINITY;
        for (int32_t j = 0; j < nb; j++) {
            score[j] = scale * dot(q, k + (p0 + j) * kv_width, D);
            block_max = fmaxf(block_max, score[j]);
        }
        const float new_max = fmaxf(running_max, block_max);
        const float correction = expf(running_max - new_max); /* 0 on the first block */
        running_sum *= correction;
        for (int32_t i = 0; i < D; i++) out[i] *= correction;
        running_sum += (float)ee_row_exp(score, score, nb, new_max, 1.0f, 1.0f);
        for (int32_t j = 0; j < nb; j++) axpy(out, score[j], v + (p0 + j) * kv_width, D);
        running_max = new_max;
    }
    const float inv_sum = 1.0f / running_sum;
    for (int32_t i = 0; i < D; i++) out[i] *= inv_sum;
    if (lse) *lse = running_max + logf(running_sum);
}

#define ATTEND_ARGS float *out, float *lse, const float *q, const float *k, const float *v, size_t kv_width, int32_t n_keys, int32_t D, float scale
static void attend_base(ATTEND_ARGS) { attend(out, lse, q, k, v, kv_width, n_keys, D, scale); }
EE_AVX2 static void attend_avx2(ATTEND_ARGS) { attend(out, lse, q, k, v, kv_width, n_keys, D, scale); }
EE_AVX512 static void attend_avx512(ATTEND_ARGS) { attend(out, lse, q, k, v, kv_width, n_keys, D, scale); }

EE_API int32_t ee_attention_fwd(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t max_len, float scale) {
    if (rows < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || max_len <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_fwd: bad shape (heads %d, kv heads %d, head_dim %d, max_len %d)", n_heads, n_kv_heads, head_dim, max_len);
    if (rows == 0) return 0;
    if (!out || !q || !k_cache || !v_cache || !row_seq || !row_pos) return ee_fail("ee_attention_fwd: null pointer");
    const int32_t group = n_heads / n_kv_heads, D = head_dim;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)n_kv_heads * D;
    const ee_cpu* cpu = ee_cpu_get();
    void (*attend_any)(ATTEND_ARGS) = cpu->avx512 ? attend_avx512 : cpu->avx2 ? attend_avx2 : attend_base;
    double keys = 0.0;
    for (int32_t r = 0; r < rows; r++) {
        if (row_seq[r] < 0 || row_pos[r] < 0 || row_pos[r] >= max_len)
            return ee_fail("ee_attention_fwd: row %d has sequence %d, position %d (max_len %d)", r, row_seq[r], row_pos[r], max_len);
        keys += row_pos[r] + 1;
    }
    /* later positions attend to more keys: dynamic scheduling balances the causal triangle */
    EE_PARALLEL_FOR_DYNAMIC(ee_threads_for(4.0 * keys * n_heads * D), i, (int64_t)rows * n_heads, {
        const int64_t r = i / n_heads, h = i % n_heads;
        const size_t kv = (size_t)row_seq[r] * max_len * kv_width + (size_t)(h / group) * D;
        attend_any(out + r * q_width + h * D, lse ? lse + i : 0, q + r * q_width + h * D, k_cache + kv, v_cache + kv, kv_width, row_pos[r] + 1, D, scale);
    });
    return 0;
}

/*
 * FlashAttention-style backward of one query head of one sequence (rows q_width apart, its kv head's rows kv_width
 * apart). With P = exp(scale q.k - lse) and D = dout.out for a query row: dS = P * (dout.v - D);
 * dq = scale * sum dS k; dk += scale * dS q; dv += P dout.
 */
EE_INLINE void attend_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t seq, size_t q_width, size_t kv_width, int32_t n_heads, int32_t D, float scale) {
    for (int32_t t = 0; t < seq; t++) {
        const size_t qt = (size_t)t * q_width;
        const float *qh = q + qt, *g = dout + qt;
        const float row_lse = lse[(size_t)t * n_heads], row_d = dot(g, out + qt, D);
        float* dqh = dq + qt;
        for (int32_t i = 0; i < D; i++) dqh[i] = 0.0f;
        for (int32_t j = 0; j <= t; j++) {
            const size_t kj = (size_t)j * kv_width;
            const float p = expf(scale * dot(qh, k + kj, D) - row_lse);
            const float ds = p * (dot(g, v + kj, D) - row_d);
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

/* One (batch, kv head) pair per task: the task owns its dk/dv slices and the dq rows of the heads sharing them. */
EE_API int32_t ee_attention_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t batch, int32_t seq, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, float scale) {
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_bwd: bad shape (heads %d, kv heads %d, head_dim %d)", n_heads, n_kv_heads, head_dim);
    if (batch == 0 || seq == 0) return 0;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v) return ee_fail("ee_attention_bwd: null pointer");
    const int32_t group = n_heads / n_kv_heads, D = head_dim;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)n_kv_heads * D;
    const ee_cpu* cpu = ee_cpu_get();
    void (*attend_bwd_any)(ATTEND_BWD_ARGS) = cpu->avx512 ? attend_bwd_avx512 : cpu->avx2 ? attend_bwd_avx2 : attend_bwd_base;
    const double work = 10.0 * batch * n_heads * D * 0.5 * seq * (seq + 1.0);
    EE_PARALLEL_FOR_DYNAMIC(ee_threads_for(work), task, (int64_t)batch * n_kv_heads, {
        const int64_t b = task / n_kv_heads, kvh = task % n_kv_heads;
        const size_t kv = (size_t)b * seq * kv_width + (size_t)kvh * D;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            const size_t qo = (size_t)b * seq * q_width + (size_t)h * D;
            attend_bwd_any(dq + qo, dk + kv, dv + kv, dout + qo, out + qo, lse + (size_t)b * seq * n_heads + h, q + qo, k + kv, v + kv, seq, q_width, kv_width, n_heads, D, scale);
        }
    });
    return 0;
}

EE_API int32_t ee_kv_write(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t width, int32_t max_len) {
    if (rows < 0 || width < 0 || max_len <= 0) return ee_fail("ee_kv_write: bad shape");
    if (rows == 0 || width == 0) return 0;
    if (!cache || !src || !row_seq || !row_pos) return ee_fail("ee_kv_write: null pointer");
    for (int32_t r = 0; r < rows; r++)
        if (row_seq[r] < 0 || row_pos[r] < 0 || row_pos[r] >= max_len)
            return ee_fail("ee_kv_write: row %d has sequence %d, position %d (max_len %d)", r, row_seq[r], row_pos[r], max_len);
    for (int32_t r = 0; r < rows; r++)
        memcpy(cache + ((size_t)row_seq[r] * max_len + row_pos[r]) * width, src + (size_t)r * width, (size_t)width * sizeof(float));
    return 0;
}

/* memmove: compacting in place (dst == src, idx[r] >= r) is a natural use. */
EE_API int32_t ee_gather_rows(float* dst, const float* src, const int32_t* idx, int32_t rows, int32_t width) {
    if (rows < 0 || width < 0) return ee_fail("ee_gather_rows: negative size");
    if (rows == 0 || width == 0) return 0;
    if (!dst || !src || !idx) return ee_fail("ee_gather_rows: null pointer");
    for (int32_t r = 0; r < rows; r++)
        if (idx[r] < 0) return ee_fail("ee_gather_rows: idx[%d] = %d is negative", r, idx[r]);
    for (int32_t r = 0; r < rows; r++)
        memmove(dst + (size_t)r * width, src + (size_t)idx[r] * width, (size_t)width * sizeof(float));
    return 0;
}
