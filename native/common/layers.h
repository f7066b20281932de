/* ee_decoder_layers_fwd, ee_decode_steps and ee_exit_steps, one definition for the CPU and the CUDA library (cpu/layer.c,
 * cuda/layer.cu): loops calling the library's own functions, so both run the same operations in the same order. */
#ifndef EE_LAYERS_H
#define EE_LAYERS_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "candidates.h"
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

/* The next tokens of `rows` rows of logits [rows, vocab], into `tokens`: argmax (lowest index on ties), or top-p sampling
 * with uniforms[r] at the plan's temperature and top_p */
static inline int32_t ee_choose_tokens(const int64_t* plan, int32_t* tokens, const float* logits, const float* uniforms, int32_t rows) {
    const int32_t vocab = (int32_t)plan[PLAN_VOCAB];
    return uniforms ? ee_sample_top_p(tokens, logits, uniforms, rows, vocab, ee_plan_float(plan, PLAN_TEMPERATURE), ee_plan_float(plan, PLAN_TOP_P))
                    : ee_argmax(tokens, 0, logits, rows, vocab, 1.0f);
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
        if (!rc) rc = ee_choose_tokens(plan, next, logits, uniforms ? uniforms + (size_t)t * rows : 0, rows);
        if (rc) return ee_fail_within("ee_decode_steps", "step", t);
    }
#undef PTR
#undef I32
    return 0;
}

/* ee_exit_steps' exit plan: the header's fields, then each exit's (eetune.h gives the order) */
enum {
    EXITS_COUNT, EXITS_METHOD, EXITS_MAX_SEQ, EXITS_CAPACITY, EXITS_TABLES, EXITS_STATE, EXITS_STATES, EXITS_RECORD, EXITS_POS, EXITS_POS_HOST, EXITS_SEQ_HOST, EXITS_SCORE,
    EXITS_SCORE_HOST, EXITS_CHOSEN, EXITS_PRE, EXITS_Z, EXITS_Z_HOST, EXITS_HEADER
};
enum {
    EXIT_LAYER, EXIT_KIND, EXIT_HEAD_NORM, EXIT_FFN_NORM, EXIT_W_GATE, EXIT_W_UP, EXIT_W_DOWN, EXIT_W_DTYPE, EXIT_MLP_HIDDEN, EXIT_LM_HEAD, EXIT_LM_DTYPE, EXIT_TEMPERATURE,
    EXIT_GATE_W1, EXIT_GATE_B1, EXIT_GATE_W, EXIT_GATE_B, EXIT_GATE_UNITS, EXIT_GATE_EPS, EXIT_TAU, EXIT_CONFIRM, EXIT_SCREEN, EXIT_RADIUS, EXIT_SCREEN_MARGIN,
    EXIT_LM_PACKED, EXIT_FIELDS
};
#ifdef __cplusplus
static_assert(EXITS_HEADER == EE_EXIT_PLAN_HEADER && EXIT_FIELDS == EE_EXIT_PLAN_FIELDS, "the exit plan's fields and eetune.h disagree");
#else
_Static_assert(EXITS_HEADER == EE_EXIT_PLAN_HEADER && EXIT_FIELDS == EE_EXIT_PLAN_FIELDS, "the exit plan's fields and eetune.h disagree");
#endif

/* The layer (1-based) after which exit i of the plan sits */
static inline int32_t ee_exit_layer(const int64_t* exits, int32_t i) { return (int32_t)exits[EXITS_HEADER + (size_t)i * EXIT_FIELDS + EXIT_LAYER]; }

/* EarlyExitPolicy.confident: a score (probability or gate output) reaches tau; NaN, or above 1 (a broken head), never does */
static inline int ee_confident(float score, float tau) { return score >= tau && score <= 1.0f; }

/* Values from the library's memory to the host (a device-to-host copy in the CUDA library) */
static inline int32_t ee_read_value(void* dst, const void* src, int64_t bytes) { return ee_copy(dst, src, bytes, 2); }

/* Row `to` of a [rows, dim] buffer = row `from` (the library's memory; nothing where they are one row) */
static inline int32_t ee_copy_row(float* buf, int32_t to, int32_t from, int32_t dim) {
    return to == from ? 0 : ee_copy(buf + (size_t)to * dim, buf + (size_t)from * dim, (int64_t)dim * (int64_t)sizeof(float), 0);
}

