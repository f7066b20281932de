/* Experiment (issue 10): decode GEMV y = x W^T at the 15M shapes with W packed into column panels
 * Wp[n/P][k][P] (P = 16 V outputs interleaved; one panel is one sequential stream) against ee_gemm's row tiles.
 * Build: gcc -O2 -march=native -Inative/include bench/panelbench.c -Lbuild -leecpu -lpthread
 * Usage: panelbench THREADS */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eetune/eetune.h"

static double now(void) {
    struct timespec t;
    clock_gettime(getenv("WALL") ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float* random_floats(size_t n, unsigned seed) {
    float* x = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) / 16777216.0 - 0.5);
    }
    return x;
}

typedef struct {
    int n, k;
    float* w;      /* n x k */
    float* wp[5];  /* packed with V = 1..4 (index V) */
} matrix;

static float* pack(const float* w, int n, int k, int P) {
    const int panels = (n + P - 1) / P;
    float* p = aligned_alloc(64, (size_t)panels * k * P * sizeof(float));
    for (int q = 0; q < panels; q++)
        for (int c = 0; c < k; c++)
            for (int j = 0; j < P; j++) {
                const int row = q * P + j;
                p[((size_t)q * k + c) * P + j] = row < n ? w[(size_t)row * k + c] : 0.0f;
            }
    return p;
}

static int PF = 0; /* prefetch distance in bytes, 0 = none */

/* y[i][panel cols] for rows i0..i0+MR of x, panels q0..q1 */
static inline __attribute__((always_inline)) void panels(const float* wp, int n, int k, const float* x, float* y, int q0, int q1, const int MR, const int V, int i0) {
    const int P = 16 * V;
    for (int q = q0; q < q1; q++) {
        __m512 acc[8][4];
        _Pragma("GCC unroll 32") for (int i = 0; i < MR; i++)
            _Pragma("GCC unroll 32") for (int v = 0; v < V; v++) acc[i][v] = _mm512_setzero_ps();
        const float* b = wp + (size_t)q * k * P;
        const float* xa = x + (size_t)i0 * k;
        for (int p = 0; p < k; p++) {
            __m512 w[4];
            _Pragma("GCC unroll 32") for (int v = 0; v < V; v++) w[v] = _mm512_load_ps(b + (size_t)p * P + 16 * v);
            if (PF) _mm_prefetch((const char*)(b + (size_t)p * P) + PF, _MM_HINT_T0);
            _Pragma("GCC unroll 32") for (int i = 0; i < MR; i++) {
                const __m512 a = _mm512_set1_ps(xa[(size_t)i * k + p]);
                _Pragma("GCC unroll 32") for (int v = 0; v < V; v++) acc[i][v] = _mm512_fmadd_ps(a, w[v], acc[i][v]);
            }
        }
        _Pragma("GCC unroll 32") for (int i = 0; i < MR; i++)
            _Pragma("GCC unroll 32") for (int v = 0; v < V; v++) {
                const int j0 = q * P + 16 * v;
                if (j0 >= n) break;
                const int cnt = n - j0 < 16 ? n - j0 : 16;
                _mm512_mask_storeu_ps(y + (size_t)(i0 + i) * n + j0, (__mmask16)((1u << cnt) - 1), acc[i][v]);
            }
    }
}

#define CASE(MR, V) panels(wp, n, k, x, y, q0, q1, MR, V, i0)
static void run_panels(const float* wp, int n, int k, const float* x, float* y, int m, int V, int q0, int q1) {
    for (int i0 = 0; i0 < m; i0 += 8) {
        const int mr = m - i0 < 8 ? m - i0 : 8;
#define VS(MR) switch (V) { case 1: CASE(MR, 1); break; case 2: CASE(MR, 2); break; case 3: CASE(MR, 3); break; default: CASE(MR, 4); }
        switch (mr) {
        case 1: VS(1); break;
        case 2: VS(2); break;
        case 4: VS(4); break;
        default: VS(8);
        }
    }
}

/* ---- a minimal 2-thread runner: thread 1 spins on a generation counter */
typedef struct {
    matrix* mats;
    int count, m, V, passes;
    const float* x;
    float* y;
} work;
static work W;
static volatile int gen, done_gen;
static int nthreads = 1;

static void do_part(int tid) {
    for (int p = 0; p < W.passes; p++)
        for (int i = 0; i < W.count; i++) {
            const matrix* mt = &W.mats[i];
            const int P = 16 * W.V, panelsn = (mt->n + P - 1) / P;
            const int q0 = (int)((long)panelsn * tid / nthreads), q1 = (int)((long)panelsn * (tid + 1) / nthreads);
            run_panels(mt->wp[W.V], mt->n, mt->k, W.x, W.y, W.m, W.V, q0, q1);
            if (nthreads > 1) { /* barrier per matrix, as the pool has one per GEMV */
                static volatile int arrive[2];
                static volatile int sense;
                int s = sense;
                if (__sync_add_and_fetch(&arrive[0], 1) == nthreads) arrive[0] = 0, sense = !s;
                else while (sense == s) _mm_pause();
            }
        }
}

