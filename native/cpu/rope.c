/* Rotary position embedding, in place; the backward is the rotation by the negative angle. */
#include <math.h>
#include <string.h>

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
 *
 * A decoder layer rotates q and k at the same positions, and every layer of a pass does so again: the calling
 * thread's last table is kept with what it was made from (its positions, inv_freq's values, the direction) and reused
 * when a call asks for the same -- compared by value, so the result is the same as refilling it. stories260K (4 pairs
 * per row) fills 10 tables per decoded token without this, each 8 double sines and cosines.
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

/* What the calling thread's table holds (it lives in the thread's EE_SCRATCH_ROPE slot, followed by copies of the
 * positions of a per-row table and of inv_freq): valid only after a complete fill. The slot grows only through a
 * request larger than the last one, which refills it, so an equal request never finds it reallocated. */
static __thread struct {
    int valid, by_position, inverse;
    int32_t half, pos_min, rows;
    int64_t entries;
} last_table;

static int same_table(const int32_t* pos, const float* inv_freq, int32_t rows, int32_t half, int by_position, int32_t pos_min, int64_t entries, int inverse, const float* table) {
    if (!last_table.valid || last_table.half != half || last_table.entries != entries || last_table.by_position != by_position || last_table.inverse != inverse) return 0;
    const int32_t* pos_copy = (const int32_t*)(table + entries * 2 * half);
    const float* freq_copy = (const float*)(pos_copy + (by_position ? 0 : rows));
    if (by_position ? last_table.pos_min != pos_min : last_table.rows != rows || memcmp(pos_copy, pos, (size_t)rows * sizeof *pos)) return 0;
    return memcmp(freq_copy, inv_freq, (size_t)half * sizeof *inv_freq) == 0;
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
    const int32_t copied_rows = by_position ? 0 : rows;
    float* table = ee_scratch(EE_SCRATCH_ROPE, (size_t)entries * 2 * half * sizeof(float) + (size_t)copied_rows * sizeof(int32_t) + (size_t)half * sizeof(float));
    if (!table) return ee_fail("ee_rope: out of memory for a table of %lld x %d sines and cosines", (long long)entries, half);
    rope_job job = {x, pos, inv_freq, table, n_heads, head_dim, interleaved, inverse != 0, by_position, pos_min};
    if (!same_table(pos, inv_freq, rows, half, by_position, pos_min, entries, inverse != 0, table)) {
        last_table.valid = 0;
        ee_parallel_range(ee_threads_for(40.0 * entries * half), entries, fill_table, &job);
        int32_t* pos_copy = (int32_t*)(table + entries * 2 * half);
        memcpy(pos_copy, pos, (size_t)copied_rows * sizeof *pos);
        memcpy(pos_copy + copied_rows, inv_freq, (size_t)half * sizeof *inv_freq);
        last_table.by_position = by_position, last_table.inverse = inverse != 0, last_table.half = half;
        last_table.pos_min = pos_min, last_table.rows = rows, last_table.entries = entries;
        last_table.valid = 1;
    }
    ee_parallel_range(ee_threads_for(6.0 * rows * width), rows, rotate_rows, &job);
    return 0;
}
