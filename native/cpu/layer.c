/*
 * A whole decoder layer in one call (the CUDA twin is cuda/layer.cu): the composition of the library's own ops, in
 * the order and with the arguments the Java layer used to call them one by one, so the results are the same bits.
 * What it saves is per-op cost on the Java side (a call, its checks, its tensor views), which at decode sizes
 * (a few rows, dim 64..768) is of the order of the ops' own arithmetic; and the projections that read one input
 * (q/k/v, gate/up) run as one parallel region each (ee_gemm_group). A small model's batch runs its row-wise parts as
 * slices of the rows on the pool (layer_splits_rows); the decode kernels compute each row alike whatever rows are
 * beside it, so the bits do not depend on the thread count (KernelTest, DecoderLayerFusionTest).
 */
#include <stdatomic.h>
#include <stdio.h>

#include "internal.h"
#include "layers.h"

#define TRY(call)                     \
    do {                              \
        const int32_t rc_ = (call);   \
        if (rc_) return rc_;          \
    } while (0)

/* ee_decoder_layer_fwd's arguments, so that a team can run the layer over slices of its rows */
typedef struct {
    const float* x;
    float *out, *residual, *xn1, *inv1, *q, *k, *v, *att, *lse, *xn2, *inv2, *gate, *up, *act;
    const float *attn_norm, *bq, *bk, *bv, *ffn_norm, *inv_freq;
    const void *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
    float *k_cache, *v_cache;
    const int32_t *row_seq, *row_pos;
    int32_t w_dtype, write_kv, n_seq, max_len, dim, n_heads, n_kv_heads, head_dim, hidden, interleaved;
    float eps, scale;
} layer_args;

/* Row r0 of a [rows, width] buffer (0 stays 0: the optional outputs) */
#define ROW(p, width) ((p) ? (p) + (size_t)r0 * (width) : 0)

/* Rows r0 .. r0 + rows - 1 up to the K/V: the attention norm, q/k/v, their biases and rotations, the cache write */
static int32_t layer_project(const layer_args* a, int32_t r0, int32_t rows) {
    const int32_t qd = a->n_heads * a->head_dim, kd = a->n_kv_heads * a->head_dim, dim = a->dim;
    float *xn1 = ROW(a->xn1, dim), *q = ROW(a->q, qd), *k = ROW(a->k, kd), *v = ROW(a->v, kd);
    const int32_t *row_seq = ROW(a->row_seq, 1), *row_pos = ROW(a->row_pos, 1);
    TRY(ee_rmsnorm_fwd(xn1, ROW(a->inv1, 1), ROW(a->x, dim), a->attn_norm, rows, dim, a->eps));
    /* q, k, v (and below gate, up) in one parallel region each: the same results as three ee_gemm calls */
    const ee_gemm_args qkv[3] = {{0, 1, rows, qd, dim, 1.0f, 0.0f, xn1, dim, a->wq, a->w_dtype, dim, q, qd},
                                 {0, 1, rows, kd, dim, 1.0f, 0.0f, xn1, dim, a->wk, a->w_dtype, dim, k, kd},
                                 {0, 1, rows, kd, dim, 1.0f, 0.0f, xn1, dim, a->wv, a->w_dtype, dim, v, kd}};
    TRY(ee_gemm_group(qkv, 3));
    if (a->bq) TRY(ee_add_bias(q, a->bq, rows, qd));
    if (a->bk) TRY(ee_add_bias(k, a->bk, rows, kd));
    if (a->bv) TRY(ee_add_bias(v, a->bv, rows, kd));
    TRY(ee_rope(q, row_pos, a->inv_freq, rows, a->n_heads, a->head_dim, a->interleaved, 0));
    TRY(ee_rope(k, row_pos, a->inv_freq, rows, a->n_kv_heads, a->head_dim, a->interleaved, 0));
    if (a->write_kv) {
        TRY(ee_kv_write(a->k_cache, k, row_seq, row_pos, rows, kd, a->n_seq, a->max_len));
        TRY(ee_kv_write(a->v_cache, v, row_seq, row_pos, rows, kd, a->n_seq, a->max_len));
    }
    return 0;
}

/* Every row's attention over the cache (a row reads the earlier positions of its sequence, whichever slice wrote them) */
static int32_t layer_attend(const layer_args* a, int32_t rows) {
    return ee_attention_fwd(a->att, a->lse, a->q, a->k_cache, a->v_cache, a->row_seq, a->row_pos, rows, a->n_heads, a->n_kv_heads, a->head_dim, a->n_seq, a->max_len,
                            a->scale);
}