/* An exit head's last input for rows 0..k-1 of (hidden, residual): z = the hidden state h (embedding head), the head's
 * norm of h (norm head), or the head's norm of r + mlp(ffn_norm(r)) with r the exit layer's attention residual (mlp
 * head); 0 on failure. The calls and arguments of the Java heads' decodeInput. `pre` may be the hidden state's or the
 * residual's buffer (the MLP adds into its input there). */
static inline const float* ee_exit_head_input(const int64_t* plan, const int64_t* exits, const int64_t* e, const float* hidden, const float* residual, int32_t k) {
#define PTR(type, field) ((type)(intptr_t)plan[field])
#define EPTR(type, field) ((type)(intptr_t)e[field])
    const int32_t dim = (int32_t)plan[PLAN_DIM];
    const float eps = ee_plan_float(plan, PLAN_EPS);
    float* z = (float*)(intptr_t)exits[EXITS_Z];
    float* pre = (float*)(intptr_t)exits[EXITS_PRE];
    switch ((int32_t)e[EXIT_KIND]) {
        case EE_HEAD_EMBEDDING: return hidden;
        case EE_HEAD_NORM: return ee_rmsnorm_fwd(z, 0, hidden, EPTR(const float*, EXIT_HEAD_NORM), k, dim, eps) ? 0 : z;
        case EE_HEAD_MLP:
            if (ee_feed_forward_fwd(residual, pre, PTR(float*, PLAN_XN2), 0, PTR(float*, PLAN_GATE), PTR(float*, PLAN_UP), PTR(float*, PLAN_ACT),
                                    EPTR(const float*, EXIT_FFN_NORM), EPTR(const void*, EXIT_W_GATE), EPTR(const void*, EXIT_W_UP), EPTR(const void*, EXIT_W_DOWN),
                                    (int32_t)e[EXIT_W_DTYPE], k, dim, (int32_t)e[EXIT_MLP_HIDDEN], eps))
                return 0;
            return ee_rmsnorm_fwd(z, 0, pre, EPTR(const float*, EXIT_HEAD_NORM), k, dim, eps) ? 0 : z;
        default: ee_fail("ee_exit_steps: exit after layer %d: head kind %d", (int32_t)e[EXIT_LAYER], (int32_t)e[EXIT_KIND]); return 0;
    }
#undef PTR
#undef EPTR
}

/* Whether the exit's 8-bit screen (EarlyExitGenerator.mayPass) lets row 0 of z reach tau: 1 = the head's exact logits
 * decide, 0 = its largest probability is bounded below tau (its margin included), < 0 = failure. The scores go to
 * the plan's logits, the bound's scale (ee_screen_scale, on the host) to score[1], the bound to score[0]. */
static inline int32_t ee_exit_screen_passes(const int64_t* plan, const int64_t* exits, const int64_t* e, const float* z, float tau) {
    const int32_t dim = (int32_t)plan[PLAN_DIM], vocab = (int32_t)plan[PLAN_VOCAB];
    float* logits = (float*)(intptr_t)plan[PLAN_LOGITS];
    float* score = (float*)(intptr_t)exits[EXITS_SCORE];
    float* host = (float*)(intptr_t)exits[EXITS_Z_HOST];
    if (ee_gemm(0, 1, 1, vocab, dim, 1.0f, z, dim, (const void*)(intptr_t)e[EXIT_SCREEN], EE_I8_PANELS, dim, 0.0f, logits, vocab) ||
        ee_read_value(host, z, (int64_t)dim * (int64_t)sizeof(float)))
        return -1;
    float norm = ee_screen_scale(host, dim), upper = 0.0f;
    if (ee_copy(score + 1, &norm, (int64_t)sizeof norm, 1) ||
        ee_max_prob_upper(score, logits, vocab, (const float*)(intptr_t)e[EXIT_RADIUS], score + 1, 1, vocab, ee_plan_float(e, EXIT_TEMPERATURE)) ||
        ee_read_value(&upper, score, sizeof upper))
        return -1;
    return !(upper * ee_plan_float(e, EXIT_SCREEN_MARGIN) < tau); /* NaN or +inf: the exact logits decide */
}

