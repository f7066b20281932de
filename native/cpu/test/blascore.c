/*
 * The automatic GEMM path and OpenBLAS's core (info.c): run with OPENBLAS_CORETYPE set by the test (CMakeLists.txt).
 *   eecpu_blascore older    OPENBLAS_CORETYPE=Haswell: on an AVX-512 CPU feature bit 16 is set and ee_gemm's automatic
 *                           path gives the built-in kernel's bits; elsewhere bit 16 is clear and it gives OpenBLAS's.
 *   eecpu_blascore current  OPENBLAS_CORETYPE=SkylakeX (AVX-512 CPUs only): bit 16 clear, automatic = OpenBLAS.
 * Exit 77 (skipped) without OpenBLAS, or for "current" without AVX-512.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eetune/eetune.h"

#define M 64 /* above the decode path's rows (EE_GEMM_SMALL_M), so the GEMM path decides */
#define N 300
#define K 200

static float a[M * K], b[N * K], c_auto[M * N], c_path[M * N];

static int run(int path, float* c) {
    if (ee_set_gemm_path(path) != 0) {
        fprintf(stderr, "ee_set_gemm_path(%d): %s\n", path, ee_last_error());
        return 1;
    }
    if (ee_gemm(0, 1, M, N, K, 1.0f, a, K, b, EE_F32, K, 0.0f, c, N) != 0) {
        fprintf(stderr, "ee_gemm (path %d): %s\n", path, ee_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    const int older = argc > 1 && strcmp(argv[1], "older") == 0;
    const int f = ee_features();
    if (!(f & 2)) {
        printf("skipped: OpenBLAS is not installed\n");
        return 77;
    }
    if (!older && !(f & 4)) {
        printf("skipped: the CPU has no AVX-512, so an AVX-512 OpenBLAS core cannot be asked for\n");
        return 77;
    }
    const int want_bit = older && (f & 4);
    if (!!(f & 16) != want_bit) {
        fprintf(stderr, "FAIL: features %d (OPENBLAS_CORETYPE=%s): bit 16 should be %s\n", f, getenv("OPENBLAS_CORETYPE"), want_bit ? "set" : "clear");
        return 1;
    }
    unsigned s = 12345;
    for (int i = 0; i < M * K; i++) a[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (1 << 24) - 0.5f;
    for (int i = 0; i < N * K; i++) b[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (1 << 24) - 0.5f;
    const int expected_path = want_bit ? 2 : 1;
    if (run(expected_path, c_path) || run(0, c_auto)) return 1;
    if (memcmp(c_auto, c_path, sizeof c_auto) != 0) {
        fprintf(stderr, "FAIL: the automatic path does not give path %d's bits (features %d)\n", expected_path, f);
        return 1;
    }
    printf("ok: features %d, OPENBLAS_CORETYPE=%s, automatic path = %s\n", f, getenv("OPENBLAS_CORETYPE"), want_bit ? "built-in" : "OpenBLAS");
    return 0;
}
