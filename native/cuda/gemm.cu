/*
 * GEMM: C = alpha op(A) op(B) + beta C, row-major (BLAS semantics as in ee_gemm), through cuBLAS found at run time,
 * or a portable tiled fp32 kernel when cuBLAS is missing or ee_set_gemm_path(2) asks for it.
 *
 * Row-major to cuBLAS: a row-major X[r x c] (leading dimension ld) is the column-major X^T, so C^T = op(B)^T op(A)^T
 * is one column-major GEMM with the operands swapped: m' = n, n' = m, A' = B (op from trans_b), B' = A (op from
 * trans_a), ldc unchanged.
 *
 * Precision on the cuBLAS path: 16-bit B (bf16/f16 weights) runs on the tensor cores with fp32 accumulation, and the
 * f32 A is rounded to B's dtype first (one packed copy in scratch), the usual mixed-precision contract; results then
 * differ from the CPU's f32 x bf16 products by about 2^-9 relative per input. f32 x f32 runs in full fp32
 * (CUBLAS_COMPUTE_32F; EETUNE_CUDA_TF32=1 allows TF32). The fallback kernel reads every dtype exactly and accumulates
 * in fp32, like the CPU library.
 */
#include <dlfcn.h>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"
#include "cublas_dyn.h"

/* ---- cuBLAS, loaded once ---------------------------------------------------------------------------------------- */

static struct {
    int tried, ok;
    char problem[768];
    void* lib;
    cublasHandle_t handle;
    ee_cublasCreate_fn create;
    ee_cublasSetStream_fn set_stream;
    ee_cublasGemmEx_fn gemm_ex;
    ee_cublasGetStatusString_fn status_string;
    int tf32;
} blas;

static int gemm_path; /* 0 = automatic, 1 = cuBLAS, 2 = fallback kernel */

/* EETUNE_CUBLAS names a library to try first; EETUNE_CUBLAS=none disables cuBLAS (to test the fallback). */
static void cublas_load(void) {
    blas.tried = 1;
    const char* env = getenv("EETUNE_CUBLAS");
    if (env && strcmp(env, "none") == 0) {
        snprintf(blas.problem, sizeof blas.problem, "cuBLAS disabled by EETUNE_CUBLAS=none");
        return;
    }
    const char* names[] = {env, "libcublas.so.13", "libcublas.so.12", "libcublas.so", "/usr/local/cuda/lib64/libcublas.so.13",
                           "/usr/local/cuda/lib64/libcublas.so.12", "/usr/local/cuda/targets/x86_64-linux/lib/libcublas.so"};
    size_t used = 0;
    used += snprintf(blas.problem + used, sizeof blas.problem - used, "cuBLAS not found; tried:");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!names[i] || !*names[i]) continue;
        void* lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            if (used < sizeof blas.problem) used += snprintf(blas.problem + used, sizeof blas.problem - used, " %s;", names[i]);
            continue;
        }
        blas.create = (ee_cublasCreate_fn)dlsym(lib, "cublasCreate_v2");
        blas.set_stream = (ee_cublasSetStream_fn)dlsym(lib, "cublasSetStream_v2");
        blas.gemm_ex = (ee_cublasGemmEx_fn)dlsym(lib, "cublasGemmEx");
        blas.status_string = (ee_cublasGetStatusString_fn)dlsym(lib, "cublasGetStatusString");
        if (!blas.create || !blas.set_stream || !blas.gemm_ex) {
            snprintf(blas.problem, sizeof blas.problem, "%s lacks cublasCreate_v2 / cublasSetStream_v2 / cublasGemmEx", names[i]);
            dlclose(lib);
            continue;
        }
        cublasStatus_t st = blas.create(&blas.handle);
        if (st != EE_CUBLAS_STATUS_SUCCESS) {
            snprintf(blas.problem, sizeof blas.problem, "%s: cublasCreate failed with status %d%s%s", names[i], st,
                     blas.status_string ? ": " : "", blas.status_string ? blas.status_string(st) : "");
            cudaGetLastError();
            return; /* the library stays loaded; the failure is about the device, another copy would not help */
        }
        blas.lib = lib;
        blas.ok = 1;
        const char* tf32 = getenv("EETUNE_CUDA_TF32");
        blas.tf32 = tf32 && *tf32 && strcmp(tf32, "0") != 0;
        return;
    }
}

/* The caller holds ee_op_lock. */
static int cublas_ready(void) {
    if (!blas.tried) cublas_load();
    return blas.ok;
}

int ee_gemm_uses_cublas(void) { return gemm_path != 2 && cublas_ready(); }

EE_API int32_t ee_set_gemm_path(int32_t path) {
    if (path < 0 || path > 2) return ee_fail("ee_set_gemm_path: unknown path %d (0 = automatic, 1 = cuBLAS, 2 = fallback kernel)", path);
    ee_op_lock lock;
    if (path == 1 && !cublas_ready()) return ee_fail("ee_set_gemm_path: %s", blas.problem);
    gemm_path = path;
    return 0;
}

