/*
 * GEMM entry point and path choice: OpenBLAS sgemm when it was found at run time, the packed fallback of
 * gemm_kernel.c otherwise, and the decode path of gemm_small.c for a few rows against a transposed weight.
 */
#include "internal.h"

static _Atomic int gemm_path; /* 0 = automatic (BLAS unless its kernels are older than the CPU's), 1 = BLAS, 2 = fallback */

EE_API int32_t ee_set_gemm_path(int32_t path) {
    if (path < 0 || path > 2) return ee_fail("ee_set_gemm_path: unknown path %d", path);
    if (path == 1 && !ee_cpu_get()->sgemm) return ee_fail("ee_set_gemm_path: OpenBLAS is not loaded");
    gemm_path = path;
    return 0;
}

int ee_gemm_decode_path(int32_t b_dtype) { return ee_is_panels_dtype(b_dtype) || gemm_path != 1; }

/* Columns of op(B) and depth converted per sgemm call when B is bf16/f16: bounded scratch, never a full f32 copy. */
#define BLAS_PANEL_N 256
#define BLAS_PANEL_K 4096
/* Slices are whole multiples of this many rows or columns, so that no two threads write one cache line of C. */
#define BLAS_SLICE_ALIGN 16

/* One sgemm call, or a run of them over converted panels of B when B is bf16/f16 (panel: BLAS_PANEL_K x
 * BLAS_PANEL_N floats of the calling thread's own). */
static void blas_call(const ee_gemm_args* g, float* panel) {
    const ee_cpu* cpu = ee_cpu_get();
    const int ta = g->trans_a ? EE_CBLAS_TRANS : EE_CBLAS_NO_TRANS, tb = g->trans_b ? EE_CBLAS_TRANS : EE_CBLAS_NO_TRANS;
    if (g->b_dtype == EE_F32) {
        cpu->sgemm(EE_CBLAS_ROW_MAJOR, ta, tb, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c, g->ldc);
        return;
    }
    const int kb_max = ee_min(g->k, BLAS_PANEL_K), nb_max = ee_min(g->n, BLAS_PANEL_N);
    for (int j0 = 0; j0 < g->n; j0 += nb_max) {
        const int nb = ee_min(nb_max, g->n - j0);
        for (int p0 = 0; p0 < g->k; p0 += kb_max) {
            const int kb = ee_min(kb_max, g->k - p0);
            /* the panel keeps B's orientation: nb x kb rows of the weight when transposed, kb x nb otherwise */
            const int rows = g->trans_b ? nb : kb, cols = g->trans_b ? kb : nb;
            const size_t origin = g->trans_b ? (size_t)j0 * g->ldb + p0 : (size_t)p0 * g->ldb + j0;
            for (int r = 0; r < rows; r++) {
                const size_t src = origin + (size_t)r * g->ldb;
                float* dst = panel + (size_t)r * cols;
                if (g->b_dtype == EE_BF16)
                    for (int j = 0; j < cols; j++) dst[j] = ee_load_f32(g->b, EE_BF16, src + j);
                else
                    for (int j = 0; j < cols; j++) dst[j] = ee_load_f32(g->b, EE_F16, src + j);
            }
            const float* a = g->a + (g->trans_a ? (size_t)p0 * g->lda : (size_t)p0);
            cpu->sgemm(EE_CBLAS_ROW_MAJOR, ta, tb, g->m, nb, kb, g->alpha, a, g->lda, panel, cols, p0 == 0 ? g->beta : 1.0f, g->c + j0, g->ldc);
        }
    }
}

/*
 * OpenBLAS runs single-threaded inside our pool (one pool for all parallel work, never two fighting over the cores):
 * the problem is cut into nt slices of rows of C (when m is the larger side, so each slice still has a wide B) or of
 * columns (each slice then reads only its own columns of B, converting only those when B is bf16/f16), and each
 * thread calls sgemm on its slice.
 */
typedef struct {
    const ee_gemm_args* g;
    int by_rows; /* slices of rows of C (and A) rather than columns of C (and B) */
    float* panels; /* nt conversion panels of BLAS_PANEL_K x BLAS_PANEL_N floats when B is bf16/f16 */
    size_t panel_floats;
} blas_job;

static void blas_slice(void* p, int tid, int nt) {
    const blas_job* job = p;
    const ee_gemm_args* g = job->g;
    const int extent = job->by_rows ? g->m : g->n, units = ee_ceil_div(extent, BLAS_SLICE_ALIGN);
    const int begin = ee_min(extent, units * tid / nt * BLAS_SLICE_ALIGN), end = ee_min(extent, units * (tid + 1) / nt * BLAS_SLICE_ALIGN);
    if (begin >= end) return;
    ee_gemm_args s = *g;
    if (job->by_rows) {
        s.m = end - begin;
        s.a = g->a + (g->trans_a ? (size_t)begin : (size_t)begin * g->lda);
        s.c = g->c + (size_t)begin * g->ldc;
    } else {
        s.n = end - begin;
        const size_t b_off = g->trans_b ? (size_t)begin * g->ldb : (size_t)begin;
        s.b = (const char*)g->b + b_off * ee_dtype_size(g->b_dtype);
        s.c = g->c + begin;
    }
    blas_call(&s, job->panels ? job->panels + (size_t)tid * job->panel_floats : 0);
}

