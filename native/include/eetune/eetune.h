/*
 * eetune — the one C ABI shared by the CPU backend (libeecpu) and the CUDA backend (libeecuda).
 *
 * This header is the single declaration the Java bindings are generated from (see native/bindgen/BindGen.java).
 * Rules the generator relies on:
 *   - every exported function is declared on ONE line as `EE_API <ret> <name>(<params>);`
 *   - types are scalars (int32_t, int64_t, float, double, void) or pointers (any `T*`, passed as a 64-bit address);
 *   - the doc comment right above a declaration is copied into the generated Java interface.
 *
 * Conventions shared by every kernel:
 *   - all tensors are row-major and contiguous; "rows x n" means rows*n elements, row r starts at r*n;
 *   - pointers are host addresses on the CPU backend and device addresses on the CUDA backend;
 *   - shapes and dtypes are validated in Java before any call (the C side trusts them); indices (positions,
 *     sequence ids, row indices, token ids, targets) are data in device memory and are checked by the kernels, which
 *     report an impossible one as "<kernel>: row <r> has <index> <value>, outside <bound>", e.g.
 *     "ee_kv_write: row 3 has seq 7, outside the cache's 2 sequences" (the CPU kernels then write nothing; the CUDA
 *     kernels skip or write NaN to the rows they could not compute);
 *   - dtype codes: EE_F32 = 0, EE_BF16 = 1, EE_F16 = 2, EE_I32 = 3, EE_F32_PANELS = 4 (see ee_pack_panels),
 *     EE_BF16_PANELS = 5 (see ee_pack_panels_bf16), EE_I8_PANELS = 6 (see ee_pack_panels_i8), EE_F16_PANELS = 7 (see
 *     ee_pack_panels_f16);
 *   - "accumulate" means the kernel adds into the output (callers zero it first when they need a fresh result);
 *   - functions returning int32_t return 0 on success and non-zero on failure, with ee_last_error() describing it.
 *     The CPU library finds every failure in the call that has it. CUDA kernels run asynchronously and cannot fail
 *     the call that launched them: a kernel that meets an impossible index records the first such error in device
 *     memory, and the next synchronizing call (ee_synchronize, or ee_copy to the host) returns non-zero with that
 *     message (plus where it was reported) and clears the record.
 */
#ifndef EETUNE_H
#define EETUNE_H

#include <stdint.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif


#define EE_F32 0
#define EE_BF16 1
#define EE_F16 2
#define EE_I32 3
/* An f32 weight in ee_pack_panels' layout: only as B of ee_gemm (trans_a = 0, trans_b = 1, ldb = k, m <= EE_PANELS_MAX_M) and as
 * the matrices of ee_decoder_layer_fwd with rows <= EE_PANELS_MAX_M. */
#define EE_F32_PANELS 4
/* A bf16 weight in ee_pack_panels_bf16's layout: where EE_F32_PANELS may be. */
#define EE_BF16_PANELS 5
/* An 8-bit copy of an f32 weight in ee_pack_panels_i8's layout, for scores that screen logits: where EE_F32_PANELS may be. */
#define EE_I8_PANELS 6
/* An f16 weight in ee_pack_panels_f16's layout: where EE_F32_PANELS may be. */
#define EE_F16_PANELS 7
/* Weight rows per panel, and the most rows of A a panel-packed GEMM takes (decode batches). */
#define EE_PANEL_ROWS 32
#define EE_PANELS_MAX_M 16

#define EE_ABI_VERSION 15

/* ---- library information ------------------------------------------------------------------------------------ */

/** ABI version of this library (EE_ABI_VERSION); Java refuses a library whose version differs. */
EE_API int32_t ee_abi_version(void);
/** Does nothing and returns x + 1; used to measure the cost of one native call. */
EE_API int32_t ee_noop(int32_t x);
/** Address of a NUL-terminated UTF-8 message describing the last failure on this thread ("" if none). */
EE_API const char* ee_last_error(void);
/** Bit mask of what this library can use: 1 = AVX2+FMA kernels, 2 = OpenBLAS loaded, 4 = AVX-512, 8 = a CUDA device,
 * 16 = OpenBLAS runs kernels older than the CPU's (e.g. OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU), so the automatic
 * GEMM path uses the built-in kernel, 32 = AVX-512 VNNI (the 8-bit panels' integer kernel). */
