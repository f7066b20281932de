/*
 * GFLOP/s of the GEMM paths: OpenBLAS (path 1) vs the packed fallback (path 2) on cubes, then the decode shapes
 * (a few rows against a 32000 x 288 weight, as in y = x W^T) with the automatic choice (the small-m kernel) vs BLAS.
 * Usage: eecpu_gemmbench [threads]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eetune/eetune.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* best of a few timed batches, in GFLOP/s; 0 if the path is unavailable */
static double bench(int path, int ta, int tb, int m, int n, int k, const float* a, const void* b, int dtype, float* c) {
    if (ee_set_gemm_path(path) != 0) return 0.0;
    const int lda = ta ? m : k, ldb = tb ? k : n;
    ee_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, dtype, ldb, 0.0f, c, n); /* warm up: packing buffers, BLAS threads */
    double flops = 2.0 * m * n * k, best = 1e30;
    int reps = (int)(2e9 / flops) + 1;
    for (int trial = 0; trial < 3; trial++) {
        double t = now();
        for (int r = 0; r < reps; r++) ee_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, dtype, ldb, 0.0f, c, n);
        t = (now() - t) / reps;
        best = t < best ? t : best;
    }
    return flops / best / 1e9;
}

int main(int argc, char** argv) {
    int threads = ee_set_num_threads(argc > 1 ? atoi(argv[1]) : 0);
    printf("features %d, threads %d\n", ee_features(), threads);
    const size_t max = 2048 * 2048;
    float* a = malloc(max * sizeof(float));
    float* b = malloc((size_t)32000 * 288 * sizeof(float));
    float* c = malloc(max * sizeof(float));
    uint16_t* b16 = malloc((size_t)32000 * 288 * sizeof(uint16_t));
    for (size_t i = 0; i < max; i++) a[i] = (float)(i % 7) - 3.0f;
    for (size_t i = 0; i < (size_t)32000 * 288; i++) b[i] = (float)(i % 5) * 0.25f;
    ee_cast(b16, EE_BF16, b, EE_F32, (int64_t)32000 * 288);

    printf("%-28s %10s %10s\n", "C = A B (f32)", "OpenBLAS", "fallback");
    const int cubes[] = {256, 1024, 2048};
    for (int i = 0; i < 3; i++) {
        int s = cubes[i];
        float* bb = malloc((size_t)s * s * sizeof(float));
        for (size_t j = 0; j < (size_t)s * s; j++) bb[j] = (float)(j % 5) * 0.25f;
        printf("%4d^3                         %10.1f %10.1f\n", s, bench(1, 0, 0, s, s, s, a, bb, EE_F32, c),
               bench(2, 0, 0, s, s, s, a, bb, EE_F32, c));
        free(bb);
    }
    printf("%-28s %10s %10s %10s\n", "y = x W^T, W 32000 x 288", "OpenBLAS", "fallback", "small-m");
    const int ms[] = {1, 4, 8, 16};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 4; i++) {
            const void* w = d ? (const void*)b16 : (const void*)b;
            int dtype = d ? EE_BF16 : EE_F32;
            double blas = bench(1, 0, 1, ms[i], 32000, 288, a, w, dtype, c);
            double fallback = ms[i] > 8 ? bench(2, 0, 1, ms[i], 32000, 288, a, w, dtype, c) : 0.0;
            double small = ms[i] <= 8 ? bench(0, 0, 1, ms[i], 32000, 288, a, w, dtype, c) : 0.0;
            printf("m = %2d %-21s %10.1f %10.1f %10.1f\n", ms[i], d ? "bf16" : "f32", blas, fallback, small);
        }
    free(a), free(b), free(c), free(b16);
    return 0;
}
