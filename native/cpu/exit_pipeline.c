/*
 * ee_exit_steps for one sequence of a small model on two threads: the early-exit decode as a pipeline (EE-LLM's
 * pipeline-based inference, on two cores instead of two devices).
 *
 * With exact K/V caches every row runs every layer once: a row that exits after layer L still runs layers L+1..N later
 * (later rows read its K/V there). The serial loop (ee_exit_steps_loop) runs them in the next pass that goes deeper,
 * beside the newer row, so an exit saves only what a layer call costs beyond its rows, and at stories260K's size a row
 * is half of a call. Here the caller's thread (the "front") runs a new row up to the first exit and hands it over; from
 * there a second thread (the "back") and the front whenever it waits run the layers of the rows in flight, each layer
 * over the rows that wait at the lowest layer and may run (the row before them has run that layer, so its K/V are
 * written), oldest first. The front decides the exits on the row's state after each exit's layer, published by
 * whichever thread ran it, and an exiting row is simply not waited for: its deeper layers run beside the next token's
 * first layers and decisions. So the critical path is the first layers, the decisions and heads, and only for rows
 * that go on the deeper layers, as in the full model.
 *
 * The same tokens and cache as the serial loop: the same ops on the same rows, in groups no larger than keep each
 * row's bits whatever rows are beside it (ee_attention_rows_alike, ee_gemm_decode_path). Every row has run every layer
 * when the call returns, so the state says every position complete (the serial loop may leave rows pending) and a
 * step's record counts all layers of the row it adds. Used where a layer's ops would run on one thread anyway (a small
 * model), two threads are configured, other processes are not keeping the cores busy (ee_pool_contended) and
 * EETUNE_NO_EXIT_PIPELINE is unset; elsewhere the serial loop. Measured (docs/exit-gates.md): stories260K, the
 * calibrated gates of the 95% point, 2-core Zen 4, warm: 0.96-1.05x the full model serially, 1.08-1.13x as a pipeline
 * (cold from the command line no measurable gain).
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "layers.h"

/* The most rows in flight (handed over, not yet through the last layer): the front waits beyond it */
#define RING_ROWS 32

/* One thread's buffers for a layer over up to `group` rows */
typedef struct {
    float *x, *residual, *xn1, *q, *k, *v, *att, *xn2, *gate, *up, *act;
    int32_t pos[RING_ROWS], seq[RING_ROWS];
} layer_scratch;

typedef struct {
    const int64_t* plan;
    const int64_t* tables;
    int32_t n_layers, split, dim, hidden, group, n_seq, max_len, n_heads, n_kv_heads, head_dim, interleaved;
    float eps, scale;
    const float* inv_freq;
    /* the rows in flight, a ring by index (index % RING_ROWS), oldest .. handed - 1 in position order: each row's hidden
     * state, position, layers run, and whether a thread is running its next layer; guarded by `lock` */
    _Alignas(64) atomic_flag lock;
    float* ring_x;
    int32_t ring_pos[RING_ROWS], ring_layer[RING_ROWS];
    uint8_t ring_busy[RING_ROWS];
    int64_t oldest, handed;
    _Alignas(64) _Atomic uint64_t version; /* bumped by every hand-over and layer run: idle threads look again only then */
    _Alignas(64) _Atomic int64_t completed; /* rows through the last layer (= oldest) */
    _Alignas(64) _Atomic int64_t newest;    /* the newest row's progress: index * (n_layers + 1) + layers run */
    _Alignas(64) _Atomic int stop, failed;
    char why[512];
    /* the newest row's hidden state and attention residual after each layer the front decides at (and the last) */
    float *snap_x, *snap_residual;
    uint8_t decides[64];
    layer_scratch front, back;
} exit_pipeline;

/* A waiting thread's poll, without pause instructions: in a VM a vCPU looping on PAUSE exits to the hypervisor
 * (pause-loop exiting), and the waits here are a few microseconds within one chunk. Measured with GateOverhead, 2
 * threads, stories260K's calibrated gates on a 2-core Zen 4 VM, three alternations: pause 22.6 / 20.4 / 20.6 us a token
 * (paired 1.04 / 1.12 / 1.10x the full model), plain polling 20.5 / 20.7 / 20.5 (1.10 / 1.10 / 1.12x). */
static inline void relax(void) { __asm__ volatile("" ::: "memory"); }

static void lock(exit_pipeline* p) {
    while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire)) relax();
}

