/* One AdamW step (the CPU twin is cpu/adamw.c). */
#include "common.cuh"

#define THREADS 256

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
                             float weight_decay, float inv_bias1, float inv_bias2, float grad_scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i];
        p[i] = pi - lr * (mi * inv_bias1 / (sqrtf(vi * inv_bias2) + eps) + weight_decay * pi);
    }
}

EE_API int32_t ee_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, float bias1, float bias2, float grad_scale) {
    if (n <= 0) return n < 0 ? ee_fail("ee_adamw: negative count") : 0;
    if (!p || !g || !m || !v) return ee_fail("ee_adamw: null pointer");
    adamw_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, 1.0f / bias1, 1.0f / bias2, grad_scale);
    return ee_launched("ee_adamw");
}
