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

typedef struct {
    int ta, tb, m, n, k, dtype;
    const float* a;
    const void* b;
    float* c;
} problem;

static double seconds(int path, const problem* p, int reps) {
    ee_set_gemm_path(path);
    const int lda = p->ta ? p->m : p->k, ldb = p->tb ? p->k : p->n;
    double t = now();
    for (int r = 0; r < reps; r++) ee_gemm(p->ta, p->tb, p->m, p->n, p->k, 1.0f, p->a, lda, p->b, p->dtype, ldb, 0.0f, p->c, p->n);
    return (now() - t) / reps;
}

/* GFLOP/s of each path (0 = unavailable), the best of interleaved trials so that load from other processes hits
 * all paths alike. */
static void bench(const problem* p, int n_paths, const int* paths, double* gflops) {
    const double flops = 2.0 * p->m * p->n * p->k;
    const int reps = (int)(1e9 / flops) + 1;
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    for (int i = 0; i < n_paths; i++) {
        gflops[i] = 0.0;
        if (paths[i] >= 0 && ee_set_gemm_path(paths[i]) == 0) seconds(paths[i], p, 1); /* warm up */
    }
    for (int trial = 0; trial < 5; trial++)
        for (int i = 0; i < n_paths; i++)
            if (paths[i] >= 0 && ee_set_gemm_path(paths[i]) == 0) {
                double t = seconds(paths[i], p, reps);
                best[i] = t < best[i] ? t : best[i];
                gflops[i] = flops / best[i] / 1e9;
            }
    ee_set_gemm_path(0);
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
        const int s = cubes[i], paths[] = {1, 2};
        float* bb = malloc((size_t)s * s * sizeof(float));
        for (size_t j = 0; j < (size_t)s * s; j++) bb[j] = (float)(j % 5) * 0.25f;
        const problem p = {0, 0, s, s, s, EE_F32, a, bb, c};
        double g[2];
        bench(&p, 2, paths, g);
        printf("%4d^3                       %10.1f %10.1f\n", s, g[0], g[1]);
        free(bb);
    }
    /* the small-m kernel is what paths 0 and 2 run for m <= 8; the packed fallback is shown from m = 16 */
    printf("%-28s %10s %10s %10s\n", "y = x W^T, W 32000 x 288", "OpenBLAS", "fallback", "small-m");
    const int ms[] = {1, 4, 8, 16};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 4; i++) {
            const int small = ms[i] <= 8, paths[] = {1, small ? -1 : 2, small ? 0 : -1};
            const problem p = {0, 1, ms[i], 32000, 288, d ? EE_BF16 : EE_F32, a, d ? (const void*)b16 : (const void*)b, c};
            double g[3];
            bench(&p, 3, paths, g);
            printf("m = %2d %-21s %10.1f %10.1f %10.1f\n", ms[i], d ? "bf16" : "f32", g[0], g[1], g[2]);
        }
    free(a), free(b), free(c), free(b16);
    return 0;
}
