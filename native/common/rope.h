/* The rotation at the heart of RoPE, one definition for the CPU and the CUDA kernels (cpu/rope.c, cuda/rope.cu). */
#ifndef EE_ROPE_H
#define EE_ROPE_H

#include "common.h"

/* Rotates the pair (p[0], p[partner]) of each of n_heads heads, head_dim floats apart, by the angle whose cosine is
 * c and sine s. */
EE_HOST_DEVICE void ee_rotate_heads(float* x, int n_heads, int head_dim, int partner, float c, float s) {
    for (int h = 0; h < n_heads; h++) {
        float* p = x + (int64_t)h * head_dim;
        const float x0 = p[0], x1 = p[partner];
        p[0] = x0 * c - x1 * s;
        p[partner] = x0 * s + x1 * c;
    }
}

#endif /* EE_ROPE_H */
