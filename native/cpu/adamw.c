/* AdamW optimizer step (decoupled weight decay, bias corrections supplied by the caller). */
#include <math.h>

#include "internal.h"

EE_API int32_t ee_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, float bias1, float bias2, float grad_scale) {
    if (n <= 0) return n < 0 ? ee_fail("ee_adamw: negative count") : 0;
    if (!p || !g || !m || !v) return ee_fail("ee_adamw: null pointer");
    const float inv_bias1 = 1.0f / bias1, inv_bias2 = 1.0f / bias2;
#pragma omp parallel for simd num_threads(ee_threads_for(10.0 * (double)n)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * (mi * inv_bias1 / (sqrtf(vi * inv_bias2) + eps) + weight_decay * p[i]);
    }
    return 0;
}