static int gemm_blas(const ee_gemm_args* g) {
    const int by_rows = g->b_dtype == EE_F32 && g->m > g->n;
    const int extent = by_rows ? g->m : g->n;
    const int nt = ee_min(ee_threads_for(EE_GEMM_WORK(g->m, g->n, g->k)), ee_ceil_div(extent, BLAS_SLICE_ALIGN));
    blas_job job = {g, by_rows, 0, 0};
    if (g->b_dtype != EE_F32) {
        job.panel_floats = (size_t)ee_min(g->k, BLAS_PANEL_K) * ee_min(g->n, BLAS_PANEL_N);
        job.panels = ee_scratch(EE_SCRATCH_BLAS_B, nt * job.panel_floats * sizeof(float));
        if (!job.panels) return ee_fail("ee_gemm: out of memory for %d conversion panels of %zu floats", nt, job.panel_floats);
    }
    ee_parallel(nt, blas_slice, &job);
    return 0;
}

int ee_gemm_run(const ee_gemm_args* g) {
    if (ee_is_panels_dtype(g->b_dtype)) return ee_gemm_panels(g); /* the one kernel per layout, whatever the path */
    const int path = gemm_path;
    if (path != 1 && g->trans_b && g->m <= EE_GEMM_SMALL_M) return ee_gemm_small(g);
    const ee_cpu* cpu = ee_cpu_get();
    if (path == 2 || !cpu->sgemm || (path == 0 && cpu->blas_older)) return ee_gemm_blocked(g);
    return gemm_blas(g);
}

int ee_gemm_check_b(const char* caller, int trans_a, int trans_b, int m, int k, int b_dtype, int ldb) {
    const int panels = ee_is_panels_dtype(b_dtype);
    if (panels && (trans_a || !trans_b || ldb != k || m > EE_PANELS_MAX_M))
        return ee_fail("%s: a panel-packed B (dtype %d) needs trans_a = 0, trans_b = 1, ldb = k and m <= %d; got trans %d/%d, ldb %d, k %d, m %d",
                       caller, b_dtype, EE_PANELS_MAX_M, trans_a, trans_b, ldb, k, m);
    if (!ee_is_float_dtype(b_dtype) && !panels) return ee_fail("%s: unsupported B dtype %d", caller, b_dtype);
    return 0;
}

int ee_gemm_group(const ee_gemm_args* gs, int count) {
    int small = gemm_path != 1;
    /* panel-packed weights have their own kernel (ee_gemm_run) */
    for (int i = 0; i < count; i++) small &= gs[i].trans_b && gs[i].m <= EE_GEMM_SMALL_M && ee_is_float_dtype(gs[i].b_dtype);
    if (small && count <= EE_GEMM_GROUP_MAX) return ee_gemm_small_group(gs, count);
    for (int i = 0; i < count; i++) {
        const int rc = ee_gemm_run(&gs[i]);
        if (rc) return rc;
    }
    return 0;
}

/* C = beta C for rows [begin, end), where beta = 0 writes zeros whatever C held (NaN included). */
typedef struct {
    float* c;
    int ldc, n;
    float beta;
} scale_job;

static void scale_rows(void* p, int64_t begin, int64_t end) {
    const scale_job* job = p;
    for (int64_t i = begin; i < end; i++) {
        float* c = job->c + i * job->ldc;
        if (job->beta == 0.0f)
            memset(c, 0, (size_t)job->n * sizeof(float));
        else
            for (int j = 0; j < job->n; j++) c[j] *= job->beta;
    }
}

EE_API int32_t ee_gemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha, const float* a, int32_t lda, const void* b, int32_t b_dtype, int32_t ldb, float beta, float* c, int32_t ldc) {
    if (m < 0 || n < 0 || k < 0) return ee_fail("ee_gemm: negative size %d x %d x %d", m, n, k);
    const int32_t rc = ee_gemm_check_b("ee_gemm", trans_a, trans_b, m, k, b_dtype, ldb);
    if (rc) return rc;
    if (m == 0 || n == 0) return 0;
    if (!c) return ee_fail("ee_gemm: C is null");
    if (k == 0 || alpha == 0.0f) { /* BLAS semantics: op(A) op(B) is not evaluated */
        if (beta != 1.0f) {
            const scale_job job = {c, ldc, n, beta};
            ee_parallel_range(ee_threads_for((double)m * n), m, scale_rows, (void*)&job);
        }
        return 0;
    }
    if (!a || !b) return ee_fail("ee_gemm: A or B is null");
    const ee_gemm_args g = {trans_a != 0, trans_b != 0, m, n, k, alpha, beta, a, lda, b, b_dtype, ldb, c, ldc};
    return ee_gemm_run(&g);
}
