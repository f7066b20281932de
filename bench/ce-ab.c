/*
 * A/B of the fused linear + cross-entropy between two builds of libeecpu in one process: both libraries are loaded
 * with dlopen (RTLD_LOCAL, so each keeps its own symbols and thread pool), and their ee_linear_cross_entropy runs
 * alternate on the tuning step's LM-head shape (2048 rows, dim 288, vocab 32000, forward and backward), so that load
 * from other processes hits both alike. Prints, per library, the median (min..max) of the useful GFLOP/s
 * (3 * 2 * rows * dim * vocab per call) by wall clock and by process CPU time, and the median of the per-round ratios.
 * Not part of the build (bench/cestep.sh compiles it): usage ce-ab A/libeecpu.so B/libeecpu.so [threads] [rounds]
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int32_t (*ce_fn)(float*, float*, float*, int32_t*, float*, const float*, const void*, int32_t, const int32_t*, const float*, int32_t, int32_t, int32_t, int32_t, float);
typedef int32_t (*threads_fn)(int32_t);

static double clock_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static void stats(const char* what, double* v, int n) {
    qsort(v, n, sizeof *v, cmp);
    printf("  %-22s %.3f (%.3f..%.3f)\n", what, v[n / 2], v[0], v[n - 1]);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ce-ab A/libeecpu.so B/libeecpu.so [threads] [rounds]\n");
        return 2;
    }
    const int threads = argc > 3 ? atoi(argv[3]) : 2, rounds = argc > 4 ? atoi(argv[4]) : 9;
    ce_fn ce[2];
    for (int l = 0; l < 2; l++) {
        void* lib = dlopen(argv[1 + l], RTLD_NOW | RTLD_LOCAL);
        if (!lib) return fprintf(stderr, "ce-ab: %s\n", dlerror()), 1;
        ce[l] = (ce_fn)dlsym(lib, "ee_linear_cross_entropy");
        ((threads_fn)dlsym(lib, "ee_set_num_threads"))(threads);
    }
    const int rows = 2048, dim = 288, vocab = 32000;
    float* x = malloc((size_t)rows * dim * sizeof(float));
    float* w = malloc((size_t)vocab * dim * sizeof(float));
    float *dx = malloc((size_t)rows * dim * sizeof(float)), *dw = calloc((size_t)vocab * dim, sizeof(float));
    float *loss = malloc(rows * sizeof(float)), *gw = malloc(rows * sizeof(float));
    int32_t* targets = malloc(rows * sizeof(int32_t));
    unsigned seed = 1;
    for (size_t i = 0; i < (size_t)vocab * dim; i++) {
        seed = seed * 1664525u + 1013904223u;
        const float u = (float)((seed >> 8) / 16777216.0 - 0.5);
        w[i] = u;
        if (i < (size_t)rows * dim) x[i] = 2 * u;
    }
    for (int r = 0; r < rows; r++) targets[r] = (int32_t)((r * 2654435761u) % vocab), gw[r] = 1.0f / rows;
    const double flops = 3 * 2.0 * rows * dim * vocab;
    double wall[2][64], cpu[2][64], ratio_wall[64], ratio_cpu[64];
    for (int t = -1; t < rounds && t < 64; t++)
        for (int l = 0; l < 2; l++) {
            const int lib = (t & 1) ? 1 - l : l; /* ABBA: neither side always runs first */
            const double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            if (ce[lib](loss, dx, dw, 0, 0, x, w, 0, targets, gw, rows, dim, vocab, 0, 1.0f)) return fprintf(stderr, "ce-ab: call failed\n"), 1;
            if (t < 0) continue; /* warm-up */
            wall[lib][t] = flops / (clock_s(CLOCK_MONOTONIC) - w0) / 1e9;
            cpu[lib][t] = flops / (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e9;
        }
    for (int t = 0; t < rounds; t++) ratio_wall[t] = wall[1][t] / wall[0][t], ratio_cpu[t] = cpu[1][t] / cpu[0][t];
    printf("fused CE 2048 x 288 x 32000, %d threads, %d rounds, useful GFLOP/s median (min..max)\n", threads, rounds);
    for (int l = 0; l < 2; l++) {
        printf("%s: %s\n", l ? "B" : "A", argv[1 + l]);
        stats("per wall second", wall[l], rounds);
        stats("per CPU second", cpu[l], rounds);
    }
    printf("B / A\n");
    stats("wall", ratio_wall, rounds);
    stats("CPU", ratio_cpu, rounds);
    return 0;
}
