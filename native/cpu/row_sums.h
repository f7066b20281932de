/* Two loops several kernels share, vectorised for the target of the function they are inlined into (the kernels'
 * files are compiled with -fopenmp-simd): a float dot product, and a sum of squares accumulated in double (the row
 * statistic of rmsnorm and of the exit gate). */
#ifndef EE_ROW_SUMS_H
#define EE_ROW_SUMS_H

#include "internal.h"

EE_INLINE float ee_dot(const float* a, const float* b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

EE_INLINE double ee_row_sum_squares(const float* x, int64_t n) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

#endif /* EE_ROW_SUMS_H */
