/* RMSNorm: out = x / rms(x) * w, forward and backward. Row statistics are accumulated in double. */
#include <math.h>

#include "internal.h"

static void rmsnorm_row(float* out, float* inv_rms, const float* x, const float* w, int32_t dim, float eps) {
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int32_t j = 0; j < dim; j++) ss += (double)x[j] * x[j];
    const float inv = (float)(1.0 / sqrt(ss / dim + eps));
    if (inv_rms) *inv_rms = inv;
    for (int32_t j = 0; j < dim; j++) out[j] = x[j] * inv * w[j];
}

EE_API int32_t ee_rmsnorm_fwd(float* out, float* inv_rms, const float* x, const float* w, int32_t rows, int32_t dim, float eps) {
    if (rows <= 0 || dim <= 0) return rows < 0 || dim < 0 ? ee_fail("ee_rmsnorm_fwd: negative size") : 0;
    if (!out || !x || !w) return ee_fail("ee_rmsnorm_fwd: null pointer");
    EE_PARALLEL_FOR(ee_threads_for(2.0 * rows * dim), r, rows, rmsnorm_row(out + r * dim, inv_rms ? inv_rms + r : 0, x + r * dim, w, dim, eps));
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

/*
 * With g = dout * w and y = x * inv: dx = inv * (g - x * inv^2 * mean(g * x)), dw += sum_r dout * x * inv.
 * dw is accumulated first, by column ranges (race-free, fixed order), so dx may even alias dout.
 */
EE_API int32_t ee_rmsnorm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* inv_rms, int32_t rows, int32_t dim) {
    if (rows <= 0 || dim <= 0) return rows < 0 || dim < 0 ? ee_fail("ee_rmsnorm_bwd: negative size") : 0;
    if (!dout || !x || !w || !inv_rms) return ee_fail("ee_rmsnorm_bwd: null pointer");
    const int nt = ee_threads_for(3.0 * rows * dim);
    if (dw) EE_PARALLEL_FOR(nt, blk, ee_ceil_div(dim, COLUMN_BLOCK), rmsnorm_dw_columns(dw, dout, x, inv_rms, rows, dim, blk * COLUMN_BLOCK));
    if (dx) EE_PARALLEL_FOR(nt, r, rows, rmsnorm_dx_row(dx + r * dim, dout + r * dim, x + r * dim, w, inv_rms[r], dim));
    return 0;
}
