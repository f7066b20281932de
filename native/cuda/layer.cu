/*
 * A whole decoder layer in one call (the CPU twin is cpu/layer.c): the composition of this library's ops, in the
 * order of ee_decoder_layer_fwd's contract, all queued on the one stream (each op validates and launches as when
 * called alone, so an index error is reported the same way, at the next synchronizing call). Decode at batch 1 is
 * bound by launches, not by the GPU (docs: native/cuda/NOTES.md), so on cuBLAS with 16-bit weights the norms and
 * SwiGLU write their output rounded for the GEMMs that read it (q/k/v and gate/up sharing one copy: no cast launch),
 * and RoPE with the cache writes is one kernel (ee_rope_qk_kv): 15 launches a layer instead of 25 (16 where the
 * attention splits its keys), the same bits.
 */
#include <stdlib.h>
#include <vector>

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
    TRY(ee_gemm_check_b("ee_decoder_layer_fwd", 0, 1, rows, dim, w_dtype, dim));
    ee_op_lock lock; /* a GEMM input's rounded copy in scratch is this call's until its GEMMs have read it */
    /* q, k, v (and below gate, up) read one normed A: rounded to the weights' dtype once for all of them, by the norm */
    void* a16 = ee_gemm_rounded_input(w_dtype, (int64_t)rows * dim);
    TRY(ee_rmsnorm_rounded(xn1, inv1, x, attn_norm, rows, dim, eps, a16, w_dtype));
    const ee_gemm_args qkv[3] = {{0, 1, rows, qd, dim, 1.0f, xn1, EE_F32, dim, wq, w_dtype, dim, 0.0f, q, qd},
                                 {0, 1, rows, kd, dim, 1.0f, xn1, EE_F32, dim, wk, w_dtype, dim, 0.0f, k, kd},
                                 {0, 1, rows, kd, dim, 1.0f, xn1, EE_F32, dim, wv, w_dtype, dim, 0.0f, v, kd}};
    TRY(a16 ? ee_gemm_group_rounded(qkv, 3, a16) : ee_gemm_group(qkv, 3));
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
    ee_op_lock lock;
    void* a16 = ee_gemm_rounded_input(w_dtype, (int64_t)rows * dim);
    TRY(ee_rmsnorm_rounded(xn2, inv2, h, ffn_norm, rows, dim, eps, a16, w_dtype));
    const ee_gemm_args gate_up[2] = {{0, 1, rows, hidden, dim, 1.0f, xn2, EE_F32, dim, w_gate, w_dtype, dim, 0.0f, gate, hidden},
                                     {0, 1, rows, hidden, dim, 1.0f, xn2, EE_F32, dim, w_up, w_dtype, dim, 0.0f, up, hidden}};
    TRY(a16 ? ee_gemm_group_rounded(gate_up, 2, a16) : ee_gemm_group(gate_up, 2));
    void* act16 = ee_gemm_rounded_input(w_dtype, (int64_t)rows * hidden); /* gate and up have read a16 (stream order) */
    TRY(ee_swiglu_rounded(act, gate, up, (int64_t)rows * hidden, act16, w_dtype));
    if (out != h) TRY(ee_copy(out, h, (int64_t)rows * dim * (int64_t)sizeof(float), 0));
    const ee_gemm_args down = {0, 1, rows, dim, hidden, 1.0f, act, EE_F32, hidden, w_down, w_dtype, hidden, 1.0f, out, dim};
    return act16 ? ee_gemm_group_rounded(&down, 1, act16) : ee_gemm(0, 1, rows, dim, hidden, 1.0f, act, hidden, w_down, w_dtype, hidden, 1.0f, out, dim);
}

EE_API int32_t ee_decoder_layers_fwd(const int64_t* table, int32_t first, int32_t count, const float* x, float* out, float* residual, float* xn1, float* inv1, float* q, float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, int32_t w_dtype, int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps, float scale) {
    return ee_decoder_layers_loop(table, first, count, x, out, residual, xn1, inv1, q, k, v, att, lse, xn2, inv2, gate, up, act, w_dtype, write_kv, n_seq, max_len, row_seq,
                                  row_pos, inv_freq, rows, dim, n_heads, n_kv_heads, head_dim, hidden, interleaved, eps, scale);
}

