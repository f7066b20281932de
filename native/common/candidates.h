/* ee_argmax_candidates' bound and argument check, one definition for the CPU and the CUDA kernels (cpu/softmax.c,
 * cuda/softmax.cu), so that both pick the same candidates. */
#ifndef EE_CANDIDATES_H
#define EE_CANDIDATES_H

#include <math.h>

#include "common.h"

/* The share of a row's norm that the 8-bit screen's radii allow for the kernel's rounding of the row (ScoreScreen) */
#define EE_SCREEN_ROUNDING (1.0 / 128)

/* The scale of the 8-bit screen's bound for a row x of k values (A of ee_gemm with EE_I8_PANELS): E = max(||x||,
 * ||x - x'|| / EE_SCREEN_ROUNDING) rounded up, x' = scale_x q the row as the kernels round it (eetune.h,
 * ee_pack_panels_i8), so that ||x|| <= E and ||x - x'|| <= E / 128; every score then lies within E radius_j of its logit
 * (ScoreScreen.norms computes the same on the Java side). NaN or +inf for a row with a value that is not finite or a
 * max |x| too small to scale (below 127 / FLT_MAX). */
static inline float ee_screen_scale(const float* x, int32_t k) {
    float top = 0.0f;
    double ss = 0.0;
    for (int32_t p = 0; p < k; p++) {
        top = fabsf(x[p]) > top ? fabsf(x[p]) : top;
        ss += (double)x[p] * x[p];
    }
    if (!isfinite(ss)) return (float)ss;
    const float inv = top > 0.0f ? 127.0f / top : 0.0f, scale = top / 127.0f;
    if (!isfinite(inv)) return NAN; /* too small to scale: the kernels give NaN scores, the exact logits decide */
    double ee = 0.0;
    for (int32_t p = 0; p < k; p++) {
        const double q = fmin(fmax(rint((double)x[p] * inv), -127.0), 127.0), d = (double)x[p] - (double)scale * q;
        ee += d * d;
    }
    return nextafterf((float)fmax(sqrt(ss), sqrt(ee) / EE_SCREEN_ROUNDING), INFINITY);
}

/* B_j = radius_j scale + 1e-30 (the 1e-30: underflow's absolute error) */
EE_HOST_DEVICE float ee_candidate_bound(float radius, float scale) { return radius * scale + 1e-30f; }

static inline int ee_argmax_candidates_check(int32_t* groups, int32_t* counts, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows,
                                             int32_t n, int32_t group, int32_t max_groups) {
    if (rows < 0 || n <= 0 || ld < n || group <= 0 || max_groups <= 0)
        return ee_fail("ee_argmax_candidates: bad shape (rows %d, n %d, ld %d, group %d, max_groups %d)", rows, n, ld, group, max_groups);
    if (rows > 0 && (!groups || !counts || !scores || !radius || !scale)) return ee_fail("ee_argmax_candidates: null pointer");
    return 0;
}

static inline int ee_max_prob_upper_check(float* upper, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n, float temperature) {
    if (rows < 0 || n <= 0 || ld < n) return ee_fail("ee_max_prob_upper: bad shape (rows %d, n %d, ld %d)", rows, n, ld);
    if (!(temperature > 0.0f)) return ee_fail("ee_max_prob_upper: temperature must be > 0, got %g", (double)temperature);
    if (rows > 0 && (!upper || !scores || !radius || !scale)) return ee_fail("ee_max_prob_upper: null pointer");
    return 0;
}

/* upper from the row's H and sum of exp((s_j - B_j - H) / temperature): raised for the f32 arguments' and
 * exponentials' rounding (ee_max_prob_upper), +inf for a sum of 0 (every term below exp's range) */
EE_HOST_DEVICE float ee_max_prob_upper_of(double sum, float top, float temperature) {
    const double raise = 1.0 + 0x1p-14 + 0x1p-22 * fabs((double)top) / temperature;
    return sum > 0.0 ? (float)(raise / sum) * (1.0f + 0x1p-23f) : INFINITY;
}

#endif /* EE_CANDIDATES_H */
