/*
 * Smoke test of libeecpu: a few kernels against straightforward double-precision loops (the thorough suite is in
 * Java). Exits non-zero on the first failure. Run it also with EETUNE_NO_AVX512=1 for the AVX2 kernels and with
 * EETUNE_NO_AVX2=1 for the portable ones (ctest runs all three).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eetune/eetune.h"

static int failures;

/* max |got - want| against tol times scale, or (scale 0) times max |want| */
static void check_scaled(const char* what, const float* got, const double* want, size_t n, double tol, double scale) {
    double err = 0.0, top = 1e-30;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i])) err = INFINITY;
        err = fmax(err, fabs(got[i] - want[i]));
        top = fmax(top, fabs(want[i]));
    }
    if (scale <= 0) scale = top;
    if (!(err / scale <= tol)) {
        printf("FAIL %s: relative error %.3g > %.3g\n", what, err / scale, tol);
        failures++;
    }
}

static void check(const char* what, const float* got, const double* want, size_t n, double tol) { check_scaled(what, got, want, n, tol, 0); }

static float* randn(size_t n, unsigned* seed) {
    float* x = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = (float)((*seed >> 8) / 16777216.0 * 2.0 - 1.0);
    }
    return x;
}

static double b_value(const void* b, int dtype, size_t i) {
    float f;
    if (dtype == EE_F32) return ((const float*)b)[i];
    ee_cast(&f, EE_F32, (const uint16_t*)b + i, dtype, 1);
    return f;
}

static void test_gemm(unsigned* seed) {
    /* every batch size of the decode path (m <= 16) with n off its tiles (16, 8, 5, 4 or 3 weight rows on AVX-512; 8,
     * 4 or 3 on AVX2) and k off its steps (bf16 pairs of 32 or 16 elements, then 16 or 8, then a tail), also large
     * enough to run on several threads (1 x 333 x 290, 8 x 67 x 129); then past it */
    const int sizes[][3] = {{1, 1, 1},     {1, 37, 95},   {1, 333, 290}, {2, 5, 33},   {2, 19, 100}, {3, 17, 5},    {3, 29, 64},
                            {4, 11, 16},   {4, 13, 70},   {5, 4, 47},    {6, 8, 17},   {6, 9, 111},  {7, 10, 31},   {8, 67, 129},
                            {9, 13, 65},   {10, 2, 15},   {11, 7, 40},   {12, 5, 290}, {13, 9, 3},   {14, 6, 77},   {15, 14, 129},
                            {16, 31, 300}, {17, 3, 67},   {67, 129, 17}, {129, 67, 300}, {13, 40, 0}};
    const int paths[] = {0, 2, 1};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int pi = 0; pi < 3; pi++) {
            if (paths[pi] == 1 && !(ee_features() & 2)) continue;
            ee_set_gemm_path(paths[pi]);
            for (int dtype = EE_F32; dtype <= EE_F16; dtype++)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2; tb++)
                        for (int beta_case = 0; beta_case < 2; beta_case++) {
                            const int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                            const int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
                            float* a = randn((size_t)(ta ? k : m) * lda, seed);
                            float* b32 = randn((size_t)(tb ? n : k) * ldb, seed);
                            float* c = randn((size_t)m * ldc, seed);
                            void* b = b32;
                            uint16_t* b16 = malloc((size_t)(tb ? n : k) * ldb * 2 + 2);
                            if (dtype != EE_F32) {
                                ee_cast(b16, dtype, b32, EE_F32, (int64_t)(tb ? n : k) * ldb);
                                b = b16;
                            }
                            const float alpha = 0.75f, beta = beta_case ? 0.5f : 0.0f;
                            double* want = malloc((size_t)m * n * sizeof(double) + 1);
                            float* got = malloc((size_t)m * n * sizeof(float) + 1);
                            for (int i = 0; i < m; i++)
                                for (int j = 0; j < n; j++) {
                                    double acc = 0.0;
                                    for (int p = 0; p < k; p++)
                                        acc += (double)(ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
                                               b_value(b, dtype, tb ? (size_t)j * ldb + p : (size_t)p * ldb + j);
                                    want[(size_t)i * n + j] = alpha * acc + (beta_case ? beta * c[(size_t)i * ldc + j] : 0.0);
                                }
                            if (!beta_case) /* beta = 0 must ignore C, NaN included */
                                for (int i = 0; i < m; i++) c[(size_t)i * ldc] = NAN;
                            if (ee_gemm(ta, tb, m, n, k, alpha, a, lda, b, dtype, ldb, beta, c, ldc) != 0) {
                                printf("FAIL gemm returned an error: %s\n", ee_last_error());
                                failures++;
                            }
                            for (int i = 0; i < m; i++) memcpy(got + (size_t)i * n, c + (size_t)i * ldc, (size_t)n * sizeof(float));
                            char what[128];
                            snprintf(what, sizeof what, "gemm path %d %dx%dx%d ta %d tb %d dtype %d beta %g", paths[pi], m, n, k, ta, tb, dtype, beta);
                            check(what, got, want, (size_t)m * n, 1e-5);
                            free(a), free(b32), free(b16), free(c), free(want), free(got);
                        }
        }
    ee_set_gemm_path(0);
}

/* 16-bit weights as checkpoint files place them: rows a whole number of cache lines apart (ldb 64, 128 or 320
 * elements) starting at every even byte offset within a line, which the bf16 kernels split into a head up to the
 * line boundary, line-aligned pair blocks and a tail; k from below one block to several, with and without a tail. */
static void test_gemm_offsets(unsigned* seed) {
    const int shapes[][4] = {{1, 37, 100, 128}, {2, 9, 64, 64}, {5, 13, 290, 320}, {8, 19, 30, 64}, {16, 7, 128, 128}, {3, 17, 33, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int dtype = EE_BF16; dtype <= EE_F16; dtype++) {
            const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], ldb = shapes[s][3];
            float* a = randn((size_t)m * k, seed);
            float* b32 = randn((size_t)n * ldb, seed);
            uint16_t* line = aligned_alloc(64, ((size_t)n * ldb * 2 + 64 + 63) / 64 * 64);
            double* want = malloc((size_t)m * n * sizeof(double));
            float* c = malloc((size_t)m * n * sizeof(float));
            for (int offset = 0; offset < 64; offset += 2) {
                uint16_t* b = line + offset / 2;
                ee_cast(b, dtype, b32, EE_F32, (int64_t)n * ldb);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double acc = 0.0;
                        for (int p = 0; p < k; p++) acc += (double)a[(size_t)i * k + p] * b_value(b, dtype, (size_t)j * ldb + p);
                        want[(size_t)i * n + j] = acc;
                    }
                if (ee_gemm(0, 1, m, n, k, 1.0f, a, k, b, dtype, ldb, 0.0f, c, n) != 0) {
                    printf("FAIL gemm returned an error: %s\n", ee_last_error());
                    failures++;
                }
                char what[128];
                snprintf(what, sizeof what, "gemm %dx%dx%d ldb %d dtype %d, weights %d bytes past a line", m, n, k, ldb, dtype, offset);
                check(what, c, want, (size_t)m * n, 1e-5);
            }
            free(a), free(b32), free(line), free(want), free(c);
        }
}

/* ee_gemm with a panel-packed weight (EE_F32_PANELS, EE_BF16_PANELS, EE_F16_PANELS) against double loops: every m
 * the layout takes (1..16: each register tile and the rows re-read past 8 or 2), n below, at and past one 32-row
 * panel (the zero-padded last panel), odd k and k past the AVX2 kernels' 64-step blocks, rows of W and A with
 * padding, alpha and beta; the 16-bit forms also against f32 panels of the widened weights, bit for bit (the layout
 * and every product); and the calls it must refuse. */