EE_API int32_t ee_features(void);
/** Number of usable devices: 1 for the CPU library, the CUDA device count for the CUDA library (0 = none). */
EE_API int32_t ee_device_count(void);
/** Sets the number of threads of parallel work (<= 0: the default: EETUNE_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs
 * the process may run on); returns the number now in use. BLAS runs single-threaded inside the library's own pool. */
EE_API int32_t ee_set_num_threads(int32_t n);
/** Chooses the GEMM path: 0 = automatic (BLAS when loaded, unless feature bit 16), 1 = BLAS (fails if not loaded),
 * 2 = the built-in kernel. */
EE_API int32_t ee_set_gemm_path(int32_t path);
/** Blocks until all queued work is done (no-op on the CPU). */
EE_API int32_t ee_synchronize(void);

/* ---- memory -------------------------------------------------------------------------------------------------- */

/** Allocates bytes (64-byte aligned, contents undefined); returns 0 on failure. */
EE_API void* ee_alloc(int64_t bytes);
/** Frees memory from ee_alloc (0 is ignored). */
EE_API void ee_free(void* ptr);
/** Copies bytes; direction: 0 = same device, 1 = host to device, 2 = device to host (the CPU library ignores it). */
EE_API int32_t ee_copy(void* dst, const void* src, int64_t bytes, int32_t direction);
/** Sets bytes to value (low 8 bits). */
EE_API int32_t ee_fill_bytes(void* dst, int32_t value, int64_t bytes);
/** Maps a file read-only; path is NUL-terminated UTF-8; writes its size to size_out; returns 0 on failure. */
EE_API void* ee_map_file(const char* path, int64_t* size_out);
/** Unmaps a mapping made by ee_map_file. */
EE_API int32_t ee_unmap_file(void* addr, int64_t size);

/* ---- elementwise ---------------------------------------------------------------------------------------------- */

/** dst[i] = (dst_dtype) src[i] for n elements; dtypes EE_F32/EE_BF16/EE_F16 (bf16/f16 rounding: nearest even). */
EE_API int32_t ee_cast(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n);
/** out[i] = a[i] + b[i]; out may alias a or b. */
EE_API int32_t ee_add(float* out, const float* a, const float* b, int64_t n);
/** out[i] = a[i] + alpha * b[i]; out may alias a or b. */
EE_API int32_t ee_axpby(float* out, const float* a, float alpha, const float* b, int64_t n);
/** x[r][j] += bias[j] for rows x n. */
EE_API int32_t ee_add_bias(float* x, const float* bias, int32_t rows, int32_t n);
/** x[i] *= s. */
EE_API int32_t ee_scale(float* x, float s, int64_t n);
/** Returns sum of x[i]^2, every square and partial sum in double; the result does not depend on the thread count. */
EE_API double ee_sum_squares(const float* x, int64_t n);

/* ---- embedding ------------------------------------------------------------------------------------------------ */

/** out[r][:] = (float) table[ids[r]][:] for r < n; table is vocab x dim in table_dtype; ids[r] in [0, vocab). */
EE_API int32_t ee_embedding_fwd(float* out, const void* table, int32_t table_dtype, const int32_t* ids, int32_t n, int32_t dim, int32_t vocab);
/** Scatter-add backward: dtable[ids[r]][:] += dout[r][:] (f32 vocab x dim table gradient); repeated ids accumulate. */
EE_API int32_t ee_embedding_bwd(float* dtable, const float* dout, const int32_t* ids, int32_t n, int32_t dim, int32_t vocab);

/* ---- RMSNorm -------------------------------------------------------------------------------------------------- */

/** out[r] = x[r] * inv_rms[r] * w, inv_rms[r] = 1/sqrt(mean(x[r]^2) + eps); inv_rms may be 0 (not stored). out may alias x. */
EE_API int32_t ee_rmsnorm_fwd(float* out, float* inv_rms, const float* x, const float* w, int32_t rows, int32_t dim, float eps);
/** Backward of ee_rmsnorm_fwd: writes dx (may be 0 = skip), accumulates dw (may be 0 = skip); needs inv_rms from the forward. */
EE_API int32_t ee_rmsnorm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* inv_rms, int32_t rows, int32_t dim);

/* ---- GEMM ----------------------------------------------------------------------------------------------------- */