/* A step's record for one sequence of the run (eetune.h's EE_EXIT_RECORD) */
enum { REC_LAYER, REC_COMPLETE, REC_ROW_LAYERS, REC_HEADS, REC_SCORED, REC_SCREENED };

/* ee_exit_steps' decision at exit ei for the newest rows 0..m-1 of the pass (of the run's sequences active[0..m-1]):
 * sets leaves[i] = 1 and the token out[active[i]] for each row i that exits, and returns how many do (< 0 = failure).
 * The calls of EarlyExitGenerator.PassVisitor.atExit: the cheap score of the m rows, then the head on the rows it
 * passes (in place where they lead the pass, else gathered), or with softmax decisions the head on all m rows; each
 * chosen row's token as ee_decode_steps chooses it (uniforms[active[i]] where sampling). Sets bit ei of each
 * sequence's record (rec, EE_EXIT_RECORD per sequence) for its row's score, head and screen. */
static inline int32_t ee_exit_decide(const int64_t* plan, const int64_t* exits, int32_t ei, int32_t m, const int32_t* active, int32_t* leaves, int32_t* out,
                                     const float* uniforms, int32_t* rec) {
#define BIT(i, field) (rec[(size_t)active[i] * EE_EXIT_RECORD + (field)] |= 1 << ei)
    const int64_t* e = exits + EXITS_HEADER + (size_t)ei * EXIT_FIELDS;
    const int32_t method = (int32_t)exits[EXITS_METHOD], dim = (int32_t)plan[PLAN_DIM], vocab = (int32_t)plan[PLAN_VOCAB];
    float* x = (float*)(intptr_t)plan[PLAN_X];
    float* residual = (float*)(intptr_t)plan[PLAN_RESIDUAL];
    float* logits = (float*)(intptr_t)plan[PLAN_LOGITS];
    float* score = (float*)(intptr_t)exits[EXITS_SCORE];
    float* value = (float*)(intptr_t)exits[EXITS_SCORE_HOST];
    int32_t* chosen = (int32_t*)(intptr_t)exits[EXITS_CHOSEN];
    const float tau = ee_plan_float(e, EXIT_TAU), temperature = ee_plan_float(e, EXIT_TEMPERATURE);
    int32_t rows[EE_EXIT_MAX_ROWS], k = 0; /* the rows whose head runs, in increasing order */
    if (method != EE_EXIT_SOFTMAX) { /* the cheap score first: the head runs only where it passes */
        if (ee_gate_score(score, x, (const float*)(intptr_t)e[EXIT_GATE_W1], (const float*)(intptr_t)e[EXIT_GATE_B1], (const float*)(intptr_t)e[EXIT_GATE_W],
                          (const float*)(intptr_t)e[EXIT_GATE_B], m, dim, (int32_t)e[EXIT_GATE_UNITS], ee_plan_float(e, EXIT_GATE_EPS)) ||
            ee_read_value(value, score, (int64_t)m * (int64_t)sizeof(float)))
            return -1;
        for (int32_t i = 0; i < m; i++) {
            BIT(i, REC_SCORED);
            if (ee_confident(value[i], tau)) rows[k++] = i;
        }
        if (k == 0) return 0;
    } else {
        for (int32_t i = 0; i < m; i++) rows[i] = i;
        k = m;
    }
    const float* z;
    if (rows[k - 1] == k - 1) { /* rows 0..k-1: in place */
        z = ee_exit_head_input(plan, exits, e, x, residual, k);
    } else { /* the head's input rows gathered into `pre` (an mlp head reads the residual, the others the hidden state) */
        float* pre = (float*)(intptr_t)exits[EXITS_PRE];
        const float* src = (int32_t)e[EXIT_KIND] == EE_HEAD_MLP ? residual : x;
        for (int32_t j = 0; j < k; j++)
            if (ee_copy(pre + (size_t)j * dim, src + (size_t)rows[j] * dim, (int64_t)dim * (int64_t)sizeof(float), 0)) return -1;
        z = (int32_t)e[EXIT_KIND] == EE_HEAD_MLP ? ee_exit_head_input(plan, exits, e, 0, pre, k) : ee_exit_head_input(plan, exits, e, pre, 0, k);
    }
    if (!z) return -1;
    for (int32_t j = 0; j < k; j++) BIT(rows[j], REC_HEADS);
    if (method == EE_EXIT_SOFTMAX && e[EXIT_SCREEN]) { /* one row: a run with screens holds one sequence */
        const int32_t passes = ee_exit_screen_passes(plan, exits, e, z, tau);
        if (passes <= 0) {
            if (passes == 0) BIT(0, REC_SCREENED);
            return passes;
        }
    }
    /* the packed copy where k final rows read the classifier packed, as the Java decoder's headLogits chooses */
    const int32_t packed = e[EXIT_LM_PACKED] && (int32_t)((const int64_t*)(intptr_t)exits[EXITS_TABLES])[4 * k + 3] >= EE_F32_PANELS;
    if (ee_gemm(0, 1, k, vocab, dim, 1.0f, z, dim, (const void*)(intptr_t)e[packed ? EXIT_LM_PACKED : EXIT_LM_HEAD], packed ? EE_F32_PANELS : (int32_t)e[EXIT_LM_DTYPE], dim,
                0.0f, logits, vocab))
        return -1;
    /* softmax: the head's max probability decides; cascade: it confirms the score */
    int32_t confirm[EE_EXIT_MAX_ROWS];
    for (int32_t j = 0; j < k; j++) confirm[j] = 1;
    if (method != EE_EXIT_GATE) {
        const float bar = method == EE_EXIT_SOFTMAX ? tau : ee_plan_float(e, EXIT_CONFIRM);
        if (ee_argmax(chosen, score, logits, k, vocab, temperature) || ee_read_value(value, score, (int64_t)k * (int64_t)sizeof(float))) return -1;
        for (int32_t j = 0; j < k; j++) confirm[j] = ee_confident(value[j], bar);
    }
    int32_t exiting = 0;
    for (int32_t j = 0; j < k; j++) {
        if (!confirm[j]) continue;
        const int32_t i = rows[j], s = active[i];
        if (ee_choose_tokens(plan, out + s, logits + (size_t)j * vocab, uniforms ? uniforms + s : 0, 1)) return -1;
        leaves[i] = 1;
        exiting++;
    }
    return exiting;
#undef BIT
}