/* Rows r0 .. r0 + rows - 1 after the attention: the output projection into the residual, the feed-forward block */
static int32_t layer_finish(const layer_args* a, int32_t r0, int32_t rows) {
    const int32_t qd = a->n_heads * a->head_dim, dim = a->dim;
    float* residual = ROW(a->residual, dim);
    const float* x = ROW(a->x, dim);
    if (residual != x) TRY(ee_copy(residual, x, (int64_t)rows * dim * (int64_t)sizeof(float), 0));
    TRY(ee_gemm(0, 1, rows, dim, qd, 1.0f, ROW(a->att, qd), qd, a->wo, a->w_dtype, qd, 1.0f, residual, dim));
    return ee_feed_forward_fwd(residual, ROW(a->out, dim), ROW(a->xn2, dim), ROW(a->inv2, 1), ROW(a->gate, a->hidden), ROW(a->up, a->hidden), ROW(a->act, a->hidden),
                               a->ffn_norm, a->w_gate, a->w_up, a->w_down, a->w_dtype, rows, dim, a->hidden, a->eps);
}
#undef ROW

/* Slices of the rows on the pool, for the row-wise parts of the layer: every row's projections in one region, the
 * attention over all rows as without slices (its own parallel loop; a row reads the earlier positions of its
 * sequence, which may be another slice's, and its kernel is chosen by the rows it is given), then every row's output
 * projection and feed-forward block in another region. Stealing, so that a thread the OS holds up (a busy machine)
 * delays only the slice it is running. */
typedef struct {
    const layer_args* a;
    int finish;         /* 0: layer_project, 1: layer_finish */
    _Atomic int failed; /* 1 once `why` holds a failure's message */
    char why[512];
} layer_slices;

static void layer_slice(void* p, int64_t r0, int64_t r1) {
    layer_slices* s = p;
    if (atomic_load_explicit(&s->failed, memory_order_relaxed)) return;
    const int32_t rc = (s->finish ? layer_finish : layer_project)(s->a, (int32_t)r0, (int32_t)(r1 - r0));
    int none = 0;
    if (rc && atomic_compare_exchange_strong(&s->failed, &none, 1)) snprintf(s->why, sizeof s->why, "%s", ee_last_error());
}

/* Whether a pass's rows run as slices on the pool's threads: when even the layer's widest GEMM over all the rows is
 * below the fork's break-even (ee_threads_for: a small model), its ops would each run on one thread and the other
 * cores idle. From 8 rows (a batch), whose regions follow each other closely enough that the pool's workers are still
 * awake: stories260K, one layer over 8 / 16 rows of 16 sequences at position 70, 2 threads on a 2-core Zen 4, best of
 * 7: 15.9-16.1 / 31.6-31.7 us with the ops' own regions, 13.3-13.4 / 24.7-24.8 in slices. Not for the 2-7 rows of an
 * early exit's deferred rows at batch 1: those regions come a token or more apart, the workers sleep in between, and
 * waking one cost more than the slices saved (the whole layer in slices from 2 rows: 22.5 -> 27.9 us a token,
 * docs/exit-gates.md). Up to EE_GEMM_SMALL_M rows on the decode path, where every slice takes the same kernels as the
 * whole call (not while OpenBLAS is forced for every GEMM). */
#define LAYER_SLICES_MIN_ROWS 8

static int layer_splits_rows(const layer_args* a, int32_t rows) {
    const int32_t widest = a->hidden > a->n_heads * a->head_dim ? a->hidden : a->n_heads * a->head_dim;
    return rows >= LAYER_SLICES_MIN_ROWS && rows <= EE_GEMM_SMALL_M && ee_gemm_decode_path(a->w_dtype) && ee_num_threads() >= 2 &&
           ee_threads_for(EE_GEMV_WORK(rows, widest, a->dim)) == 1;
}

/* The rows' cache indices, checked as the layer's first user of them does on the whole call (ee_kv_write, or
 * ee_attention_fwd without a write): before any slice writes the cache, and naming a row by its index in the call */
static int32_t layer_check_rows(const layer_args* a, int32_t rows) {
    if (a->n_seq <= 0 || a->max_len <= 0) return 0; /* the ops' own shape errors */
    for (int32_t r = 0; r < rows; r++) {
        if (a->row_seq[r] < 0 || a->row_seq[r] >= a->n_seq) return ee_fail_index(a->write_kv ? EE_BAD_KV_SEQ : EE_BAD_ATTENTION_SEQ, r, a->row_seq[r], a->n_seq, "");
        if (a->row_pos[r] < 0 || a->row_pos[r] >= a->max_len) return ee_fail_index(a->write_kv ? EE_BAD_KV_POS : EE_BAD_ATTENTION_POS, r, a->row_pos[r], a->max_len, "");
    }
    return 0;
}