/* ---- fallback: 64 x 64 tiles, 256 threads with 4 x 4 outputs each, fp32 accumulation ------------------------------ */

#define TM 64
#define TN 64
#define TK 16

__global__ void __launch_bounds__(256) gemm_tiled_kernel(ee_gemm_args g) {
    __shared__ float as[TK][TM + 4];
    __shared__ float bs[TK][TN + 4];
    const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
    const int row0 = blockIdx.y * TM, col0 = blockIdx.x * TN;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < g.k; k0 += TK) {
        for (int s = 0; s < 4; s++) {
            int e = t + 256 * s;
            /* consecutive threads read consecutive addresses in either layout */
            int i = g.trans_a ? e % TM : e / TK, kk = g.trans_a ? e / TM : e % TK;
            int r = row0 + i, kc = k0 + kk;
            float v = 0.0f;
            if (r < g.m && kc < g.k) v = ee_load_f32(g.a, g.a_dtype, g.trans_a ? (int64_t)kc * g.lda + r : (int64_t)r * g.lda + kc);
            as[kk][i] = v;
            int j = g.trans_b ? e / TK : e % TN;
            kk = g.trans_b ? e % TK : e / TN;
            int c = col0 + j;
            kc = k0 + kk;
            v = 0.0f;
            if (c < g.n && kc < g.k) v = ee_load_f32(g.b, g.b_dtype, g.trans_b ? (int64_t)c * g.ldb + kc : (int64_t)kc * g.ldb + c);
            bs[kk][j] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                a[q] = as[kk][ty + 16 * q];
                b[q] = bs[kk][tx + 16 * q];
            }
#pragma unroll
            for (int p = 0; p < 4; p++)
#pragma unroll
                for (int q = 0; q < 4; q++) acc[p][q] += a[p] * b[q];
        }
        __syncthreads();
    }
#pragma unroll
    for (int p = 0; p < 4; p++) {
        int r = row0 + ty + 16 * p;
        if (r >= g.m) continue;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            int c = col0 + tx + 16 * q;
            if (c >= g.n) continue;
            float* cp = g.c + (int64_t)r * g.ldc + c;
            *cp = g.beta == 0.0f ? g.alpha * acc[p][q] : g.alpha * acc[p][q] + g.beta * *cp;
        }
    }
}

