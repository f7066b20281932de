/* AdamW optimizer step (decoupled weight decay, bias corrections supplied by the caller). */
#include <math.h>

#include "internal.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, inv_bias1, inv_bias2, grad_scale;
} adamw_hyper;

#define ADAMW_BLOCK 4096

static void adamw_block(float* p, const float* g, float* m, float* v, int64_t n, const adamw_hyper* h) {
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * h->grad_scale;
        const float mi = h->beta1 * m[i] + (1.0f - h->beta1) * gi;
        const float vi = h->beta2 * v[i] + (1.0f - h->beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= h->lr * (mi * h->inv_bias1 / (sqrtf(vi * h->inv_bias2) + h->eps) + h->weight_decay * p[i]);
    }
}

typedef struct {
    float *p, *m, *v;
    const float* g;
    int64_t n;
    const adamw_hyper* h;
} adamw_job;

static void adamw_blocks(void* ctx, int64_t blk0, int64_t blk1) {
    const adamw_job* j = ctx;
    for (int64_t blk = blk0; blk < blk1; blk++) {
        const int64_t lo = blk * ADAMW_BLOCK;
        adamw_block(j->p + lo, j->g + lo, j->m + lo, j->v + lo, j->n - lo < ADAMW_BLOCK ? j->n - lo : ADAMW_BLOCK, j->h);
    }
}

EE_API int32_t ee_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, float bias1, float bias2, float grad_scale) {
    if (n <= 0) return n < 0 ? ee_fail("ee_adamw: negative count") : 0;
    if (!p || !g || !m || !v) return ee_fail("ee_adamw: null pointer");
    const adamw_hyper h = {lr, beta1, beta2, eps, weight_decay, 1.0f / bias1, 1.0f / bias2, grad_scale};
    const int64_t blocks = (n + ADAMW_BLOCK - 1) / ADAMW_BLOCK;
    adamw_job job = {p, m, v, g, n, &h};
    ee_parallel_range(ee_threads_for(10.0 * (double)n), blocks, adamw_blocks, &job);
    return 0;
}