static void unlock(exit_pipeline* p) { atomic_flag_clear_explicit(&p->lock, memory_order_release); }

/* A thread's failure, its message kept for the front (ee_fail's message is the failing thread's own) */
static int pipeline_fail(exit_pipeline* p) {
    int none = 0;
    if (atomic_compare_exchange_strong(&p->failed, &none, 1)) snprintf(p->why, sizeof p->why, "%s", ee_last_error());
    return -1;
}

#define SLOT(i) ((int32_t)((i) % RING_ROWS))

/* One layer over rows in flight, on whichever thread calls it: the rows whose next layer is lowest (below `below`) and
 * may run -- the row before them has run that layer (its K/V there are written) and no thread runs them -- up to
 * `group` of them, oldest first. Publishes the newest row's progress (and its state where the front decides) and
 * retires complete rows. 1 = ran a layer, 0 = none could run, -1 = failure. */
static int run_step(exit_pipeline* p, layer_scratch* s, int32_t below) {
    const int32_t dim = p->dim, n_layers = p->n_layers;
    lock(p);
    int64_t first = -1;
    int32_t l = n_layers;
    for (int64_t i = p->oldest; i < p->handed; i++) { /* layers never increase along the rows: the last ready one is the lowest */
        const int32_t b = SLOT(i), li = p->ring_layer[b];
        if (!p->ring_busy[b] && li < n_layers && li < below && (i == p->oldest || p->ring_layer[SLOT(i - 1)] > li) && li <= l) {
            first = i;
            l = li;
        }
    }
    if (first < 0) {
        unlock(p);
        return 0;
    }
    int32_t n = 0;
    while (first + n < p->handed && n < p->group && p->ring_layer[SLOT(first + n)] == l && !p->ring_busy[SLOT(first + n)]) {
        const int32_t b = SLOT(first + n);
        p->ring_busy[b] = 1;
        s->pos[n] = p->ring_pos[b];
        memcpy(s->x + (size_t)n * dim, p->ring_x + (size_t)b * dim, (size_t)dim * sizeof(float));
        n++;
    }
    const int newest = first + n == p->handed;
    unlock(p);
    if (ee_decoder_layers_loop((const int64_t*)(intptr_t)p->tables[4 * n], l, 1, s->x, s->x, s->residual, s->xn1, 0, s->q, s->k, s->v, s->att, 0, s->xn2, 0, s->gate, s->up,
                               s->act, (int32_t)p->tables[4 * n + 1], 1, p->n_seq, p->max_len, s->seq, s->pos, p->inv_freq, n, dim, p->n_heads, p->n_kv_heads,
                               p->head_dim, p->hidden, p->interleaved, p->eps, p->scale))
        return pipeline_fail(p);
    if (newest && p->decides[l + 1]) { /* no other thread writes these until the front hands over a newer row */
        memcpy(p->snap_x + (size_t)(l + 1) * dim, s->x + (size_t)(n - 1) * dim, (size_t)dim * sizeof(float));
        memcpy(p->snap_residual + (size_t)(l + 1) * dim, s->residual + (size_t)(n - 1) * dim, (size_t)dim * sizeof(float));
    }
    lock(p);
    for (int32_t j = 0; j < n; j++) {
        const int32_t b = SLOT(first + j);
        memcpy(p->ring_x + (size_t)b * dim, s->x + (size_t)j * dim, (size_t)dim * sizeof(float));
        p->ring_layer[b] = l + 1;
        p->ring_busy[b] = 0;
    }
    if (newest && first + n == p->handed) atomic_store_explicit(&p->newest, (p->handed - 1) * (n_layers + 1) + l + 1, memory_order_release);
    while (p->oldest < p->handed && p->ring_layer[SLOT(p->oldest)] == n_layers) p->oldest++;
    atomic_store_explicit(&p->completed, p->oldest, memory_order_release);
    atomic_fetch_add_explicit(&p->version, 1, memory_order_release);
    unlock(p);
    return 1;
}

/* A thread that polls without progress (the version unchanged) yields its core after YIELD_NS, and the front that
 * waits STALL_NS for the other thread (a layer takes microseconds: that thread was descheduled, other processes want
 * the cores) turns the pipeline off for a while: BACKOFF_NS, doubled up to BACKOFF_MAX_NS while each stall comes within
 * 2 BACKOFF_NS of the last pause's end (sustained contention). Beside two busy processes a pipelined decode had fallen to 0.3x of its quiet speed
 * where the serial loop keeps 0.44x (docs/exit-gates.md); on a quiet machine a stall comes now and then (a JVM's own
 * threads), and a fixed 100 ms off at 200 us stalls had left only 51-66% of a quiet decode pipelined. */
