/*
 * A/B of greedy decode's 8-bit screen between two builds of libeecpu in one process: both libraries are loaded with
 * dlopen (RTLD_LOCAL, each with its own symbols and thread pool), each packs the same 32000 x 288 classifier (the 15M
 * config's) with its ee_pack_panels_i8, and their ee_gemm calls with EE_I8_PANELS alternate for m = 1, 2, 4, 8, 16
 * rows, so that load from other processes hits both alike. Prints per m the median (min..max) microseconds per call of
 * each library over 15 rounds and the median (min..max) of the per-round ratios A / B.
 * Not part of the build: gcc -O2 bench/screen-ab.c -o screen-ab -ldl; usage screen-ab A/libeecpu.so B/libeecpu.so [threads]
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int32_t (*gemm_fn)(int32_t, int32_t, int32_t, int32_t, int32_t, float, const float*, int32_t, const void*, int32_t, int32_t, float, float*, int32_t);
typedef int32_t (*pack_fn)(void*, float*, float*, const float*, int32_t, int32_t, int32_t);
typedef int64_t (*bytes_fn)(int32_t, int32_t);
typedef int32_t (*threads_fn)(int32_t);

enum { VOCAB = 32000, DIM = 288, MAX_M = 16, ROUNDS = 15, I8_PANELS = 6 /* EE_I8_PANELS */ };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static void* symbol(void* lib, const char* name) {
    void* f = dlsym(lib, name);
    if (!f) fprintf(stderr, "screen-ab: %s\n", dlerror()), exit(1);
    return f;
}

int main(int argc, char** argv) {
    if (argc < 3) return fprintf(stderr, "usage: screen-ab A/libeecpu.so B/libeecpu.so [threads]\n"), 2;
    const int threads = argc > 3 ? atoi(argv[3]) : 0;
    float* w = malloc((size_t)VOCAB * DIM * sizeof(float));
    float* x = malloc((size_t)MAX_M * DIM * sizeof(float));
    float* y = malloc((size_t)MAX_M * VOCAB * sizeof(float));
    srand(1);
    for (size_t i = 0; i < (size_t)VOCAB * DIM; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < MAX_M * DIM; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    gemm_fn gemm[2];
    void* packed[2];
    for (int l = 0; l < 2; l++) {
        void* lib = dlopen(argv[1 + l], RTLD_NOW | RTLD_LOCAL);
        if (!lib) return fprintf(stderr, "screen-ab: %s\n", dlerror()), 1;
        gemm[l] = (gemm_fn)symbol(lib, "ee_gemm");
        const int n = ((threads_fn)symbol(lib, "ee_set_num_threads"))(threads);
        packed[l] = aligned_alloc(64, (size_t)((bytes_fn)symbol(lib, "ee_panels_i8_bytes"))(VOCAB, DIM) + 64);
        if (((pack_fn)symbol(lib, "ee_pack_panels_i8"))(packed[l], NULL, NULL, w, VOCAB, DIM, DIM)) return fprintf(stderr, "screen-ab: packing failed\n"), 1;
        printf("%s: %s, %d threads\n", l ? "B" : "A", argv[1 + l], n);
    }
    const int ms[] = {1, 2, 4, 8, MAX_M};
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        const int m = ms[mi], calls = m <= 2 ? 40 : 20;
        double us[2][ROUNDS], ratio[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) {
            for (int l = 0; l < 2; l++) {
                gemm[l](0, 1, m, VOCAB, DIM, 1.0f, x, DIM, packed[l], I8_PANELS, DIM, 0.0f, y, VOCAB); /* caches, pool */
                const double t0 = now();
                for (int c = 0; c < calls; c++) gemm[l](0, 1, m, VOCAB, DIM, 1.0f, x, DIM, packed[l], I8_PANELS, DIM, 0.0f, y, VOCAB);
                us[l][r] = (now() - t0) / calls * 1e6;
            }
            ratio[r] = us[0][r] / us[1][r];
        }
        qsort(us[0], ROUNDS, sizeof(double), by_value), qsort(us[1], ROUNDS, sizeof(double), by_value), qsort(ratio, ROUNDS, sizeof(double), by_value);
        printf("m %2d: A %.1f us (%.1f..%.1f), B %.1f us (%.1f..%.1f), A / B %.2f (%.2f..%.2f)\n", m, us[0][ROUNDS / 2], us[0][0], us[0][ROUNDS - 1], us[1][ROUNDS / 2],
               us[1][0], us[1][ROUNDS - 1], ratio[ROUNDS / 2], ratio[0], ratio[ROUNDS - 1]);
    }
    return 0;
}
