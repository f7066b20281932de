/* The exit gate's score, the CUDA twin of cpu/gate.c: one block per row. */
#include "common.cuh"

#define THREADS 256

/* inv from the row's sum of squares (double, as rmsnorm), then each warp takes hidden units in turn (a warp-wide dot
 * product each); thread 0 adds the units' terms in unit order. */
__global__ void gate_score_kernel(float* score, const float* hidden, const float* w1, const float* b1, const float* w, const float* b, int dim, int units, float eps) {
    __shared__ double shared[32];
    __shared__ float unit[THREADS / 32 * 8]; /* the hidden activations of up to 64 units per round */
    const float* h = hidden + (int64_t)blockIdx.x * dim;
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)h[i] * h[i];
    ss = ee_block_sum(ss, shared);
    if (!isfinite(ss)) {
        if (threadIdx.x == 0) score[blockIdx.x] = NAN;
        return;
    }
    const float inv = (float)(1.0 / sqrt(ss / dim + eps));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    float z = b[0];
    if (units == 0) {
        float s = 0.0f;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) s += w[i] * h[i];
        s = ee_block_sum(s, (float*)shared);
        z += inv * s;
    } else {
        const int per_round = warps * 8;
        for (int j0 = 0; j0 < units; j0 += per_round) {
            for (int j = j0 + warp; j < min(units, j0 + per_round); j += warps) {
                const float* row = w1 + (int64_t)j * dim;
                float s = 0.0f;
                for (int i = lane; i < dim; i += 32) s += row[i] * h[i];
                s = ee_warp_sum(s);
                if (lane == 0) {
                    const float a = b1[j] + inv * s;
                    unit[j - j0] = a > 0.0f ? a : 0.0f;
                }
            }
            __syncthreads();
            if (threadIdx.x == 0)
                for (int j = j0; j < min(units, j0 + per_round); j++) z += w[j] * unit[j - j0];
            __syncthreads();
        }
    }
    if (threadIdx.x == 0) score[blockIdx.x] = (float)(1.0 / (1.0 + exp(-(double)z)));
}

EE_API int32_t ee_gate_score(float* score, const float* hidden, const float* w1, const float* b1, const float* w, const float* b, int32_t rows, int32_t dim, int32_t units, float eps) {
    if (rows < 0 || dim <= 0 || units < 0) return ee_fail("ee_gate_score: bad shape (rows %d, dim %d, units %d)", rows, dim, units);
    if (rows == 0) return 0;
    if (!score || !hidden || !w || !b || (units > 0 && (!w1 || !b1))) return ee_fail("ee_gate_score: null pointer");
    gate_score_kernel<<<rows, THREADS, 0, ee_stream()>>>(score, hidden, w1, b1, w, b, dim, units, eps);
    return ee_launched("ee_gate_score");
}