/* ---- decode steps replayed from a CUDA graph (EETUNE_CUDA_GRAPHS=1) --------------------------------------------
 *
 * Decode at batch 1 is bound by launches (NOTES.md: 3.5-5 us each against a few us of work), so a step can be
 * captured once as a graph and replayed: one launch instead of ~15 per layer. A graph holds fixed pointers, so the
 * step reads its ids, positions and uniforms from fixed buffers that a first kernel fills from the plan's arrays at
 * the step a device counter names, and a last kernel copies the chosen tokens out and advances the counter. The
 * graph is the plan's one step as ee_decode_steps_loop makes it (the same ops, the same order: the same tokens), kept
 * for the plan's fields, its layer table's contents, the GEMM path and the scratch buffers it captured; a plan is
 * captured the second time it comes (the first, eager call sizes the scratch buffers, which must not grow inside a
 * capture). Off unless EETUNE_CUDA_GRAPHS=1, until a device has timed it (device-check.sh runs both). */

__global__ void step_in_kernel(int32_t* ids_now, int32_t* pos_now, float* uni_now, const int32_t* counter, const int32_t* first_ids, const int32_t* out_ids,
                               const int32_t* row_pos, const float* uniforms, int rows) {
    const int t = *counter;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        ids_now[r] = t == 0 ? first_ids[r] : out_ids[(int64_t)(t - 1) * rows + r];
        pos_now[r] = row_pos[(int64_t)t * rows + r];
        if (uniforms) uni_now[r] = uniforms[(int64_t)t * rows + r];
    }
}

__global__ void step_out_kernel(int32_t* out_ids, int32_t* counter, const int32_t* tok_now, int rows) {
    const int t = *counter;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) out_ids[(int64_t)t * rows + r] = tok_now[r];
    __syncthreads(); /* every thread read the counter before it moves */
    if (threadIdx.x == 0) *counter = t + 1;
}

