/* ee_decoder_layers_fwd, one definition for the CPU and the CUDA library (cpu/layer.c, cuda/layer.cu): a loop over
 * the table calling the library's own ee_decoder_layer_fwd, so both run the same layers in the same order. */
#ifndef EE_LAYERS_H
#define EE_LAYERS_H

#include <stdio.h>

#include "common.h"

static inline int32_t ee_decoder_layers_loop(const int64_t* table, int32_t first, int32_t count, const float* x, float* out, float* residual, float* xn1, float* inv1, float* q,
                                             float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, int32_t w_dtype,
                                             int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq,
                                             int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps,
                                             float scale) {
    if (first < 0 || count < 0) return ee_fail("ee_decoder_layers_fwd: layers %d .. %d + %d", first, first, count);
    if (count > 0 && !table) return ee_fail("ee_decoder_layers_fwd: null table");
    for (int32_t l = first; l < first + count; l++) {
#define P(col) ((void*)(intptr_t)table[(int64_t)l * EE_LAYER_TABLE_COLS + (col)])
        const int32_t rc = ee_decoder_layer_fwd(l == first ? x : out, out, residual, xn1, inv1, q, k, v, att, lse, xn2, inv2, gate, up, act, (const float*)P(0), P(1), P(2),
                                                P(3), P(4), (const float*)P(5), (const float*)P(6), (const float*)P(7), (const float*)P(8), P(9), P(10), P(11), w_dtype,
                                                (float*)P(12), (float*)P(13), write_kv, n_seq, max_len, row_seq, row_pos, inv_freq, rows, dim, n_heads, n_kv_heads,
                                                head_dim, hidden, interleaved, eps, scale);
#undef P
        if (rc) {
            char why[512]; /* the layer's message, copied: ee_fail writes where ee_last_error reads */
            snprintf(why, sizeof why, "%s", ee_last_error());
            return ee_fail("ee_decoder_layers_fwd: layer %d: %s", l, why);
        }
    }
    return 0;
}

#endif /* EE_LAYERS_H */