#define YIELD_NS 50000
#define STALL_NS 300000
#define BACKOFF_NS 20000000
#define BACKOFF_MAX_NS 1000000000
static _Atomic int64_t backoff_until, backoff_ns = BACKOFF_NS;

static void back_off(int64_t now) {
    const int64_t until = atomic_load_explicit(&backoff_until, memory_order_relaxed), last = atomic_load_explicit(&backoff_ns, memory_order_relaxed);
    const int64_t next = now - until < 2 * BACKOFF_NS ? (2 * last < BACKOFF_MAX_NS ? 2 * last : BACKOFF_MAX_NS) : BACKOFF_NS;
    atomic_store_explicit(&backoff_ns, next, memory_order_relaxed);
    atomic_store_explicit(&backoff_until, now + next, memory_order_relaxed);
}

typedef struct {
    uint64_t version; /* the last version seen, and since when */
    int64_t since;
    int polls;
} poll_clock;

/* One poll that found nothing to do: how long the version has stood still, checked every 256 polls (0 in between) */
static int64_t poll_idle(exit_pipeline* p, poll_clock* c) {
    relax();
    if ((++c->polls & 255) != 0) return 0;
    const uint64_t v = atomic_load_explicit(&p->version, memory_order_relaxed);
    const int64_t now = ee_now_ns();
    if (v != c->version || c->since == 0) {
        c->version = v;
        c->since = now;
        return 0;
    }
    if (now - c->since > YIELD_NS) sched_yield();
    return now - c->since;
}

/* The front waits until *word >= target, running layers meanwhile (below `below`: those the awaited row needs first,
 * so that the front is not held up by a layer it need not have run); 0, or -1 on a failure */
static int front_wait(exit_pipeline* p, _Atomic int64_t* word, int64_t target, int32_t below) {
    uint64_t idle_at = UINT64_MAX; /* the version at which no layer could run */
    poll_clock clock = {0, 0, 0};
    int stalled = 0;
    while (atomic_load_explicit(word, memory_order_acquire) < target) {
        if (atomic_load_explicit(&p->failed, memory_order_acquire)) return -1;
        const uint64_t v = atomic_load_explicit(&p->version, memory_order_acquire);
        if (v != idle_at) {
            const int rc = run_step(p, &p->front, below);
            if (rc < 0) return -1;
            if (rc == 0) idle_at = v;
            continue;
        }
        if (poll_idle(p, &clock) > STALL_NS && !stalled) {
            stalled = 1;
            back_off(ee_now_ns());
        }
    }
    return 0;
}

/* The second thread: runs layers until the front stops it */
static void back_main(exit_pipeline* p) {
    uint64_t idle_at = UINT64_MAX;
    poll_clock clock = {0, 0, 0};
    while (!atomic_load_explicit(&p->stop, memory_order_acquire) && !atomic_load_explicit(&p->failed, memory_order_relaxed)) {
        const uint64_t v = atomic_load_explicit(&p->version, memory_order_acquire);
        if (v == idle_at) {
            poll_idle(p, &clock);
        } else if (run_step(p, &p->back, INT32_MAX) == 0) {
            idle_at = v;
        }
    }
}

/* The front's hand-over of a row (its hidden state, position, layers run), waiting for room; returns its index */
static int64_t front_hand(exit_pipeline* p, const float* x, int32_t pos, int32_t layer) {
    if (front_wait(p, &p->completed, p->handed - RING_ROWS + 1, INT32_MAX)) return -1; /* handed is the front's to write */
    lock(p);
    const int32_t b = SLOT(p->handed);
    memcpy(p->ring_x + (size_t)b * p->dim, x, (size_t)p->dim * sizeof(float));
    p->ring_pos[b] = pos;
    p->ring_layer[b] = layer;
    p->ring_busy[b] = 0;
    const int64_t index = p->handed++;
    atomic_fetch_add_explicit(&p->version, 1, memory_order_release);
    unlock(p);
    return index;
}

