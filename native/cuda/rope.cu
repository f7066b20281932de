/* Rotary position embedding, in place; the backward is the rotation by the negative angle (CPU twin: cpu/rope.c). */
#include "common.cuh"
#include "rope.h"

#define THREADS 256

/* The rotation of pair i at position pos: the angle and its sine/cosine in double, as the CPU library computes them */
__device__ __forceinline__ void rope_cos_sin(int pos, float inv_freq, double sign, float* c, float* s) {
    double sn, cs;
    sincos((double)pos * inv_freq, &sn, &cs);
    *c = (float)cs;
    *s = (float)(sign * sn);
}

/* One thread per (row, pair i), applied to every head. */
__global__ void rope_kernel(float* x, const int32_t* pos, const float* inv_freq, int64_t rows, int n_heads, int head_dim, int interleaved, double sign) {
    const int half = head_dim / 2, stride = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
    const int64_t width = (int64_t)n_heads * head_dim, total = rows * half;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = t / half;
        int i = (int)(t - r * half);
        float c, s;
        rope_cos_sin(pos[r], inv_freq[i], sign, &c, &s);
        ee_rotate_heads(x + r * width + (int64_t)i * stride, n_heads, head_dim, partner, c, s);
    }
}

EE_API int32_t ee_rope(float* x, const int32_t* pos, const float* inv_freq, int32_t rows, int32_t n_heads, int32_t head_dim, int32_t interleaved, int32_t inverse) {
    if (rows < 0 || n_heads < 0 || head_dim < 0) return ee_fail("ee_rope: negative size");
    if (head_dim % 2) return ee_fail("ee_rope: head_dim %d is odd", head_dim);
    if (rows == 0 || n_heads == 0 || head_dim == 0) return 0;
    if (!x || !pos || !inv_freq) return ee_fail("ee_rope: null pointer");
    int64_t total = (int64_t)rows * (head_dim / 2);
    rope_kernel<<<ee_grid_for(total, THREADS), THREADS, 0, ee_stream()>>>(x, pos, inv_freq, rows, n_heads, head_dim, interleaved, inverse ? -1.0 : 1.0);
    return ee_launched("ee_rope");
}

/* A layer's RoPE of q and k and, with write_kv, its cache writes of k and v, in one launch (ee_rope twice and
 * ee_kv_write twice, cuda/layer.cu): thread (row, pair i) rotates pair i of every q and k head as rope_kernel does,
 * then copies the pair's elements of k and v, which no other thread touches, to the caches as kv_write_kernel does,
 * reporting a bad sequence or position the same way. The same bits as the four calls. */
__global__ void rope_qk_kv_kernel(float* q, float* k, const float* v, float* k_cache, float* v_cache, const int32_t* row_seq, const int32_t* pos, const float* inv_freq,
                                  int64_t rows, int n_heads, int n_kv_heads, int head_dim, int interleaved, int write_kv, int n_seq, int max_len, ee_index_error* err) {
    const int half = head_dim / 2, stride = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
    const int64_t q_width = (int64_t)n_heads * head_dim, kv_width = (int64_t)n_kv_heads * head_dim, total = rows * half;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = t / half;
        int i = (int)(t - r * half);
        float c, s;
        rope_cos_sin(pos[r], inv_freq[i], 1.0, &c, &s);
        const int64_t first = (int64_t)i * stride;
        ee_rotate_heads(q + r * q_width + first, n_heads, head_dim, partner, c, s);
        ee_rotate_heads(k + r * kv_width + first, n_kv_heads, head_dim, partner, c, s);
        if (!write_kv) continue;
        const int64_t cell = ee_kv_cell(row_seq, pos, r, n_seq, max_len, err, i == 0);
        if (cell >= 0) {
            const int64_t dst = cell * kv_width + first, src = r * kv_width + first;
            for (int h = 0; h < n_kv_heads; h++) {
                const int64_t o = (int64_t)h * head_dim;
                k_cache[dst + o] = k[src + o];
                k_cache[dst + o + partner] = k[src + o + partner];
                v_cache[dst + o] = v[src + o];
                v_cache[dst + o + partner] = v[src + o + partner];
            }
        }
    }
}

int ee_rope_qk_kv(float* q, float* k, const float* v, float* k_cache, float* v_cache, int write_kv, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq,
                  int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t interleaved, int32_t n_seq, int32_t max_len) {
    if (head_dim % 2) return ee_fail("ee_rope: head_dim %d is odd", head_dim);
    if (write_kv && (n_seq <= 0 || max_len <= 0)) return ee_fail("ee_kv_write: bad shape (n_seq %d, max_len %d)", n_seq, max_len);
    const int64_t total = (int64_t)rows * (head_dim / 2);
    if (total == 0) return 0;
    rope_qk_kv_kernel<<<ee_grid_for(total, THREADS), THREADS, 0, ee_stream()>>>(q, k, v, k_cache, v_cache, row_seq, row_pos, inv_freq, rows, n_heads, n_kv_heads, head_dim, interleaved,
                                                               write_kv, n_seq, max_len, write_kv ? ee_index_error_record() : 0);
    return ee_launched("ee_decoder_layer_fwd (rope and K/V writes)");
}
