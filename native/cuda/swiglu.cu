/* SwiGLU forward and backward (the CPU twin is cpu/swiglu.c). */
#include "common.cuh"

#define THREADS 256

/* out = silu(gate) * up; with out16 also out rounded to dtype16, as ee_cast_2d would round it */
__global__ void swiglu_fwd_kernel(float* out, const float* gate, const float* up, int64_t n, void* out16, int dtype16) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        const float y = g / (1.0f + expf(-g)) * up[i];
        out[i] = y;
        if (out16) ee_store_f32(out16, dtype16, i, y);
    }
}

int ee_swiglu_rounded(float* out, const float* gate, const float* up, int64_t n, void* out16, int dtype16) {
    if (n <= 0) return n < 0 ? ee_fail("ee_swiglu_fwd: negative count") : 0;
    if (!out || !gate || !up) return ee_fail("ee_swiglu_fwd: null pointer");
    swiglu_fwd_kernel<<<ee_grid_for(n, THREADS), THREADS, 0, ee_stream()>>>(out, gate, up, n, out16, dtype16);
    return ee_launched("ee_swiglu_fwd");
}

EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n) { return ee_swiglu_rounded(out, gate, up, n, 0, 0); }

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