/* The front: the serial loop's steps for one sequence, the rows' deeper layers run by either thread */
static int32_t front_steps(exit_pipeline* p, const int64_t* exits, int32_t* block, int32_t steps) {
    const int64_t* plan = p->plan;
#define PTR(type, field) ((type)(intptr_t)plan[field])
    const int32_t n_exits = (int32_t)exits[EXITS_COUNT], n_layers = p->n_layers, dim = p->dim;
    int32_t* state = (int32_t*)(intptr_t)exits[EXITS_STATE];
    int32_t* record = (int32_t*)(intptr_t)exits[EXITS_RECORD];
    const int32_t* first_ids = PTR(const int32_t*, PLAN_FIRST_IDS);
    int32_t* out_ids = PTR(int32_t*, PLAN_OUT_IDS);
    const float* uniforms = PTR(const float*, PLAN_UNIFORMS);
    float* x = PTR(float*, PLAN_X);
    float* residual = PTR(float*, PLAN_RESIDUAL);
    const int32_t max_seq = (int32_t)exits[EXITS_MAX_SEQ], slot = block[0];
    /* rows left pending by earlier passes are handed over first, in position order (their layers never increase) */
    int32_t owed = 0;
    for (int32_t q = block[1]; q < block[2] - 1; q++) {
        const float* h = (const float*)(intptr_t)exits[EXITS_STATES] + ((size_t)slot * p->max_len + q) * dim;
        if (front_hand(p, h, q, block[3 + q]) < 0) return 1;
        owed += n_layers - block[3 + q];
    }
    state[0] = 0;
    for (int32_t t = 0; t < steps; t++) {
        if (ee_exit_block_check(block, t, 0, n_layers, p->max_len)) return 1;
        const int32_t newest = block[2] - 1;
        const float* uniform = uniforms ? uniforms + t : 0;
        int32_t* tokens = out_ids + t;
        int32_t* rec = record + (size_t)t * max_seq * EE_EXIT_RECORD;
        int32_t active[1] = {0}, leaves[1] = {0}, seq[1] = {slot}, pos[1] = {newest};
        memset(rec, 0, EE_EXIT_RECORD * sizeof(int32_t));
        rec[REC_LAYER] = n_layers;
        rec[REC_ROW_LAYERS] = n_layers + (t == 0 ? owed : 0);
        int32_t rc = ee_embedding_fwd(x, PTR(const void*, PLAN_EMBEDDING), (int32_t)plan[PLAN_EMBEDDING_DTYPE], t == 0 ? first_ids : out_ids + t - 1, 1, dim,
                                      (int32_t)plan[PLAN_VOCAB]);
        if (!rc) /* the layers before the first exit: every earlier row has run them */
            rc = ee_decoder_layers_loop((const int64_t*)(intptr_t)p->tables[4], 0, p->split, x, x, residual, PTR(float*, PLAN_XN1), 0, PTR(float*, PLAN_Q),
                                        PTR(float*, PLAN_K), PTR(float*, PLAN_V), PTR(float*, PLAN_ATT), 0, PTR(float*, PLAN_XN2), 0, PTR(float*, PLAN_GATE),
                                        PTR(float*, PLAN_UP), PTR(float*, PLAN_ACT), (int32_t)p->tables[5], 1, p->n_seq, p->max_len, seq, pos, p->inv_freq, 1, dim,
                                        p->n_heads, p->n_kv_heads, p->head_dim, p->hidden, p->interleaved, p->eps, p->scale);
        if (rc) return ee_fail_within("ee_exit_steps", "step", t);
        const int64_t index = front_hand(p, x, newest, p->split);
        if (index < 0) return 1;
        int32_t exited = 0;
        for (int32_t ei = 0; ei < n_exits && !exited; ei++) {
            const int32_t at = ee_exit_layer(exits, ei);
            if (at > p->split) { /* the row's state after that layer, from whichever thread ran it */
                if (front_wait(p, &p->newest, index * (n_layers + 1) + at, at)) return 1;
                memcpy(x, p->snap_x + (size_t)at * dim, (size_t)dim * sizeof(float));
                memcpy(residual, p->snap_residual + (size_t)at * dim, (size_t)dim * sizeof(float));
            }
            const int32_t exiting = ee_exit_decide(plan, exits, ei, 1, active, leaves, tokens, uniform, rec);
            if (exiting < 0) return ee_fail_within("ee_exit_steps", "step", t);
            if (exiting > 0) {
                rec[REC_LAYER] = at;
                exited = 1;
            }
        }
        if (!exited) {
            if (front_wait(p, &p->newest, index * (n_layers + 1) + n_layers, n_layers)) return 1;
            memcpy(x, p->snap_x + (size_t)n_layers * dim, (size_t)dim * sizeof(float));
            if (ee_exit_final_tokens(plan, exits, 1, active, tokens, uniform)) return ee_fail_within("ee_exit_steps", "step", t);
        }
        block[1] = block[2]; /* every row runs its layers before the call returns */
        rec[REC_COMPLETE] = block[1];
        block[2]++;
        state[0] = t + 1;
    }
#undef PTR
    return front_wait(p, &p->completed, p->handed, INT32_MAX) ? 1 : 0;
}

