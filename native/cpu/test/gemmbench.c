/*
 * Speed of the GEMM paths, in three sections (all by default, or the ones named):
 *   roofline  memory read bandwidth (GB/s) with the same thread count: a STREAM-like sum over 512 MiB;
 *   blas      C = A B^T on tuning shapes: ee_gemm through OpenBLAS (path 1: single-threaded sgemm on slices run by our
 *             pool), the packed fallback (path 2), and cblas_sgemm called directly with OpenBLAS's own threads;
 *   pretrain  the GEMMs of one layer's training step at `ee pretrain`'s shapes (4096 rows, dim 128, hidden 352; forward
 *             y = x W^T, backward dx = dy W and dW = dy^T x) as one unit: the same three variants as blas, per GEMM
 *             and all together;
 *   gemv      decode: y = x W^T for batch m = 1, 2, 4, 8, 16 over every weight matrix of a 15M and a 110M llama2.c
 *             model (f32, bf16, f16 weights, f32 and bf16 packed by ee_pack_panels(_bf16); a separate copy per layer, so nothing
 *             is served from cache that would not be in a real model): GB/s of weights streamed, and the tokens/s
 *             this GEMV work alone allows (m tokens per pass), with the ratio to m = 1 and to the roofline; then the
 *             panels' gain over the row tiles per m and m = 8's tok/s over m = 1 f32's (per-trial ratios);
 *   step110m  one decode step's GEMVs (m = 1) of the 110M model with the weights where the checkpoint files put them:
 *             f32 28 bytes past a cache line (llama2.c's header), bf16 8 bytes past one (the test copy's safetensors
 *             header) and bf16 on a line; 30 passes interleaved across the three, min and median ms per step (the
 *             min is the figure least touched by other processes on a shared machine);
 *   peak      arithmetic peak per core with `threads` threads, each running independent accumulator chains: f32 FMAs
 *             and the 8-bit panels' integer products into 32-bit sums, in GMAC/s: 8-bit quads (vpdpbusd) where the CPU
 *             has AVX-512 VNNI, else 16-bit pairs on AVX2 (vpmaddwd + vpaddd): the floors a batch's GEMMs are held to;
 *   ce        the tuning step's fused linear + cross-entropy (2048 rows, dim 288, vocab 32000) against three
 *             cblas_sgemm calls of its shapes; ROW_BLOCK numbers after `ce` add runs with that row-block cap.
 * Every figure is the median of 5 trials interleaved across the variants, so that load from other processes hits
 * them alike; "spread" is min..max of the trials.
 * Usage: eecpu_gemmbench [threads] [roofline] [blas] [cpu] [pretrain] [gemv | gemv15m | gemv110m] [step110m] [peak] [ce [ROW_BLOCK...]]
 */
#include <dlfcn.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eetune/eetune.h"

#define TRIALS 5

/* "cpu" on the command line: the pretrain and gemv sections time by the process's CPU time (all threads) instead of
 * the wall clock, a figure that a machine shared with other work disturbs less (spin-waiting counts as work; with one
 * thread it is the figure to compare on a shared machine). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_on(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void* x, const void* y) {
    const double a = *(const double*)x, b = *(const double*)y;
    return a < b ? -1 : a > b;
}

/* median, min and max of TRIALS values */
typedef struct {
    double median, min, max;
} spread;

static spread spread_of(const double* v) {
    double s[TRIALS];
    memcpy(s, v, sizeof s);
    qsort(s, TRIALS, sizeof(double), cmp_double);
    return (spread){s[TRIALS / 2], s[0], s[TRIALS - 1]};
}

static float* random_floats(size_t n, unsigned seed) {
    float* x = malloc(n * sizeof(float));
    if (!x) {
        fprintf(stderr, "gemmbench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) / 16777216.0 - 0.5);
    }
    return x;
}

/* ---- roofline --------------------------------------------------------------------------------------------------- */

typedef struct {
    const float* x;
    size_t n;
    float sum;
} read_part;

static void* read_sum(void* p) {
    read_part* r = p;
    __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 16 <= r->n; i += 16) {
        s0 = _mm_add_ps(s0, _mm_load_ps(r->x + i));
        s1 = _mm_add_ps(s1, _mm_load_ps(r->x + i + 4));
        s2 = _mm_add_ps(s2, _mm_load_ps(r->x + i + 8));
        s3 = _mm_add_ps(s3, _mm_load_ps(r->x + i + 12));
    }
    float out[4];
    _mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3)));
    r->sum = out[0] + out[1] + out[2] + out[3];
    return 0;
}