/**
 * C = alpha * op(A) * op(B) + beta * C with op(X) = X or X^T (trans flags 0/1), BLAS semantics, row-major.
 * op(A) is M x K, op(B) is K x N, C is M x N. A and C are f32; B is in b_dtype (EE_F32, EE_BF16 or EE_F16) so that
 * bf16 weights are used without a converted copy. A linear layer y = x W^T with W [out][in] is
 * ee_gemm(0, 1, rows, out, in, 1, x, in, W, dtype, in, 0, y, out). beta = 0 ignores C's old contents (even NaN).
 * On the CPU a bf16/f16 B is widened exactly to f32 in registers: products are of f32 A and the f32 value of each B
 * element, accumulated in f32 (A is never rounded to 16 bits), so results differ from an f32 B by B's own rounding
 * and the order of the f32 additions (the small-m kernels sum even and odd k separately).
 * (The CUDA library's cuBLAS path rounds A to B's dtype for the tensor cores: see native/cuda/gemm.cu.)
 * b_dtype EE_F32_PANELS: B is a weight packed by ee_pack_panels (trans_a = 0, trans_b = 1, ldb = k, m <= EE_PANELS_MAX_M);
 * EE_BF16_PANELS and EE_F16_PANELS: packed by ee_pack_panels_bf16 and ee_pack_panels_f16 (the same).
 */
EE_API int32_t ee_gemm(int32_t trans_a, int32_t trans_b, int32_t m, int32_t n, int32_t k, float alpha, const float* a, int32_t lda, const void* b, int32_t b_dtype, int32_t ldb, float beta, float* c, int32_t ldc);

/**
 * Floats that ee_pack_panels writes for an n x k weight: ceil(n / EE_PANEL_ROWS) * EE_PANEL_ROWS * k (the last
 * panel is padded with zero rows).
 */
EE_API int64_t ee_panels_size(int32_t n, int32_t k);

/**
 * dst = the f32 weight w [n][k] (rows ldw apart) packed for small-batch decode (dtype EE_F32_PANELS): panel q holds
 * rows q*EE_PANEL_ROWS .. +EE_PANEL_ROWS-1 interleaved by column, dst[(q*k + p)*EE_PANEL_ROWS + j] = w[q*EE_PANEL_ROWS + j][p]
 * (0 past n), so that a GEMM with a few rows of A reads each panel as one sequential stream and keeps its outputs in
 * vector lanes (no horizontal sums). dst holds ee_panels_size(n, k) floats and does not overlap w. Results of ee_gemm
 * with the packed weight equal those with w up to the order of the f32 additions.
 */
EE_API int32_t ee_pack_panels(float* dst, const float* w, int32_t n, int32_t k, int32_t ldw);

/**
 * dst = the bf16 weight w [n][k] (rows ldw apart) packed exactly as ee_pack_panels packs f32, element for element
 * (dtype EE_BF16_PANELS): dst[(q*k + p)*EE_PANEL_ROWS + j] = w[q*EE_PANEL_ROWS + j][p] (0 past n). dst holds
 * ee_panels_size(n, k) bf16 values and does not overlap w. As for ee_pack_panels_f16, the GEMM widens exactly and its
 * results are those of EE_F32_PANELS on the packed f32 copy of w widened to f32, bit for bit.
 */
EE_API int32_t ee_pack_panels_bf16(uint16_t* dst, const uint16_t* w, int32_t n, int32_t k, int32_t ldw);

/**
 * dst = the f16 weight w [n][k] (rows ldw apart) packed exactly as ee_pack_panels packs f32, element for element
 * (dtype EE_F16_PANELS): dst[(q*k + p)*EE_PANEL_ROWS + j] = w[q*EE_PANEL_ROWS + j][p] (0 past n), so that a step is
 * 32 halves a conversion widens to f32. dst holds ee_panels_size(n, k) f16 values and does not overlap w. The GEMM
 * widens exactly and sums in f32 in the order of the f32 panels' GEMM: its results are those of ee_gemm with
 * EE_F32_PANELS on the packed f32 copy of w widened to f32, bit for bit.
 */
EE_API int32_t ee_pack_panels_f16(uint16_t* dst, const uint16_t* w, int32_t n, int32_t k, int32_t ldw);

/** Bytes that ee_pack_panels_i8 writes for an n x k weight: ceil(n / EE_PANEL_ROWS) * EE_PANEL_ROWS * (4 + 2 ceil(k / 2)). */
EE_API int64_t ee_panels_i8_bytes(int32_t n, int32_t k);

