/* Rotary position embedding, in place; the backward is the rotation by the negative angle. */
#include <math.h>

#include "internal.h"
#include "rope.h"

/*
 * The angle pos * inv_freq and its sine/cosine are evaluated in double: in f32 the product alone is off by up to
 * pos * 2^-24 radians, a visible error at long positions. One sin/cos pair serves every head of the row.
 */
static void rope_row(float* x, int32_t pos, const float* inv_freq, int32_t n_heads, int32_t head_dim, int32_t interleaved, int32_t inverse) {
    const int32_t half = head_dim / 2;
    /* interleaved pairs (2i, 2i+1); rotate-half pairs (i, i + half) */
    const int32_t stride = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
    for (int32_t i = 0; i < half; i++) {
        const double angle = (double)pos * inv_freq[i];
        const float c = (float)cos(angle), s = (float)(inverse ? -sin(angle) : sin(angle));
        ee_rotate_heads(x + i * stride, n_heads, head_dim, partner, c, s);
    }
}

typedef struct {
    float* x;
    const int32_t* pos;
    const float* inv_freq;
    int32_t n_heads, head_dim, interleaved, inverse;
} rope_job;

static void rope_rows(void* ctx, int64_t r0, int64_t r1) {
    const rope_job* j = ctx;
    const int64_t width = (int64_t)j->n_heads * j->head_dim;
    for (int64_t r = r0; r < r1; r++) rope_row(j->x + r * width, j->pos[r], j->inv_freq, j->n_heads, j->head_dim, j->interleaved, j->inverse);
}

EE_API int32_t ee_rope(float* x, const int32_t* pos, const float* inv_freq, int32_t rows, int32_t n_heads, int32_t head_dim, int32_t interleaved, int32_t inverse) {
    if (rows < 0 || n_heads < 0 || head_dim < 0) return ee_fail("ee_rope: negative size");
    if (head_dim % 2) return ee_fail("ee_rope: head_dim %d is odd", head_dim);
    if (rows == 0 || n_heads == 0 || head_dim == 0) return 0;
    if (!x || !pos || !inv_freq) return ee_fail("ee_rope: null pointer");
    const int32_t half = head_dim / 2, width = n_heads * head_dim;
    rope_job job = {x, pos, inv_freq, n_heads, head_dim, interleaved, inverse};
    ee_parallel_range(ee_threads_for(20.0 * rows * half + 6.0 * rows * width), rows, rope_rows, &job);
    return 0;
}