/* Seconds from starting fn on each of `threads` parts (`size` bytes apart from `parts`) to the last one's end */
static double timed_threads(int threads, void* (*fn)(void*), void* parts, size_t size) {
    pthread_t th[256];
    const double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&th[i], 0, fn, (char*)parts + (size_t)i * size);
    for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
    return now() - t0;
}

/* GB/s of reading 512 MiB with `threads` threads, each summing its own contiguous part */
static spread roofline(int threads) {
    const size_t n = (size_t)128 << 20;
    float* x = aligned_alloc(64, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    double gbs[TRIALS];
    for (int t = 0; t < TRIALS; t++) {
        read_part parts[256];
        for (int i = 0; i < threads; i++) parts[i] = (read_part){x + n * i / threads / 16 * 16, (n * (i + 1) / threads - n * i / threads) / 16 * 16, 0};
        gbs[t] = n * sizeof(float) / timed_threads(threads, read_sum, parts, sizeof parts[0]) / 1e9;
    }
    free(x);
    return spread_of(gbs);
}

/* ---- BLAS vs our pool over single-threaded BLAS ---------------------------------------------------------------- */

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

static void blas_section(int threads) {
    void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    sgemm_fn sgemm = lib ? (sgemm_fn)dlsym(lib, "cblas_sgemm") : 0;
    void (*blas_threads)(int) = lib ? (void (*)(int))dlsym(lib, "openblas_set_num_threads") : 0;
    if (!sgemm || !blas_threads || !(ee_features() & 2)) {
        printf("blas: OpenBLAS not found, section skipped\n");
        return;
    }
    const int shapes[][3] = {{4096, 512, 512}, {1024, 32000, 288}, {2048, 2048, 2048}, {256, 256, 256}};
    printf("\nC = A B^T (f32), GFLOP/s, %d threads: median (min..max)\n", threads);
    printf("%-20s %-22s %-22s %-22s %s\n", "m x n x k", "OpenBLAS own threads", "ee: pool + 1-thr BLAS", "ee: fallback", "ee BLAS / OpenBLAS");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = random_floats((size_t)m * k, 1), *b = random_floats((size_t)n * k, 2), *c = malloc((size_t)m * n * sizeof(float));
        const double flops = 2.0 * m * n * k;
        const int reps = (int)(2e9 / flops) + 1;
        double g[3][TRIALS];
        for (int t = -1; t < TRIALS; t++) /* trial -1 warms up */
            for (int v = 0; v < 3; v++) {
                /* OpenBLAS's own pool for the direct call; inside ee_gemm it runs single-threaded on our slices */
                blas_threads(v == 0 ? threads : 1);
                if (v) ee_set_gemm_path(v);
                const double t0 = now();
                for (int r = 0; r < reps; r++) {
                    if (v == 0) sgemm(101, 111, 112, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
                    else ee_gemm(0, 1, m, n, k, 1.0f, a, k, b, EE_F32, k, 0.0f, c, n);
                }
                if (t >= 0) g[v][t] = flops * reps / (now() - t0) / 1e9;
            }
        ee_set_gemm_path(0);
        blas_threads(1);
        spread x[3];
        char cell[3][64], shape[32];
        for (int v = 0; v < 3; v++) {
            x[v] = spread_of(g[v]);
            snprintf(cell[v], sizeof cell[v], "%.1f (%.1f..%.1f)", x[v].median, x[v].min, x[v].max);
        }
        snprintf(shape, sizeof shape, "%d x %d x %d", m, n, k);
        printf("%-20s %-22s %-22s %-22s %.3f\n", shape, cell[0], cell[1], cell[2], x[1].median / x[0].median);
        free(a), free(b), free(c);
    }
}

/* ---- one layer's training GEMMs --------------------------------------------------------------------------------- */

typedef struct {
    int ta, tb, m, n, k;
} gemm_shape;

static void pretrain_section(int threads) {
    void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    sgemm_fn sgemm = lib ? (sgemm_fn)dlsym(lib, "cblas_sgemm") : 0;
    void (*blas_threads)(int) = lib ? (void (*)(int))dlsym(lib, "openblas_set_num_threads") : 0;
    const int have_blas = sgemm && blas_threads && (ee_features() & 2);
    const int rows = 4096, d = 128, f = 352;
    /* forward q, k, v, o, gate, up, down (y = x W^T); backward of each: dx = dy W, dW = dy^T x */
    const gemm_shape shapes[] = {{0, 1, rows, d, d}, {0, 1, rows, f, d}, {0, 1, rows, d, f}, {0, 0, rows, d, d}, {0, 0, rows, d, f},
                                 {0, 0, rows, f, d}, {1, 0, d, d, rows}, {1, 0, f, d, rows}, {1, 0, d, f, rows}};
    const int count[] = {4, 2, 1, 4, 2, 1, 4, 2, 1}; /* how many of each shape one layer's step does */
    const int nshapes = sizeof shapes / sizeof shapes[0];
    float *a = random_floats((size_t)rows * f, 1), *b = random_floats((size_t)rows * f, 2), *c = random_floats((size_t)rows * f, 3);
    printf("\none layer's training GEMMs (4096 rows, dim 128, hidden 352), GFLOP per %s second, %d threads: median (min..max)\n",
           bench_clock == CLOCK_MONOTONIC ? "wall" : "CPU", threads);
    printf("%-24s %-22s %-22s %-22s\n", "tA tB m x n x k (count)", "OpenBLAS own threads", "ee: pool + 1-thr BLAS", "ee: fallback");
    double total[3][TRIALS] = {{0}}, layer_flops = 0;
    for (int s = 0; s < nshapes; s++) layer_flops += 2.0 * shapes[s].m * shapes[s].n * shapes[s].k * count[s];
    for (int s = 0; s < nshapes; s++) {
        const gemm_shape g = shapes[s];
        const int lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n;
        const double flops = 2.0 * g.m * g.n * g.k;
        const int reps = (int)(1e9 / flops) + 1;
        double gf[3][TRIALS];
        for (int t = -1; t < TRIALS; t++)
            for (int v = have_blas ? 0 : 2; v < 3; v++) {
                if (have_blas) blas_threads(v == 0 ? threads : 1);
                if (v) ee_set_gemm_path(v);
                const double t0 = now_on(bench_clock);
                for (int r = 0; r < reps; r++) {
                    if (v == 0) sgemm(101, g.ta ? 112 : 111, g.tb ? 112 : 111, g.m, g.n, g.k, 1.0f, a, lda, b, ldb, 0.0f, c, g.n);
                    else ee_gemm(g.ta, g.tb, g.m, g.n, g.k, 1.0f, a, lda, b, EE_F32, ldb, 0.0f, c, g.n);
                }
                const double sec = (now_on(bench_clock) - t0) / reps;
                if (t >= 0) {
                    gf[v][t] = flops / sec / 1e9;
                    total[v][t] += sec * count[s];
                }
            }
        ee_set_gemm_path(0);
        if (have_blas) blas_threads(1);
        char cell[3][64] = {"-", "-", "-"}, shape[48];
        for (int v = have_blas ? 0 : 2; v < 3; v++) {
            const spread x = spread_of(gf[v]);
            snprintf(cell[v], sizeof cell[v], "%.1f (%.1f..%.1f)", x.median, x.min, x.max);
        }
        snprintf(shape, sizeof shape, "%c %c %d x %d x %d (%d)", g.ta ? 'T' : 'N', g.tb ? 'T' : 'N', g.m, g.n, g.k, count[s]);
        printf("%-24s %-22s %-22s %-22s\n", shape, cell[0], cell[1], cell[2]);
    }
    char cell[3][64] = {"-", "-", "-"};
    for (int v = have_blas ? 0 : 2; v < 3; v++) {
        double r[TRIALS];
        for (int t = 0; t < TRIALS; t++) r[t] = layer_flops / total[v][t] / 1e9;
        const spread x = spread_of(r);
        snprintf(cell[v], sizeof cell[v], "%.1f (%.1f..%.1f)", x.median, x.min, x.max);
    }
    printf("%-24s %-22s %-22s %-22s\n", "whole layer", cell[0], cell[1], cell[2]);
    free(a), free(b), free(c);
}

/* ---- decode GEMV over whole models ---------------------------------------------------------------------------- */

typedef struct {
    const char* name;
    int dim, hidden, layers, vocab;
} model;

/* The GEMMs of one decode step: per layer wq, wk, wv, wo (dim x dim), w1, w3 (hidden x dim), w2 (dim x hidden), then
 * the classifier (vocab x dim), each y = x W^T. */
typedef struct {
    int n, k;
    const void* w[7]; /* the weight in f32, bf16, f16, f32 packed by ee_pack_panels, bf16 by ee_pack_panels_bf16, 8-bit by ee_pack_panels_i8, f16 by ee_pack_panels_f16 */
} matrix;

enum { NFORMS = 7 }; /* weight forms */
static const int dtypes[NFORMS] = {EE_F32, EE_BF16, EE_F16, EE_F32_PANELS, EE_BF16_PANELS, EE_I8_PANELS, EE_F16_PANELS};
static const char* dtype_names[NFORMS] = {"f32", "bf16", "f16", "f32p", "bf16p", "i8p", "f16p"};
static size_t form_bytes(int d) { return dtypes[d] == EE_F32 || dtypes[d] == EE_F32_PANELS ? 4 : dtypes[d] == EE_I8_PANELS ? 1 : 2; }

static int model_matrices(const model* md, matrix* out) {
    int count = 0;
    for (int l = 0; l < md->layers; l++) {
        for (int i = 0; i < 4; i++) out[count++] = (matrix){md->dim, md->dim, {0}};
        for (int i = 0; i < 2; i++) out[count++] = (matrix){md->hidden, md->dim, {0}};
        out[count++] = (matrix){md->dim, md->hidden, {0}};
    }
    out[count++] = (matrix){md->vocab, md->dim, {0}};
    unsigned seed = 7;
    for (int i = 0; i < count; i++) {
        const size_t len = (size_t)out[i].n * out[i].k;
        float* w = random_floats(len, seed++);
        for (int d = 1; d < 3; d++) {
            void* h = malloc(len * sizeof(uint16_t));
            ee_cast(h, dtypes[d], w, EE_F32, (int64_t)len);
            out[i].w[d] = h;
        }
        out[i].w[0] = w;
        float* packed = aligned_alloc(64, (size_t)ee_panels_size(out[i].n, out[i].k) * sizeof(float)); /* on a line, as ee_alloc */
        ee_pack_panels(packed, w, out[i].n, out[i].k, out[i].k);
        out[i].w[3] = packed;
        uint16_t* packed16 = aligned_alloc(64, (size_t)ee_panels_size(out[i].n, out[i].k) * sizeof(uint16_t));
        ee_pack_panels_bf16(packed16, out[i].w[1], out[i].n, out[i].k, out[i].k);
        out[i].w[4] = packed16;
        char* packed8 = aligned_alloc(64, (size_t)ee_panels_i8_bytes(out[i].n, out[i].k));
        ee_pack_panels_i8(packed8, NULL, NULL, w, out[i].n, out[i].k, out[i].k);
        out[i].w[5] = packed8;
        uint16_t* packedh = aligned_alloc(64, (size_t)ee_panels_size(out[i].n, out[i].k) * sizeof(uint16_t));
        ee_pack_panels_f16(packedh, out[i].w[2], out[i].n, out[i].k, out[i].k);
        out[i].w[6] = packedh;
    }
    return count;
}

static const model models[] = {{"15M (dim 288, hidden 768, 6 layers, vocab 32000)", 288, 768, 6, 32000},
                                {"110M (dim 768, hidden 2048, 12 layers, vocab 32000)", 768, 2048, 12, 32000}};

/* which: 1 = 15M, 2 = 110M, 3 = both */
static void gemv_section(int threads, double roof_gbs, int which) {
    const int ms[] = {1, 2, 4, 8, 16};
    enum { NM = sizeof ms / sizeof ms[0] };
    float* x = random_floats((size_t)16 * 2048, 3);
    float* y = malloc((size_t)16 * 32000 * sizeof(float));
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        if (!(which >> mi & 1)) continue;
        const model* md = &models[mi];
        matrix mats[12 * 7 + 1];
        const int count = model_matrices(md, mats);
        double params = 0;
        for (int i = 0; i < count; i++) params += (double)mats[i].n * mats[i].k;
        double sec[NFORMS][NM][TRIALS];
        for (int t = -1; t < TRIALS; t++) /* trial -1 warms up; the forms one after another at each m, so that they meet the same load */
            for (int b = 0; b < NM; b++)
                for (int d = 0; d < NFORMS; d++) {
                    const int passes = (int)(0.05 / (params * form_bytes(d) / 20e9)) + 1; /* ~0.05 s at 20 GB/s */
                    const double t0 = now_on(bench_clock);
                    for (int p = 0; p < passes; p++)
                        for (int i = 0; i < count; i++)
                            ee_gemm(0, 1, ms[b], mats[i].n, mats[i].k, 1.0f, x, mats[i].k, mats[i].w[d], dtypes[d], mats[i].k, 0.0f, y, mats[i].n);
                    if (t >= 0) sec[d][b][t] = (now_on(bench_clock) - t0) / passes;
                }
        printf("\ndecode GEMV, %s: %.1f M weights, %d threads, %s time; median (min..max) of %d trials (f32p, bf16p, i8p: packed by ee_pack_panels, ee_pack_panels_bf16, ee_pack_panels_i8)\n", md->name,
               params / 1e6, threads, bench_clock == CLOCK_MONOTONIC ? "wall" : "CPU", TRIALS);
        printf("%-5s %3s %-24s %-26s %9s %11s\n", "dtype", "m", "weights GB/s", "tok/s (GEMV work only)", "vs m = 1", "vs roofline");
        for (int d = 0; d < NFORMS; d++)
            for (int b = 0; b < NM; b++) {
                double gbs[TRIALS], tps[TRIALS];
                const double bytes = params * form_bytes(d);
                for (int t = 0; t < TRIALS; t++) {
                    gbs[t] = bytes / sec[d][b][t] / 1e9;
                    tps[t] = ms[b] / sec[d][b][t];
                }
                const spread g = spread_of(gbs), r = spread_of(tps);
                double tps1[TRIALS];
                for (int t = 0; t < TRIALS; t++) tps1[t] = 1.0 / sec[d][0][t];
                char cg[64], cr[64];
                snprintf(cg, sizeof cg, "%.1f (%.1f..%.1f)", g.median, g.min, g.max);
                snprintf(cr, sizeof cr, "%.0f (%.0f..%.0f)", r.median, r.min, r.max);
                printf("%-5s %3d %-24s %-26s %8.2fx %10.2fx\n", dtype_names[d], ms[b], cg, cr, r.median / spread_of(tps1).median, g.median / roof_gbs);
            }
        /* the 16- and 8-bit weights' gain over f32 at m = 1: median (min..max) of the per-trial ratios */
        for (int d = 1; d < NFORMS; d++) {
            if (dtypes[d] == EE_F32_PANELS) continue; /* narrower forms only; f32p against f32 follows per m */
            double ratio[TRIALS];
            for (int t = 0; t < TRIALS; t++) ratio[t] = sec[0][0][t] / sec[d][0][t];
            const spread r = spread_of(ratio);
            printf("m = 1 tok/s, %s / f32: %.2fx (%.2f..%.2f)\n", dtype_names[d], r.median, r.min, r.max);
        }
        /* the panels' gain over the row tiles (f32) per m, and the batch-8 / batch-1 ratios: per-trial ratios */
        for (int b = 0; b < NM; b++) {
            double ratio[TRIALS];
            for (int t = 0; t < TRIALS; t++) ratio[t] = sec[0][b][t] / sec[3][b][t];
            const spread r = spread_of(ratio);
            printf("m = %2d tok/s, f32p / f32: %.2fx (%.2f..%.2f)\n", ms[b], r.median, r.min, r.max);
        }
        for (int d = 0; d < NFORMS; d += 3) {
            double ratio[TRIALS];
            for (int t = 0; t < TRIALS; t++) ratio[t] = 8.0 * sec[0][0][t] / sec[d][3][t];
            const spread r = spread_of(ratio);
            printf("m = 8 %s tok/s / m = 1 f32 tok/s: %.2fx (%.2f..%.2f)\n", dtype_names[d], r.median, r.min, r.max);
        }
        for (int i = 0; i < count; i++)
            for (int d = 0; d < NFORMS; d++) free((void*)mats[i].w[d]);
    }
    free(x), free(y);
}

