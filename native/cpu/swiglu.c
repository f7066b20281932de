/* SwiGLU gate: out = silu(gate) * up, forward and backward. */
#include <math.h>

#include "internal.h"

EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_fwd: negative count") : 0;
    if (!out || !gate || !up) return ee_fail("ee_swiglu_fwd: null pointer");
    EE_PARALLEL_FOR(ee_threads_for(20.0 * (double)n), i, n, out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i]);
    return 0;
}

/* With s = sigmoid(g): d silu(g)/dg = s * (1 + g * (1 - s)). Inputs are read before either output is written. */
static inline void swiglu_grad(float* dgate, float* dup, float d, float g, float u) {
    const float s = 1.0f / (1.0f + expf(-g));
    *dgate = d * u * s * (1.0f + g * (1.0f - s));
    *dup = d * g * s;
}

EE_API int32_t ee_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_bwd: negative count") : 0;
    if (!dgate || !dup || !dout || !gate || !up) return ee_fail("ee_swiglu_bwd: null pointer");
    EE_PARALLEL_FOR(ee_threads_for(20.0 * (double)n), i, n, swiglu_grad(dgate + i, dup + i, dout[i], gate[i], up[i]));
    return 0;
}