static void test_gemm_panels(unsigned* seed) {
    const int ns[] = {1, 31, 32, 33, 70}, ks[] = {1, 7, 33, 64, 65, 150};
    static const int dtypes[3] = {EE_F32_PANELS, EE_BF16_PANELS, EE_F16_PANELS};
    static const char* names[3] = {"f32", "bf16", "f16"};
    for (int form = 0; form < 3; form++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                const int bf = form == 1, hf = form == 2, dtype = dtypes[form];
                const int n = ns[ni], k = ks[ki], ldw = k + 3, lda = k + 1, ldc = n + 2;
                float* w = randn((size_t)n * ldw, seed);
                uint16_t* wb = malloc((size_t)n * ldw * sizeof(uint16_t));
                ee_cast(wb, hf ? EE_F16 : EE_BF16, w, EE_F32, (int64_t)n * ldw);
                if (form) ee_cast(w, EE_F32, wb, hf ? EE_F16 : EE_BF16, (int64_t)n * ldw); /* the reference uses the 16-bit values */
                const int64_t size = ee_panels_size(n, k);
                if (size != (int64_t)((n + EE_PANEL_ROWS - 1) / EE_PANEL_ROWS) * EE_PANEL_ROWS * k) printf("FAIL ee_panels_size(%d, %d) = %lld\n", n, k, (long long)size), failures++;
                void* packed = malloc((size_t)size * sizeof(float));
                memset(packed, 0xff, (size_t)size * sizeof(float)); /* NaN: the padding rows must be written as zeros */
                if ((bf ? ee_pack_panels_bf16(packed, wb, n, k, ldw) : hf ? ee_pack_panels_f16(packed, wb, n, k, ldw) : ee_pack_panels(packed, w, n, k, ldw)) != 0)
                    printf("FAIL ee_pack_panels (%s): %s\n", names[form], ee_last_error()), failures++;
                /* 16-bit forms: the f32 panels of the widened weights, the reference for the layout and for every product's bits */
                float* widened = form ? malloc((size_t)size * sizeof(float)) : NULL;
                if (form) {
                    float* packed32 = malloc((size_t)size * sizeof(float));
                    ee_pack_panels(packed32, w, n, k, ldw);
                    ee_cast(widened, EE_F32, packed, hf ? EE_F16 : EE_BF16, size);
                    if (memcmp(widened, packed32, (size_t)size * sizeof(float)) != 0) printf("FAIL ee_pack_panels (%s) %dx%d: not the f32 layout\n", names[form], n, k), failures++;
                    memcpy(widened, packed32, (size_t)size * sizeof(float));
                    free(packed32);
                }
                for (int m = 1; m <= EE_PANELS_MAX_M; m++) {
                    float* a = randn((size_t)m * lda, seed);
                    float* c = randn((size_t)m * ldc, seed);
                    double* want = malloc((size_t)m * n * sizeof(double));
                    float* got = malloc((size_t)m * n * sizeof(float));
                    const float beta = m % 2 ? 0.0f : 0.5f;
                    double mag = 0.0; /* the largest sum of |terms|: what an f32 sum's error scales with (one output can cancel) */
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++) {
                            double acc = 0.0, abs_acc = 0.0;
                            for (int p = 0; p < k; p++) {
                                acc += (double)a[(size_t)i * lda + p] * w[(size_t)j * ldw + p];
                                abs_acc += fabs((double)a[(size_t)i * lda + p] * w[(size_t)j * ldw + p]);
                            }
                            want[(size_t)i * n + j] = 0.75 * acc + (beta == 0.0f ? 0.0 : beta * (double)c[(size_t)i * ldc + j]);
                            mag = fmax(mag, 0.75 * abs_acc + (beta == 0.0f ? 0.0 : fabs(beta * (double)c[(size_t)i * ldc + j])));
                        }
                    float* c32 = form ? malloc((size_t)m * ldc * sizeof(float)) : NULL;
                    if (form) memcpy(c32, c, (size_t)m * ldc * sizeof(float));
                    if (ee_gemm(0, 1, m, n, k, 0.75f, a, lda, packed, dtype, k, beta, c, ldc) != 0) printf("FAIL gemm panels: %s\n", ee_last_error()), failures++;
                    for (int i = 0; i < m; i++) memcpy(got + (size_t)i * n, c + (size_t)i * ldc, (size_t)n * sizeof(float));
                    char what[96];
                    snprintf(what, sizeof what, "gemm with %s panel-packed B, %dx%dx%d beta %.1f", names[form], m, n, k, beta);
                    check_scaled(what, got, want, (size_t)m * n, 1e-5, mag);
                    if (form) {
                        ee_gemm(0, 1, m, n, k, 0.75f, a, lda, widened, EE_F32_PANELS, k, beta, c32, ldc);
                        if (memcmp(c32, c, (size_t)m * ldc * sizeof(float)) != 0) printf("FAIL %s: not the f32 panels' bits\n", what), failures++;
                        free(c32);
                    }
                    /* each row as alone (m = 1): the same bits, whatever rows share its kernel pass */
                    for (int i = 0; beta == 0.0f && i < m; i++) { /* (beta = 0: C holds the product alone) */
                        float alone[70];
                        ee_gemm(0, 1, 1, n, k, 0.75f, a + (size_t)i * lda, lda, packed, dtype, k, 0.0f, alone, n);
                        if (memcmp(alone, got + (size_t)i * n, (size_t)n * sizeof(float)) != 0) {
                            printf("FAIL %s: row %d differs from the row alone\n", what, i);
                            failures++;
                            break;
                        }
                    }
                    free(a), free(c), free(want), free(got);
                }
                free(w), free(wb), free(packed), free(widened);
            }
    float x[17 * 8] = {0}, y[17 * 32], panel[32 * 8] = {0};
    if (ee_gemm(0, 1, 17, 32, 8, 1.0f, x, 8, panel, EE_F32_PANELS, 8, 0.0f, y, 32) == 0) printf("FAIL gemm panels accepted m = 17\n"), failures++;
    if (ee_gemm(0, 0, 1, 32, 8, 1.0f, x, 8, panel, EE_F32_PANELS, 32, 0.0f, y, 32) == 0) printf("FAIL gemm panels accepted trans_b = 0\n"), failures++;
    if (ee_gemm(1, 1, 1, 32, 8, 1.0f, x, 1, panel, EE_F32_PANELS, 8, 0.0f, y, 32) == 0) printf("FAIL gemm panels accepted trans_a = 1\n"), failures++;
    if (ee_gemm(0, 1, 1, 32, 8, 1.0f, x, 8, panel, EE_F32_PANELS, 9, 0.0f, y, 32) == 0) printf("FAIL gemm panels accepted ldb != k\n"), failures++;
    if (ee_pack_panels(panel, x, 8, 8, 7) == 0) printf("FAIL ee_pack_panels accepted ldw < k\n"), failures++;
    if (ee_pack_panels_bf16((uint16_t*)panel, (const uint16_t*)x, 8, 8, 7) == 0) printf("FAIL ee_pack_panels_bf16 accepted ldw < k\n"), failures++;
    if (ee_pack_panels_f16((uint16_t*)panel, (const uint16_t*)x, 8, 8, 7) == 0) printf("FAIL ee_pack_panels_f16 accepted ldw < k\n"), failures++;
    if (ee_gemm(0, 1, 17, 32, 8, 1.0f, x, 8, panel, EE_F16_PANELS, 8, 0.0f, y, 32) == 0) printf("FAIL gemm f16 panels accepted m = 17\n"), failures++;
}

/* ee_gemm with 8-bit panels (EE_I8_PANELS) against the f32 weight they copy: each score within the bound the header
 * gives, ||a|| (resid_j + g ||scale_j q_j||) (times alpha, plus beta C), for every m, the shapes of test_gemm_panels;
 * the packing itself (scale = max |w| / 127, resid and norm rounded up, zero padding rows); a row with a NaN gets
 * resid +inf; the calls it must refuse. */
/* The header's rounding sequence for 8-bit panels, written out plainly: row a to 8-bit integers, exact integer sums
 * in blocks of 512 columns, the blocks added in f32, times scale_j and a's scale */
static float i8_reference(const char* packed, const float* a, int j, int k) {
    const size_t panel_bytes = (size_t)EE_PANEL_ROWS * (4 + 2 * ((k + 1) / 2));
    const float* scales = (const float*)(packed + (size_t)(j / EE_PANEL_ROWS) * panel_bytes);
    const int8_t* q = (const int8_t*)(scales + EE_PANEL_ROWS) + 2 * (j % EE_PANEL_ROWS);
    float top = 0.0f;
    for (int p = 0; p < k; p++) top = fmaxf(top, fabsf(a[p]));
    const float inv = top > 0.0f ? 127.0f / top : 0.0f, sa = top / 127.0f;
    float sum = 0.0f;
    for (int p0 = 0; p0 < k; p0 += 512) {
        int64_t acc = 0;
        for (int p = p0; p < k && p < p0 + 512; p++) acc += (int64_t)fmin(fmax(rint((double)a[p] * inv), -127.0), 127.0) * q[(size_t)(p / 2) * 2 * EE_PANEL_ROWS + p % 2];
        sum = p0 == 0 ? (float)acc : sum + (float)acc;
    }
    return sum * scales[j % EE_PANEL_ROWS] * sa;
}

/* The 8-bit panels at their integer limits: every weight 127 steps and every A value 127 of the same sign over 1100
 * columns (3 blocks; the VNNI kernel's offset A bytes at 255), random rows, an A row with one value not finite (NaN
 * scores) and a zero row (zeros); the kernel of this ISA gives the reference's bits (ctest runs each). */
