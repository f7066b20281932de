/*
 * Private declarations shared by the CPU kernels of libeecpu. Nothing here is exported: the library is built with
 * -fvisibility=hidden and only the EE_API functions of eetune.h are visible.
 */
#ifndef EE_CPU_INTERNAL_H
#define EE_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "dtype.h"

/* Code compiled for these targets is only called after the run-time check in info.c said the CPU has them.
 * Elsewhere (linux-aarch64) the files with x86 intrinsics compile them only #if EE_X86 and map their AVX kernels to
 * the portable ones; the run-time check leaves avx2 and avx512 at 0, so code marked EE_AVX2 / EE_AVX512 without
 * intrinsics is compiled for the baseline and never called. */
#if defined(__x86_64__)
#define EE_X86 1
#define EE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define EE_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#else
#define EE_X86 0
#define EE_AVX2
#define EE_AVX512
#endif
#define EE_INLINE static inline __attribute__((always_inline))

/* ---- runtime (info.c) ---------------------------------------------------------------------------------------- */

/* cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) with LP64 ints. */
typedef void (*ee_sgemm_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
#define EE_CBLAS_ROW_MAJOR 101
#define EE_CBLAS_NO_TRANS 111
#define EE_CBLAS_TRANS 112

typedef struct {
    int avx2;           /* AVX2 + FMA + F16C kernels selected (not with EETUNE_NO_AVX2=1) */
    int avx512;         /* AVX-512F kernels selected (not with EETUNE_NO_AVX2=1 or EETUNE_NO_AVX512=1) */
    int avx512vnni;     /* and AVX-512 BW + VNNI: the 8-bit panels' integer kernel */
    ee_sgemm_fn sgemm;  /* cblas_sgemm of the OpenBLAS found at run time, or 0 */
    void (*blas_set_num_threads)(int);
    int blas_older;     /* OpenBLAS runs kernels older than this CPU's (see info.c): the automatic path skips it */
} ee_cpu;

/* CPU features and BLAS, detected once (thread-safe). */
const ee_cpu* ee_cpu_get(void);
/* Number of worker threads for a loop doing about `work` scalar operations: 1 when forking would cost more. */
int ee_threads_for(double work);
/* The same for a GEMM of m*n*k multiply-adds, which vectorise about 16 to one operation. */
#define EE_GEMM_WORK(m, n, k) ((double)(m) * (n) * (k) / 16.0)

/*
 * The thread pool (pool.c): every parallel region of the library goes through these calls, so that one pool of
 * ee_set_num_threads threads (the caller and its workers) runs all parallel work.
 * ee_parallel(nt, fn, ctx) runs fn(ctx, tid, nt') once for each tid < nt' and returns when all have returned, where
 * nt' <= nt is the team it got: the configured thread count caps nt, and a call made inside a region (nesting) or
 * while another thread's region runs (several Java threads calling at once) runs alone, fn(ctx, 0, 1), on the
 * calling thread. So fn must split its work by the nt' it is given, never by the nt it asked for. The caller runs
 * tid 0 and whatever tids no worker has started yet, so a region never waits for a worker the OS has not scheduled.
 * Inside fn, ee_team_barrier(nt') waits for the whole team (a no-op for nt' = 1).
 * ee_parallel_range(nt, n, fn, ctx) splits [0, n) into at most nt contiguous ranges, fn(ctx, begin, end) for each.
 * ee_parallel_range_stealing(nt, n, block, fn, ctx) starts from the same split but runs each part in calls of `block`
 * items, and a thread that has finished its part takes the back half of what is left of another's: for work whose
 * equal shares can finish far apart (a thread preempted by another process, a worker that wakes late).
 * Other dynamic scheduling is the caller's: fn takes items from an atomic counter in ctx (attention.c).
 *
 * BLAS: OpenBLAS is set to one thread (info.c, at load and on every ee_set_num_threads) so that its pool never runs
 * next to ours; a GEMM that should use several threads is split into per-thread sgemm slices on this pool.
 */
#define EE_MAX_THREADS 1024
typedef void (*ee_team_fn)(void* ctx, int tid, int nt);
typedef void (*ee_range_fn)(void* ctx, int64_t begin, int64_t end);
void ee_parallel(int nt, ee_team_fn fn, void* ctx);
void ee_team_barrier(int nt);
void ee_parallel_range(int nt, int64_t n, ee_range_fn fn, void* ctx);
void ee_parallel_range_stealing(int nt, int64_t n, int64_t block, ee_range_fn fn, void* ctx);
/* 1 while other processes keep preempting the pool's threads (waits then spin only briefly before they sleep) */
int ee_pool_contended(void);
/* CLOCK_MONOTONIC in nanoseconds (the pool's spin limits, the exit pipeline's stall clock) */
int64_t ee_now_ns(void);
/* The block for it: about 8 per thread, enough that a held-up thread's remainder is split fine. */
EE_INLINE int64_t ee_steal_block(int64_t n, int nt) { return n / (8 * (int64_t)nt) + 1; }
/* The configured thread count (ee_set_num_threads; by default the CPUs this process may run on). */
int ee_num_threads(void);

/* 64-byte aligned memory (huge-page backed when large) released with free(); 0 if out of memory (memory.c). */
void* ee_alloc_host(size_t bytes);

/* Per-thread reusable 64-byte aligned buffers, grown on demand and freed at thread exit; 0 if out of memory.
 * Called outside parallel regions, or inside one by code the region runs alone on its thread (the fused
 * cross-entropy's per-part ee_gemm_run); one slot per user so nested users never share a buffer. */
enum { EE_SCRATCH_GEMM_A, EE_SCRATCH_GEMM_B, EE_SCRATCH_GEMM_SMALL, EE_SCRATCH_BLAS_B, EE_SCRATCH_CE_LOGITS, EE_SCRATCH_ROPE, EE_SCRATCH_I8_A, EE_SCRATCH_SLOTS };
void* ee_scratch(int slot, size_t bytes);

/* ---- vectorised row reductions (exp.c) --------------------------------------------------------------------------- */

/* max of x[0..n), n >= 1 */
float ee_row_max(const float* x, int64_t n);
/* first index of the max of x[0..n), n >= 1 */
int64_t ee_row_argmax(const float* x, int64_t n);
/* returns sum_j e_j in double with e_j = exp((x[j] - shift) * mul); writes y[j] = scale * e_j unless y is 0 (y may
 * be x). Arguments are expected to be <= 0, as they are after subtracting a max or a log-sum-exp. */
double ee_row_exp(float* y, const float* x, int64_t n, float shift, float mul, float scale);

/* ---- early-exit decoding (exit_pipeline.c) -------------------------------------------------------------------- */

/* ee_exit_steps: one sequence of a small model on two threads as a pipeline (exit_pipeline.c), else ee_exit_steps_loop */
int32_t ee_exit_steps_run(const int64_t* plan, const int64_t* exits, int32_t steps);

/* ---- attention (attention.c) ---------------------------------------------------------------------------------- */

/* The most rows of one sequence that a decode pass may give ee_attention_fwd while each row's output stays the bits it
 * gets alone (the keys-in-lanes kernel of tiny heads computes each query alike in any group of rows; the slot path and
 * the per-row paths do not promise it); 0 where no such kernel serves these heads on this CPU. */
int32_t ee_attention_rows_alike(int32_t n_heads, int32_t n_kv_heads, int32_t head_dim);

/* ---- GEMM (gemm.c, gemm_kernel.c, gemm_small.c) --------------------------------------------------------------- */

/* One C = alpha op(A) op(B) + beta C problem, as in ee_gemm; m, n, k > 0 and alpha != 0 by the time it runs. */
typedef struct {
    int trans_a, trans_b, m, n, k;
    float alpha, beta;
    const float* a;
    int lda;
    const void* b;
    int b_dtype, ldb;
    float* c;
    int ldc;
} ee_gemm_args;

/* ee_gemm without argument checks, choosing the path like ee_gemm does; used by the fused kernels too. */
int ee_gemm_run(const ee_gemm_args* g);
/* The cache-blocked, packed fallback (any shape, trans and B dtype). */
int ee_gemm_blocked(const ee_gemm_args* g);
/* The decode path for m <= EE_GEMM_SMALL_M with trans_b = 1: each weight row is read once, parallel over n. */
#define EE_GEMM_SMALL_M 16
/* 1 when such GEMMs against a b_dtype weight take the decode path (gemm_small.c, or the panels' kernels), whose rows are
 * each computed alike whatever rows are beside them; 0 while ee_set_gemm_path forces OpenBLAS (gemm.c). */
int ee_gemm_decode_path(int32_t b_dtype);
int ee_gemm_small(const ee_gemm_args* g);
/* GEMMs that share m, k, A and trans_a (a layer's q/k/v, gate/up) in one parallel region, the same results as one
 * ee_gemm_run each: the small path's tiles of all of them split between the threads when it applies, else one by one. */
#define EE_GEMM_GROUP_MAX 4
int ee_gemm_small_group(const ee_gemm_args* gs, int count);
int ee_gemm_group(const ee_gemm_args* gs, int count);
/* ee_gemm's checks of B's dtype and, for the panel-packed dtypes, of the call's shape; 0 or ee_fail naming `caller`. */
int ee_gemm_check_b(const char* caller, int trans_a, int trans_b, int m, int k, int b_dtype, int ldb);
/* B packed by ee_pack_panels, ee_pack_panels_f16, ee_pack_panels_bf16 or ee_pack_panels_i8 (b_dtype EE_F32_PANELS, EE_F16_PANELS, EE_BF16_PANELS or EE_I8_PANELS; trans_a = 0, trans_b = 1, m <= EE_PANELS_MAX_M, checked by ee_gemm) */
int ee_gemm_panels(const ee_gemm_args* g);
/* Work of that path for ee_threads_for, in EE_GEMM_WORK's units: each weight also has to be streamed from memory,
 * which costs at least as much as 8 of its FMAs (a 4-byte weight at ~15 GB/s per core vs 16-lane FMAs at ~3 GHz is
 * about 13), so a single GEMV of a 288 x 288 layer already goes parallel. An estimate, not a measurement. */
#define EE_GEMV_WORK(m, n, k) ((double)(n) * (k) * ((m) + 8) / 16.0)

EE_INLINE int ee_ceil_div(int a, int b) { return (a + b - 1) / b; }
EE_INLINE int ee_min(int a, int b) { return a < b ? a : b; }

#endif /* EE_CPU_INTERNAL_H */