/* ---- the fused linear + cross-entropy of the tuning step -------------------------------------------------------- */

/* The EE-Tuning step's LM-head work (2048 rows, dim 288, vocab 32000, forward and backward) in useful GFLOP/s
 * (3 GEMMs' worth, 3 * 2 * rows * dim * vocab): ee_linear_cross_entropy with its own row blocks and with the
 * row-block caps named, the same three GEMMs through ee_gemm on all rows at once (no reductions: what the slicing
 * alone gives), and cblas_sgemm on OpenBLAS's own threads (the reference rate of issue 10's target). */
static void ce_section(int threads, const int* row_blocks, int n_row_blocks) {
    void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    sgemm_fn sgemm = lib ? (sgemm_fn)dlsym(lib, "cblas_sgemm") : 0;
    void (*blas_threads)(int) = lib ? (void (*)(int))dlsym(lib, "openblas_set_num_threads") : 0;
    if (!sgemm || !blas_threads || !(ee_features() & 2)) {
        printf("ce: OpenBLAS not found, section skipped\n");
        return;
    }
    const int rows = 2048, dim = 288, vocab = 32000;
    float *x = random_floats((size_t)rows * dim, 1), *w = random_floats((size_t)vocab * dim, 2);
    float *dx = malloc((size_t)rows * dim * sizeof(float)), *dw = calloc((size_t)vocab * dim, sizeof(float));
    float *loss = malloc(rows * sizeof(float)), *gw = malloc(rows * sizeof(float));
    float* logits = malloc((size_t)rows * vocab * sizeof(float));
    int32_t* targets = malloc(rows * sizeof(int32_t));
    for (int r = 0; r < rows; r++) targets[r] = (int32_t)((r * 2654435761u) % vocab), gw[r] = 1.0f / rows;
    const double flops = 3 * 2.0 * rows * dim * vocab;
    const int variants = 2 + n_row_blocks;
    double g[16][TRIALS];
    for (int t = -1; t < TRIALS; t++)
        for (int v = 0; v < variants; v++) {
            blas_threads(v == 0 ? threads : 1);
            const double t0 = now_on(bench_clock);
            if (v < 2) { /* logits = x W^T, dx = dlogits W, dw += dlogits^T x */
                if (v == 0) {
                    sgemm(101, 111, 112, rows, vocab, dim, 1.0f, x, dim, w, dim, 0.0f, logits, vocab);
                    sgemm(101, 111, 111, rows, dim, vocab, 1.0f, logits, vocab, w, dim, 0.0f, dx, dim);
                    sgemm(101, 112, 111, vocab, dim, rows, 1.0f, logits, vocab, x, dim, 1.0f, dw, dim);
                } else {
                    ee_gemm(0, 1, rows, vocab, dim, 1.0f, x, dim, w, EE_F32, dim, 0.0f, logits, vocab);
                    ee_gemm(0, 0, rows, dim, vocab, 1.0f, logits, vocab, w, EE_F32, dim, 0.0f, dx, dim);
                    ee_gemm(1, 0, vocab, dim, rows, 1.0f, logits, vocab, x, EE_F32, dim, 1.0f, dw, dim);
                }
            } else if (ee_linear_cross_entropy(loss, dx, dw, 0, 0, x, w, EE_F32, targets, gw, rows, dim, vocab, row_blocks[v - 2], 1.0f)) {
                printf("ce: %s\n", ee_last_error());
                exit(1);
            }
            if (t >= 0) g[v][t] = flops / (now_on(bench_clock) - t0) / 1e9;
        }
    blas_threads(1);
    printf("\nfused linear + cross-entropy, 2048 rows x dim 288 x vocab 32000, forward + backward, useful GFLOP per %s second, %d threads:\n",
           bench_clock == CLOCK_MONOTONIC ? "wall" : "CPU", threads);
    const spread ref = spread_of(g[0]);
    for (int v = 0; v < variants; v++) {
        char name[64];
        if (v == 0) snprintf(name, sizeof name, "3 x cblas_sgemm, own threads");
        else if (v == 1) snprintf(name, sizeof name, "3 x ee_gemm, all rows");
        else snprintf(name, sizeof name, "fused CE, row_block %d", row_blocks[v - 2]);
        const spread x = spread_of(g[v]);
        printf("%-32s %.1f (%.1f..%.1f)  %.3fx sgemm\n", name, x.median, x.min, x.max, x.median / ref.median);
    }
    free(x), free(w), free(dx), free(dw), free(loss), free(gw), free(logits), free(targets);
}

