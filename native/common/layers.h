/* ee_decoder_layers_fwd and ee_decode_steps, one definition for the CPU and the CUDA library (cpu/layer.c,
 * cuda/layer.cu): loops calling the library's own functions, so both run the same operations in the same order. */
#ifndef EE_LAYERS_H
#define EE_LAYERS_H

#include <stdio.h>
#include <string.h>

#include "common.h"

/* The failure of a call inside `fn`'s loop, its message prefixed with where: "fn: unit i: message" */
static inline int32_t ee_fail_within(const char* fn, const char* unit, int32_t i) {
    char why[512]; /* the inner message, copied: ee_fail writes where ee_last_error reads */
    snprintf(why, sizeof why, "%s", ee_last_error());
    return ee_fail("%s: %s %d: %s", fn, unit, i, why);
}

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
        if (rc) return ee_fail_within("ee_decoder_layers_fwd", "layer", l);
    }
    return 0;
}

/* ee_decode_steps' plan, field by field (eetune.h gives the order) */
enum {
    PLAN_TABLE, PLAN_N_LAYERS, PLAN_EMBEDDING, PLAN_EMBEDDING_DTYPE, PLAN_FINAL_NORM, PLAN_CLASSIFIER, PLAN_CLASSIFIER_DTYPE, PLAN_VOCAB, PLAN_FIRST_IDS,
    PLAN_OUT_IDS, PLAN_X, PLAN_RESIDUAL, PLAN_XN1, PLAN_Q, PLAN_K, PLAN_V, PLAN_ATT, PLAN_XN2, PLAN_GATE, PLAN_UP, PLAN_ACT, PLAN_NORMED, PLAN_LOGITS,
    PLAN_W_DTYPE, PLAN_N_SEQ, PLAN_MAX_LEN, PLAN_ROW_SEQ, PLAN_ROW_POS, PLAN_INV_FREQ, PLAN_ROWS, PLAN_DIM, PLAN_N_HEADS, PLAN_N_KV_HEADS, PLAN_HEAD_DIM,
    PLAN_HIDDEN, PLAN_INTERLEAVED, PLAN_EPS, PLAN_SCALE, PLAN_UNIFORMS, PLAN_TEMPERATURE, PLAN_TOP_P, PLAN_FIELDS
};
#ifdef __cplusplus
static_assert(PLAN_FIELDS == EE_DECODE_PLAN_FIELDS, "the plan's fields and eetune.h disagree");
#else
_Static_assert(PLAN_FIELDS == EE_DECODE_PLAN_FIELDS, "the plan's fields and eetune.h disagree");
#endif

static inline float ee_plan_float(const int64_t* plan, int field) {
    const uint32_t bits = (uint32_t)plan[field];
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ee_decode_steps, one definition for both libraries too: decode steps composed of the library's own calls, in the
 * order the Java decoder makes them for a step (embedding, the table's layers, final norm, classifier, argmax or
 * sampling). */
static inline int32_t ee_decode_steps_loop(const int64_t* plan, int32_t steps) {
    if (!plan) return ee_fail("ee_decode_steps: null plan");
#define PTR(type, field) ((type)(intptr_t)plan[field])
#define I32(field) ((int32_t)plan[field])
    const int32_t rows = I32(PLAN_ROWS), dim = I32(PLAN_DIM), vocab = I32(PLAN_VOCAB);
    const int32_t* first_ids = PTR(const int32_t*, PLAN_FIRST_IDS);
    int32_t* out_ids = PTR(int32_t*, PLAN_OUT_IDS);
    const int32_t* row_pos = PTR(const int32_t*, PLAN_ROW_POS);
    const float* uniforms = PTR(const float*, PLAN_UNIFORMS);
    float* x = PTR(float*, PLAN_X);
    float* normed = PTR(float*, PLAN_NORMED);
    float* logits = PTR(float*, PLAN_LOGITS);
    const float eps = ee_plan_float(plan, PLAN_EPS);
    if (steps < 0 || rows < 0) return ee_fail("ee_decode_steps: %d steps of %d rows", steps, rows);
    if (steps > 0 && (!first_ids || !out_ids || !row_pos)) return ee_fail("ee_decode_steps: null ids or positions");
    for (int32_t t = 0; t < steps; t++) {
        const int32_t* ids = t == 0 ? first_ids : out_ids + (size_t)(t - 1) * rows; /* the previous step's tokens */
        int32_t* next = out_ids + (size_t)t * rows;
        int32_t rc = ee_embedding_fwd(x, PTR(const void*, PLAN_EMBEDDING), I32(PLAN_EMBEDDING_DTYPE), ids, rows, dim, vocab);
        if (!rc)
            rc = ee_decoder_layers_loop(PTR(const int64_t*, PLAN_TABLE), 0, I32(PLAN_N_LAYERS), x, x, PTR(float*, PLAN_RESIDUAL), PTR(float*, PLAN_XN1), 0,
                                        PTR(float*, PLAN_Q), PTR(float*, PLAN_K), PTR(float*, PLAN_V), PTR(float*, PLAN_ATT), 0, PTR(float*, PLAN_XN2), 0,
                                        PTR(float*, PLAN_GATE), PTR(float*, PLAN_UP), PTR(float*, PLAN_ACT), I32(PLAN_W_DTYPE), 1, I32(PLAN_N_SEQ), I32(PLAN_MAX_LEN),
                                        PTR(const int32_t*, PLAN_ROW_SEQ), row_pos + (size_t)t * rows, PTR(const float*, PLAN_INV_FREQ), rows, dim, I32(PLAN_N_HEADS),
                                        I32(PLAN_N_KV_HEADS), I32(PLAN_HEAD_DIM), I32(PLAN_HIDDEN), I32(PLAN_INTERLEAVED), eps, ee_plan_float(plan, PLAN_SCALE));
        if (!rc) rc = ee_rmsnorm_fwd(normed, 0, x, PTR(const float*, PLAN_FINAL_NORM), rows, dim, eps);
        if (!rc) rc = ee_gemm(0, 1, rows, vocab, dim, 1.0f, normed, dim, PTR(const void*, PLAN_CLASSIFIER), I32(PLAN_CLASSIFIER_DTYPE), dim, 0.0f, logits, vocab);
        if (!rc)
            rc = uniforms ? ee_sample_top_p(next, logits, uniforms + (size_t)t * rows, rows, vocab, ee_plan_float(plan, PLAN_TEMPERATURE), ee_plan_float(plan, PLAN_TOP_P))
                          : ee_argmax(next, 0, logits, rows, vocab, 1.0f);
        if (rc) return ee_fail_within("ee_decode_steps", "step", t);
    }
#undef PTR
#undef I32
    return 0;
}

#endif /* EE_LAYERS_H */