/* The tokens of the active sequences' newest rows 0..m-1 of the plan's x, which ran the last layer: the final norm, the
 * classifier (packed where m rows read it packed), the choice (uniforms[active[i]] where sampling) into out[active[i]] */
static inline int32_t ee_exit_final_tokens(const int64_t* plan, const int64_t* exits, int32_t m, const int32_t* active, int32_t* out, const float* uniforms) {
    const int32_t dim = (int32_t)plan[PLAN_DIM], vocab = (int32_t)plan[PLAN_VOCAB];
    const int64_t* tables = (const int64_t*)(intptr_t)exits[EXITS_TABLES];
    float* normed = (float*)(intptr_t)plan[PLAN_NORMED];
    float* logits = (float*)(intptr_t)plan[PLAN_LOGITS];
    if (ee_rmsnorm_fwd(normed, 0, (const float*)(intptr_t)plan[PLAN_X], (const float*)(intptr_t)plan[PLAN_FINAL_NORM], m, dim, ee_plan_float(plan, PLAN_EPS)) ||
        ee_gemm(0, 1, m, vocab, dim, 1.0f, normed, dim, (const void*)(intptr_t)tables[4 * m + 2], (int32_t)tables[4 * m + 3], dim, 0.0f, logits, vocab))
        return 1;
    for (int32_t i = 0; i < m; i++)
        if (ee_choose_tokens(plan, out + active[i], logits + (size_t)i * vocab, uniforms ? uniforms + active[i] : 0, 1)) return 1;
    return 0;
}

/* ee_exit_steps' checks of its plans and of the run's sequences (both loops, before any step): 0, or the failure;
 * block[i] = sequence i's block of the state (cache slot, complete length, length, then per position the layers a
 * pending row has been through) */
