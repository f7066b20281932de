/* Rotary position embedding, in place; the backward is the rotation by the negative angle (CPU twin: cpu/rope.c). */
#include "common.cuh"
#include "rope.h"

#define THREADS 256

/* One thread per (row, pair i): the angle and its sine/cosine in double (as the CPU library), applied to every head. */
__global__ void rope_kernel(float* x, const int32_t* pos, const float* inv_freq, int64_t rows, int n_heads, int head_dim, int interleaved, double sign) {
    const int half = head_dim / 2, stride = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
    const int64_t width = (int64_t)n_heads * head_dim, total = rows * half;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = t / half;
        int i = (int)(t - r * half);
        double angle = (double)pos[r] * inv_freq[i];
        double sn, cs;
        sincos(angle, &sn, &cs);
        float c = (float)cs, s = (float)(sign * sn);
        ee_rotate_heads(x + r * width + (int64_t)i * stride, n_heads, head_dim, partner, c, s);
    }
}

EE_API int32_t ee_rope(float* x, const int32_t* pos, const float* inv_freq, int32_t rows, int32_t n_heads, int32_t head_dim, int32_t interleaved, int32_t inverse) {
    if (rows < 0 || n_heads < 0 || head_dim < 0) return ee_fail("ee_rope: negative size");
    if (head_dim % 2) return ee_fail("ee_rope: head_dim %d is odd", head_dim);
    if (rows == 0 || n_heads == 0 || head_dim == 0) return 0;
    if (!x || !pos || !inv_freq) return ee_fail("ee_rope: null pointer");
    int64_t total = (int64_t)rows * (head_dim / 2);
    rope_kernel<<<ee_grid_for(total, THREADS), THREADS>>>(x, pos, inv_freq, rows, n_heads, head_dim, interleaved, inverse ? -1.0 : 1.0);
    return ee_launched("ee_rope");
}