/**
 * dst = an 8-bit copy of the f32 weight w [n][k] (rows ldw apart) in panels (dtype EE_I8_PANELS), for scores that
 * only have to lie within a known distance of the f32 products (greedy decode's screened classifier): row j is
 * scale_j q_j with scale_j = max_p |w[j][p]| / 127 and q_j[p] = w[j][p] times (127 / max_p |w[j][p]| in f32), the
 * exact product rounded to the nearest integer, ties to even (|q| <= 127; the same bytes on every ISA and on CUDA). Panel q takes
 * EE_PANEL_ROWS * (4 + 2 ceil(k / 2)) bytes from byte q times that: the panel's 32 scales (f32), then for each pair
 * of columns s the 32 rows' pairs, byte 2j + t holding q_j[2s + t] (0 past k and past n). resid and norm (each may be
 * null) [n] receive ||w_j - scale_j q_j||_2 and ||w_j||_2 rounded up (+inf for a row with a value that is not finite,
 * whose scale is NaN). ee_gemm with this B rounds each row a of A to a' = scale_a x the same way (x = a times 127 /
 * max |a| in f32, the exact product rounded to integers, |x| <= 127, scale_a = max |a| / 127; NaN rows of scores for
 * an A row that is not finite or too small to scale, max |a| below 127 / FLT_MAX, as for such a weight row), sums the integer products exactly in blocks of 512 columns, the blocks in f32, and
 * multiplies by scale_j and scale_a, the same bits on the CPU and CUDA. A score then differs from the exact product
 * a . w_j by at most ||a|| resid_j + (||a - a'|| + g (||a|| + ||a - a'||)) ||scale_j q_j||, with g = (k + 8) 2^-24 /
 * (1 - (k + 8) 2^-24) (the blocks' and products' f32 rounding), whatever rows share the call (Cauchy-Schwarz; the
 * middle term is A's own rounding). Half the bytes of bf16.
 */
EE_API int32_t ee_pack_panels_i8(void* dst, float* resid, float* norm, const float* w, int32_t n, int32_t k, int32_t ldw);

/* ---- RoPE ----------------------------------------------------------------------------------------------------- */

/**
 * Rotates x in place: x is rows x (n_heads * head_dim); row r is at position pos[r]. For pair i < head_dim/2 the
 * angle is pos[r] * inv_freq[i]. interleaved = 1 pairs (x[2i], x[2i+1]) (llama2.c); interleaved = 0 pairs
 * (x[i], x[i + head_dim/2]) (Hugging Face rotate-half). inverse = 1 rotates by the negative angle (the backward).
 */
EE_API int32_t ee_rope(float* x, const int32_t* pos, const float* inv_freq, int32_t rows, int32_t n_heads, int32_t head_dim, int32_t interleaved, int32_t inverse);

/* ---- attention ------------------------------------------------------------------------------------------------ */

/**
 * Causal grouped-query attention of packed rows against a KV cache.
 * q, out: rows x (n_heads * head_dim). k_cache, v_cache: n_seq x max_len x (n_kv_heads * head_dim), row (s, p) at
 * (s * max_len + p) * n_kv_heads * head_dim. Row r belongs to sequence row_seq[r] (in [0, n_seq)) at position
 * row_pos[r] (in [0, max_len)) and
 * attends to that sequence's positions 0..row_pos[r] (their K/V must already be in the cache). Query head h uses KV
 * head h / (n_heads / n_kv_heads). Scores are scaled by `scale`; softmax in fp32. lse (may be 0) receives
 * rows x n_heads log-sum-exp values of the scaled scores, for the backward.
 */
EE_API int32_t ee_attention_fwd(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t n_seq, int32_t max_len, float scale);
/**
 * Backward of ee_attention_fwd for dense batches: q/out/dout are (batch * seq) x (n_heads * head_dim), k/v are
 * (batch * seq) x (n_kv_heads * head_dim), row (b, t) attends to (b, 0..t). Writes dq; accumulates dk and dv.
 * lse comes from the forward.
 */
EE_API int32_t ee_attention_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t batch, int32_t seq, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, float scale);
/** Writes rows x width values into a cache laid out n_seq x max_len x width at (row_seq[r], row_pos[r]). */
EE_API int32_t ee_kv_write(float* cache, const float* src, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t width, int32_t n_seq, int32_t max_len);
/** dst[r][:] = src[idx[r]][:] for rows x width, idx[r] in [0, src_rows) (gathers rows, e.g. to compact an active set). */
EE_API int32_t ee_gather_rows(float* dst, const float* src, const int32_t* idx, int32_t rows, int32_t width, int32_t src_rows);