static void test_gemm_panels_i8_extremes(unsigned* seed) {
    const int n = 40, ks[] = {1100, 33};
    for (int t = 0; t < 2; t++) {
        const int k = ks[t];
        float* w = randn((size_t)n * k, seed);
        for (int p = 0; p < k; p++) w[p] = 0.5f, w[k + p] = -0.25f; /* rows 0, 1: q = 127 and -127 throughout */
        char* packed = malloc((size_t)ee_panels_i8_bytes(n, k));
        if (ee_pack_panels_i8(packed, NULL, NULL, w, n, k, k) != 0) printf("FAIL ee_pack_panels_i8: %s\n", ee_last_error()), failures++;
        const int m = 11;
        float* a = randn((size_t)m * k, seed);
        for (int p = 0; p < k; p++) a[p] = 3.0f, a[2 * k + p] = 0.0f;
        a[3 * k + 5] = INFINITY;
        for (int p = 0; p < k; p++) a[4 * k + p] = p % 3 ? 1e-37f : -2e-37f; /* row 4: too small to scale (127 / max |a| overflows): NaN */
        float y[11 * 40];
        if (ee_gemm(0, 1, m, n, k, 1.0f, a, k, packed, EE_I8_PANELS, k, 0.0f, y, n) != 0) printf("FAIL gemm i8 panels: %s\n", ee_last_error()), failures++;
        /* row 0 against rows 0, 1: k * 127 * 127 steps of (0.5 / 127) (3 / 127), 1.5 k and -0.75 k up to rounding */
        if (fabs(y[0] - 1.5 * k) > 1.5 * k * 1e-5 || fabs(y[1] + 0.75 * k) > 0.75 * k * 1e-5) printf("FAIL gemm i8 panels at the integer limits: %g, %g (%g, %g)\n", y[0], y[1], 1.5 * k, -0.75 * k), failures++;
        for (int i = 0, bad = 0; i < m && !bad; i++)
            for (int j = 0; j < n && !bad; j++) {
                const float got = y[i * n + j], want = i == 3 || i == 4 ? NAN : i8_reference(packed, a + (size_t)i * k, j, k);
                bad = i == 3 || i == 4 ? !isnan(got) : i == 2 ? got != 0.0f : memcmp(&got, &want, sizeof got) != 0;
                if (bad) printf("FAIL gemm i8 panels k %d: C[%d][%d] = %.9g, the header's rounding sequence %.9g\n", k, i, j, got, want), failures++;
            }
        free(w), free(packed), free(a);
    }
}

static void test_gemm_panels_i8(unsigned* seed) {
    const int ns[] = {1, 31, 32, 33, 70}, ks[] = {1, 7, 33, 64, 65, 150, 301, 1100}; /* 301: an odd tail after a block of 256 columns; 1100: sums in three blocks */
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            const int n = ns[ni], k = ks[ki], ldw = k + 3, lda = k + 1, ldc = n + 2;
            float* w = randn((size_t)n * ldw, seed);
            if (n > 1) w[ldw + k / 2] = 40.0f; /* an outlier: row 1's scale, its other values coarse */
            const int64_t bytes = ee_panels_i8_bytes(n, k);
            const size_t panel_bytes = (size_t)EE_PANEL_ROWS * (4 + 2 * ((k + 1) / 2));
            if (bytes != (int64_t)((n + EE_PANEL_ROWS - 1) / EE_PANEL_ROWS) * (int64_t)panel_bytes) printf("FAIL ee_panels_i8_bytes(%d, %d) = %lld\n", n, k, (long long)bytes), failures++;
            char* packed = malloc((size_t)bytes);
            float* resid = malloc((size_t)n * sizeof(float));
            float* norm = malloc((size_t)n * sizeof(float));
            memset(packed, 0x7f, (size_t)bytes); /* the padding rows must be written as zeros */
            if (ee_pack_panels_i8(packed, resid, norm, w, n, k, ldw) != 0) printf("FAIL ee_pack_panels_i8: %s\n", ee_last_error()), failures++;
            double* qnorm = malloc((size_t)n * sizeof(double));
            for (int j = 0; j < (n + EE_PANEL_ROWS - 1) / EE_PANEL_ROWS * EE_PANEL_ROWS; j++) {
                const float* scales = (const float*)(packed + (size_t)(j / EE_PANEL_ROWS) * panel_bytes);
                const int8_t* q = (const int8_t*)(scales + EE_PANEL_ROWS) + 2 * (j % EE_PANEL_ROWS); /* column p at (p / 2) * 64 + p % 2 */
                const float scale = scales[j % EE_PANEL_ROWS];
                double top = 0.0, err = 0.0, qq = 0.0, ww = 0.0;
                int bad = (j >= n && scale != 0.0f) || (k % 2 && q[(size_t)(k / 2) * 2 * EE_PANEL_ROWS + 1] != 0); /* the odd k's pad */
                for (int p = 0; p < k; p++) {
                    const int qp = q[(size_t)(p / 2) * 2 * EE_PANEL_ROWS + p % 2];
                    if (j >= n) { bad |= qp != 0; continue; }
                    top = fmax(top, fabs(w[(size_t)j * ldw + p]));
                    const double d = w[(size_t)j * ldw + p] - (double)scale * qp;
                    bad |= qp < -127 || qp > 127 || fabs(d) > scale * 0.50002;
                    err += d * d, qq += (double)scale * qp * scale * qp, ww += (double)w[(size_t)j * ldw + p] * w[(size_t)j * ldw + p];
                }
                if (j < n) {
                    /* every value as the header rounds it (rint of the exact product), on every ISA */
                    const float inv = top > 0.0 ? 127.0f / (float)top : 0.0f;
                    for (int p = 0; p < k; p++)
                        bad |= q[(size_t)(p / 2) * 2 * EE_PANEL_ROWS + p % 2] != (int)fmin(fmax(rint((double)w[(size_t)j * ldw + p] * inv), -127.0), 127.0);
                    bad |= scale != (float)(top / 127.0) && scale != (float)top / 127.0f;
                    bad |= !(resid[j] >= sqrt(err)) || resid[j] > sqrt(err) * (1 + 1e-6) + 1e-30;
                    bad |= !(norm[j] >= sqrt(ww)) || norm[j] > sqrt(ww) * (1 + 1e-6);
                    qnorm[j] = sqrt(qq);
                }
                if (bad) {
                    printf("FAIL ee_pack_panels_i8 %dx%d: row %d (scale %g, resid %g against %g)\n", n, k, j, scale, j < n ? resid[j] : 0.0, sqrt(err));
                    failures++;
                    break;
                }
            }
            /* the header's bound: A's rounding to 8 bits (||a - a'||), the blocks' f32 rounding (g) */
            const double g = (k + 8) * 0x1p-24 / (1 - (k + 8) * 0x1p-24);
            for (int m = 1; m <= EE_PANELS_MAX_M; m++) {
                float* a = randn((size_t)m * lda, seed);
                float* c = randn((size_t)m * ldc, seed);
                float* c0 = malloc((size_t)m * ldc * sizeof(float));
                memcpy(c0, c, (size_t)m * ldc * sizeof(float));
                const float beta = m % 2 ? 0.0f : 0.5f;
                if (ee_gemm(0, 1, m, n, k, 0.75f, a, lda, packed, EE_I8_PANELS, k, beta, c, ldc) != 0) printf("FAIL gemm i8 panels: %s\n", ee_last_error()), failures++;
                for (int i = 0, bad = 0; i < m && !bad; i++) {
                    double anorm = 0.0, enorm = 0.0, top = 0.0;
                    for (int p = 0; p < k; p++) anorm += (double)a[(size_t)i * lda + p] * a[(size_t)i * lda + p], top = fmax(top, fabs(a[(size_t)i * lda + p]));
                    const float inv = top > 0.0 ? 127.0f / (float)top : 0.0f, sa = (float)top / 127.0f;
                    for (int p = 0; p < k; p++) {
                        const double e = a[(size_t)i * lda + p] - (double)sa * fmin(fmax(rint((double)a[(size_t)i * lda + p] * inv), -127.0), 127.0);
                        enorm += e * e;
                    }
                    anorm = sqrt(anorm), enorm = sqrt(enorm);
                    for (int j = 0; j < n && !bad; j++) {
                        double exact = 0.0;
                        for (int p = 0; p < k; p++) exact += (double)a[(size_t)i * lda + p] * w[(size_t)j * ldw + p];
                        const double want = 0.75 * exact + (beta == 0.0f ? 0.0 : beta * (double)c0[(size_t)i * ldc + j]);
                        const double bound = 0.75 * (anorm * resid[j] + (enorm + g * (anorm + enorm)) * qnorm[j]) + 1e-6 * fabs(want) + 1e-30;
                        if (fabs(c[(size_t)i * ldc + j] - want) > bound) {
                            printf("FAIL gemm with 8-bit panels %dx%dx%d beta %.1f: C[%d][%d] = %g, the f32 product %g, bound %g\n", m, n, k, beta, i, j, c[(size_t)i * ldc + j], want, bound);
                            failures++, bad = 1;
                        }
                    }
                }
                free(a), free(c), free(c0);
            }
            free(w), free(packed), free(resid), free(norm), free(qnorm);
        }
    test_gemm_panels_i8_extremes(seed);
    float row[8] = {1, 2, NAN, 4, 5, 6, 7, 8}, resid = 0.0f;
    char panel[32 * 12];
    if (ee_pack_panels_i8(panel, &resid, NULL, row, 1, 8, 8) != 0 || !isinf(resid) || !isnan(((float*)panel)[0])) printf("FAIL ee_pack_panels_i8 with a NaN: resid %g, scale %g\n", resid, ((float*)panel)[0]), failures++;
    for (int c = 0; c < 8; c++) row[c] = c % 2 ? 1e-38f : -3e-38f; /* too small to scale to 8 bits: as a row that is not finite */
    if (ee_pack_panels_i8(panel, &resid, NULL, row, 1, 8, 8) != 0 || !isinf(resid) || !isnan(((float*)panel)[0])) printf("FAIL ee_pack_panels_i8 with a tiny row: resid %g, scale %g\n", resid, ((float*)panel)[0]), failures++;
    float x[8] = {0}, y[32];
    if (ee_gemm(0, 1, 17, 32, 8, 1.0f, x, 8, panel, EE_I8_PANELS, 8, 0.0f, y, 32) == 0) printf("FAIL gemm i8 panels accepted m = 17\n"), failures++;
    if (ee_gemm(0, 1, 1, 32, 8, 1.0f, x, 8, panel, EE_I8_PANELS, 9, 0.0f, y, 32) == 0) printf("FAIL gemm i8 panels accepted ldb != k\n"), failures++;
    if (ee_pack_panels_i8(panel, NULL, NULL, row, 1, 8, 7) == 0) printf("FAIL ee_pack_panels_i8 accepted ldw < k\n"), failures++;
}

