/*
 * A whole decoder layer in one call (the CPU twin is cpu/layer.c): the composition of this library's ops, in the
 * order of ee_decoder_layer_fwd's contract, all queued on the one stream (each op validates and launches as when
 * called alone, so an index error is reported the same way, at the next synchronizing call). Decode at batch 1 is
 * bound by launches, not by the GPU (docs: native/cuda/NOTES.md), so q/k/v and gate/up round their shared input once
 * (ee_gemm_group) and RoPE with the cache writes is one kernel (ee_rope_qk_kv): 19 launches a layer instead of 25,
 * the same bits.
 */
#include "common.cuh"
#include "layers.h"

#define TRY(call)                     \
    do {                              \
        const int32_t rc_ = (call);   \
        if (rc_) return rc_;          \
    } while (0)

EE_API int32_t ee_decoder_layer_fwd(const float* x, float* out, float* residual, float* xn1, float* inv1, float* q, float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, const float* attn_norm, const void* wq, const void* wk, const void* wv, const void* wo, const float* bq, const float* bk, const float* bv, const float* ffn_norm, const void* w_gate, const void* w_up, const void* w_down, int32_t w_dtype, float* k_cache, float* v_cache, int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps, float scale) {
    if (rows < 0 || dim <= 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || hidden <= 0)
        return ee_fail("ee_decoder_layer_fwd: bad shape (rows %d, dim %d, heads %d/%d of %d, hidden %d)", rows, dim, n_heads, n_kv_heads, head_dim, hidden);
    if (rows == 0) return 0;
    if (!x || !out || !residual || !xn1 || !q || !k || !v || !att || !xn2 || !gate || !up || !act || !attn_norm || !wq || !wk || !wv || !wo
        || !ffn_norm || !w_gate || !w_up || !w_down || !k_cache || !v_cache || !row_seq || !row_pos || !inv_freq)
        return ee_fail("ee_decoder_layer_fwd: null pointer");
    const int32_t qd = n_heads * head_dim, kd = n_kv_heads * head_dim;
    const int64_t row_bytes = (int64_t)rows * dim * (int64_t)sizeof(float);
    TRY(ee_rmsnorm_fwd(xn1, inv1, x, attn_norm, rows, dim, eps));
    TRY(ee_gemm_check_b("ee_decoder_layer_fwd", 0, 1, rows, dim, w_dtype, dim));
    /* q, k, v (and below gate, up) read one normed A: rounded to the weights' dtype once for all of them */
    const ee_gemm_args qkv[3] = {{0, 1, rows, qd, dim, 1.0f, xn1, EE_F32, dim, wq, w_dtype, dim, 0.0f, q, qd},
                                 {0, 1, rows, kd, dim, 1.0f, xn1, EE_F32, dim, wk, w_dtype, dim, 0.0f, k, kd},
                                 {0, 1, rows, kd, dim, 1.0f, xn1, EE_F32, dim, wv, w_dtype, dim, 0.0f, v, kd}};
    TRY(ee_gemm_group(qkv, 3));
    if (bq) TRY(ee_add_bias(q, bq, rows, qd));
    if (bk) TRY(ee_add_bias(k, bk, rows, kd));
    if (bv) TRY(ee_add_bias(v, bv, rows, kd));
    TRY(ee_rope_qk_kv(q, k, v, k_cache, v_cache, write_kv, row_seq, row_pos, inv_freq, rows, n_heads, n_kv_heads, head_dim, interleaved, n_seq, max_len));
    TRY(ee_attention_fwd(att, lse, q, k_cache, v_cache, row_seq, row_pos, rows, n_heads, n_kv_heads, head_dim, n_seq, max_len, scale));
    if (residual != x) TRY(ee_copy(residual, x, row_bytes, 0));
    TRY(ee_gemm(0, 1, rows, dim, qd, 1.0f, att, qd, wo, w_dtype, qd, 1.0f, residual, dim));
    return ee_feed_forward_fwd(residual, out, xn2, inv2, gate, up, act, ffn_norm, w_gate, w_up, w_down, w_dtype, rows, dim, hidden, eps);
}

EE_API int32_t ee_feed_forward_fwd(const float* h, float* out, float* xn2, float* inv2, float* gate, float* up, float* act, const float* ffn_norm, const void* w_gate, const void* w_up, const void* w_down, int32_t w_dtype, int32_t rows, int32_t dim, int32_t hidden, float eps) {
    if (rows < 0 || dim <= 0 || hidden <= 0) return ee_fail("ee_feed_forward_fwd: bad shape (rows %d, dim %d, hidden %d)", rows, dim, hidden);
    if (rows == 0) return 0;
    if (!h || !out || !xn2 || !gate || !up || !act || !ffn_norm || !w_gate || !w_up || !w_down) return ee_fail("ee_feed_forward_fwd: null pointer");
    TRY(ee_gemm_check_b("ee_feed_forward_fwd", 0, 1, rows, dim, w_dtype, dim));
    TRY(ee_rmsnorm_fwd(xn2, inv2, h, ffn_norm, rows, dim, eps));
    const ee_gemm_args gate_up[2] = {{0, 1, rows, hidden, dim, 1.0f, xn2, EE_F32, dim, w_gate, w_dtype, dim, 0.0f, gate, hidden},
                                     {0, 1, rows, hidden, dim, 1.0f, xn2, EE_F32, dim, w_up, w_dtype, dim, 0.0f, up, hidden}};
    TRY(ee_gemm_group(gate_up, 2));
    TRY(ee_swiglu_fwd(act, gate, up, (int64_t)rows * hidden));
    if (out != h) TRY(ee_copy(out, h, (int64_t)rows * dim * (int64_t)sizeof(float), 0));
    TRY(ee_gemm(0, 1, rows, dim, hidden, 1.0f, act, hidden, w_down, w_dtype, hidden, 1.0f, out, dim));
    return 0;
}

EE_API int32_t ee_decoder_layers_fwd(const int64_t* table, int32_t first, int32_t count, const float* x, float* out, float* residual, float* xn1, float* inv1, float* q, float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, int32_t w_dtype, int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps, float scale) {
    return ee_decoder_layers_loop(table, first, count, x, out, residual, xn1, inv1, q, k, v, att, lse, xn2, inv2, gate, up, act, w_dtype, write_kv, n_seq, max_len, row_seq,
                                  row_pos, inv_freq, rows, dim, n_heads, n_kv_heads, head_dim, hidden, interleaved, eps, scale);
}

EE_API int32_t ee_decode_steps(const int64_t* plan, int32_t steps) { return ee_decode_steps_loop(plan, steps); }

EE_API int32_t ee_exit_steps(const int64_t* plan, const int64_t* exits, int32_t steps) { return ee_exit_steps_loop(plan, exits, steps); }