/* ---- SwiGLU --------------------------------------------------------------------------------------------------- */

/** out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may alias gate or up. */
EE_API int32_t ee_swiglu_fwd(float* out, const float* gate, const float* up, int64_t n);
/** Backward of ee_swiglu_fwd: writes dgate and dup (either may alias dout). */
EE_API int32_t ee_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);

/* ---- a whole decoder layer ------------------------------------------------------------------------------------ */

/**
 * One Llama decoder layer over packed rows in one call, exactly the composition of the ops above (same kernels, same
 * order, so the same bits as calling them one by one) -- decode's per-op call overhead paid once per layer:
 *   rmsnorm(xn1, inv1, x, attn_norm); q/k/v = xn1 W^T (+ bq/bk/bv when not 0); RoPE on q and k at row_pos;
 *   write_kv = 1: ee_kv_write of k, v into k_cache/v_cache at (row_seq, row_pos) (write_kv = 0: the rows are dense
 *   and k_cache/v_cache are k/v themselves, n_seq x max_len = batch x seq_len);
 *   ee_attention_fwd(att, lse, q, k_cache, v_cache, ...); residual = x (unless residual == x); residual += att Wo^T;
 *   rmsnorm(xn2, inv2, residual, ffn_norm); gate/up = xn2 W^T; act = silu(gate) * up; out = residual (unless
 *   out == residual); out += act Wdown^T.
 * x, out, residual, xn1, xn2: rows x dim; q, att: rows x (n_heads * head_dim); k, v: rows x (n_kv_heads * head_dim);
 * gate, up, act: rows x hidden; inv1, inv2, lse (rows, rows, rows x n_heads) and the biases may be 0. Buffers may
 * alias where the ops above allow it (out = x = residual; xn1 = xn2; act = gate). The seven matrices are [out][in]
 * in w_dtype; norms and biases f32. A failing op stops the layer and its error is the layer's.
 */
EE_API int32_t ee_decoder_layer_fwd(const float* x, float* out, float* residual, float* xn1, float* inv1, float* q, float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, const float* attn_norm, const void* wq, const void* wk, const void* wv, const void* wo, const float* bq, const float* bk, const float* bv, const float* ffn_norm, const void* w_gate, const void* w_up, const void* w_down, int32_t w_dtype, float* k_cache, float* v_cache, int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps, float scale);

/**
 * The second half of a decoder layer (and an mlp exit head's MLP) in one call, exactly the composition of the ops
 * above: rmsnorm(xn2, inv2, h, ffn_norm); gate/up = xn2 W^T; act = silu(gate) * up; out = h (unless out == h);
 * out += act Wdown^T. h, out, xn2: rows x dim; gate, up, act: rows x hidden (act may be gate); inv2 may be 0. The
 * three matrices are [out][in] in w_dtype (plain, or packed panels with rows <= EE_PANELS_MAX_M); ee_decoder_layer_fwd
 * runs this after its attention, so the bits are the same.
 */
EE_API int32_t ee_feed_forward_fwd(const float* h, float* out, float* xn2, float* inv2, float* gate, float* up, float* act, const float* ffn_norm, const void* w_gate, const void* w_up, const void* w_down, int32_t w_dtype, int32_t rows, int32_t dim, int32_t hidden, float eps);

/** Pointers per layer in ee_decoder_layers_fwd's table, in this order: attn_norm, wq, wk, wv, wo, bq, bk, bv (0 when
 * absent), ffn_norm, w_gate, w_up, w_down, k_cache, v_cache. */
#define EE_LAYER_TABLE_COLS 14

/**
 * Layers first .. first + count - 1 of a host-memory table (int64 addresses, EE_LAYER_TABLE_COLS per layer) in one
 * call: ee_decoder_layer_fwd for each in turn, the first reading x and every later one out (out may be x), with the
 * other arguments shared (all layers have one shape and w_dtype). The same bits as the calls one by one: what it
 * saves is the caller's per-layer work (a call, its checks, its views). On a failing layer the error names it, and
 * the layers before it have run.
 */
EE_API int32_t ee_decoder_layers_fwd(const int64_t* table, int32_t first, int32_t count, const float* x, float* out, float* residual, float* xn1, float* inv1, float* q, float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, int32_t w_dtype, int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps, float scale);