EE_API int32_t ee_decoder_layer_fwd(const float* x, float* out, float* residual, float* xn1, float* inv1, float* q, float* k, float* v, float* att, float* lse, float* xn2, float* inv2, float* gate, float* up, float* act, const float* attn_norm, const void* wq, const void* wk, const void* wv, const void* wo, const float* bq, const float* bk, const float* bv, const float* ffn_norm, const void* w_gate, const void* w_up, const void* w_down, int32_t w_dtype, float* k_cache, float* v_cache, int32_t write_kv, int32_t n_seq, int32_t max_len, const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int32_t rows, int32_t dim, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t hidden, int32_t interleaved, float eps, float scale) {
    if (rows < 0 || dim <= 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || hidden <= 0)
        return ee_fail("ee_decoder_layer_fwd: bad shape (rows %d, dim %d, heads %d/%d of %d, hidden %d)", rows, dim, n_heads, n_kv_heads, head_dim, hidden);
    if (rows == 0) return 0;
    if (!x || !out || !residual || !xn1 || !q || !k || !v || !att || !xn2 || !gate || !up || !act || !attn_norm || !wq || !wk || !wv || !wo
        || !ffn_norm || !w_gate || !w_up || !w_down || !k_cache || !v_cache || !row_seq || !row_pos || !inv_freq)
        return ee_fail("ee_decoder_layer_fwd: null pointer");
    TRY(ee_gemm_check_b("ee_decoder_layer_fwd", 0, 1, rows, dim, w_dtype, dim));
    const layer_args a = {.x = x, .out = out, .residual = residual, .xn1 = xn1, .inv1 = inv1, .q = q, .k = k, .v = v, .att = att, .lse = lse, .xn2 = xn2, .inv2 = inv2,
        .gate = gate, .up = up, .act = act, .attn_norm = attn_norm, .bq = bq, .bk = bk, .bv = bv, .ffn_norm = ffn_norm, .inv_freq = inv_freq, .wq = wq, .wk = wk, .wv = wv,
        .wo = wo, .w_gate = w_gate, .w_up = w_up, .w_down = w_down, .k_cache = k_cache, .v_cache = v_cache, .row_seq = row_seq, .row_pos = row_pos, .w_dtype = w_dtype,
        .write_kv = write_kv, .n_seq = n_seq, .max_len = max_len, .dim = dim, .n_heads = n_heads, .n_kv_heads = n_kv_heads, .head_dim = head_dim, .hidden = hidden,
        .interleaved = interleaved, .eps = eps, .scale = scale};
    if (!layer_splits_rows(&a, rows)) {
        TRY(layer_project(&a, 0, rows));
        TRY(layer_attend(&a, rows));
        return layer_finish(&a, 0, rows);
    }
    TRY(layer_check_rows(&a, rows));
    const int nt = ee_num_threads();
    const int64_t block = ee_ceil_div(rows, nt);
    layer_slices s = {.a = &a};
    ee_parallel_range_stealing(nt, rows, block, layer_slice, &s);
    if (atomic_load(&s.failed)) return ee_fail("%s", s.why);
    TRY(layer_attend(&a, rows));
    s.finish = 1;
    ee_parallel_range_stealing(nt, rows, block, layer_slice, &s);
    return atomic_load(&s.failed) ? ee_fail("%s", s.why) : 0;
}

EE_API int32_t ee_feed_forward_fwd(const float* h, float* out, float* xn2, float* inv2, float* gate, float* up, float* act, const float* ffn_norm, const void* w_gate, const void* w_up, const void* w_down, int32_t w_dtype, int32_t rows, int32_t dim, int32_t hidden, float eps) {
    if (rows < 0 || dim <= 0 || hidden <= 0) return ee_fail("ee_feed_forward_fwd: bad shape (rows %d, dim %d, hidden %d)", rows, dim, hidden);
    if (rows == 0) return 0;
    if (!h || !out || !xn2 || !gate || !up || !act || !ffn_norm || !w_gate || !w_up || !w_down) return ee_fail("ee_feed_forward_fwd: null pointer");
    TRY(ee_gemm_check_b("ee_feed_forward_fwd", 0, 1, rows, dim, w_dtype, dim));
    TRY(ee_rmsnorm_fwd(xn2, inv2, h, ffn_norm, rows, dim, eps));
    /* gate and up in one parallel region: the same results as two ee_gemm calls */
    const ee_gemm_args gate_up[2] = {{0, 1, rows, hidden, dim, 1.0f, 0.0f, xn2, dim, w_gate, w_dtype, dim, gate, hidden},
                                     {0, 1, rows, hidden, dim, 1.0f, 0.0f, xn2, dim, w_up, w_dtype, dim, up, hidden}};
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

EE_API int32_t ee_exit_steps(const int64_t* plan, const int64_t* exits, int32_t steps) { return ee_exit_steps_run(plan, exits, steps); }