/* ---- one 110M decode step's GEMVs, weights at the checkpoints' offsets ------------------------------------------ */

static int by_value(const void* x, const void* y) {
    const double a = *(const double*)x, b = *(const double*)y;
    return a < b ? -1 : a > b;
}

static void step110m_section(int threads) {
    enum { PASSES = 30 };
    const model* md = &models[1];
    matrix mats[12 * 7 + 1];
    const int count = model_matrices(md, mats);
    struct {
        int d, offset;
        const char* name;
        char* base;
    } v[] = {{0, 28, "f32, 28 bytes past a line", 0}, {1, 8, "bf16, 8 bytes past a line", 0}, {1, 0, "bf16, on a line", 0}};
    enum { NV = sizeof v / sizeof v[0] };
    double params = 0;
    for (int i = 0; i < count; i++) params += (double)mats[i].n * mats[i].k;
    for (int x = 0; x < NV; x++) { /* the matrices back to back, as in a file */
        const size_t elem = v[x].d ? 2 : 4;
        v[x].base = aligned_alloc(64, ((size_t)params * elem + 64 + 63) / 64 * 64);
        char* w = v[x].base + v[x].offset;
        for (int i = 0; i < count; i++) {
            const size_t bytes = (size_t)mats[i].n * mats[i].k * elem;
            memcpy(w, mats[i].w[v[x].d], bytes);
            w += bytes;
        }
    }
    float* x = random_floats(2048, 3);
    float* y = malloc(32000 * sizeof(float));
    double sec[NV][PASSES];
    for (int p = -2; p < PASSES; p++) /* two passes warm up */
        for (int q = 0; q < NV; q++) {
            const size_t elem = v[q].d ? 2 : 4;
            const char* w = v[q].base + v[q].offset;
            const double t0 = now();
            for (int i = 0; i < count; i++) {
                ee_gemm(0, 1, 1, mats[i].n, mats[i].k, 1.0f, x, mats[i].k, w, dtypes[v[q].d], mats[i].k, 0.0f, y, mats[i].n);
                w += (size_t)mats[i].n * mats[i].k * elem;
            }
            if (p >= 0) sec[q][p] = now() - t0;
        }
    printf("\none decode step's GEMVs, %s, m = 1, %d threads: %d passes\n", md->name, threads, PASSES);
    printf("%-28s %-22s %-12s\n", "weights", "min ms (GB/s)", "median ms");
    for (int q = 0; q < NV; q++) {
        qsort(sec[q], PASSES, sizeof(double), by_value);
        const double bytes = params * (v[q].d ? 2 : 4);
        printf("%-28s %6.2f (%5.1f)         %6.2f\n", v[q].name, sec[q][0] * 1e3, bytes / sec[q][0] / 1e9, sec[q][PASSES / 2] * 1e3);
    }
    printf("f32 / bf16 at the checkpoints' offsets, min: %.2fx\n", sec[0][0] / sec[1][0]);
    for (int q = 0; q < NV; q++) free(v[q].base);
    for (int i = 0; i < count; i++)
        for (int d = 0; d < NFORMS; d++) free((void*)mats[i].w[d]);
    free(x), free(y);
}