/** Fields of ee_decode_steps's plan (int64 each; pointers as addresses, eps, scale, temperature and top_p as the bits
 * of a float), in this order: table, n_layers, embedding, embedding_dtype, final_norm, classifier, classifier_dtype,
 * vocab, first_ids, out_ids, x, residual, xn1, q, k, v, att, xn2, gate, up, act, normed, logits, w_dtype, n_seq,
 * max_len, row_seq, row_pos, inv_freq, rows, dim, n_heads, n_kv_heads, head_dim, hidden, interleaved, eps, scale,
 * uniforms, temperature, top_p. */
#define EE_DECODE_PLAN_FIELDS 41

/**
 * Decoding of `rows` sequences for `steps` steps in one call, from a plan (a host table of EE_DECODE_PLAN_FIELDS
 * fields) the caller builds once and replays: the per-token work of a decoder without exits, for callers whose steps
 * are short enough that a call per operation costs more than it computes. Step t embeds ids (first_ids at t = 0, else
 * the previous step's out_ids), runs the table's layers 0 .. n_layers - 1 as ee_decoder_layers_fwd with write_kv = 1
 * and positions row_pos[t * rows ..] (row_seq is every step's), then normed = rmsnorm(x, final_norm), logits =
 * normed classifier^T (ee_gemm with classifier_dtype: plain or packed panels) and out_ids[t * rows + r] = the next
 * token of row r: the argmax of its logits (lowest index on ties) where uniforms is 0, else ee_sample_top_p with
 * uniforms[t * rows + r], temperature and top_p. The same bits as those calls one by one; the scratch is as for
 * ee_decoder_layers_fwd (no inv1, lse, inv2), plus normed [rows, dim] and logits [rows, vocab]. On a failing step the
 * error names it; the steps before it have run.
 */
EE_API int32_t ee_decode_steps(const int64_t* plan, int32_t steps);

/** Header fields of ee_exit_steps's exit plan (int64 each, pointers as addresses), in this order: count (exits that
 * follow), method (EE_EXIT_SOFTMAX, EE_EXIT_GATE or EE_EXIT_CASCADE), max_seq (the most sequences a run takes), capacity
 * (the most rows a pass may hold, at most EE_EXIT_MAX_ROWS), tables (host int64 [4 (capacity + 1)]: for a pass of r
 * rows, the layer table at [4r], its w_dtype at [4r + 1], and the classifier r final rows read at [4r + 2] with its
 * dtype at [4r + 3]), state (host int32 [3 + max_seq (3 + max_len)]: steps run, the run's sequences n, unused, then per
 * sequence its cache slot, complete length, length and each position's layers done), states (every slot's kept hidden
 * states, float [n_seq max_len, dim], row slot * max_len + position), record (host int32 [steps, max_seq,
 * EE_EXIT_RECORD]), pos (int32 [capacity], the pass's positions: scratch on the
 * library's side), pos_host and seq_host (host int32 [capacity]: scratch), score (float [max_seq + 1]: scratch),
 * score_host (host float [max_seq]: scratch), chosen (int32 [max_seq]: scratch), pre and z (float [max_seq, dim]:
 * scratch), z_host (host float [dim]: scratch). */
#define EE_EXIT_PLAN_HEADER 17
/** The most rows an ee_exit_steps pass holds (its capacity's bound). */
#define EE_EXIT_MAX_ROWS 256
/** Values per step and sequence in ee_exit_steps's record: the layer the sequence's token came from (n_layers: the
 * final one), its complete length after the step, the layers its rows ran (rows x layers), bit e for each exit e
 * whose head ran on its row (or whose screen decided), that scored its row, and whose screen decided without the
 * head's logits. */
#define EE_EXIT_RECORD 6
/** Fields per exit, after the header, exits in increasing layer order: layer (1-based: the exit reads layer L's
 * output), kind (EE_HEAD_EMBEDDING, EE_HEAD_NORM, EE_HEAD_MLP), head_norm, ffn_norm, w_gate, w_up, w_down, w_dtype,
 * mlp_hidden, lm_head, lm_dtype, temperature, gate_w1, gate_b1, gate_w, gate_b, gate_units, gate_eps, tau, confirm,
 * screen, radius, screen_margin, lm_packed (temperature, gate_eps, tau, confirm and screen_margin as the bits of a
 * float). screen (0: none; softmax decisions only) is an 8-bit copy of lm_head (ee_pack_panels_i8) and radius [vocab]
 * its scores' radius: the head's logits are computed only where ee_max_prob_upper's bound from the screen's scores and
 * ||z|| (in double, rounded up) times screen_margin reaches tau. lm_packed (0: none) is an f32 lm_head packed in
 * panels (ee_pack_panels): a head over k rows reads it where the classifier of k final rows is packed too (the
 * tables' dtype at [4k + 3]), as the Java decoder's packed heads are read. */