typedef struct {
    exit_pipeline* p;
    const int64_t* exits;
    int32_t* block;
    int32_t steps, rc, own; /* own: the front failed (its message in why), else a layer on either thread did (p->why) */
    char why[512];
} pipeline_run;

static void pipeline_team(void* arg, int tid, int nt) {
    pipeline_run* r = arg;
    (void)nt; /* alone (nt = 1: the pool busy, or nested), the front runs every layer while it waits */
    if (tid == 1) {
        back_main(r->p);
        return;
    }
    r->rc = front_steps(r->p, r->exits, r->block, r->steps);
    if (r->rc && !atomic_load(&r->p->failed)) { /* the front's own failure: the rows handed over still run their layers,
                                                   as the state says the steps before the failing one are complete */
        snprintf(r->why, sizeof r->why, "%s", ee_last_error());
        r->own = 1;
        front_wait(r->p, &r->p->completed, r->p->handed, INT32_MAX);
    }
    atomic_store_explicit(&r->p->stop, 1, memory_order_release);
}

static int pipeline_disabled(void) {
    static _Atomic int disabled = -1;
    int d = atomic_load_explicit(&disabled, memory_order_relaxed);
    if (d < 0) {
        const char* v = getenv("EETUNE_NO_EXIT_PIPELINE");
        d = v && *v && strcmp(v, "0") != 0;
        atomic_store_explicit(&disabled, d, memory_order_relaxed);
    }
    return d;
}

/* Whether this run goes through the pipeline (see the top of the file); sets the most rows of a layer call */
static int pipeline_applies(const int64_t* plan, const int64_t* exits, int32_t steps, const int32_t* block, int32_t* group) {
    const int32_t n_exits = (int32_t)exits[EXITS_COUNT], n_layers = (int32_t)plan[PLAN_N_LAYERS];
    const int32_t* state = (const int32_t*)(intptr_t)exits[EXITS_STATE];
    if (steps < 1 || state[1] != 1 || n_exits < 1 || n_layers >= 64 || ee_num_threads() < 2 || pipeline_disabled() || ee_pool_contended() ||
        ee_now_ns() < atomic_load_explicit(&backoff_until, memory_order_relaxed))
        return 0;
    const int32_t dim = (int32_t)plan[PLAN_DIM], qd = (int32_t)(plan[PLAN_N_HEADS] * plan[PLAN_HEAD_DIM]), hidden = (int32_t)plan[PLAN_HIDDEN];
    const int32_t widest = hidden > qd ? hidden : qd;
    if (ee_threads_for(EE_GEMV_WORK(1, widest, dim)) != 1) return 0; /* a layer's ops would use both cores themselves */
    int32_t alike = ee_attention_rows_alike((int32_t)plan[PLAN_N_HEADS], (int32_t)plan[PLAN_N_KV_HEADS], (int32_t)plan[PLAN_HEAD_DIM]);
    const int32_t capacity = (int32_t)exits[EXITS_CAPACITY];
    if (alike > capacity) alike = capacity;
    if (alike > EE_GEMM_SMALL_M) alike = EE_GEMM_SMALL_M;
    if (alike < 1) return 0;
    const int64_t* tables = (const int64_t*)(intptr_t)exits[EXITS_TABLES];
    for (int32_t r = 1; r <= alike; r++)
        if (!ee_gemm_decode_path((int32_t)tables[4 * r + 1])) return 0;
    *group = alike;
    /* rows pending from earlier passes wait at or after the first exit, their layers never increasing (a block the
     * serial loop refuses goes there, for its error) */
    if (ee_exit_block_check(block, 0, 0, n_layers, (int32_t)plan[PLAN_MAX_LEN]) || block[2] - 1 - block[1] >= RING_ROWS) return 0;
    for (int32_t q = block[1]; q < block[2] - 1; q++)
        if (block[3 + q] < ee_exit_layer(exits, 0) || (q > block[1] && block[3 + q] > block[3 + q - 1])) return 0;
    return 1;
}

static _Atomic int64_t pipeline_steps;

