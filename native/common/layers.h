/* ee_decoder_layers_fwd, one definition for the CPU and the CUDA library (cpu/layer.c, cuda/layer.cu): a loop over
 * the table calling the library's own ee_decoder_layer_fwd, so both run the same layers in the same order. */
#ifndef EE_LAYERS_H
#define EE_LAYERS_H

#include <stdio.h>
#include <string.h>

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

/* ee_decode_steps, one definition for both libraries too: decode steps composed of the library's own calls, in the
 * order the Java decoder makes them for a step (embedding, the table's layers, final norm, classifier, argmax or
 * sampling). */
static inline int32_t ee_decode_steps_loop(const int64_t* plan, int32_t steps) {
    if (!plan) return ee_fail("ee_decode_steps: null plan");
#define F(i) plan[i]
#define PTR(type, i) ((type)(intptr_t)plan[i])
#define I32(i) ((int32_t)plan[i])
    const int32_t rows = I32(29), dim = I32(30), vocab = I32(7);
    int32_t* out_ids = PTR(int32_t*, 9);
    const int32_t* row_pos = PTR(const int32_t*, 27);
    float* x = PTR(float*, 10);
    const float* uniforms = PTR(const float*, 38);
    float f[4]; /* eps, scale, temperature, top_p */
    for (int i = 0; i < 4; i++) {
        const uint32_t bits = (uint32_t)F(i < 2 ? 36 + i : 37 + i);
        memcpy(&f[i], &bits, sizeof f[i]);
    }
    const float eps = f[0], scale = f[1];
    if (steps < 0 || rows < 0) return ee_fail("ee_decode_steps: %d steps of %d rows", steps, rows);
    if (steps > 0 && (!PTR(void*, 8) || !out_ids || !row_pos)) return ee_fail("ee_decode_steps: null ids or positions");
    for (int32_t t = 0; t < steps; t++) {
        const int32_t* ids = t == 0 ? PTR(const int32_t*, 8) : out_ids + (size_t)(t - 1) * rows; /* the previous step's tokens */
        int32_t rc = ee_embedding_fwd(x, PTR(const void*, 2), I32(3), ids, rows, dim, vocab);
        if (!rc)
            rc = ee_decoder_layers_loop(PTR(const int64_t*, 0), 0, I32(1), x, x, PTR(float*, 11), PTR(float*, 12), 0, PTR(float*, 13), PTR(float*, 14), PTR(float*, 15),
                                        PTR(float*, 16), 0, PTR(float*, 17), 0, PTR(float*, 18), PTR(float*, 19), PTR(float*, 20), I32(23), 1, I32(24), I32(25),
                                        PTR(const int32_t*, 26), row_pos + (size_t)t * rows, PTR(const float*, 28), rows, dim, I32(31), I32(32), I32(33), I32(34), I32(35),
                                        eps, scale);
        if (!rc) rc = ee_rmsnorm_fwd(PTR(float*, 21), 0, x, PTR(const float*, 4), rows, dim, eps);
        if (!rc) rc = ee_gemm(0, 1, rows, vocab, dim, 1.0f, PTR(const float*, 21), dim, PTR(const void*, 5), I32(6), dim, 0.0f, PTR(float*, 22), vocab);
        if (!rc)
            rc = uniforms ? ee_sample_top_p(out_ids + (size_t)t * rows, PTR(const float*, 22), uniforms + (size_t)t * rows, rows, vocab, f[2], f[3])
                          : ee_argmax(out_ids + (size_t)t * rows, 0, PTR(const float*, 22), rows, vocab, 1.0f);
        if (rc) {
            char why[512];
            snprintf(why, sizeof why, "%s", ee_last_error());
            return ee_fail("ee_decode_steps: step %d: %s", t, why);
        }
    }
#undef F
#undef PTR
#undef I32
    return 0;
}

#endif /* EE_LAYERS_H */