/* ee_max_prob_upper against the exact largest softmax probability in double: of values at the scores (radius 0: the
 * bound within 0.1% of it) and of the values within the bounds that make it largest (the top one raised, all others
 * lowered), at several temperatures and lengths past the vector widths; a NaN score or an infinite scale gives +inf;
 * the calls it must refuse. */
static void test_max_prob_upper(unsigned* seed) {
    const int ns[] = {1, 5, 17, 1000, 32000};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (int zero = 0; zero < 2; zero++) {
            const int n = ns[ni], rows = 3, ld = n + 1;
            float* s = randn((size_t)rows * ld, seed);
            float* radius = randn((size_t)n, seed);
            for (int j = 0; j < n; j++) radius[j] = zero ? 0.0f : 0.05f * fabsf(radius[j]);
            for (int i = 0; i < rows * ld; i++) s[i] *= 4.0f; /* logits a few units apart */
            const float scale[3] = {1.0f, 2.5f, 0.3f}, temps[3] = {1.0f, 0.5f, 2.0f};
            for (int t = 0; t < 3; t++) {
                float upper[3];
                if (ee_max_prob_upper(upper, s, ld, radius, scale, rows, n, temps[t]) != 0) printf("FAIL ee_max_prob_upper: %s\n", ee_last_error()), failures++;
                for (int r = 0; r < rows; r++) {
                    const float* row = s + (size_t)r * ld;
                    double worst = 0.0, exact; /* the top value raised by its bound, the others lowered: the largest max prob */
                    int top = 0;
                    for (int j = 1; j < n; j++) if (row[j] + radius[j] * scale[r] > row[top] + radius[top] * scale[r]) top = j;
                    double m = -INFINITY, sum = 0.0;
                    for (int j = 0; j < n; j++) m = fmax(m, row[j]);
                    for (int j = 0; j < n; j++) sum += exp((row[j] - m) / temps[t]);
                    exact = 1.0 / sum;
                    const double hi = (double)row[top] + (double)radius[top] * scale[r];
                    for (int j = 0; j < n; j++) worst += exp(((j == top ? hi : (double)row[j] - (double)radius[j] * scale[r]) - hi) / temps[t]);
                    worst = 1.0 / worst;
                    if (!(upper[r] >= worst) || !(upper[r] >= exact) || (zero && upper[r] > exact * 1.001)) {
                        printf("FAIL ee_max_prob_upper n %d radius %s T %g row %d: upper %g, exact %g, largest within the bounds %g\n", n, zero ? "0" : "> 0", temps[t], r, upper[r], exact, worst);
                        failures++;
                    }
                }
            }
            s[ld + n / 2] = NAN;
            const float bad_scale[3] = {1.0f, 1.0f, INFINITY};
            float upper[3];
            ee_max_prob_upper(upper, s, ld, radius, bad_scale, rows, n, 1.0f);
            if (!isinf(upper[1]) || !isinf(upper[2]) || isinf(upper[0])) printf("FAIL ee_max_prob_upper with a NaN / an infinite scale: %g %g %g\n", upper[0], upper[1], upper[2]), failures++;
            free(s), free(radius);
        }
    float x[4] = {0}, r[4] = {0}, sc[1] = {1}, u[1];
    if (ee_max_prob_upper(u, x, 4, r, sc, 1, 4, 0.0f) == 0) printf("FAIL ee_max_prob_upper accepted temperature 0\n"), failures++;
    if (ee_max_prob_upper(u, x, 3, r, sc, 1, 4, 1.0f) == 0) printf("FAIL ee_max_prob_upper accepted ld < n\n"), failures++;
}

/* round to nearest even at the ties of each format, overflow, subnormals */
/* A row of the decode GEMM's output is the same bits whatever rows share the call: the whole weight against 1 or 2
 * rows of A, and each 32-row slice of it (as the screened classifier recomputes candidates) against one row alone,
 * at 1 and 2 threads; the last slice shorter than 32 */
static void test_gemm_rows_alone(unsigned* seed) {
    const int ks[] = {64, 100, 288, 768}, n = 32 * 37 + 5;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int k = ks[ki];
        float* w = randn((size_t)n * k, seed);
        float* a = randn((size_t)2 * k, seed);
        float* c = malloc((size_t)2 * n * sizeof(float));
        for (int th = 1; th <= 2; th++) {
            ee_set_num_threads(th);
            for (int m = 1; m <= 2; m++) {
                ee_gemm(0, 1, m, n, k, 1.0f, a, k, w, EE_F32, k, 0.0f, c, n);
                int differ = 0;
                for (int i = 0; i < m; i++)
                    for (int j0 = 0; j0 < n; j0 += 32) {
                        float part[32];
                        const int count = n - j0 < 32 ? n - j0 : 32;
                        ee_gemm(0, 1, 1, count, k, 1.0f, a + (size_t)i * k, k, w + (size_t)j0 * k, EE_F32, k, 0.0f, part, count);
                        differ += memcmp(part, c + (size_t)i * n + j0, (size_t)count * sizeof(float)) != 0;
                    }
                if (differ) printf("FAIL gemm rows alone, k %d, m %d, %d threads: %d slices differ\n", k, m, th, differ), failures++;
            }
        }
        ee_set_num_threads(0);
        free(w), free(a), free(c);
    }
}

static void test_cast(void) {
    const float bf_in[] = {1.0f + 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-9f, 1.0f + 3 * 0x1p-8f, 65504.0f, 0x1p-133f, -2.5f};
    const uint16_t bf_want[] = {0x3f80, 0x3f81, 0x3f82, 0x4780, 0x0001, 0xc020};
    const float h_in[] = {1.0f + 0x1p-11f, 1.0f + 0x1p-11f + 0x1p-12f, 1.0f + 3 * 0x1p-11f, 65504.0f, 65520.0f, 0x1p-25f, 3 * 0x1p-25f, -2.5f};
    const uint16_t h_want[] = {0x3c00, 0x3c01, 0x3c02, 0x7bff, 0x7c00, 0x0000, 0x0002, 0xc100};
    uint16_t out[8];
    float back[8];
    ee_cast(out, EE_BF16, bf_in, EE_F32, 6);
    for (int i = 0; i < 6; i++)
        if (out[i] != bf_want[i]) printf("FAIL bf16 cast of %a: %04x, want %04x\n", bf_in[i], out[i], bf_want[i]), failures++;
    ee_cast(out, EE_F16, h_in, EE_F32, 8);
    for (int i = 0; i < 8; i++)
        if (out[i] != h_want[i]) printf("FAIL f16 cast of %a: %04x, want %04x\n", h_in[i], out[i], h_want[i]), failures++;
    ee_cast(back, EE_F32, out, EE_F16, 8);
    if (back[3] != 65504.0f || back[6] != 0x1p-23f || !isinf(back[4])) printf("FAIL f16 -> f32\n"), failures++;
}