static inline int32_t ee_exit_steps_check(const int64_t* plan, const int64_t* exits, int32_t steps, int32_t** block) {
    if (!plan || !exits) return ee_fail("ee_exit_steps: null plan");
    const int32_t n_exits = (int32_t)exits[EXITS_COUNT], capacity = (int32_t)exits[EXITS_CAPACITY], max_seq = (int32_t)exits[EXITS_MAX_SEQ];
    const int32_t n_layers = (int32_t)plan[PLAN_N_LAYERS], max_len = (int32_t)plan[PLAN_MAX_LEN];
    int32_t* state = (int32_t*)(intptr_t)exits[EXITS_STATE];
    if (!state) return ee_fail("ee_exit_steps: null state");
    const int32_t n = state[1];
    if (steps < 0 || n_exits < 0 || n_exits > 30 || capacity < 1 || capacity > EE_EXIT_MAX_ROWS || max_seq < 1 || n < 1 || n > max_seq || n > capacity)
        return ee_fail("ee_exit_steps: %d steps, %d exits, capacity %d, %d sequences of at most %d", steps, n_exits, capacity, n, max_seq);
#define NUL(field) (!exits[field])
    if (NUL(EXITS_TABLES) || NUL(EXITS_RECORD) || NUL(EXITS_POS) || NUL(EXITS_POS_HOST) || NUL(EXITS_SEQ_HOST) || !plan[PLAN_ROW_SEQ] || NUL(EXITS_STATES) ||
        !plan[PLAN_FIRST_IDS] || !plan[PLAN_OUT_IDS] || NUL(EXITS_SCORE) || NUL(EXITS_SCORE_HOST) || NUL(EXITS_CHOSEN) || NUL(EXITS_PRE) || NUL(EXITS_Z) || NUL(EXITS_Z_HOST))
        return ee_fail("ee_exit_steps: null pointer in the plans");
#undef NUL
    for (int32_t i = 0; i < n_exits; i++) {
        const int32_t layer = ee_exit_layer(exits, i), before = i == 0 ? 0 : ee_exit_layer(exits, i - 1);
        if (layer <= before || layer >= n_layers) return ee_fail("ee_exit_steps: exit %d after layer %d (layers 1 .. %d, increasing)", i, layer, n_layers - 1);
        const int64_t* e = exits + EXITS_HEADER + (size_t)i * EXIT_FIELDS;
        if (e[EXIT_SCREEN] && (!e[EXIT_RADIUS] || (int32_t)exits[EXITS_METHOD] != EE_EXIT_SOFTMAX || n > 1))
            return ee_fail("ee_exit_steps: exit after layer %d: a screen needs its radius, softmax decisions and one sequence (%d here)", layer, n);
    }
    for (int32_t i = 0; i < n; i++) {
        block[i] = state + 3 + (size_t)i * (3 + max_len);
        if (block[i][0] < 0 || block[i][0] >= (int32_t)plan[PLAN_N_SEQ]) return ee_fail("ee_exit_steps: sequence %d: cache slot %d of %d", i, block[i][0], (int32_t)plan[PLAN_N_SEQ]);
        for (int32_t j = 0; j < i; j++)
            if (block[j][0] == block[i][0]) return ee_fail("ee_exit_steps: sequences %d and %d share cache slot %d", j, i, block[i][0]);
    }
    return 0;
}

/* Sequence i's block before step t: a complete length, a length within the cache, pending rows that have run some
 * but not all layers; 0, or the failure */
static inline int32_t ee_exit_block_check(const int32_t* block, int32_t t, int32_t i, int32_t n_layers, int32_t max_len) {
    const int32_t complete = block[1], newest = block[2] - 1;
    if (complete < 0 || newest < complete || newest >= max_len)
        return ee_fail("ee_exit_steps: step %d, sequence %d: complete length %d, length %d, max_len %d", t, i, complete, newest + 1, max_len);
    for (int32_t p = complete; p < newest; p++)
        if (block[3 + p] < 1 || block[3 + p] >= n_layers) return ee_fail("ee_exit_steps: step %d, sequence %d: pending position %d has run %d layers", t, i, p, block[3 + p]);
    return 0;
}

/* ee_exit_steps, one definition for both libraries: the Java decoder's pass (EarlyExitGenerator.pass and its visitor)
 * for the run's sequences, step after step, composed of the library's own calls in the same order. */
