/* The exit gate's score (a logistic model on the rmsnorm'ed hidden state): one call per exit and pass, so that a row
 * that does not exit pays about a kernel call for the decision (docs/exit-gates.md). */
#include <math.h>

#include "internal.h"
#include "row_sums.h"

EE_INLINE float gate_row(const float* h, const float* w1, const float* b1, const float* w, float b, int32_t dim, int32_t units, float eps) {
    const double ss = ee_row_sum_squares(h, dim);
    if (!isfinite(ss)) return NAN; /* a NaN or infinite element: never confident */
    const float inv = (float)(1.0 / sqrt(ss / dim + eps));
    float z = b;
    if (units == 0) {
        z += inv * ee_dot(w, h, dim);
    } else {
        for (int32_t j = 0; j < units; j++) {
            const float a = b1[j] + inv * ee_dot(w1 + (size_t)j * dim, h, dim);
            z += w[j] * (a > 0.0f ? a : 0.0f);
        }
    }
    return (float)(1.0 / (1.0 + exp(-(double)z)));
}

typedef struct {
    float* score;
    const float *hidden, *w1, *b1, *w;
    float b, eps;
    int32_t dim, units;
} gate_job;

/* Written once, compiled for the baseline, AVX2 and AVX-512 (the dot products vectorise for the CPU at hand): the
 * baseline build's was a quarter of the visit's cost on stories260K (16 units of 64). */
EE_INLINE void gate_rows(const gate_job* j, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) j->score[r] = gate_row(j->hidden + r * j->dim, j->w1, j->b1, j->w, j->b, j->dim, j->units, j->eps);
}
static void gate_rows_base(void* ctx, int64_t r0, int64_t r1) { gate_rows(ctx, r0, r1); }
EE_AVX2 static void gate_rows_avx2(void* ctx, int64_t r0, int64_t r1) { gate_rows(ctx, r0, r1); }
EE_AVX512 static void gate_rows_avx512(void* ctx, int64_t r0, int64_t r1) { gate_rows(ctx, r0, r1); }

EE_API int32_t ee_gate_score(float* score, const float* hidden, const float* w1, const float* b1, const float* w, const float* b, int32_t rows, int32_t dim, int32_t units, float eps) {
    if (rows < 0 || dim <= 0 || units < 0) return ee_fail("ee_gate_score: bad shape (rows %d, dim %d, units %d)", rows, dim, units);
    if (rows == 0) return 0;
    if (!score || !hidden || !w || !b || (units > 0 && (!w1 || !b1))) return ee_fail("ee_gate_score: null pointer");
    gate_job job = {score, hidden, w1, b1, w, b[0], eps, dim, units};
    const ee_cpu* cpu = ee_cpu_get();
    ee_parallel_range(ee_threads_for(2.0 * rows * dim * (units > 0 ? units : 1)), rows, cpu->avx512 ? gate_rows_avx512 : cpu->avx2 ? gate_rows_avx2 : gate_rows_base, &job);
    return 0;
}