/* ---- peak --------------------------------------------------------------------------------------------------------- */

/* 12 independent chains of T (distinct starting values INIT(i), or the compiler merges them), enough to cover the
 * FMA latency (4 cycles) times two pipes; `iters` steps of all 12, the sums then kept in the thread's `sink` */
#define PEAK_CHAINS(T, INIT, STEP)                                                                                    \
    do {                                                                                                              \
        T a0 = INIT(0), a1 = INIT(1), a2 = INIT(2), a3 = INIT(3), a4 = INIT(4), a5 = INIT(5), a6 = INIT(6), a7 = INIT(7), a8 = INIT(8), \
          a9 = INIT(9), a10 = INIT(10), a11 = INIT(11);                                                               \
        for (long it = 0; it < iters; it++) {                                                                         \
            STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5); STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11); \
        }                                                                                                             \
        const T all[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};                                         \
        memcpy(sink, all, sizeof all);                                                                                \
    } while (0)

#define F512(i) _mm512_set1_ps((float)(i))
#define I512(i) _mm512_set1_epi32(i)
#define F256(i) _mm256_set1_ps((float)(i))
#define I256(i) _mm256_set1_epi32(i)

/* kind 0: f32 FMAs; 1: the 8-bit panels' integer products into 32-bit sums (here 8-bit quads, vpdpbusd) */
__attribute__((target("avx512f,avx512vnni"))) static void peak_512(long iters, int kind, char* sink) {
    const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    const __m512i u = _mm512_set1_epi8(3), v = _mm512_set1_epi8(5);
#define FMA(a) a = _mm512_fmadd_ps(a, x, y)
#define QUADS(a) a = _mm512_dpbusd_epi32(a, u, v)
    if (kind == 0) PEAK_CHAINS(__m512, F512, FMA);
    else PEAK_CHAINS(__m512i, I512, QUADS);
#undef FMA
#undef QUADS
}

