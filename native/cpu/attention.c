/*
 * Causal grouped-query attention: the forward against a KV cache (packed rows of any sequences and positions), the
 * backward for dense batches (recomputing probabilities from the forward's log-sum-exp), and the cache row moves.
 */
#include <math.h>

#include "internal.h"

static inline float dot(const float* a, const float* b, int32_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int32_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float* y, float alpha, const float* x, int32_t n) {
#pragma omp simd
    for (int32_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Keys are scored a block at a time; the running max/sum (online softmax) rescales the output once per block. */
#define KEY_BLOCK 64

EE_API int32_t ee_attention_fwd(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t max_len, float scale) {
    if (rows < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || max_len <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_fwd: bad shape (heads %d, kv heads %d, head_dim %d, max_len %d)", n_heads, n_kv_heads, head_dim, max_len);
    if (rows == 0) return 0;
    if (!out || !q || !k_cache || !v_cache || !row_seq || !row_pos) return ee_fail("ee_attention_fwd: null pointer");
    const int32_t group = n_heads / n_kv_heads, D = head_dim;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)n_kv_heads * D;
    double keys = 0.0;
    for (int32_t r = 0; r < rows; r++) {
        if (row_seq[r] < 0 || row_pos[r] < 0 || row_pos[r] >= max_len)
            return ee_fail("ee_attention_fwd: row %d has sequence %d, position %d (max_len %d)", r, row_seq[r], row_pos[r], max_len);
        keys += row_pos[r] + 1;
    }
    /* later positions attend to more keys: dynamic scheduling balances the causal triangle */
#pragma omp parallel for collapse(2) schedule(dynamic, 4) num_threads(ee_threads_for(4.0 * keys * n_heads * D))
    for (int32_t r = 0; r < rows; r++) {
        for (int32_t h = 0; h < n_heads; h++) {
            const float* qh = q + r * q_width + (size_t)h * D;
            const size_t base = (size_t)row_seq[r] * max_len * kv_width + (size_t)(h / group) * D;
            const float* kh = k_cache + base;
            const float* vh = v_cache + base;
            float* o = out + r * q_width + (size_t)h * D;
            const int32_t n_keys = row_pos[r] + 1;
            float running_max = -INFINITY, running_sum = 0.0f, score[KEY_BLOCK];
            for (int32_t i = 0; i < D; i++) o[i] = 0.0f;
            for (int32_t p0 = 0; p0 < n_keys; p0 += KEY_BLOCK) {
                const int32_t nb = ee_min(KEY_BLOCK, n_keys - p0);
                float block_max = -INFINITY;
                for (int32_t j = 0; j < nb; j++) {
                    score[j] = scale * dot(qh, kh + (p0 + j) * kv_width, D);
                    block_max = fmaxf(block_max, score[j]);
                }
                float new_max = fmaxf(running_max, block_max);
                float correction = expf(running_max - new_max); /* 0 on the first block */
                running_sum *= correction;
                for (int32_t i = 0; i < D; i++) o[i] *= correction;
                for (int32_t j = 0; j < nb; j++) {
                    float e = expf(score[j] - new_max);
                    running_sum += e;
                    axpy(o, e, vh + (p0 + j) * kv_width, D);
                }
                running_max = new_max;
            }
            float inv_sum = 1.0f / running_sum;
            for (int32_t i = 0; i < D; i++) o[i] *= inv_sum;
            if (lse) lse[(size_t)r * n_heads + h] = running_max + logf(running_sum);
        }
    }
    return 0;
}

/*
 * FlashAttention-style backward, one (batch, kv head) pair per task so that the task owns its dk/dv slices and the dq
 * rows of the query heads sharing that kv head. With P = exp(scale q.k - lse) and D = dout.out for a query row:
 * dS = P * (dout.v - D); dq = scale * sum dS k; dk += scale * dS q; dv += P dout.
 */
EE_API int32_t ee_attention_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t batch, int32_t seq, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, float scale) {
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_bwd: bad shape (heads %d, kv heads %d, head_dim %d)", n_heads, n_kv_heads, head_dim);
    if (batch == 0 || seq == 0) return 0;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v) return ee_fail("ee_attention_bwd: null pointer");
    const int32_t group = n_heads / n_kv_heads, D = head_dim;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)n_kv_heads * D;
    const double work = 10.0 * batch * n_heads * D * 0.5 * seq * (seq + 1.0);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(ee_threads_for(work))
    for (int32_t b = 0; b < batch; b++) {
        for (int32_t kvh = 0; kvh < n_kv_heads; kvh++) {
            const size_t kv_off = (size_t)b * seq * kv_width + (size_t)kvh * D;
            for (int32_t h = kvh * group; h < (kvh + 1) * group; h++) {
                for (int32_t t = 0; t < seq; t++) {
                    const size_t row = (size_t)b * seq + t, q_off = row * q_width + (size_t)h * D;
                    const float *qh = q + q_off, *g = dout + q_off;
                    float* dqh = dq + q_off;
                    const float row_lse = lse[row * n_heads + h], row_d = dot(g, out + q_off, D);
                    for (int32_t i = 0; i < D; i++) dqh[i] = 0.0f;
                    for (int32_t j = 0; j <= t; j++) {
                        const size_t kv = kv_off + (size_t)j * kv_width;
                        float p = expf(scale * dot(qh, k + kv, D) - row_lse);
                        float ds = p * (dot(g, v + kv, D) - row_d);
                        axpy(dqh, ds, k + kv, D);
                        axpy(dk + kv, scale * ds, qh, D);
                        axpy(dv + kv, p, g, D);
                    }
                    for (int32_t i = 0; i < D; i++) dqh[i] *= scale;
                }
            }
        }
    }
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