#define EE_EXIT_PLAN_FIELDS 24
#define EE_EXIT_SOFTMAX 0
#define EE_EXIT_GATE 1
#define EE_EXIT_CASCADE 2
#define EE_HEAD_EMBEDDING 0
#define EE_HEAD_NORM 1
#define EE_HEAD_MLP 2

/**
 * Early-exit decoding of n sequences (state[1], at most max_seq) for up to `steps` steps in one call: what the Java
 * decoder (EarlyExitGenerator, docs/exact-kv-recomputation.md) does step by step with exits that keep no cache of their
 * own, from a decode plan (ee_decode_steps': its table, row_pos and rows unused; row_seq [capacity] scratch; first_ids
 * [max_seq]; x and the activations for capacity rows; normed and logits for max_seq rows) and an exit plan
 * (EE_EXIT_PLAN_HEADER + count EE_EXIT_PLAN_FIELDS fields). A step feeds sequence i's newest token (first_ids[i], then
 * out_ids[(t - 1) n + i]) at position length - 1 as row i of a pass; each active sequence's pending positions
 * (complete .. length - 2) join it from `states` before the layer after the one they stopped at, sequence by sequence
 * in increasing position; after each exit's layer the active sequences' newest rows are judged: softmax, the head's
 * max probability at its temperature reaches tau; gate, the gate's score does; cascade, both the score reaches tau and
 * the head's max probability `confirm` (a head runs only where needed, on the rows that need it). An exiting sequence's
 * rows keep their states and layer and leave the pass; whoever reaches the end gets the final norm, classifier and
 * choice. Tokens go to out_ids[t n + i], chosen as ee_decode_steps does (argmax, or ee_sample_top_p with uniforms[t n
 * + i]). A step whose pass would exceed capacity rows is not run: state[0] says how many steps ran. Screens need n = 1.
 * The same bits as the Java decoder's calls. On the CPU, one sequence of a small model with two or more threads runs as
 * a pipeline (the deeper layers of each row on a second thread while the exits are decided, cpu/exit_pipeline.c; not
 * when EETUNE_NO_EXIT_PIPELINE is set or other processes keep the cores busy): the same tokens and cache, but every
 * position is complete when the call returns (complete length = length - 1 after each step, and a step's record
 * counts all layers of its row, plus in the first step the layers still owed by the rows pending before it).
 */
EE_API int32_t ee_exit_steps(const int64_t* plan, const int64_t* exits, int32_t steps);
/** Steps ee_exit_steps has run as a pipeline in this process (0 in the CUDA library): for tests and benchmarks. */
EE_API int64_t ee_exit_pipeline_steps(void);

/* ---- softmax, argmax, sampling --------------------------------------------------------------------------------- */

/** out[r] = softmax(x[r] / temperature) over n columns, in fp32 with max subtraction; out may alias x. */
EE_API int32_t ee_softmax(float* out, const float* x, int32_t rows, int32_t n, float temperature);
/**
 * For each row of logits (rows x n): idx[r] = argmax (lowest index on ties), max_prob[r] = max softmax probability
 * of logits / temperature (may be 0 = skip), computed as 1 / sum(exp((x - max) / temperature)). A row holding a NaN,
 * or whose maximum is infinite, has no probability: max_prob = NaN (so it never passes a confidence threshold).
 */
EE_API int32_t ee_argmax(int32_t* idx, float* max_prob, const float* logits, int32_t rows, int32_t n, float temperature);
/**
 * Top-p (nucleus) sampling: for each row, p = softmax(logits / temperature); keep the smallest set of highest
 * probabilities whose sum reaches top_p (ties broken by lower index first), renormalise, and pick the token whose
 * cumulative probability (in that sorted order) first exceeds uniforms[r] * kept mass. top_p >= 1 keeps all.
 */