__attribute__((target("avx2,fma"))) static void peak_256(long iters, int kind, char* sink) {
    const __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
    const __m256i v = _mm256_set1_epi16(5);
#define FMA(a) a = _mm256_fmadd_ps(a, x, y)
#define PAIRS(a) a = _mm256_add_epi32(a, _mm256_madd_epi16(a, v)) /* a as the 16-bit pairs: u, v alone would be hoisted */
    if (kind == 0) PEAK_CHAINS(__m256, F256, FMA);
    else PEAK_CHAINS(__m256i, I256, PAIRS);
#undef FMA
#undef PAIRS
}

static int peak_wide(void) { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"); }

typedef struct {
    long iters;
    int kind;
    char sink[12 * 64];
} peak_part;

static void* peak_run(void* p) {
    peak_part* r = p;
    if (peak_wide()) peak_512(r->iters, r->kind, r->sink);
    else peak_256(r->iters, r->kind, r->sink);
    return 0;
}

/* MACs per core per second of one kind, the threads started together */
static spread peak_of(int threads, int kind) {
    const int lanes = (peak_wide() ? 16 : 8) * (kind ? (peak_wide() ? 4 : 2) : 1); /* MACs per instruction */
    const long iters = 20000000L;
    double gmacs[TRIALS];
    for (int t = 0; t < TRIALS; t++) {
        peak_part parts[256];
        for (int i = 0; i < threads; i++) parts[i] = (peak_part){.iters = iters, .kind = kind};
        gmacs[t] = 12.0 * iters * lanes / timed_threads(threads, peak_run, parts, sizeof parts[0]) / 1e9;
    }
    return spread_of(gmacs);
}

static void peak_section(int threads) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("peak: needs AVX2 and FMA\n");
        return;
    }
    const spread f = peak_of(threads, 0), i = peak_of(threads, 1);
    printf("peak per core, %d threads: f32 FMA %.1f GMAC/s (%.1f..%.1f, %s); 8-bit panels' integer products %.1f GMAC/s (%.1f..%.1f, %s)\n", threads, f.median,
           f.min, f.max, peak_wide() ? "AVX-512" : "AVX2", i.median, i.min, i.max, peak_wide() ? "8-bit quads, vpdpbusd" : "16-bit pairs, vpmaddwd + vpaddd");
}

