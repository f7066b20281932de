/* Rotary position embedding, in place; the backward is the rotation by the negative angle. */
#include <math.h>

#include "internal.h"
#include "rope.h"

/*
 * The angle pos * inv_freq and its sine/cosine are evaluated in double: in f32 the product alone is off by up to
 * pos * 2^-24 radians, a visible error at long positions. One sin/cos pair serves every head of the row.
 *
 * The sines and cosines go into a table first, one entry per distinct position when the positions of the call span
 * no more than its rows (a training batch: rows x half double sin/cos otherwise cost more than the rotations), else
 * one entry per row (a few decode rows at scattered positions). Either way each value is the same expression, so
 * the result does not depend on the call's batching, and it equals the CUDA twin's per-(row, pair) evaluation.
 */
typedef struct {
    float* x;
    const int32_t* pos;
    const float* inv_freq;
    float* table; /* entries x half (cos, sin) pairs */
    int32_t n_heads, head_dim, interleaved, inverse;
    int32_t by_position; /* entry e is position pos_min + e; otherwise entry r belongs to row r */
    int32_t pos_min;
} rope_job;

static void fill_table(void* ctx, int64_t e0, int64_t e1) {
    const rope_job* j = ctx;
    const int32_t half = j->head_dim / 2;
    for (int64_t e = e0; e < e1; e++) {
        const int32_t pos = j->by_position ? j->pos_min + (int32_t)e : j->pos[e];
        float* cs = j->table + e * 2 * half;
        for (int32_t i = 0; i < half; i++) {
            const double angle = (double)pos * j->inv_freq[i];
            cs[2 * i] = (float)cos(angle);
            cs[2 * i + 1] = (float)(j->inverse ? -sin(angle) : sin(angle));
        }
    }
}

static void rotate_rows(void* ctx, int64_t r0, int64_t r1) {
    const rope_job* j = ctx;
    const int32_t half = j->head_dim / 2;
    /* interleaved pairs (2i, 2i+1); rotate-half pairs (i, i + half) */
    const int32_t stride = j->interleaved ? 2 : 1, partner = j->interleaved ? 1 : half;
    const int64_t width = (int64_t)j->n_heads * j->head_dim;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t e = j->by_position ? j->pos[r] - j->pos_min : r;
        const float* cs = j->table + e * 2 * half;
        float* x = j->x + r * width;
        for (int32_t i = 0; i < half; i++) ee_rotate_heads(x + i * stride, j->n_heads, j->head_dim, partner, cs[2 * i], cs[2 * i + 1]);
    }
}

EE_API int32_t ee_rope(float* x, const int32_t* pos, const float* inv_freq, int32_t rows, int32_t n_heads, int32_t head_dim, int32_t interleaved, int32_t inverse) {
    if (rows < 0 || n_heads < 0 || head_dim < 0) return ee_fail("ee_rope: negative size");
    if (head_dim % 2) return ee_fail("ee_rope: head_dim %d is odd", head_dim);
    if (rows == 0 || n_heads == 0 || head_dim == 0) return 0;
    if (!x || !pos || !inv_freq) return ee_fail("ee_rope: null pointer");
    const int32_t half = head_dim / 2, width = n_heads * head_dim;
    int32_t pos_min = pos[0], pos_max = pos[0];
    for (int32_t r = 1; r < rows; r++) {
        pos_min = pos[r] < pos_min ? pos[r] : pos_min;
        pos_max = pos[r] > pos_max ? pos[r] : pos_max;
    }
    const int64_t span = (int64_t)pos_max - pos_min + 1;
    const int by_position = span <= rows;
    const int64_t entries = by_position ? span : rows;
    float* table = ee_scratch(EE_SCRATCH_ROPE, (size_t)entries * 2 * half * sizeof(float));
    if (!table) return ee_fail("ee_rope: out of memory for a table of %lld x %d sines and cosines", (long long)entries, half);
    rope_job job = {x, pos, inv_freq, table, n_heads, head_dim, interleaved, inverse, by_position, pos_min};
    ee_parallel_range(ee_threads_for(40.0 * entries * half), entries, fill_table, &job);
    ee_parallel_range(ee_threads_for(6.0 * rows * width), rows, rotate_rows, &job);
    return 0;
}
