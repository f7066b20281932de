/* ee_decoder_layers_fwd, ee_decode_steps and ee_exit_steps, one definition for the CPU and the CUDA library (cpu/layer.c,
 * cuda/layer.cu): loops calling the library's own functions, so both run the same operations in the same order. */
#ifndef EE_LAYERS_H
#define EE_LAYERS_H

#include <math.h>
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
    EXITS_COUNT, EXITS_METHOD, EXITS_SEQ, EXITS_CAPACITY, EXITS_TABLES, EXITS_STATE, EXITS_STATES, EXITS_RECORD, EXITS_POS, EXITS_POS_HOST, EXITS_SCORE, EXITS_CHOSEN,
    EXITS_PRE, EXITS_Z, EXITS_Z_HOST, EXITS_HEADER
};
enum {
    EXIT_LAYER, EXIT_KIND, EXIT_HEAD_NORM, EXIT_FFN_NORM, EXIT_W_GATE, EXIT_W_UP, EXIT_W_DOWN, EXIT_W_DTYPE, EXIT_MLP_HIDDEN, EXIT_LM_HEAD, EXIT_LM_DTYPE, EXIT_TEMPERATURE,
    EXIT_GATE_W1, EXIT_GATE_B1, EXIT_GATE_W, EXIT_GATE_B, EXIT_GATE_UNITS, EXIT_GATE_EPS, EXIT_TAU, EXIT_CONFIRM, EXIT_SCREEN, EXIT_RADIUS, EXIT_SCREEN_MARGIN,
    EXIT_FIELDS
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

/* One value from the library's memory to the host (a device-to-host copy in the CUDA library) */
static inline int32_t ee_read_value(void* dst, const void* src, int64_t bytes) { return ee_copy(dst, src, bytes, 2); }

/* An exit head's last input for row 0: z = the hidden state h (embedding head), the head's norm of h (norm head), or
 * the head's norm of r + mlp(ffn_norm(r)) with r the exit layer's attention residual (mlp head); 0 on failure. The
 * calls and arguments of the Java heads' decodeInput. */
static inline const float* ee_exit_head_input(const int64_t* plan, const int64_t* exits, const int64_t* e) {
#define PTR(type, field) ((type)(intptr_t)plan[field])
#define EPTR(type, field) ((type)(intptr_t)e[field])
    const int32_t dim = (int32_t)plan[PLAN_DIM];
    const float eps = ee_plan_float(plan, PLAN_EPS);
    const float* x = PTR(const float*, PLAN_X);
    float* z = (float*)(intptr_t)exits[EXITS_Z];
    float* pre = (float*)(intptr_t)exits[EXITS_PRE];
    switch ((int32_t)e[EXIT_KIND]) {
        case EE_HEAD_EMBEDDING: return x;
        case EE_HEAD_NORM: return ee_rmsnorm_fwd(z, 0, x, EPTR(const float*, EXIT_HEAD_NORM), 1, dim, eps) ? 0 : z;
        case EE_HEAD_MLP:
            if (ee_feed_forward_fwd(PTR(const float*, PLAN_RESIDUAL), pre, PTR(float*, PLAN_XN2), 0, PTR(float*, PLAN_GATE), PTR(float*, PLAN_UP), PTR(float*, PLAN_ACT),
                                    EPTR(const float*, EXIT_FFN_NORM), EPTR(const void*, EXIT_W_GATE), EPTR(const void*, EXIT_W_UP), EPTR(const void*, EXIT_W_DOWN),
                                    (int32_t)e[EXIT_W_DTYPE], 1, dim, (int32_t)e[EXIT_MLP_HIDDEN], eps))
                return 0;
            return ee_rmsnorm_fwd(z, 0, pre, EPTR(const float*, EXIT_HEAD_NORM), 1, dim, eps) ? 0 : z;
        default: ee_fail("ee_exit_steps: exit after layer %d: head kind %d", (int32_t)e[EXIT_LAYER], (int32_t)e[EXIT_KIND]); return 0;
    }
#undef PTR
#undef EPTR
}

/* Whether the exit's 8-bit screen (EarlyExitGenerator.mayPass) lets row 0 of z reach tau: 1 = the head's exact logits
 * decide, 0 = its largest probability is bounded below tau (its margin included), < 0 = failure. The scores go to
 * the plan's logits, ||z|| rounded up (ScoreScreen.norms, in double on the host) to score[1], the bound to score[0]. */
static inline int32_t ee_exit_screen_passes(const int64_t* plan, const int64_t* exits, const int64_t* e, const float* z, float tau) {
    const int32_t dim = (int32_t)plan[PLAN_DIM], vocab = (int32_t)plan[PLAN_VOCAB];
    float* logits = (float*)(intptr_t)plan[PLAN_LOGITS];
    float* score = (float*)(intptr_t)exits[EXITS_SCORE];
    float* host = (float*)(intptr_t)exits[EXITS_Z_HOST];
    if (ee_gemm(0, 1, 1, vocab, dim, 1.0f, z, dim, (const void*)(intptr_t)e[EXIT_SCREEN], EE_I8_PANELS, dim, 0.0f, logits, vocab) ||
        ee_read_value(host, z, (int64_t)dim * (int64_t)sizeof(float)))
        return -1;
    double ss = 0.0;
    for (int32_t i = 0; i < dim; i++) ss += (double)host[i] * host[i];
    float norm = nextafterf((float)sqrt(ss), INFINITY), upper = 0.0f;
    if (ee_copy(score + 1, &norm, (int64_t)sizeof norm, 1) ||
        ee_max_prob_upper(score, logits, vocab, (const float*)(intptr_t)e[EXIT_RADIUS], score + 1, 1, vocab, ee_plan_float(e, EXIT_TEMPERATURE)) ||
        ee_read_value(&upper, score, sizeof upper))
        return -1;
    return !(upper * ee_plan_float(e, EXIT_SCREEN_MARGIN) < tau); /* NaN or +inf: the exact logits decide */
}

/* ee_exit_steps' decision at exit e for row 0: 1 = the sequence exits with out_ids[t] chosen, 0 = it goes on, < 0 = failure.
 * Sets bit e of *scored, *heads and *screened for what ran (a head its screen decided counts as run, as in the Java
 * passes). */
static inline int32_t ee_exit_decide(const int64_t* plan, const int64_t* exits, int32_t ei, int32_t* token, const float* uniform, int32_t* scored, int32_t* heads,
                                     int32_t* screened) {
    const int64_t* e = exits + EXITS_HEADER + (size_t)ei * EXIT_FIELDS;
    const int32_t method = (int32_t)exits[EXITS_METHOD], dim = (int32_t)plan[PLAN_DIM], vocab = (int32_t)plan[PLAN_VOCAB];
    float* logits = (float*)(intptr_t)plan[PLAN_LOGITS];
    float* score = (float*)(intptr_t)exits[EXITS_SCORE];
    int32_t* chosen = (int32_t*)(intptr_t)exits[EXITS_CHOSEN];
    const float tau = ee_plan_float(e, EXIT_TAU), temperature = ee_plan_float(e, EXIT_TEMPERATURE);
    float value = 0;
    if (method != EE_EXIT_SOFTMAX) { /* the cheap score first: the head runs only where it passes */
        if (ee_gate_score(score, (const float*)(intptr_t)plan[PLAN_X], (const float*)(intptr_t)e[EXIT_GATE_W1], (const float*)(intptr_t)e[EXIT_GATE_B1],
                          (const float*)(intptr_t)e[EXIT_GATE_W], (const float*)(intptr_t)e[EXIT_GATE_B], 1, dim, (int32_t)e[EXIT_GATE_UNITS],
                          ee_plan_float(e, EXIT_GATE_EPS)) ||
            ee_read_value(&value, score, sizeof value))
            return -1;
        *scored |= 1 << ei;
        if (!ee_confident(value, tau)) return 0;
    }
    const float* z = ee_exit_head_input(plan, exits, e);
    if (!z) return -1;
    *heads |= 1 << ei;
    if (method == EE_EXIT_SOFTMAX && e[EXIT_SCREEN]) {
        const int32_t passes = ee_exit_screen_passes(plan, exits, e, z, tau);
        if (passes <= 0) {
            if (passes == 0) *screened |= 1 << ei;
            return passes;
        }
    }
    if (ee_gemm(0, 1, 1, vocab, dim, 1.0f, z, dim, (const void*)(intptr_t)e[EXIT_LM_HEAD], (int32_t)e[EXIT_LM_DTYPE], dim, 0.0f, logits, vocab)) return -1;
    if (method == EE_EXIT_SOFTMAX) {
        if (ee_argmax(chosen, score, logits, 1, vocab, temperature) || ee_read_value(&value, score, sizeof value)) return -1;
        if (!ee_confident(value, tau)) return 0;
    }
    if (ee_choose_tokens(plan, token, logits, uniform, 1)) return -1;
    if (method == EE_EXIT_CASCADE) { /* the head's softmax confirms */
        if (ee_argmax(chosen, score, logits, 1, vocab, temperature) || ee_read_value(&value, score, sizeof value)) return -1;
        if (!ee_confident(value, ee_plan_float(e, EXIT_CONFIRM))) return 0;
    }
    return 1;
}

/* ee_exit_steps, one definition for both libraries: the Java decoder's pass (EarlyExitGenerator.pass and its visitor)
 * for one sequence, step after step, composed of the library's own calls in the same order. */
static inline int32_t ee_exit_steps_loop(const int64_t* plan, const int64_t* exits, int32_t steps) {
    if (!plan || !exits) return ee_fail("ee_exit_steps: null plan");
#define PTR(type, field) ((type)(intptr_t)plan[field])
#define I32(field) ((int32_t)plan[field])
#define XPTR(type, field) ((type)(intptr_t)exits[field])
    const int32_t n_exits = (int32_t)exits[EXITS_COUNT], capacity = (int32_t)exits[EXITS_CAPACITY], seq = (int32_t)exits[EXITS_SEQ];
    const int32_t n_layers = I32(PLAN_N_LAYERS), dim = I32(PLAN_DIM), vocab = I32(PLAN_VOCAB), max_len = I32(PLAN_MAX_LEN);
    const int64_t* tables = XPTR(const int64_t*, EXITS_TABLES);
    int32_t* state = XPTR(int32_t*, EXITS_STATE);
    int32_t* done = state + 3; /* per position: layers a pending row has been through */
    int32_t* record = XPTR(int32_t*, EXITS_RECORD);
    int32_t* pos = XPTR(int32_t*, EXITS_POS);
    int32_t* pos_host = XPTR(int32_t*, EXITS_POS_HOST);
    float* states = XPTR(float*, EXITS_STATES);
    const int32_t* first_ids = PTR(const int32_t*, PLAN_FIRST_IDS);
    int32_t* out_ids = PTR(int32_t*, PLAN_OUT_IDS);
    const float* uniforms = PTR(const float*, PLAN_UNIFORMS);
    float* x = PTR(float*, PLAN_X);
    float* normed = PTR(float*, PLAN_NORMED);
    float* logits = PTR(float*, PLAN_LOGITS);
    const float eps = ee_plan_float(plan, PLAN_EPS);
    const size_t row_bytes = (size_t)dim * sizeof(float);
    if (steps < 0 || n_exits < 0 || n_exits > 30 || capacity < 1 || seq < 0 || seq >= I32(PLAN_N_SEQ))
        return ee_fail("ee_exit_steps: %d steps, %d exits, capacity %d, sequence %d of %d", steps, n_exits, capacity, seq, I32(PLAN_N_SEQ));
    if (!tables || !state || !record || !pos || !pos_host || !states || !first_ids || !out_ids || !XPTR(void*, EXITS_SCORE) || !XPTR(void*, EXITS_CHOSEN) ||
        !XPTR(void*, EXITS_PRE) || !XPTR(void*, EXITS_Z) || !XPTR(void*, EXITS_Z_HOST))
        return ee_fail("ee_exit_steps: null pointer in the plans");
    for (int32_t i = 0; i < n_exits; i++) {
        const int32_t layer = ee_exit_layer(exits, i), before = i == 0 ? 0 : ee_exit_layer(exits, i - 1);
        if (layer <= before || layer >= n_layers) return ee_fail("ee_exit_steps: exit %d after layer %d (layers 1 .. %d, increasing)", i, layer, n_layers - 1);
        const int64_t* e = exits + EXITS_HEADER + (size_t)i * EXIT_FIELDS;
        if (e[EXIT_SCREEN] && (!e[EXIT_RADIUS] || (int32_t)exits[EXITS_METHOD] != EE_EXIT_SOFTMAX))
            return ee_fail("ee_exit_steps: exit after layer %d: a screen needs its radius and softmax decisions", layer);
    }
    state[2] = 0;
    for (int32_t t = 0; t < steps; t++) {
        const int32_t complete = state[0], length = state[1], newest = length - 1;
        if (complete < 0 || newest < complete || newest >= max_len) return ee_fail("ee_exit_steps: step %d: complete length %d, length %d, max_len %d", t, complete, length, max_len);
        if (newest - complete + 1 > capacity) break; /* the caller's own pass takes this step, with room for the rows */
        for (int32_t p = complete; p < newest; p++)
            if (done[p] < 1 || done[p] >= n_layers) return ee_fail("ee_exit_steps: step %d: pending position %d has run %d layers", t, p, done[p]);
        const int32_t* ids = t == 0 ? first_ids : out_ids + t - 1;
        const float* uniform = uniforms ? uniforms + t : 0;
        int32_t* token = out_ids + t;
        int32_t n = 1, at = 0, exited = 0, next_exit = 0, row_layers = 0, scored = 0, heads = 0, screened = 0;
        pos_host[0] = newest;
        int32_t rc = ee_embedding_fwd(x, PTR(const void*, PLAN_EMBEDDING), I32(PLAN_EMBEDDING_DTYPE), ids, 1, dim, vocab);
        while (!rc && !exited && at < n_layers) {
            if (at > 0) /* rows that stopped after layer `at` join before the next one, in increasing position */
                for (int32_t p = complete; p < newest && !rc; p++)
                    if (done[p] == at) {
                        pos_host[n] = p;
                        rc = ee_copy(x + (size_t)n++ * dim, states + (size_t)p * dim, (int64_t)row_bytes, 0);
                    }
            /* the layers up to the next exit, or to where pending rows join */
            int32_t to = next_exit < n_exits ? ee_exit_layer(exits, next_exit) : n_layers;
            for (int32_t p = complete; p < newest; p++)
                if (done[p] > at && done[p] < to) to = done[p];
            if (!rc) rc = ee_copy(pos, pos_host, (int64_t)n * (int64_t)sizeof(int32_t), 1);
            if (!rc)
                rc = ee_decoder_layers_loop((const int64_t*)(intptr_t)tables[2 * n], at, to - at, x, x, PTR(float*, PLAN_RESIDUAL), PTR(float*, PLAN_XN1), 0, PTR(float*, PLAN_Q),
                                            PTR(float*, PLAN_K), PTR(float*, PLAN_V), PTR(float*, PLAN_ATT), 0, PTR(float*, PLAN_XN2), 0, PTR(float*, PLAN_GATE),
                                            PTR(float*, PLAN_UP), PTR(float*, PLAN_ACT), (int32_t)tables[2 * n + 1], 1, I32(PLAN_N_SEQ), max_len,
                                            PTR(const int32_t*, PLAN_ROW_SEQ), pos, PTR(const float*, PLAN_INV_FREQ), n, dim, I32(PLAN_N_HEADS), I32(PLAN_N_KV_HEADS),
                                            I32(PLAN_HEAD_DIM), I32(PLAN_HIDDEN), I32(PLAN_INTERLEAVED), eps, ee_plan_float(plan, PLAN_SCALE));
            row_layers += n * (to - at);
            at = to;
            if (rc || next_exit >= n_exits || at != ee_exit_layer(exits, next_exit)) continue;
            const int32_t decision = ee_exit_decide(plan, exits, next_exit++, token, uniform, &scored, &heads, &screened);
            if (decision < 0) rc = decision;
            else if (decision > 0) { /* every row of the pass keeps its state and waits for a deeper pass */
                exited = 1;
                for (int32_t r = 0; r < n && !rc; r++) {
                    done[pos_host[r]] = at;
                    rc = ee_copy(states + (size_t)pos_host[r] * dim, x + (size_t)r * dim, (int64_t)row_bytes, 0);
                }
            }
        }
        if (!rc && !exited) { /* the final layer: every row of the pass is complete */
            rc = ee_rmsnorm_fwd(normed, 0, x, PTR(const float*, PLAN_FINAL_NORM), 1, dim, eps);
            if (!rc) rc = ee_gemm(0, 1, 1, vocab, dim, 1.0f, normed, dim, PTR(const void*, PLAN_CLASSIFIER), I32(PLAN_CLASSIFIER_DTYPE), dim, 0.0f, logits, vocab);
            if (!rc) rc = ee_choose_tokens(plan, token, logits, uniform, 1);
            if (!rc) state[0] = length;
        }
        if (rc) return ee_fail_within("ee_exit_steps", "step", t);
        int32_t* rec = record + (size_t)t * EE_EXIT_RECORD;
        rec[0] = at;
        rec[1] = state[0];
        rec[2] = row_layers;
        rec[3] = heads;
        rec[4] = scored;
        rec[5] = screened;
        state[1] = length + 1;
        state[2] = t + 1;
    }
#undef PTR
#undef I32
#undef XPTR
    return 0;
}

#endif /* EE_LAYERS_H */