static void test_rmsnorm(unsigned* seed) {
    const int rows = 5, dim = 67;
    float *x = randn(rows * dim, seed), *w = randn(dim, seed), *g = randn(rows * dim, seed);
    float out[5 * 67], inv[5], dx[5 * 67], dw[67] = {0};
    double want[5 * 67], wdx[5 * 67], wdw[67] = {0};
    ee_rmsnorm_fwd(out, inv, x, w, rows, dim, 1e-5f);
    ee_rmsnorm_bwd(dx, dw, g, x, w, inv, rows, dim);
    for (int r = 0; r < rows; r++) {
        double ss = 0, dot = 0;
        for (int j = 0; j < dim; j++) ss += (double)x[r * dim + j] * x[r * dim + j];
        double iv = 1.0 / sqrt(ss / dim + 1e-5);
        for (int j = 0; j < dim; j++) {
            want[r * dim + j] = x[r * dim + j] * iv * w[j];
            dot += (double)g[r * dim + j] * w[j] * x[r * dim + j];
            wdw[j] += (double)g[r * dim + j] * x[r * dim + j] * iv;
        }
        for (int j = 0; j < dim; j++) wdx[r * dim + j] = iv * g[r * dim + j] * w[j] - x[r * dim + j] * iv * iv * iv * dot / dim;
    }
    check("rmsnorm fwd", out, want, rows * dim, 1e-5);
    check("rmsnorm bwd dx", dx, wdx, rows * dim, 1e-5);
    check("rmsnorm bwd dw", dw, wdw, dim, 1e-5);
    free(x), free(w), free(g);
}

/* The exit gate's score against a double reference: a linear and an MLP gate, a row holding NaN and one holding an
 * infinity (both must score NaN: never confident). */
static void test_gate_score(unsigned* seed) {
    enum { ROWS = 6, DIM = 67 };
    for (int units = 0; units <= 11; units += 11) {
        const int n1 = units > 0 ? units : 1;
        float *h = randn(ROWS * DIM, seed), *w1 = randn(n1 * DIM, seed), *b1 = randn(n1, seed), *w = randn(units > 0 ? units : DIM, seed), *b = randn(1, seed);
        for (int i = 0; i < ROWS * DIM; i++) h[i] *= 3.0f;
        h[3 * DIM + 5] = NAN, h[4 * DIM] = -INFINITY;
        float score[ROWS];
        double want[ROWS];
        if (ee_gate_score(score, h, units ? w1 : 0, units ? b1 : 0, w, b, ROWS, DIM, units, 1e-5f)) printf("FAIL gate score: %s\n", ee_last_error()), failures++;
        for (int r = 0; r < ROWS; r++) {
            double ss = 0, z = b[0];
            for (int i = 0; i < DIM; i++) ss += (double)h[r * DIM + i] * h[r * DIM + i];
            const double inv = 1.0 / sqrt(ss / DIM + 1e-5);
            for (int j = 0; j < (units ? units : 1); j++) {
                double a = 0;
                for (int i = 0; i < DIM; i++) a += (double)(units ? w1[j * DIM + i] : w[i]) * h[r * DIM + i] * inv;
                z += units ? w[j] * fmax(0.0, a + b1[j]) : a;
            }
            want[r] = 1.0 / (1.0 + exp(-z));
        }
        for (int r = 3; r <= 4; r++)
            if (!isnan(score[r])) printf("FAIL gate score of a row with %s: %g, not NaN\n", r == 3 ? "NaN" : "an infinity", score[r]), failures++;
        check(units ? "gate score mlp" : "gate score linear", score, want, 3, 1e-5);
        check(units ? "gate score mlp (last row)" : "gate score linear (last row)", score + 5, want + 5, 1, 1e-5);
        free(h), free(w1), free(b1), free(w), free(b);
    }
    if (ee_gate_score((float[1]){0}, (float[4]){0}, 0, 0, (float[4]){0}, (float[1]){0}, 1, 4, 3, 1e-5f) == 0) printf("FAIL gate score accepted an MLP gate without hidden weights\n"), failures++;
}

/* reference forward of one (row, head) against a cache laid out n_seq x max_len x (KVH * D): writes out (D) and
 * the probabilities p (pos + 1) */
/* returns the log-sum-exp of the scaled scores */
static double attention_ref(double* out, double* p, const float* qh, const float* k, const float* v, int seq, int pos, int max_len, int KVH, int kvh, int D, float scale) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j <= pos; j++) {
        const float* kj = k + ((size_t)(seq * max_len + j) * KVH + kvh) * D;
        double s = 0;
        for (int i = 0; i < D; i++) s += (double)qh[i] * kj[i];
        p[j] = s * scale;
        mx = fmax(mx, p[j]);
    }
    for (int j = 0; j <= pos; j++) sum += (p[j] = exp(p[j] - mx));
    for (int i = 0; i < D; i++) out[i] = 0;
    for (int j = 0; j <= pos; j++) {
        p[j] /= sum;
        const float* vj = v + ((size_t)(seq * max_len + j) * KVH + kvh) * D;
        for (int i = 0; i < D; i++) out[i] += p[j] * vj[i];
    }
    return mx + log(sum);
}

/* dense causal attention: forward through the cache kernel (one sequence per batch row), backward vs the formulas */
static void test_attention(unsigned* seed, int B, int T, int H, int KVH, int D) {
    const int rows = B * T, G = H / KVH;
    const float scale = 0.35f;
    char what[96];
    float *q = randn(rows * H * D, seed), *k = randn(rows * KVH * D, seed), *v = randn(rows * KVH * D, seed), *g = randn(rows * H * D, seed);
    float *out = calloc(rows * H * D, 4), *lse = calloc(rows * H, 4), *dq = calloc(rows * H * D, 4), *dk = calloc(rows * KVH * D, 4), *dv = calloc(rows * KVH * D, 4);
    double *wout = calloc(rows * H * D, 8), *wdq = calloc(rows * H * D, 8), *wdk = calloc(rows * KVH * D, 8), *wdv = calloc(rows * KVH * D, 8);
    double *p = calloc(T, 8), *dp = calloc(T, 8);
    int32_t *seq = calloc(rows, 4), *pos = calloc(rows, 4);
    for (int r = 0; r < rows; r++) seq[r] = r / T, pos[r] = r % T;
    ee_attention_fwd(out, lse, q, k, v, seq, pos, rows, H, KVH, D, B, T, scale);
    ee_attention_bwd(dq, dk, dv, g, out, lse, q, k, v, B, T, H, KVH, D, scale);
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < H; h++) {
            const int b = r / T, t = r % T, kvh = h / G;
            const float* qh = q + (r * H + h) * D;
            double dsum = 0;
            attention_ref(wout + (r * H + h) * D, p, qh, k, v, b, t, T, KVH, kvh, D, scale);
            for (int j = 0; j <= t; j++) {
                const float* vj = v + ((b * T + j) * KVH + kvh) * D;
                dp[j] = 0;
                for (int i = 0; i < D; i++) dp[j] += (double)g[(r * H + h) * D + i] * vj[i];
                dsum += p[j] * dp[j];
            }
            for (int j = 0; j <= t; j++) {
                const double ds = p[j] * (dp[j] - dsum);
                const int kv = ((b * T + j) * KVH + kvh) * D;
                for (int i = 0; i < D; i++) {
                    wdq[(r * H + h) * D + i] += scale * ds * k[kv + i];
                    wdk[kv + i] += scale * ds * qh[i];
                    wdv[kv + i] += p[j] * g[(r * H + h) * D + i];
                }
            }
        }
    snprintf(what, sizeof what, "attention B%d T%d H%d KV%d D%d", B, T, H, KVH, D);
    char* end = what + strlen(what);
    strcpy(end, " fwd"), check(what, out, wout, rows * H * D, 1e-5);
    strcpy(end, " bwd dq"), check(what, dq, wdq, rows * H * D, 1e-5);
    strcpy(end, " bwd dk"), check(what, dk, wdk, rows * KVH * D, 1e-5);
    strcpy(end, " bwd dv"), check(what, dv, wdv, rows * KVH * D, 1e-5);
    free(q), free(k), free(v), free(g), free(out), free(lse), free(dq), free(dk), free(dv), free(wout), free(wdq), free(wdk), free(wdv);
    free(p), free(dp), free(seq), free(pos);
}

