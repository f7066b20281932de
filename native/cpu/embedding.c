/* Token embedding lookup and its scatter-add backward. */
#include "internal.h"

/* 1 after recording the first id outside [0, vocab), else 0. */
static int check_ids(int kind, const int32_t* ids, int32_t n, int32_t vocab) {
    for (int32_t r = 0; r < n; r++)
        if (ids[r] < 0 || ids[r] >= vocab) return ee_fail_index(kind, r, ids[r], vocab, "");
    return 0;
}

static void lookup_row(float* out, const void* table, int32_t dtype, size_t offset, int32_t dim) {
    switch (dtype) {
    case EE_BF16:
        for (int32_t j = 0; j < dim; j++) out[j] = ee_load_f32(table, EE_BF16, offset + j);
        break;
    case EE_F16:
        for (int32_t j = 0; j < dim; j++) out[j] = ee_load_f32(table, EE_F16, offset + j);
        break;
    default: memcpy(out, (const float*)table + offset, (size_t)dim * sizeof(float));
    }
}

typedef struct {
    float* out;
    const void* table;
    const int32_t* ids;
    int32_t dtype, dim;
} lookup_job;

static void lookup_rows(void* ctx, int64_t r0, int64_t r1) {
    const lookup_job* j = ctx;
    for (int64_t r = r0; r < r1; r++) lookup_row(j->out + r * j->dim, j->table, j->dtype, (size_t)j->ids[r] * j->dim, j->dim);
}

EE_API int32_t ee_embedding_fwd(float* out, const void* table, int32_t table_dtype, const int32_t* ids, int32_t n, int32_t dim, int32_t vocab) {
    if (!ee_is_float_dtype(table_dtype)) return ee_fail("ee_embedding_fwd: unsupported table dtype %d", table_dtype);
    if (n <= 0 || dim <= 0) return n < 0 || dim < 0 ? ee_fail("ee_embedding_fwd: negative size") : 0;
    if (!out || !table || !ids) return ee_fail("ee_embedding_fwd: null pointer");
    if (check_ids(EE_BAD_EMBEDDING_FWD_ID, ids, n, vocab)) return 1;
    lookup_job job = {out, table, ids, table_dtype, dim};
    ee_parallel_range(ee_threads_for((double)n * dim), n, lookup_rows, &job);
    return 0;
}

#define COLUMN_BLOCK 64

static void scatter_columns(float* dtable, const float* dout, const int32_t* ids, int32_t n, int32_t dim, int32_t j0) {
    const int32_t j1 = ee_min(j0 + COLUMN_BLOCK, dim);
    for (int32_t r = 0; r < n; r++) {
        float* d = dtable + (size_t)ids[r] * dim;
        const float* g = dout + (size_t)r * dim;
        for (int32_t j = j0; j < j1; j++) d[j] += g[j];
    }
}

typedef struct {
    float* dtable;
    const float* dout;
    const int32_t* ids;
    int32_t n, dim;
} scatter_job;

static void scatter_blocks(void* ctx, int64_t blk0, int64_t blk1) {
    const scatter_job* j = ctx;
    for (int64_t blk = blk0; blk < blk1; blk++) scatter_columns(j->dtable, j->dout, j->ids, j->n, j->dim, (int32_t)blk * COLUMN_BLOCK);
}

/* Threads own disjoint column ranges, so repeated ids need no atomics and the sum order is fixed. */
EE_API int32_t ee_embedding_bwd(float* dtable, const float* dout, const int32_t* ids, int32_t n, int32_t dim, int32_t vocab) {
    if (n <= 0 || dim <= 0) return n < 0 || dim < 0 ? ee_fail("ee_embedding_bwd: negative size") : 0;
    if (!dtable || !dout || !ids) return ee_fail("ee_embedding_bwd: null pointer");
    if (check_ids(EE_BAD_EMBEDDING_BWD_ID, ids, n, vocab)) return 1;
    scatter_job job = {dtable, dout, ids, n, dim};
    ee_parallel_range(ee_threads_for((double)n * dim), ee_ceil_div(dim, COLUMN_BLOCK), scatter_blocks, &job);
    return 0;
}
