/* RMSNorm: out = x / rms(x) * w, forward and backward. Row statistics are accumulated in double. */
#include <math.h>

#include "internal.h"
#include "row_sums.h"

static void rmsnorm_row(float* out, float* inv_rms, const float* x, const float* w, int32_t dim, float eps) {
    const double ss = ee_row_sum_squares(x, dim);
    const float inv = (float)(1.0 / sqrt(ss / dim + eps));
    if (inv_rms) *inv_rms = inv;
    for (int32_t j = 0; j < dim; j++) out[j] = x[j] * inv * w[j];
}

typedef struct {
    float *out, *inv_rms;
    const float *x, *w;
    int32_t dim;
    float eps;
} fwd_job;

static void fwd_rows(void* ctx, int64_t r0, int64_t r1) {
    const fwd_job* j = ctx;
    for (int64_t r = r0; r < r1; r++) rmsnorm_row(j->out + r * j->dim, j->inv_rms ? j->inv_rms + r : 0, j->x + r * j->dim, j->w, j->dim, j->eps);
}

EE_API int32_t ee_rmsnorm_fwd(float* out, float* inv_rms, const float* x, const float* w, int32_t rows, int32_t dim, float eps) {
    if (rows <= 0 || dim <= 0) return rows < 0 || dim < 0 ? ee_fail("ee_rmsnorm_fwd: negative size") : 0;
    if (!out || !x || !w) return ee_fail("ee_rmsnorm_fwd: null pointer");
    fwd_job job = {out, inv_rms, x, w, dim, eps};
    ee_parallel_range(ee_threads_for(2.0 * rows * dim), rows, fwd_rows, &job);
    return 0;
}

#define COLUMN_BLOCK 64

static void rmsnorm_dw_columns(float* dw, const float* dout, const float* x, const float* inv_rms, int32_t rows, int32_t dim, int32_t j0) {
    const int32_t j1 = ee_min(j0 + COLUMN_BLOCK, dim);
    for (int32_t r = 0; r < rows; r++) {
        const float *g = dout + (size_t)r * dim, *xr = x + (size_t)r * dim;
        for (int32_t j = j0; j < j1; j++) dw[j] += g[j] * xr[j] * inv_rms[r];
    }
}

static void rmsnorm_dx_row(float* dx, const float* dout, const float* x, const float* w, float inv, int32_t dim) {
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int32_t j = 0; j < dim; j++) dot += (double)dout[j] * w[j] * x[j];
    const float c = (float)(dot / dim) * inv * inv;
    for (int32_t j = 0; j < dim; j++) dx[j] = inv * (dout[j] * w[j] - x[j] * c);
}

typedef struct {
    float *dx, *dw;
    const float *dout, *x, *w, *inv_rms;
    int32_t rows, dim;
} bwd_job;

static void dw_blocks(void* ctx, int64_t blk0, int64_t blk1) {
    const bwd_job* j = ctx;
    for (int64_t blk = blk0; blk < blk1; blk++) rmsnorm_dw_columns(j->dw, j->dout, j->x, j->inv_rms, j->rows, j->dim, (int32_t)blk * COLUMN_BLOCK);
}

static void dx_rows(void* ctx, int64_t r0, int64_t r1) {
    const bwd_job* j = ctx;
    for (int64_t r = r0; r < r1; r++) rmsnorm_dx_row(j->dx + r * j->dim, j->dout + r * j->dim, j->x + r * j->dim, j->w, j->inv_rms[r], j->dim);
}

/*
 * With g = dout * w and y = x * inv: dx = inv * (g - x * inv^2 * mean(g * x)), dw += sum_r dout * x * inv.
 * dw is accumulated first, by column ranges (race-free, fixed order), so dx may even alias dout.
 */
EE_API int32_t ee_rmsnorm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* inv_rms, int32_t rows, int32_t dim) {
    if (rows <= 0 || dim <= 0) return rows < 0 || dim < 0 ? ee_fail("ee_rmsnorm_bwd: negative size") : 0;
    if (!dout || !x || !w || !inv_rms) return ee_fail("ee_rmsnorm_bwd: null pointer");
    const int nt = ee_threads_for(3.0 * rows * dim);
    bwd_job job = {dx, dw, dout, x, w, inv_rms, rows, dim};
    if (dw) ee_parallel_range(nt, ee_ceil_div(dim, COLUMN_BLOCK), dw_blocks, &job);
    if (dx) ee_parallel_range(nt, rows, dx_rows, &job);
    return 0;
}