/* Packed rows of several sequences at scattered positions (runs, single rows, a repeated sequence out of order), as
 * decode and early-exit passes pack them: runs of 1-30 rows, so that both paths (slot blocks, rows one by one) serve
 * some; with head_dim <= 16 the rows outside slot blocks go through the keys-in-lanes kernel on AVX-512 (head_dim 8:
 * transposes, 12: gathers), over one chunk of keys or several (ctest also runs this on AVX2 and the portable code). */
static void test_attention_packed(unsigned* seed, const int H, const int KVH, const int D) {
    enum { NSEQ = 3, MAXLEN = 300, ROWS = 30 + 1 + 1 + 8 + 2 + 20 + 2 + 1 };
    const float scale = 0.3f;
    int32_t seq[ROWS], pos[ROWS];
    int r = 0;
    for (int i = 0; i < 30; i++) seq[r] = 2, pos[r++] = 10 + i;
    seq[r] = 0, pos[r++] = 99;
    seq[r] = 1, pos[r++] = 0;
    for (int i = 0; i < 8; i++) seq[r] = 1, pos[r++] = 5 + i;
    seq[r] = 0, pos[r++] = 50;
    seq[r] = 0, pos[r++] = 3;
    for (int i = 0; i < 20; i++) seq[r] = i % 3, pos[r++] = 70 + i;
    seq[r] = 1, pos[r++] = 200; /* two rows over several chunks of the keys-in-lanes kernel */
    seq[r] = 1, pos[r++] = 201;
    seq[r] = 2, pos[r++] = MAXLEN - 1; /* the last key of the last sequence: a partial step at the cache's end */
    float *q = randn(ROWS * H * D, seed), *k = randn(NSEQ * MAXLEN * KVH * D, seed), *v = randn(NSEQ * MAXLEN * KVH * D, seed);
    float *out = calloc(ROWS * H * D, 4), *lse = calloc(ROWS * H, 4);
    double *wout = calloc(ROWS * H * D, 8), wlse[ROWS * H], glse[ROWS * H], p[MAXLEN];
    if (ee_attention_fwd(out, lse, q, k, v, seq, pos, ROWS, H, KVH, D, NSEQ, MAXLEN, scale)) printf("FAIL attention packed (head_dim %d): %s\n", D, ee_last_error()), failures++;
    for (r = 0; r < ROWS; r++)
        for (int h = 0; h < H; h++) {
            attention_ref(wout + (r * H + h) * D, p, q + (r * H + h) * D, k, v, seq[r], pos[r], MAXLEN, KVH, h / (H / KVH), D, scale);
            double mx = -INFINITY, sum = 0, s[MAXLEN];
            for (int j = 0; j <= pos[r]; j++) {
                s[j] = 0;
                for (int i = 0; i < D; i++) s[j] += (double)q[(r * H + h) * D + i] * k[((seq[r] * MAXLEN + j) * KVH + h / (H / KVH)) * D + i];
                mx = fmax(mx, s[j] *= scale);
            }
            for (int j = 0; j <= pos[r]; j++) sum += exp(s[j] - mx);
            wlse[r * H + h] = mx + log(sum);
            glse[r * H + h] = lse[r * H + h] - wlse[r * H + h] + 1.0; /* absolute error of lse, checked around 1 */
            wlse[r * H + h] = 1.0;
        }
    float flse[ROWS * H];
    for (int i = 0; i < ROWS * H; i++) flse[i] = (float)glse[i];
    check("attention packed fwd", out, wout, ROWS * H * D, 1e-5);
    check("attention packed lse", flse, wlse, ROWS * H, 1e-5);
    free(q), free(k), free(v), free(out), free(lse), free(wout);
}

/* A decode batch (one row per sequence, as many rows as sequences: the per-row kernel that reads every head of a
 * key at once) against the double reference, with a row at position 0, rows over several key blocks and a row at the
 * cache's end, with and without GQA. */
static void test_attention_decode_rows(unsigned* seed, const int H, const int KVH, const int D) {
    enum { NSEQ = 8, MAXLEN = 150 };
    const float scale = 0.25f;
    const int32_t seq[NSEQ] = {3, 0, 1, 2, 7, 5, 4, 6}, pos[NSEQ] = {0, 149, 63, 64, 65, 100, 7, 130};
    float *q = randn(NSEQ * H * D, seed), *k = randn(NSEQ * MAXLEN * KVH * D, seed), *v = randn(NSEQ * MAXLEN * KVH * D, seed);
    float *out = calloc(NSEQ * H * D, 4), *lse = calloc(NSEQ * H, 4), *one = calloc(H * D, 4), *one_lse = calloc(H, 4);
    double *wout = calloc(NSEQ * H * D, 8), *wlse = calloc(NSEQ * H, 8), p[MAXLEN];
    char what[96];
    if (ee_attention_fwd(out, lse, q, k, v, seq, pos, NSEQ, H, KVH, D, NSEQ, MAXLEN, scale)) printf("FAIL attention decode rows (head_dim %d): %s\n", D, ee_last_error()), failures++;
    for (int r = 0; r < NSEQ; r++)
        for (int h = 0; h < H; h++) wlse[r * H + h] = attention_ref(wout + (r * H + h) * D, p, q + (r * H + h) * D, k, v, seq[r], pos[r], MAXLEN, KVH, h / (H / KVH), D, scale);
    snprintf(what, sizeof what, "attention decode rows fwd (%d heads, %d KV heads of %d)", H, KVH, D);
    check(what, out, wout, NSEQ * H * D, 1e-5);
    snprintf(what, sizeof what, "attention decode rows lse (%d heads, %d KV heads of %d)", H, KVH, D);
    check(what, lse, wlse, NSEQ * H, 1e-5);
    /* wide cache rows (the chunked path): a row alone gives the very bits it gives in the batch, its result depends on
     * its position only. Narrow rows take the per-head kernel alone and the per-row one in a batch, the same
     * arithmetic on paper, but the compiler may contract or order them differently (an ASan build did): last bits */
    for (int r = 0; r < NSEQ && KVH * D >= 512; r++) {
        if (ee_attention_fwd(one, one_lse, q + r * H * D, k, v, seq + r, pos + r, 1, H, KVH, D, NSEQ, MAXLEN, scale)) printf("FAIL attention one row: %s\n", ee_last_error()), failures++;
        if (memcmp(one, out + r * H * D, (size_t)H * D * 4) || memcmp(one_lse, lse + r * H, (size_t)H * 4))
            printf("FAIL attention decode row %d alone differs from the batch (%d heads of %d)\n", r, H, D), failures++;
    }
    free(q), free(k), free(v), free(out), free(lse), free(one), free(one_lse), free(wout), free(wlse);
}

static void test_cross_entropy(unsigned* seed) {
    const int rows = 11, dim = 17, vocab = 67, row_block = 4; /* 3 blocks, the last one short */
    const float temperature = 1.5f;
    float *x = randn(rows * dim, seed), *w32 = randn(vocab * dim, seed), *gw = randn(rows, seed);
    uint16_t w[67 * 17];
    ee_cast(w, EE_BF16, w32, EE_F32, vocab * dim);
    int32_t targets[11], arg[11];
    for (int r = 0; r < rows; r++) targets[r] = r == 3 ? -1 : (r * 13) % vocab;
    float loss[11], prob[11], dx[11 * 17], dw[67 * 17] = {0};
    double wloss[11], wdx[11 * 17] = {0}, wdw[67 * 17] = {0}, wprob[11];
    if (ee_linear_cross_entropy(loss, dx, dw, arg, prob, x, w, EE_BF16, targets, gw, rows, dim, vocab, row_block, temperature))
        printf("FAIL linear_cross_entropy: %s\n", ee_last_error()), failures++;
    for (int r = 0; r < rows; r++) {
        double z[67], mx = -INFINITY, sum = 0;
        int best = 0;
        for (int j = 0; j < vocab; j++) {
            z[j] = 0;
            for (int i = 0; i < dim; i++) z[j] += (double)x[r * dim + i] * b_value(w, EE_BF16, j * dim + i);
            z[j] /= temperature;
            if (z[j] > mx) mx = z[j], best = j;
        }
        for (int j = 0; j < vocab; j++) sum += exp(z[j] - mx);
        const double lse = mx + log(sum);
        wloss[r] = targets[r] < 0 ? 0 : lse - z[targets[r]];
        wprob[r] = 1 / sum;
        if (arg[r] != best) printf("FAIL cross-entropy argmax row %d: %d, want %d\n", r, arg[r], best), failures++;
        if (targets[r] < 0) continue;
        for (int j = 0; j < vocab; j++) {
            const double d = gw[r] / temperature * (exp(z[j] - lse) - (j == targets[r]));
            for (int i = 0; i < dim; i++) {
                wdx[r * dim + i] += d * b_value(w, EE_BF16, j * dim + i);
                wdw[j * dim + i] += d * x[r * dim + i];
            }
        }
    }
    check("cross-entropy loss", loss, wloss, rows, 1e-5);
    check("cross-entropy max prob", prob, wprob, rows, 1e-5);
    check("cross-entropy dx", dx, wdx, rows * dim, 1e-5);
    check("cross-entropy dw", dw, wdw, vocab * dim, 1e-5);
    free(x), free(w32), free(gw);
}

