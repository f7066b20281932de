/* Row moves: KV-cache writes and row gathers (the CUDA twin is cuda/rows.cu). */
#include "internal.h"

EE_API int32_t ee_kv_write(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t width, int32_t n_seq, int32_t max_len) {
    if (rows < 0 || width < 0 || n_seq <= 0 || max_len <= 0) return ee_fail("ee_kv_write: bad shape (rows %d, width %d, n_seq %d, max_len %d)", rows, width, n_seq, max_len);
    if (rows == 0 || width == 0) return 0;
    if (!cache || !src || !row_seq || !row_pos) return ee_fail("ee_kv_write: null pointer");
    for (int32_t r = 0; r < rows; r++) { /* all checked before anything is written */
        if (row_seq[r] < 0 || row_seq[r] >= n_seq) return ee_fail_index(EE_BAD_KV_SEQ, r, row_seq[r], n_seq, "");
        if (row_pos[r] < 0 || row_pos[r] >= max_len) return ee_fail_index(EE_BAD_KV_POS, r, row_pos[r], max_len, "");
    }
    for (int32_t r = 0; r < rows; r++)
        memcpy(cache + ((size_t)row_seq[r] * max_len + row_pos[r]) * width, src + (size_t)r * width, (size_t)width * sizeof(float));
    return 0;
}

/* memmove: compacting in place (dst == src, idx[r] >= r) is a natural use. */
EE_API int32_t ee_gather_rows(float* dst, const float* src, const int32_t* idx, int32_t rows, int32_t width, int32_t src_rows) {
    if (rows < 0 || width < 0 || src_rows < 0) return ee_fail("ee_gather_rows: negative size");
    if (rows == 0 || width == 0) return 0;
    if (!dst || !src || !idx) return ee_fail("ee_gather_rows: null pointer");
    for (int32_t r = 0; r < rows; r++)
        if (idx[r] < 0 || idx[r] >= src_rows) return ee_fail_index(EE_BAD_GATHER_INDEX, r, idx[r], src_rows, "");
    for (int32_t r = 0; r < rows; r++)
        memmove(dst + (size_t)r * width, src + (size_t)idx[r] * width, (size_t)width * sizeof(float));
    return 0;
}