static inline int32_t ee_exit_steps_loop(const int64_t* plan, const int64_t* exits, int32_t steps) {
    int32_t* block[EE_EXIT_MAX_ROWS];
    if (ee_exit_steps_check(plan, exits, steps, block)) return 1;
#define PTR(type, field) ((type)(intptr_t)plan[field])
#define I32(field) ((int32_t)plan[field])
#define XPTR(type, field) ((type)(intptr_t)exits[field])
    const int32_t n_exits = (int32_t)exits[EXITS_COUNT], capacity = (int32_t)exits[EXITS_CAPACITY], max_seq = (int32_t)exits[EXITS_MAX_SEQ];
    const int32_t n_layers = I32(PLAN_N_LAYERS), dim = I32(PLAN_DIM), vocab = I32(PLAN_VOCAB), max_len = I32(PLAN_MAX_LEN);
    const int64_t* tables = XPTR(const int64_t*, EXITS_TABLES);
    int32_t* state = XPTR(int32_t*, EXITS_STATE);
    int32_t* record = XPTR(int32_t*, EXITS_RECORD);
    int32_t* pos = XPTR(int32_t*, EXITS_POS);
    int32_t* pos_host = XPTR(int32_t*, EXITS_POS_HOST);
    int32_t* seq_host = XPTR(int32_t*, EXITS_SEQ_HOST);
    int32_t* row_seq = PTR(int32_t*, PLAN_ROW_SEQ);
    float* states = XPTR(float*, EXITS_STATES);
    const int32_t* first_ids = PTR(const int32_t*, PLAN_FIRST_IDS);
    int32_t* out_ids = PTR(int32_t*, PLAN_OUT_IDS);
    const float* uniforms = PTR(const float*, PLAN_UNIFORMS);
    float* x = PTR(float*, PLAN_X);
    const float eps = ee_plan_float(plan, PLAN_EPS);
    const size_t row_bytes = (size_t)dim * sizeof(float);
    const int32_t n = state[1];
    state[0] = 0;
    for (int32_t t = 0; t < steps; t++) {
        int32_t total = 0;
        for (int32_t i = 0; i < n; i++) {
            if (ee_exit_block_check(block[i], t, i, n_layers, max_len)) return 1;
            total += block[i][2] - block[i][1];
        }
        if (total > capacity) break; /* the caller's own pass takes this step, with room for the rows */
        const int32_t* ids = t == 0 ? first_ids : out_ids + (size_t)(t - 1) * n;
        const float* uniform = uniforms ? uniforms + (size_t)t * n : 0;
        int32_t* tokens = out_ids + (size_t)t * n;
        int32_t* rec = record + (size_t)t * max_seq * EE_EXIT_RECORD;
        int32_t active[EE_EXIT_MAX_ROWS], leaves[EE_EXIT_MAX_ROWS], row_of[EE_EXIT_MAX_ROWS]; /* row_of: each row's sequence in the run */
        int32_t m = n, rows = n, at = 0, next_exit = 0;
        memset(rec, 0, (size_t)n * EE_EXIT_RECORD * sizeof(int32_t));
        for (int32_t i = 0; i < n; i++) { /* the newest rows lead the pass, in the run's order */
            active[i] = row_of[i] = i;
            seq_host[i] = block[i][0];
            pos_host[i] = block[i][2] - 1;
            rec[(size_t)i * EE_EXIT_RECORD + REC_LAYER] = n_layers;
        }
        int32_t rc = ee_embedding_fwd(x, PTR(const void*, PLAN_EMBEDDING), I32(PLAN_EMBEDDING_DTYPE), ids, n, dim, vocab);
        while (!rc && m > 0 && at < n_layers) {
            if (at > 0) /* rows that stopped after layer `at` join before the next one: sequence by sequence, in increasing position */
                for (int32_t a = 0; a < m && !rc; a++) {
                    const int32_t* b = block[active[a]];
                    for (int32_t p = b[1]; p < b[2] - 1 && !rc; p++)
                        if (b[3 + p] == at) {
                            row_of[rows] = active[a];
                            seq_host[rows] = b[0];
                            pos_host[rows] = p;
                            rc = ee_copy(x + (size_t)rows++ * dim, states + ((size_t)b[0] * max_len + p) * dim, (int64_t)row_bytes, 0);
                        }
                }
            /* the layers up to the next exit, or to where pending rows join */
            int32_t to = next_exit < n_exits ? ee_exit_layer(exits, next_exit) : n_layers;
            for (int32_t a = 0; a < m; a++)
                for (int32_t p = block[active[a]][1]; p < block[active[a]][2] - 1; p++)
                    if (block[active[a]][3 + p] > at && block[active[a]][3 + p] < to) to = block[active[a]][3 + p];
            if (!rc) rc = ee_copy(pos, pos_host, (int64_t)rows * (int64_t)sizeof(int32_t), 1);
            if (!rc) rc = ee_copy(row_seq, seq_host, (int64_t)rows * (int64_t)sizeof(int32_t), 1);
            if (!rc)
                rc = ee_decoder_layers_loop((const int64_t*)(intptr_t)tables[4 * rows], at, to - at, x, x, PTR(float*, PLAN_RESIDUAL), PTR(float*, PLAN_XN1), 0,
                                            PTR(float*, PLAN_Q), PTR(float*, PLAN_K), PTR(float*, PLAN_V), PTR(float*, PLAN_ATT), 0, PTR(float*, PLAN_XN2), 0,
                                            PTR(float*, PLAN_GATE), PTR(float*, PLAN_UP), PTR(float*, PLAN_ACT), (int32_t)tables[4 * rows + 1], 1, I32(PLAN_N_SEQ),
                                            max_len, row_seq, pos, PTR(const float*, PLAN_INV_FREQ), rows, dim, I32(PLAN_N_HEADS), I32(PLAN_N_KV_HEADS),
                                            I32(PLAN_HEAD_DIM), I32(PLAN_HIDDEN), I32(PLAN_INTERLEAVED), eps, ee_plan_float(plan, PLAN_SCALE));
            for (int32_t r = 0; r < rows; r++) rec[(size_t)row_of[r] * EE_EXIT_RECORD + REC_ROW_LAYERS] += to - at;
            at = to;
            if (rc || next_exit >= n_exits || at != ee_exit_layer(exits, next_exit)) continue;
            for (int32_t i = 0; i < m; i++) leaves[i] = 0;
            const int32_t exiting = ee_exit_decide(plan, exits, next_exit++, m, active, leaves, tokens, uniform, rec);
            if (exiting < 0) rc = exiting;
            if (exiting <= 0) continue;
            /* the exiting sequences' rows keep their states and wait for a deeper pass; the others' rows close up, in order */
            int32_t gone[EE_EXIT_MAX_ROWS] = {0}; /* by the run's sequence */
            for (int32_t i = 0; i < m; i++)
                if (leaves[i]) {
                    gone[active[i]] = 1;
                    rec[(size_t)active[i] * EE_EXIT_RECORD + REC_LAYER] = at;
                }
            int32_t kept = 0;
            for (int32_t r = 0; r < rows && !rc; r++) {
                if (gone[row_of[r]]) {
                    block[row_of[r]][3 + pos_host[r]] = at;
                    rc = ee_copy(states + ((size_t)seq_host[r] * max_len + pos_host[r]) * dim, x + (size_t)r * dim, (int64_t)row_bytes, 0);
                } else {
                    rc = ee_copy_row(x, kept, r, dim);
                    row_of[kept] = row_of[r];
                    seq_host[kept] = seq_host[r];
                    pos_host[kept] = pos_host[r];
                    kept++;
                }
            }
            int32_t still = 0;
            for (int32_t i = 0; i < m; i++)
                if (!leaves[i]) active[still++] = active[i];
            m = still;
            rows = kept;
        }
        if (!rc && m > 0) { /* the final layer: every row of the pass is complete; rows 0..m-1 are the active sequences' newest */
            rc = ee_exit_final_tokens(plan, exits, m, active, tokens, uniform);
            for (int32_t i = 0; i < m; i++) block[active[i]][1] = block[active[i]][2];
        }
        if (rc) return ee_fail_within("ee_exit_steps", "step", t);
        for (int32_t i = 0; i < n; i++) {
            rec[(size_t)i * EE_EXIT_RECORD + REC_COMPLETE] = block[i][1];
            block[i][2]++;
        }
        state[0] = t + 1;
    }
#undef PTR
#undef I32
#undef XPTR
    return 0;
}

#endif /* EE_LAYERS_H */
