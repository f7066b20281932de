/* Row moves: KV-cache writes and row gathers (the CPU twin is cpu/rows.c). */
#include "common.cuh"

#define THREADS 256

/* A row outside the cache is not written and is recorded for the next synchronizing call. */
__global__ void kv_write_kernel(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int64_t rows, int width, int n_seq, int max_len, ee_index_error* err) {
    ee_for_row_elements(rows, width, [&](int64_t i, int64_t r, int j) {
        const int64_t cell = ee_kv_cell(row_seq, row_pos, r, n_seq, max_len, err, j == 0);
        if (cell >= 0) cache[cell * width + j] = src[i];
    });
}

EE_API int32_t ee_kv_write(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t width, int32_t n_seq, int32_t max_len) {
    if (rows < 0 || width < 0 || n_seq <= 0 || max_len <= 0) return ee_fail("ee_kv_write: bad shape (rows %d, width %d, n_seq %d, max_len %d)", rows, width, n_seq, max_len);
    if (rows == 0 || width == 0) return 0;
    if (!cache || !src || !row_seq || !row_pos) return ee_fail("ee_kv_write: null pointer");
    kv_write_kernel<<<ee_grid_for((int64_t)rows * width, THREADS), THREADS, 0, ee_stream()>>>(cache, src, row_seq, row_pos, rows, width, n_seq, max_len, ee_index_error_record());
    return ee_launched("ee_kv_write");
}

/* An index outside src gives a NaN row and is recorded for the next synchronizing call. */
__global__ void gather_rows_kernel(float* dst, const float* src, const int32_t* idx, int64_t rows, int width, int src_rows, ee_index_error* err) {
    ee_for_row_elements(rows, width, [&](int64_t i, int64_t r, int j) {
        const int s = idx[r];
        if (s >= 0 && s < src_rows) dst[i] = src[(int64_t)s * width + j];
        else {
            dst[i] = NAN;
            if (j == 0) ee_report_index(err, EE_BAD_GATHER_INDEX, r, s, src_rows);
        }
    });
}

/* Rows move in parallel, so when dst may overlap the rows read (in-place compaction, dst == src, is a natural use)
 * the rows are gathered into scratch first and copied back. */
EE_API int32_t ee_gather_rows(float* dst, const float* src, const int32_t* idx, int32_t rows, int32_t width, int32_t src_rows) {
    if (rows < 0 || width < 0 || src_rows < 0) return ee_fail("ee_gather_rows: negative size");
    if (rows == 0 || width == 0) return 0;
    if (!dst || !src || !idx) return ee_fail("ee_gather_rows: null pointer");
    int64_t total = (int64_t)rows * width;
    bool disjoint = dst + total <= src; /* rows read start at src; anything at or above src may be read */
    if (disjoint) {
        gather_rows_kernel<<<ee_grid_for(total, THREADS), THREADS, 0, ee_stream()>>>(dst, src, idx, rows, width, src_rows, ee_index_error_record());
        return ee_launched("ee_gather_rows");
    }
    ee_op_lock lock;
    float* tmp = (float*)ee_scratch(EE_SCRATCH_GEMM_A, (size_t)total * sizeof(float));
    if (!tmp) return 1;
    gather_rows_kernel<<<ee_grid_for(total, THREADS), THREADS, 0, ee_stream()>>>(tmp, src, idx, rows, width, src_rows, ee_index_error_record());
    if (ee_launched("ee_gather_rows")) return 1;
    cudaError_t e = cudaMemcpyAsync(dst, tmp, (size_t)total * sizeof(float), cudaMemcpyDeviceToDevice, ee_stream());
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_gather_rows");
}