int main(int argc, char** argv) {
    setvbuf(stdout, 0, _IOLBF, 0); /* each line as soon as it is measured, also into a file */
    int first = 1, threads = 0;
    if (argc > 1 && atoi(argv[1]) > 0) threads = atoi(argv[first++]);
    threads = ee_set_num_threads(threads);
    int want_ce = 0, row_blocks[14] = {0}, n_row_blocks = 1; /* row block 0: the library's own choice */
    int want_roof = argc == first, want_blas = argc == first, want_pretrain = argc == first, want_gemv = argc == first ? 3 : 0, want_step = 0, want_peak = 0;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "roofline")) want_roof = 1;
        else if (!strcmp(argv[i], "blas")) want_blas = 1;
        else if (!strcmp(argv[i], "pretrain")) want_pretrain = 1;
        else if (!strcmp(argv[i], "cpu")) bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (!strcmp(argv[i], "ce")) want_ce = 1;
        else if (want_ce && atoi(argv[i]) > 0 && n_row_blocks < 14) row_blocks[n_row_blocks++] = atoi(argv[i]);
        else if (!strcmp(argv[i], "gemv")) want_gemv = 3;
        else if (!strcmp(argv[i], "gemv15m")) want_gemv |= 1;
        else if (!strcmp(argv[i], "gemv110m")) want_gemv |= 2;
        else if (!strcmp(argv[i], "step110m")) want_step = 1;
        else if (!strcmp(argv[i], "peak")) want_peak = 1;
        else {
            fprintf(stderr, "usage: eecpu_gemmbench [threads] [roofline] [blas] [cpu] [pretrain] [gemv | gemv15m | gemv110m] [step110m] [peak] [ce [ROW_BLOCK...]]\n");
            return 2;
        }
    }
    printf("features %d (1 AVX2, 2 OpenBLAS, 4 AVX-512), threads %d\n", ee_features(), threads);
    double roof = 0;
    if (want_roof || want_gemv) {
        const spread r = roofline(threads);
        roof = r.median;
        printf("roofline: memory read %.1f GB/s (%.1f..%.1f), %d threads\n", r.median, r.min, r.max, threads);
    }
    if (want_blas) blas_section(threads);
    if (want_pretrain) pretrain_section(threads);
    if (want_gemv) gemv_section(threads, roof, want_gemv);
    if (want_step) step110m_section(threads);
    if (want_peak) peak_section(threads);
    if (want_ce) ce_section(threads, row_blocks, n_row_blocks);
    return 0;
}
