/* SwiGLU gate: out = silu(gate) * up, forward and backward. */
#include <math.h>

#include "internal.h"

typedef struct {
    float *out, *dgate, *dup;
    const float *gate, *up, *dout;
} swiglu_job;

static void fwd_range(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    float* out = j->out;
    const float *gate = j->gate, *up = j->up;
    for (int64_t i = i0; i < i1; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_fwd: negative count") : 0;
    if (!out || !gate || !up) return ee_fail("ee_swiglu_fwd: null pointer");
    swiglu_job job = {.out = out, .gate = gate, .up = up};
    ee_parallel_range(ee_threads_for(20.0 * (double)n), n, fwd_range, &job);
    return 0;
}

/* With s = sigmoid(g): d silu(g)/dg = s * (1 + g * (1 - s)). Inputs are read before either output is written. */
static inline void swiglu_grad(float* dgate, float* dup, float d, float g, float u) {
    const float s = 1.0f / (1.0f + expf(-g));
    *dgate = d * u * s * (1.0f + g * (1.0f - s));
    *dup = d * g * s;
}

static void bwd_range(void* ctx, int64_t i0, int64_t i1) {
    const swiglu_job* j = ctx;
    for (int64_t i = i0; i < i1; i++) swiglu_grad(j->dgate + i, j->dup + i, j->dout[i], j->gate[i], j->up[i]);
}

EE_API int32_t ee_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_bwd: negative count") : 0;
    if (!dgate || !dup || !dout || !gate || !up) return ee_fail("ee_swiglu_bwd: null pointer");
    swiglu_job job = {.dgate = dgate, .dup = dup, .gate = gate, .up = up, .dout = dout};
    ee_parallel_range(ee_threads_for(20.0 * (double)n), n, bwd_range, &job);
    return 0;
}