/* ee_argmax against the lowest index of the max, on every length around the SIMD widths, with the max repeated in
 * several lanes and at the tail, all equal rows, -inf rows and +inf maxima */
static void test_argmax_rows(unsigned* seed) {
    float* x = randn(100, seed);
    for (int n = 1; n <= 100; n++)
        for (int kind = 0; kind < 5; kind++) {
            float row[100];
            for (int j = 0; j < n; j++) row[j] = kind == 2 ? 0.5f : kind == 3 ? -INFINITY : x[j];
            if (kind == 1) /* ties: the max again at the end and in the middle */
                for (int j = n / 2; j < n; j += 7) row[j] = 9.0f, row[n - 1] = 9.0f;
            if (kind == 4) row[n - 1] = row[n / 3] = INFINITY;
            int want = 0;
            for (int j = 1; j < n; j++)
                if (row[j] > row[want]) want = j;
            int32_t got;
            ee_argmax(&got, 0, row, 1, n, 1.0f);
            if (got != want) printf("FAIL argmax n=%d kind %d: %d, want %d\n", n, kind, got, want), failures++;
        }
    free(x);
}

/* ee_argmax_candidates against the definition in double: every group with a j clearly above the floor is reported,
 * none without a j near or above it, in increasing order; rows with a NaN score, an infinite scale or too many
 * groups give -1; a clear winner leaves its group alone; n off the group size; every thread count. */
static void test_argmax_candidates(unsigned* seed) {
    enum { ROWS = 6, N = 1001, G = 32, MAXG = 8 };
    float* s = randn((size_t)ROWS * N, seed);
    float* radius = randn(N, seed);
    float scale[ROWS] = {0.01f, 0.002f, 0.0f, 1.0f, 0.01f, INFINITY};
    for (int j = 0; j < N; j++) radius[j] = fabsf(radius[j]);
    s[2 * N + 700] = 5.0f;     /* row 2: a clear winner, radius scaled to 0: only group 21 */
    s[3 * N + 10] = NAN;       /* row 3: a NaN score */
    for (int th = 1; th <= 3; th++) {
        ee_set_num_threads(th);
        int32_t groups[ROWS * MAXG], counts[ROWS];
        if (ee_argmax_candidates(groups, counts, s, N, radius, scale, ROWS, N, G, MAXG) != 0) printf("FAIL argmax_candidates: %s\n", ee_last_error()), failures++;
        for (int r = 0; r < ROWS; r++) {
            double floor = -INFINITY;
            for (int j = 0; j < N; j++) floor = fmax(floor, (double)s[r * N + j] - (double)radius[j] * scale[r]);
            const double tol = 1e-5;
            int must = 0, may = 0, must_groups[64], may_groups[64];
            for (int g = 0; g * G < N; g++) {
                int m1 = 0, m2 = 0;
                for (int j = g * G; j < N && j < (g + 1) * G; j++) {
                    const double hi = (double)s[r * N + j] + (double)radius[j] * scale[r];
                    m1 |= hi >= floor + tol, m2 |= hi >= floor - tol;
                }
                if (m1) must_groups[must++] = g;
                if (m2) may_groups[may++] = g;
            }
            const int bad = r == 3 || r == 5 || must > MAXG;
            if (bad || may > MAXG) {
                if (bad && counts[r] != -1) printf("FAIL argmax_candidates row %d, %d threads: count %d, want -1\n", r, th, counts[r]), failures++;
                continue;
            }
            int ok = counts[r] >= must && counts[r] <= may, at = 0;
            for (int c = 0; ok && c < counts[r]; c++) {
                ok = c == 0 || groups[r * MAXG + c] > groups[r * MAXG + c - 1];
                while (at < may && may_groups[at] < groups[r * MAXG + c]) at++;
                ok &= at < may && may_groups[at] == groups[r * MAXG + c];
            }
            for (int c = 0; ok && c < must; c++) {
                int found = 0;
                for (int d = 0; d < counts[r]; d++) found |= groups[r * MAXG + d] == must_groups[c];
                ok = found;
            }
            if (r == 2) ok &= counts[r] == 1 && groups[r * MAXG] == 700 / G;
            if (!ok) printf("FAIL argmax_candidates row %d, %d threads: %d groups (%d..%d expected)\n", r, th, counts[r], must, may), failures++;
        }
        if (th == 1 && counts[0] != -1 && counts[1] == -1) printf("FAIL argmax_candidates: row 1 (radius x 0.002) should fit\n"), failures++;
    }
    ee_set_num_threads(0);
    int32_t g1, c1;
    if (ee_argmax_candidates(&g1, &c1, s, N - 1, radius, scale, 1, N, G, 1) == 0) printf("FAIL argmax_candidates: ld < n accepted\n"), failures++;
    free(s), free(radius);
}

static void test_sampling(void) {
    const float logits[] = {1.0f, 3.0f, 3.0f, 0.5f, 2.0f};
    int32_t idx;
    float p;
    ee_argmax(&idx, &p, logits, 1, 5, 1.0f);
    double sum = 0;
    for (int j = 0; j < 5; j++) sum += exp(logits[j] - 3.0);
    if (idx != 1 || fabs(p - 1 / sum) > 1e-6) printf("FAIL argmax: %d %g\n", idx, p), failures++;
    /* sorted order 1, 2, 4, 0, 3; u = 0 picks the first, u just below 1 with top_p 0.5 stays in the nucleus {1, 2} */
    const float u[] = {0.0f, 0.999f, 0.6f};
    const int32_t want[] = {1, 2, 2};
    for (int i = 0; i < 3; i++) {
        ee_sample_top_p(&idx, logits, &u[i], 1, 5, 1.0f, i == 1 ? 0.5f : 1.0f);
        if (idx != want[i]) printf("FAIL top-p sample %d: %d, want %d\n", i, idx, want[i]), failures++;
    }
}

/* double accumulation (1e-12 relative, what the CUDA twin is compared at) on every length around the SIMD widths and
 * the 16384-element blocks, the same bits for every thread count, and an exact small case */
static void test_sum_squares(unsigned* seed) {
    const int64_t sizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 16383, 16384, 16385, 100003};
    float* x = randn(100003, seed);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s];
        double want = 0.0;
        for (int64_t i = 0; i < n; i++) want += (double)x[i] * x[i];
        const double got = ee_sum_squares(x, n);
        if (!(fabs(got - want) <= 1e-12 * want)) printf("FAIL sum_squares n=%ld: %.17g, want %.17g\n", (long)n, got, want), failures++;
    }
    const int threads = ee_set_num_threads(0);
    ee_set_num_threads(1);
    const double one = ee_sum_squares(x, 100003);
    ee_set_num_threads(threads);
    if (ee_sum_squares(x, 100003) != one) printf("FAIL sum_squares depends on the thread count\n"), failures++;
    const float exact[] = {1.0f, -2.0f, 3.0f, 0.5f, 16777216.0f}; /* 2^48 + 14.25 needs double */
    if (ee_sum_squares(exact, 5) != 281474976710656.0 + 14.25) printf("FAIL sum_squares exact case\n"), failures++;
    if (ee_sum_squares(x, 0) != 0.0) printf("FAIL sum_squares of nothing\n"), failures++;
    free(x);
}

static void expect_index_error(int rc, const char* want) {
    if (!rc) printf("FAIL index error not reported: %s\n", want), failures++;
    else if (strcmp(ee_last_error(), want) != 0) printf("FAIL index error: '%s', want '%s'\n", ee_last_error(), want), failures++;
}

/* impossible indices fail the call with the kernel, row, value and bound, and nothing is written */
/* ee_decoder_layers_fwd against ee_decoder_layer_fwd called layer by layer: the same output and caches, bit for bit
 * (stories260K's shape, 2 rows of two sequences, 3 layers, q/k/v biases on layer 1 only); then its refusals. */