EE_API int64_t ee_exit_pipeline_steps(void) { return atomic_load_explicit(&pipeline_steps, memory_order_relaxed); }

/* A layer's scratch for `group` rows, carved from f; returns what follows */
static float* carve_scratch(layer_scratch* s, float* f, size_t group, const exit_pipeline* p, int32_t slot) {
    const size_t dim = (size_t)p->dim, qd = (size_t)p->n_heads * p->head_dim, kd = (size_t)p->n_kv_heads * p->head_dim, hidden = (size_t)p->hidden;
    float** parts[] = {&s->x, &s->residual, &s->xn1, &s->xn2, &s->q, &s->att, &s->k, &s->v, &s->gate, &s->up, &s->act};
    const size_t widths[] = {dim, dim, dim, dim, qd, qd, kd, kd, hidden, hidden, hidden};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        *parts[i] = f;
        f += group * widths[i];
    }
    for (int32_t r = 0; r < RING_ROWS; r++) s->seq[r] = slot;
    return f;
}

int32_t ee_exit_steps_run(const int64_t* plan, const int64_t* exits, int32_t steps) {
    int32_t* block[EE_EXIT_MAX_ROWS];
    if (ee_exit_steps_check(plan, exits, steps, block)) return 1;
    int32_t group;
    if (!pipeline_applies(plan, exits, steps, block[0], &group)) return ee_exit_steps_loop(plan, exits, steps);
    const int32_t dim = (int32_t)plan[PLAN_DIM], n_layers = (int32_t)plan[PLAN_N_LAYERS];
    exit_pipeline* p = calloc(1, sizeof *p);
    if (!p) return ee_fail("ee_exit_steps: out of memory for the pipeline");
    *p = (exit_pipeline){.plan = plan, .tables = (const int64_t*)(intptr_t)exits[EXITS_TABLES], .n_layers = n_layers, .split = ee_exit_layer(exits, 0), .dim = dim,
        .hidden = (int32_t)plan[PLAN_HIDDEN], .group = group, .n_seq = (int32_t)plan[PLAN_N_SEQ], .max_len = (int32_t)plan[PLAN_MAX_LEN],
        .n_heads = (int32_t)plan[PLAN_N_HEADS], .n_kv_heads = (int32_t)plan[PLAN_N_KV_HEADS], .head_dim = (int32_t)plan[PLAN_HEAD_DIM],
        .interleaved = (int32_t)plan[PLAN_INTERLEAVED], .eps = ee_plan_float(plan, PLAN_EPS), .scale = ee_plan_float(plan, PLAN_SCALE),
        .inv_freq = (const float*)(intptr_t)plan[PLAN_INV_FREQ]};
    atomic_flag_clear(&p->lock);
    /* the ring, the snapshots, and each thread's scratch for `group` rows */
    const size_t scratch = (size_t)group * (4 * (size_t)dim + 2 * (size_t)p->n_heads * p->head_dim + 2 * (size_t)p->n_kv_heads * p->head_dim + 3 * (size_t)p->hidden);
    const size_t floats = (size_t)RING_ROWS * dim + 2 * (size_t)(n_layers + 1) * dim + 2 * scratch;
    float* buf = malloc(floats * sizeof(float));
    if (!buf) {
        free(p);
        return ee_fail("ee_exit_steps: out of memory for the pipeline's %zu floats", floats);
    }
    p->ring_x = buf;
    p->snap_x = p->ring_x + (size_t)RING_ROWS * dim;
    p->snap_residual = p->snap_x + (size_t)(n_layers + 1) * dim;
    carve_scratch(&p->back, carve_scratch(&p->front, p->snap_residual + (size_t)(n_layers + 1) * dim, (size_t)group, p, block[0][0]), (size_t)group, p, block[0][0]);
    for (int32_t i = 0; i < (int32_t)exits[EXITS_COUNT]; i++) p->decides[ee_exit_layer(exits, i)] = 1;
    p->decides[n_layers] = 1;
    pipeline_run run = {.p = p, .exits = exits, .block = block[0], .steps = steps};
    ee_parallel(2, pipeline_team, &run);
    const int32_t rc = !run.rc ? 0 : run.own ? ee_fail("%s", run.why) : ee_fail("ee_exit_steps: %s", p->why);
    atomic_fetch_add_explicit(&pipeline_steps, ((const int32_t*)(intptr_t)exits[EXITS_STATE])[0], memory_order_relaxed);
    free(buf);
    free(p);
    return rc;
}
