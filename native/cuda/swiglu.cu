/* SwiGLU forward and backward (the CPU twin is cpu/swiglu.c). */
#include "common.cuh"

#define THREADS 256

__global__ void swiglu_fwd_kernel(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_fwd: negative count") : 0;
    if (!out || !gate || !up) return ee_fail("ee_swiglu_fwd: null pointer");
    swiglu_fwd_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(out, gate, up, n);
    return ee_launched("ee_swiglu_fwd");
}

/* With s = sigmoid(g): d silu(g)/dg = s (1 + g (1 - s)). Each thread reads its inputs before writing (aliasing ok). */
__global__ void swiglu_bwd_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = 1.0f / (1.0f + expf(-g));
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
        dup[i] = d * g * s;
    }
}

EE_API int32_t ee_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_bwd: negative count") : 0;
    if (!dgate || !dup || !dout || !gate || !up) return ee_fail("ee_swiglu_bwd: null pointer");
    swiglu_bwd_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(dgate, dup, dout, gate, up, n);
    return ee_launched("ee_swiglu_bwd");
}
