/*
 * The two OpenBLAS entry points eetune calls directly from Java (the benchmark's "direct cblas_sgemm" baseline).
 * Same restricted form as eetune.h: one `EE_API ret name(params);` per line; bindings are generated from it.
 * This is a declaration for the binding generator only; the real prototypes are in OpenBLAS's cblas.h.
 */
#ifndef EETUNE_OPENBLAS_H
#define EETUNE_OPENBLAS_H
#include <stdint.h>
#define EE_API

/** cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); row-major = 101, no-trans = 111, trans = 112. */
EE_API void cblas_sgemm(int32_t order, int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha, const float* a, int32_t lda, const float* b, int32_t ldb, float beta, float* c, int32_t ldc);
/** Sets the number of OpenBLAS threads. */
EE_API void openblas_set_num_threads(int32_t n);

#endif