namespace {
struct StepGraph {
    std::vector<int64_t> key;
    int failed = 0;
    long long used = 0;
    cudaGraphExec_t exec = 0;
    void* buffers = 0; /* counter, ids, positions, tokens, uniforms */
};
StepGraph graphs[4]; /* a few plans (generators) at once, the least recently used replaced */
long long graph_uses;
cudaStream_t capture_stream;

void release(StepGraph& g) {
    if (g.exec) cudaGraphExecDestroy(g.exec);
    if (g.buffers) cudaFree(g.buffers);
    g = StepGraph();
}

std::vector<int64_t> graph_key(const int64_t* plan) {
    std::vector<int64_t> key(plan, plan + EE_DECODE_PLAN_FIELDS);
    const int64_t* table = (const int64_t*)(intptr_t)plan[PLAN_TABLE];
    if (table) key.insert(key.end(), table, table + (size_t)plan[PLAN_N_LAYERS] * EE_LAYER_TABLE_COLS);
    key.push_back(ee_scratch_generation());
    key.push_back(ee_gemm_uses_cublas());
    return key;
}

/* Captures g's step for `plan`: 0, or 1 when the step cannot be captured here (the eager loop then runs the call). */
int capture(StepGraph& g, const int64_t* plan) {
    const int32_t rows = (int32_t)plan[PLAN_ROWS];
    const size_t slot = ((size_t)rows * 4 + 255) & ~(size_t)255;
    if (!capture_stream && cudaStreamCreateWithFlags(&capture_stream, cudaStreamNonBlocking) != cudaSuccess) return cudaGetLastError(), 1;
    if (cudaMalloc(&g.buffers, 256 + 4 * slot) != cudaSuccess) return cudaGetLastError(), 1;
    char* b = (char*)g.buffers;
    int32_t *counter = (int32_t*)b, *ids = (int32_t*)(b + 256), *pos = (int32_t*)(b + 256 + slot), *tok = (int32_t*)(b + 256 + 2 * slot);
    float* uni = (float*)(b + 256 + 3 * slot);
    const float* uniforms = (const float*)(intptr_t)plan[PLAN_UNIFORMS];
    int64_t step[EE_DECODE_PLAN_FIELDS];
    memcpy(step, plan, sizeof step);
    step[PLAN_FIRST_IDS] = (int64_t)(intptr_t)ids;
    step[PLAN_OUT_IDS] = (int64_t)(intptr_t)tok;
    step[PLAN_ROW_POS] = (int64_t)(intptr_t)pos;
    step[PLAN_UNIFORMS] = uniforms ? (int64_t)(intptr_t)uni : 0;
    const int64_t generation = ee_scratch_generation();
    cudaGetLastError();
    if (cudaStreamBeginCapture(capture_stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return cudaGetLastError(), 1;
    ee_set_stream(capture_stream);
    step_in_kernel<<<1, 256, 0, capture_stream>>>(ids, pos, uni, counter, (const int32_t*)(intptr_t)plan[PLAN_FIRST_IDS], (const int32_t*)(intptr_t)plan[PLAN_OUT_IDS],
                                                 (const int32_t*)(intptr_t)plan[PLAN_ROW_POS], uniforms, rows);
    int rc = cudaGetLastError() != cudaSuccess || ee_decode_steps_loop(step, 1);
    if (!rc) {
        step_out_kernel<<<1, 256, 0, capture_stream>>>((int32_t*)(intptr_t)plan[PLAN_OUT_IDS], counter, tok, rows);
        rc = cudaGetLastError() != cudaSuccess;
    }
    ee_set_stream(0);
    cudaGraph_t graph = 0;
    rc |= cudaStreamEndCapture(capture_stream, &graph) != cudaSuccess || ee_scratch_generation() != generation;
    if (!rc) rc = cudaGraphInstantiate(&g.exec, graph, 0) != cudaSuccess;
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError(); /* a failed capture leaves nothing behind: the eager call reports what the ops find */
    return rc;
}
} // namespace

/* The call through a graph: 0 done, 1 failed (error set), -1 not taken (the eager loop runs it). */
static int32_t decode_steps_graph(const int64_t* plan, int32_t steps) {
    const char* env = getenv("EETUNE_CUDA_GRAPHS");
    if (!env || strcmp(env, "1") != 0 || steps < 1 || !plan || plan[PLAN_ROWS] < 1 || plan[PLAN_N_LAYERS] < 0 || !plan[PLAN_FIRST_IDS] || !plan[PLAN_OUT_IDS] || !plan[PLAN_ROW_POS]) return -1;
    ee_op_lock lock;
    const std::vector<int64_t> key = graph_key(plan);
    StepGraph* g = 0;
    for (StepGraph& c : graphs)
        if (c.key == key) g = &c;
    if (!g) { /* first sight: remembered, run eagerly */
        g = &graphs[0];
        for (StepGraph& c : graphs)
            if (c.used < g->used) g = &c;
        release(*g);
        g->key = key;
        g->used = ++graph_uses;
        return -1;
    }
    g->used = ++graph_uses;
    if (g->failed) return -1;
    if (!g->exec && capture(*g, plan)) {
        g->failed = 1; /* opt-in, so say once why it is not used (the eager loop reports any error of the ops themselves) */
        fprintf(stderr, "eetune: EETUNE_CUDA_GRAPHS=1, but this decode plan's step could not be captured as a CUDA graph; decoding it eagerly\n");
        return -1;
    }
    cudaError_t e = cudaMemsetAsync(g->buffers, 0, sizeof(int32_t), 0);
    for (int32_t t = 0; t < steps && e == cudaSuccess; t++) e = cudaGraphLaunch(g->exec, 0);
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_decode_steps (CUDA graph)");
}

EE_API int32_t ee_decode_steps(const int64_t* plan, int32_t steps) {
    const int32_t rc = decode_steps_graph(plan, steps);
    return rc >= 0 ? rc : ee_decode_steps_loop(plan, steps);
}

EE_API int32_t ee_exit_steps(const int64_t* plan, const int64_t* exits, int32_t steps) { return ee_exit_steps_loop(plan, exits, steps); }

EE_API int64_t ee_exit_pipeline_steps(void) { return 0; /* the pipeline is the CPU library's (cpu/exit_pipeline.c) */ }