static void test_decoder_layers(unsigned* seed) {
    enum { L = 3, R = 2, D = 64, H = 8, KVH = 4, HD = 8, F = 172, NS = 2, ML = 12 };
    const int qd = H * HD, kd = KVH * HD;
    const size_t cache_n = (size_t)NS * ML * kd;
    float* w[L][EE_LAYER_TABLE_COLS] = {{0}};
    const size_t sizes[EE_LAYER_TABLE_COLS] = {D, (size_t)qd * D, (size_t)kd * D, (size_t)kd * D, (size_t)D * qd, qd, kd, kd, D, (size_t)F * D, (size_t)F * D, (size_t)D * F, cache_n, cache_n};
    for (int l = 0; l < L; l++)
        for (int c = 0; c < EE_LAYER_TABLE_COLS; c++)
            if (c < 5 || c > 7 || l == 1) w[l][c] = randn(sizes[c], seed);
    float* x = randn((size_t)R * D, seed);
    float *out1 = malloc(R * D * sizeof(float)), *out2 = malloc(R * D * sizeof(float)), *caches2[L][2];
    float *res = malloc(R * D * sizeof(float)), *xn = malloc(R * D * sizeof(float)), *q = malloc(R * qd * sizeof(float)), *k = malloc(R * kd * sizeof(float)),
          *v = malloc(R * kd * sizeof(float)), *att = malloc(R * qd * sizeof(float)), *gate = malloc(R * F * sizeof(float)), *up = malloc(R * F * sizeof(float));
    const int32_t seq[R] = {0, 1}, pos[R] = {5, 9};
    float inv_freq[HD / 2];
    for (int i = 0; i < HD / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * i / HD);
    int64_t table[L * EE_LAYER_TABLE_COLS];
    for (int l = 0; l < L; l++) {
        for (int c = 12; c < 14; c++) caches2[l][c - 12] = malloc(cache_n * sizeof(float)), memcpy(caches2[l][c - 12], w[l][c], cache_n * sizeof(float));
        for (int c = 0; c < EE_LAYER_TABLE_COLS; c++) table[l * EE_LAYER_TABLE_COLS + c] = (int64_t)(intptr_t)(c >= 12 ? caches2[l][c - 12] : w[l][c]);
    }
    const float eps = 1e-5f, scale = 1.0f / sqrtf(HD);
    int rc = 0;
    for (int l = 0; l < L; l++) /* layer by layer, x -> out1 then in place */
        rc |= ee_decoder_layer_fwd(l == 0 ? x : out1, out1, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, w[l][0], w[l][1], w[l][2], w[l][3], w[l][4], w[l][5],
                                   w[l][6], w[l][7], w[l][8], w[l][9], w[l][10], w[l][11], EE_F32, w[l][12], w[l][13], 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0,
                                   eps, scale);
    rc |= ee_decoder_layers_fwd(table, 0, L, x, out2, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, EE_F32, 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0, eps,
                                scale);
    if (rc) printf("FAIL decoder layers: %s\n", ee_last_error()), failures++;
    int differ = memcmp(out1, out2, R * D * sizeof(float)) != 0;
    for (int l = 0; l < L; l++) differ += memcmp(w[l][12], caches2[l][0], cache_n * sizeof(float)) != 0 || memcmp(w[l][13], caches2[l][1], cache_n * sizeof(float)) != 0;
    if (differ) printf("FAIL decoder layers: %d of the output and the layers' caches differ from the layers one by one\n", differ), failures++;
    /* a later range alone, in place: layers 1..2 over out1's copy */
    memcpy(out2, x, R * D * sizeof(float));
    rc = ee_decoder_layer_fwd(out2, out2, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, w[0][0], w[0][1], w[0][2], w[0][3], w[0][4], NULL, NULL, NULL, w[0][8],
                              w[0][9], w[0][10], w[0][11], EE_F32, caches2[0][0], caches2[0][1], 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0, eps, scale);
    rc |= ee_decoder_layers_fwd(table, 1, 2, out2, out2, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, EE_F32, 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0,
                                eps, scale);
    if (rc || memcmp(out1, out2, R * D * sizeof(float))) printf("FAIL decoder layers 1..2 in place differ from the layers one by one\n"), failures++;
    /* refusals: a null matrix in layer 2 is named; negative ranges */
    table[2 * EE_LAYER_TABLE_COLS + 1] = 0;
    rc = ee_decoder_layers_fwd(table, 0, L, x, out2, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, EE_F32, 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0, eps,
                               scale);
    if (!rc || !strstr(ee_last_error(), "layer 2: ee_decoder_layer_fwd: null pointer")) printf("FAIL decoder layers: a null matrix gave %d, '%s'\n", rc, ee_last_error()), failures++;
    if (!ee_decoder_layers_fwd(table, -1, 1, x, out2, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, EE_F32, 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0,
                               eps, scale)
        || !ee_decoder_layers_fwd(NULL, 0, 1, x, out2, res, xn, NULL, q, k, v, att, NULL, xn, NULL, gate, up, gate, EE_F32, 1, NS, ML, seq, pos, inv_freq, R, D, H, KVH, HD, F, 0,
                                  eps, scale))
        printf("FAIL decoder layers: a negative first layer or a null table was accepted\n"), failures++;
    for (int l = 0; l < L; l++) {
        for (int c = 0; c < EE_LAYER_TABLE_COLS; c++) free(w[l][c]);
        free(caches2[l][0]), free(caches2[l][1]);
    }
    free(x), free(out1), free(out2), free(res), free(xn), free(q), free(k), free(v), free(att), free(gate), free(up);
}

static void test_index_errors(void) {
    float cache[2 * 3 * 4] = {0}, src[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8}, dst[2 * 4];
    const int32_t seq[2] = {1, 2}, pos[2] = {0, 1}, idx[2] = {0, -4};
    expect_index_error(ee_kv_write(cache, src, seq, pos, 2, 4, 2, 3), "ee_kv_write: row 1 has seq 2, outside the cache's 2 sequences");
    expect_index_error(ee_gather_rows(dst, src, idx, 2, 4, 2), "ee_gather_rows: row 1 has index -4, outside src's 2 rows");
    expect_index_error(ee_embedding_fwd(dst, src, EE_F32, seq, 2, 4, 2), "ee_embedding_fwd: row 1 has id 2, outside the table's 2 rows");
    for (int i = 0; i < 2 * 3 * 4; i++)
        if (cache[i] != 0) printf("FAIL kv_write wrote cell %d before failing\n", i), failures++;
}

int main(void) {
    unsigned seed = 42;
    if (ee_abi_version() != EE_ABI_VERSION) printf("FAIL abi version\n"), failures++;
    printf("features %d, threads %d\n", ee_features(), ee_set_num_threads(0));
    test_cast();
    test_gemm(&seed);
    test_gemm_offsets(&seed);
    test_gemm_panels(&seed);
    test_gemm_panels_i8(&seed);
    test_max_prob_upper(&seed);
    test_gemm_rows_alone(&seed);
    test_rmsnorm(&seed);
    test_gate_score(&seed);
    test_attention(&seed, 2, 17, 4, 2, 8);
    test_attention(&seed, 2, 150, 3, 1, 36);  /* several key blocks, head_dim not a multiple of 16, group 3 */
    test_attention(&seed, 1, 70, 20, 1, 16);  /* a group wider than 16 lanes */
    test_attention(&seed, 2, 40, 4, 4, 48);
    test_attention(&seed, 2, 9, 2, 2, 130);   /* head_dim past the slot path */
    test_attention_packed(&seed, 6, 2, 20);
    test_attention_packed(&seed, 8, 4, 8); /* stories260K's heads */
    test_attention_packed(&seed, 4, 2, 12);
    test_attention_decode_rows(&seed, 6, 6, 48); /* the 15M config's heads */
    test_attention_decode_rows(&seed, 6, 2, 20); /* GQA, head_dim not a multiple of 8 */
    test_attention_decode_rows(&seed, 8, 8, 64); /* wide cache rows (512 floats): by chunks of keys */
    test_attention_decode_rows(&seed, 12, 6, 90); /* the same with GQA, head_dim not a multiple of 8 */
    test_cross_entropy(&seed);
    test_sampling();
    test_argmax_rows(&seed);
    test_argmax_candidates(&seed);
    test_sum_squares(&seed);
    test_decoder_layers(&seed);
    test_index_errors();
    if (ee_copy(NULL, &seed, 4, 0) == 0 || !*ee_last_error()) printf("FAIL null pointer not reported\n"), failures++;
    printf(failures ? "%d failures\n" : "all passed\n", failures);
    return failures != 0;
}