/* C = beta C for k = 0 or alpha = 0 (beta = 0 writes zeros whatever C held). */
__global__ void gemm_scale_c_kernel(float* c, int m, int n, int ldc, float beta) {
    const int64_t total = (int64_t)m * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / n, j = i - r * n;
        float* p = c + r * ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

static int gemm_fallback(const ee_gemm_args* g) {
    dim3 grid((g->n + TN - 1) / TN, (g->m + TM - 1) / TM);
    if (grid.y > 65535) return ee_fail("ee_gemm: m = %d is too large for the fallback kernel", g->m);
    gemm_tiled_kernel<<<grid, 256, 0, ee_stream()>>>(*g);
    return ee_launched("ee_gemm (fallback kernel)");
}

static int cuda_type(int dtype) { return dtype == EE_BF16 ? EE_CUDA_R_16BF : dtype == EE_F16 ? EE_CUDA_R_16F : EE_CUDA_R_32F; }

/* g's f32 A rounded to B's 16-bit dtype: a packed copy (same orientation) in scratch, and g pointed at it */
static int round_a(ee_gemm_args* g) {
    int64_t rows = g->trans_a ? g->k : g->m, cols = g->trans_a ? g->m : g->k;
    void* a16 = ee_scratch(EE_SCRATCH_GEMM_A, (size_t)(rows * cols) * 2);
    if (!a16 || ee_cast_2d(a16, g->b_dtype, g->a, g->a_dtype, rows, cols, g->lda)) return 1;
    g->a = a16;
    g->a_dtype = g->b_dtype;
    g->lda = (int)cols;
    return 0;
}

/* One cublasGemmEx of operands of one dtype (or f32 C with 16-bit A and B). */
static int cublas_gemm(const ee_gemm_args& g) {
    blas.set_stream(blas.handle, ee_stream()); /* the legacy stream, or the one a graph is captured on */
    int compute = g.a_dtype == EE_F32 && blas.tf32 ? EE_CUBLAS_COMPUTE_32F_FAST_TF32 : EE_CUBLAS_COMPUTE_32F;
    cublasStatus_t st = blas.gemm_ex(blas.handle, g.trans_b ? EE_CUBLAS_OP_T : EE_CUBLAS_OP_N, g.trans_a ? EE_CUBLAS_OP_T : EE_CUBLAS_OP_N,
                                     g.n, g.m, g.k, &g.alpha, g.b, cuda_type(g.b_dtype), g.ldb, g.a, cuda_type(g.a_dtype), g.lda, &g.beta,
                                     g.c, EE_CUDA_R_32F, g.ldc, compute, EE_CUBLAS_GEMM_DEFAULT);
    if (st != EE_CUBLAS_STATUS_SUCCESS) {
        return ee_fail("ee_gemm: cublasGemmEx(m=%d, n=%d, k=%d, trans %d/%d, dtypes %d/%d) failed with status %d%s%s", g.m, g.n, g.k,
                       g.trans_a, g.trans_b, g.a_dtype, g.b_dtype, st, blas.status_string ? ": " : "", blas.status_string ? blas.status_string(st) : "");
    }
    return ee_launched("ee_gemm (cuBLAS)");
}

static int gemm_cublas(const ee_gemm_args* g0) {
    ee_gemm_args g = *g0;
    /* mixed dtypes: round the f32 operand to the 16-bit one's dtype (packed copy, same orientation) */
    if (g.a_dtype != g.b_dtype) {
        if (g.b_dtype != EE_F32) {
            if (round_a(&g)) return 1;
        } else {
            int64_t rows = g.trans_b ? g.n : g.k, cols = g.trans_b ? g.k : g.n;
            void* b16 = ee_scratch(EE_SCRATCH_GEMM_B, (size_t)(rows * cols) * 2);
            if (!b16 || ee_cast_2d(b16, g.a_dtype, g.b, g.b_dtype, rows, cols, g.ldb)) return 1;
            g.b = b16;
            g.b_dtype = g.a_dtype;
            g.ldb = (int)cols;
        }
    }
    return cublas_gemm(g);
}

int ee_gemm_run(const ee_gemm_args* g) {
    if (g->m <= 0 || g->n <= 0) return 0;
    if (g->k <= 0 || g->alpha == 0.0f) {
        if (g->beta == 1.0f) return 0;
        gemm_scale_c_kernel<<<ee_grid_for((int64_t)g->m * g->n, 256), 256, 0, ee_stream()>>>(g->c, g->m, g->n, g->ldc, g->beta);
        return ee_launched("ee_gemm (scale C)");
    }
    if (ee_is_panels_dtype(g->b_dtype)) return ee_gemm_panels(g); /* the one kernel per layout, whatever the path */
    if (gemm_path == 2) return gemm_fallback(g);
    if (cublas_ready()) return gemm_cublas(g);
    if (gemm_path == 1) return ee_fail("ee_gemm: %s", blas.problem);
    return gemm_fallback(g);
}

int ee_gemm_check_b(const char* caller, int trans_a, int trans_b, int m, int k, int b_dtype, int ldb) {
    if (ee_is_panels_dtype(b_dtype) && (trans_a || !trans_b || ldb != k || m > EE_PANELS_MAX_M))
        return ee_fail("%s: a panel-packed B (dtype %d) needs trans_a = 0, trans_b = 1, ldb = k and m <= %d; got trans %d/%d, ldb %d, k %d, m %d",
                       caller, b_dtype, EE_PANELS_MAX_M, trans_a, trans_b, ldb, k, m);
    if (!ee_is_float_dtype(b_dtype) && !ee_is_panels_dtype(b_dtype)) return ee_fail("%s: unsupported B dtype %d", caller, b_dtype);
    return 0;
}

int ee_gemm_group(const ee_gemm_args* gs, int count) {
    ee_op_lock lock;
    for (int i = 0; i < count; i++)
        if (ee_gemm_run(&gs[i])) return 1;
    return 0;
}

int ee_gemm_group_rounded(const ee_gemm_args* gs, int count, const void* a16) {
    ee_op_lock lock;
    for (int i = 0; i < count; i++) {
        ee_gemm_args g = gs[i];
        g.a = a16;
        g.a_dtype = g.b_dtype;
        g.lda = g.k;
        if (cublas_gemm(g)) return 1;
    }
    return 0;
}

void* ee_gemm_rounded_input(int b_dtype, int64_t elements) {
    if ((b_dtype != EE_BF16 && b_dtype != EE_F16) || !ee_gemm_uses_cublas()) return 0;
    return ee_scratch(EE_SCRATCH_GEMM_A, (size_t)elements * 2);
}

EE_API int32_t ee_gemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha, const float* a, int32_t lda, const void* b, int32_t b_dtype, int32_t ldb, float beta, float* c, int32_t ldc) {
    if (m < 0 || n < 0 || k < 0) return ee_fail("ee_gemm: negative size (m %d, n %d, k %d)", m, n, k);
    if (ee_gemm_check_b("ee_gemm", trans_a, trans_b, m, k, b_dtype, ldb)) return 1;
    if (m == 0 || n == 0) return 0;
    if (lda < (trans_a ? m : k) || ldb < (trans_b ? k : n) || ldc < n || lda < 1 || ldb < 1)
        return ee_fail("ee_gemm: leading dimensions too small (lda %d, ldb %d, ldc %d for m %d, n %d, k %d, trans %d/%d)", lda, ldb, ldc, m, n, k, trans_a, trans_b);
    if (!c || (k > 0 && (!a || !b))) return ee_fail("ee_gemm: null pointer");
    ee_gemm_args g = {trans_a != 0, trans_b != 0, m, n, k, alpha, a, EE_F32, lda, b, b_dtype, ldb, beta, c, ldc};
    ee_op_lock lock;
    return ee_gemm_run(&g);
}
