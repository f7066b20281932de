/* Token embedding lookup and its scatter-add backward (the CPU twin is cpu/embedding.c). */
#include "common.cuh"

#define THREADS 256

/* An id outside [0, vocab) gives a NaN row and is recorded for the next synchronizing call. */
__global__ void embedding_fwd_kernel(float* out, const void* table, int dtype, const int32_t* ids, int64_t n, int dim, int vocab, ee_index_error* err) {
    ee_for_row_elements(n, dim, [&](int64_t i, int64_t r, int j) {
        const int id = ids[r];
        if (id >= 0 && id < vocab) out[i] = ee_load_f32(table, dtype, (int64_t)id * dim + j);
        else {
            out[i] = NAN;
            if (j == 0) ee_report_index(err, EE_BAD_EMBEDDING_FWD_ID, r, id, vocab);
        }
    });
}

EE_API int32_t ee_embedding_fwd(float* out, const void* table, int32_t table_dtype, const int32_t* ids, int32_t n, int32_t dim, int32_t vocab) {
    if (!ee_is_float_dtype(table_dtype)) return ee_fail("ee_embedding_fwd: unsupported table dtype %d", table_dtype);
    if (n <= 0 || dim <= 0) return n < 0 || dim < 0 ? ee_fail("ee_embedding_fwd: negative size") : 0;
    if (!out || !table || !ids) return ee_fail("ee_embedding_fwd: null pointer");
    embedding_fwd_kernel<<<ee_grid_for((int64_t)n * dim, THREADS), THREADS, 0, ee_stream()>>>(out, table, table_dtype, ids, n, dim, vocab, ee_index_error_record());
    return ee_launched("ee_embedding_fwd");
}

/* Scatter-add with f32 atomics: repeated ids accumulate in an unspecified order (not bitwise deterministic). */
__global__ void embedding_bwd_kernel(float* dtable, const float* dout, const int32_t* ids, int64_t n, int dim, int vocab, ee_index_error* err) {
    ee_for_row_elements(n, dim, [&](int64_t i, int64_t r, int j) {
        const int id = ids[r];
        if (id >= 0 && id < vocab) atomicAdd(dtable + (int64_t)id * dim + j, dout[i]);
        else if (j == 0) ee_report_index(err, EE_BAD_EMBEDDING_BWD_ID, r, id, vocab);
    });
}

EE_API int32_t ee_embedding_bwd(float* dtable, const float* dout, const int32_t* ids, int32_t n, int32_t dim, int32_t vocab) {
    if (n <= 0 || dim <= 0) return n < 0 || dim < 0 ? ee_fail("ee_embedding_bwd: negative size") : 0;
    if (!dtable || !dout || !ids) return ee_fail("ee_embedding_bwd: null pointer");
    embedding_bwd_kernel<<<ee_grid_for((int64_t)n * dim, THREADS), THREADS, 0, ee_stream()>>>(dtable, dout, ids, n, dim, vocab, ee_index_error_record());
    return ee_launched("ee_embedding_bwd");
}