EE_API int32_t ee_sample_top_p(int32_t* out, const float* logits, const float* uniforms, int32_t rows, int32_t n, float temperature, float top_p);

/**
 * Candidates for each row's argmax from approximate scores (rows x n, rows ld apart) that lie within B_j =
 * radius[j] * scale[r] + 1e-30 of values f the caller can compute exactly (LlamaModel's screened greedy decode):
 * with floor = max_l (scores[l] - B_l), only a j with scores[j] + B_j >= floor can be the argmax of f. Writes each
 * row's groups of `group` consecutive indices that hold such a j, in increasing order, to groups[r * max_groups ..]
 * and their number to counts[r]; counts[r] = -1 where they are more than max_groups, or where a score, radius or the
 * scale of the row is not finite (the caller then computes f in full).
 */
EE_API int32_t ee_argmax_candidates(int32_t* groups, int32_t* counts, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n, int32_t group, int32_t max_groups);

/**
 * For scores as ee_argmax_candidates takes them (each within B_j = radius[j] * scale[r] + 1e-30 of a value f_j the
 * caller can compute exactly): upper[r] >= the largest probability of softmax(f / temperature) for every such f,
 * namely 1 / sum_j exp((scores[j] - B_j - H) / temperature) with H = max_j (scores[j] + B_j), the sum taken in double
 * over f32 exponentials and the result raised by a relative 2^-14 + 2^-22 |H| / temperature for their rounding; +inf where a
 * score, radius or the scale of the row is not finite. A row whose upper is below a confidence threshold cannot pass
 * it (EarlyExitGenerator's screened softmax exits).
 */
EE_API int32_t ee_max_prob_upper(float* upper, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n, float temperature);

/* ---- exit gates ------------------------------------------------------------------------------------------------ */

/**
 * A confidence gate's score for each row of hidden (rows x dim; docs/exit-gates.md): with inv = 1/sqrt(mean(h^2) +
 * eps) (rmsnorm without a weight, its statistic in double as ee_rmsnorm_fwd's), z = b[0] + sum_j w[j] relu(b1[j] +
 * inv (w1[j] . h)) for units > 0 hidden units (w1: units x dim, b1 and w: units), or z = b[0] + inv (w . h) for
 * units = 0 (w: dim; w1, b1 unused, may be 0); score[r] = 1 / (1 + exp(-z)). A row that is not finite scores NaN.
 */
EE_API int32_t ee_gate_score(float* score, const float* hidden, const float* w1, const float* b1, const float* w, const float* b, int32_t rows, int32_t dim, int32_t units, float eps);

/* ---- fused linear + cross-entropy -------------------------------------------------------------------------------- */

/**
 * Cross-entropy of logits = x W^T / temperature, each logit computed once and never all rows x vocab of them held:
 * the rows are walked in blocks whose logits fit a bounded scratch (128 MiB on the CPU, 256 MiB on CUDA; at least
 * one row), and each block's gradient is formed from its softmax right away. row_block > 0 caps the rows per block
 * further (tests use it to force several blocks); <= 0 lets the bound alone decide.
 * x: rows x dim (f32); w: vocab x dim in w_dtype; targets[r] in [0, vocab) or < 0 = ignored row.
 * loss[r] = logsumexp(logits[r]) - logits[r][targets[r]] (0 for ignored rows).
 * Gradient of sum_r grad_weight[r] * loss[r] (grad_weight may be 0 = no backward):
 *   dx (may be 0) is written, dw (f32, vocab x dim, may be 0) is accumulated.
 * argmax_out (may be 0): argmax of logits per row; max_prob_out (may be 0): max softmax probability per row.
 */
EE_API int32_t ee_linear_cross_entropy(float* loss, float* dx, float* dw, int32_t* argmax_out, float* max_prob_out, const float* x, const void* w, int32_t w_dtype, const int32_t* targets, const float* grad_weight, int32_t rows, int32_t dim, int32_t vocab, int32_t row_block, float temperature);

/* ---- optimizer ------------------------------------------------------------------------------------------------- */

/**
 * One AdamW step on n parameters: g' = g * grad_scale; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
 * p -= lr * (m / bias1 / (sqrt(v / bias2) + eps) + weight_decay * p), with bias1 = 1 - b1^t, bias2 = 1 - b2^t
 * passed in by the caller.
 */
EE_API int32_t ee_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, float bias1, float bias2, float grad_scale);

#ifdef __cplusplus
}
#endif

#endif /* EETUNE_H */