static void* worker(void* arg) {
    (void)arg;
    int seen = 0;
    for (;;) {
        while (gen == seen) _mm_pause();
        seen = gen;
        do_part(1);
        __sync_add_and_fetch(&done_gen, 1);
    }
    return 0;
}

int main(int argc, char** argv) {
    nthreads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2) PF = atoi(argv[2]);
    ee_set_num_threads(nthreads);
    pthread_t th;
    if (nthreads > 1) pthread_create(&th, 0, worker, 0);
    const int dim = 288, hidden = 768, layers = 6, vocab = 32000;
    matrix mats[64];
    int count = 0;
    for (int l = 0; l < layers; l++) {
        for (int i = 0; i < 4; i++) mats[count++] = (matrix){dim, dim, 0, {0}};
        for (int i = 0; i < 2; i++) mats[count++] = (matrix){hidden, dim, 0, {0}};
        mats[count++] = (matrix){dim, hidden, 0, {0}};
    }
    mats[count++] = (matrix){vocab, dim, 0, {0}};
    double params = 0;
    for (int i = 0; i < count; i++) {
        mats[i].w = random_floats((size_t)mats[i].n * mats[i].k, 7 + i);
        for (int V = 1; V <= 4; V++) mats[i].wp[V] = pack(mats[i].w, mats[i].n, mats[i].k, 16 * V);
        params += (double)mats[i].n * mats[i].k;
    }
    float* x = random_floats((size_t)16 * 2048, 3);
    float* y = malloc((size_t)16 * 32000 * sizeof(float));
    float* y2 = malloc((size_t)16 * 32000 * sizeof(float));
    /* correctness of the packed kernel against ee_gemm, each m and V, the LM head and w2 */
    const int ms[] = {1, 2, 4, 8, 16};
    for (int b = 0; b < 5; b++)
        for (int V = 1; V <= 4; V++)
            for (int i = count - 2; i < count; i++) {
                const matrix* mt = &mats[i];
                ee_gemm(0, 1, ms[b], mt->n, mt->k, 1.0f, x, mt->k, mt->w, EE_F32, mt->k, 0.0f, y, mt->n);
                run_panels(mt->wp[V], mt->n, mt->k, x, y2, ms[b], V, 0, (mt->n + 16 * V - 1) / (16 * V));
                double err = 0;
                for (size_t e = 0; e < (size_t)ms[b] * mt->n; e++) err = fmax(err, fabs(y[e] - y2[e]));
                if (err > 1e-3) printf("MISMATCH m %d V %d mat %d: %g\n", ms[b], V, i, err);
            }
    enum { TR = 5, NV = 6 }; /* variant 0 = ee_gemm, 1..4 = panels V */
    double sec[5][NV][TR];
    for (int t = -1; t < TR; t++)
        for (int b = 0; b < 5; b++)
            for (int v = 0; v < NV; v++) {
                const int passes = 5;
                const double t0 = now();
                if (v == 0 || v == 5) {
                    for (int p = 0; p < passes; p++)
                        for (int i = 0; i < count; i++) ee_gemm(0, 1, ms[b], mats[i].n, mats[i].k, 1.0f, x, mats[i].k, v ? (void*)mats[i].wp[2] : mats[i].w, v ? EE_F32_PANELS : EE_F32, mats[i].k, 0.0f, y, mats[i].n);
                } else {
                    W = (work){mats, count, ms[b], v, passes, x, y};
                    if (nthreads > 1) {
                        const int d = done_gen;
                        __sync_add_and_fetch(&gen, 1);
                        do_part(0);
                        while (done_gen == d) _mm_pause();
                    } else do_part(0);
                }
                if (t >= 0) sec[b][v][t] = (now() - t0) / passes;
            }
    printf("15M GEMVs, %.2f M weights, %d threads, prefetch %d B; tok/s-equivalent median (min..max) of %d\n", params / 1e6, nthreads, PF, TR);
    printf("%3s %-22s %-22s %-22s %-22s %-22s %-22s\n", "m", "ee_gemm", "panel16", "panel32", "panel48", "panel64", "lib panels");
    for (int b = 0; b < 5; b++) {
        printf("%3d", ms[b]);
        for (int v = 0; v < NV; v++) {
            double s[TR];
            for (int t = 0; t < TR; t++) s[t] = ms[b] / sec[b][v][t];
            for (int i = 0; i < TR; i++)
                for (int j = i + 1; j < TR; j++)
                    if (s[j] < s[i]) { double z = s[i]; s[i] = s[j]; s[j] = z; }
            char c[64];
            snprintf(c, sizeof c, "%.0f (%.0f..%.0f)", s[TR / 2], s[0], s[TR - 1]);
            printf(" %-22s", c);
        }
        printf("\n");
    }
    return 0;
}
