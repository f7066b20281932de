/*
 * eetune's thread pool behind ee_parallel / ee_team_barrier / ee_parallel_range (see internal.h for the contract).
 *
 * Hand-written rather than OpenMP because (1) a Java user's slim image may lack libgomp, (2) libgomp's spin-waiting
 * collapsed decode 45x when another process kept the cores busy, and (3) one pool sized by ee_set_num_threads lets
 * BLAS run single-threaded inside our slices instead of a second pool competing with ours.
 *
 * Design (Linux futexes, C11 atomics):
 *  - One region at a time. A caller claims the pool with a try-lock; a caller that finds it taken (another Java
 *    thread's region) or that is itself inside a region (nesting) runs its region alone, fn(ctx, 0, 1), on its own
 *    thread -- it never waits for the other region and never adds threads.
 *  - The team's tids are handed out through one atomic word (epoch | team size | next tid): the caller takes tid 0,
 *    wakes nt - 1 workers, and after its own part takes every tid no worker has started. So a worker that the kernel
 *    has not scheduled (a busy machine) delays nothing: its part runs on the caller. This is safe with barriers: a
 *    thread that has returned from fn has passed every barrier of the region, so every tid was already taken.
 *  - Waiting (an idle worker for the next region, the caller for the team, a barrier) spins for a bounded time with
 *    pause instructions, then sleeps on a futex: a quiet machine pays no wake-up latency between the closely spaced
 *    regions of a decode step, and a busy one gets the cores back after SPIN_NS -- or after SPIN_CONTENDED_NS while
 *    the pool's threads keep being preempted (other processes want the cores: contended()).
 *  - Workers are created on first need (at most the configured thread count minus the caller), block all signals
 *    (they never run Java code), and are stopped and joined when the library is unloaded.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* How long a waiting thread polls (pause instructions) before it sleeps: longer than the gap between the regions of
 * one decode step at small model sizes (tens of microseconds), short enough that a waiting thread gives its core back
 * quickly. No sched_yield while polling: it hands the core to whatever else is runnable -- a niced build, a busy
 * process -- for a whole time slice, while a sleeper woken by futex preempts it at once. Measured on 2 cores, 15M
 * decode with 2 threads, median of 3: beside niced builds 403 vs 270 tok/s, beside two `yes` 252 vs 240 tok/s. */
#define SPIN_NS 50000
/* ... and while the machine is contended: then a spinning thread spends the share of CPU time the scheduler grants
 * this process on nothing, while a thread that sleeps keeps it for the work (EEVDF places a woken sleeper by the lag
 * it kept). Measured on 2 cores (`ee generate`, 15M, 2 threads, beside two `yes`, paired with the 50 us spin, medians
 * of 8 alternations): 1.09x and 1.14x, quiet 0.99x and 1.01-1.05x (110M, 15M batch 8, stories260K); a fixed 10 us
 * spin gained as much busy but lost ~9% quiet; no spin at all when contended (under a looser rule: one preemption,
 * held 200 ms) gained 1.33x busy but lost ~20% quiet (a JVM's warm-up counts as contended). */
#define SPIN_CONTENDED_NS 5000
/* A check of the clock every this many pause instructions while spinning. */
#define SPIN_CHECK 32

typedef struct {
    _Alignas(64) _Atomic uint32_t wake; /* bumped by the caller to wake this worker (futex word) */
    _Atomic int sleeping;               /* 1 while in (or about to enter) futex_wait on wake */
    pthread_t thread;
} worker;

/* claim = epoch << 32 | team size << 16 | next tid: one atomic read tells a thread which region is open and which
 * tid is next, so a worker that wakes late cannot take a tid of a region that already ended. */
#define CLAIM_EPOCH(c) ((uint32_t)((c) >> 32))
#define CLAIM_NT(c) ((int)(((c) >> 16) & 0xffff))
#define CLAIM_NEXT(c) ((int)((c) & 0xffff))

static struct {
    _Atomic int owner;      /* 1 while a region runs (the try-lock) */
    int started;            /* workers created so far (only the owner creates them) */
    int failed;             /* pthread_create failed once: no more attempts */
    uint32_t epoch;         /* regions started (owner only) */
    ee_team_fn fn;          /* the open region; written by the owner before claim publishes it */
    void* ctx;
    _Alignas(64) _Atomic uint64_t claim;
    _Alignas(64) _Atomic uint32_t done; /* tids of the open region that have returned (futex word of the caller) */
    _Atomic int caller_sleeping;
    _Alignas(64) _Atomic uint32_t bar_count; /* arrivals at the current barrier */
    _Atomic uint32_t bar_gen;                /* barriers completed (futex word) */
    _Atomic int bar_sleepers;
    _Atomic int shutdown;
    worker workers[EE_MAX_THREADS - 1];
} pool;

/* 1 on pool workers and on a caller while its region runs: an ee_parallel from there runs alone. */
static __thread int in_region;

static void futex_wait(_Atomic uint32_t* word, uint32_t expected) {
    /* returns at once when *word != expected (checked atomically by the kernel), on a wake-up or spuriously */
    syscall(SYS_futex, (uint32_t*)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t* word, int count) {
    syscall(SYS_futex, (uint32_t*)word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

int64_t ee_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- contention: whether other runnable threads keep preempting the pool's ----
 * A pool thread (a caller opening a region, a worker after its part) reads its count of involuntary context switches
 * at most once per WATCH_NS; a rise is a preemption. A preemption (of any pool thread) that comes within
 * CONTENDED_WINDOW_NS of the PREEMPTIONS_CONTENDED-th before it makes the machine contended for the next
 * CONTENDED_WINDOW_NS. Why counted: on a quiet 2-core VM a JVM's own housekeeping threads preempt ours about every
 * 50 ms, beside two busy threads every 1-4 ms. */
#define WATCH_NS 1000000
#define PREEMPTIONS_CONTENDED 4
#define CONTENDED_WINDOW_NS 20000000

static _Atomic int64_t preempted_at[PREEMPTIONS_CONTENDED]; /* the last preemptions seen, a ring */
static _Atomic uint32_t preemptions;
static _Atomic int64_t contended_until;
static __thread int64_t next_watch;
static __thread long switches_seen = -1;

static void watch_preemption(void) {
    const int64_t now = ee_now_ns();
    if (now < next_watch) return;
    next_watch = now + WATCH_NS;
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return;
    if (switches_seen >= 0 && ru.ru_nivcsw != switches_seen) {
        const uint32_t i = atomic_fetch_add(&preemptions, 1);
        const int64_t oldest = atomic_exchange(&preempted_at[i % PREEMPTIONS_CONTENDED], now);
        if (i >= PREEMPTIONS_CONTENDED && now - oldest < CONTENDED_WINDOW_NS) atomic_store_explicit(&contended_until, now + CONTENDED_WINDOW_NS, memory_order_relaxed);
    }
    switches_seen = ru.ru_nivcsw;
}

static int contended_at(int64_t now) { return now < atomic_load_explicit(&contended_until, memory_order_relaxed); }

int ee_pool_contended(void) { return contended_at(ee_now_ns()); }

/* Spins until *word != value or the spin time has passed; returns the last value read. */
static uint32_t spin_while_equal(_Atomic uint32_t* word, uint32_t value) {
    uint32_t v = atomic_load_explicit(word, memory_order_acquire);
    if (v != value) return v;
    const int64_t start = ee_now_ns(), end = start + (contended_at(start) ? SPIN_CONTENDED_NS : SPIN_NS);
    for (;;) {
        for (int i = 0; i < SPIN_CHECK; i++) {
            cpu_relax();
            v = atomic_load_explicit(word, memory_order_acquire);
            if (v != value) return v;
        }
        if (ee_now_ns() > end) return v;
    }
}

/* Waits until *word != value: spins, then sleeps. *sleepers tells wakers to call futex_wake; the seq_cst store and
 * load pair with the waker's seq_cst store of *word and load of *sleepers, so one of the two always sees the other. */
static void wait_while_equal(_Atomic uint32_t* word, uint32_t value, _Atomic int* sleepers) {
    if (spin_while_equal(word, value) != value) return;
    atomic_fetch_add(sleepers, 1);
    while (atomic_load(word) == value) futex_wait(word, value);
    atomic_fetch_sub(sleepers, 1);
}

/* Takes the next tid of region `epoch`, or returns -1 when the region has none left (or is over). */
static int claim_tid(uint32_t epoch) {
    uint64_t c = atomic_load_explicit(&pool.claim, memory_order_acquire);
    while (CLAIM_EPOCH(c) == epoch && CLAIM_NEXT(c) < CLAIM_NT(c))
        if (atomic_compare_exchange_weak_explicit(&pool.claim, &c, c + 1, memory_order_acquire, memory_order_acquire)) return CLAIM_NEXT(c);
    return -1;
}

/* Runs tid of the open region (taken with claim_tid, so fn and ctx are that region's) and reports it done. */
static void run_tid(int tid, int nt) {
    pool.fn(pool.ctx, tid, nt);
    if (atomic_fetch_add(&pool.done, 1) + 1 == (uint32_t)nt && atomic_load(&pool.caller_sleeping)) futex_wake(&pool.done, 1);
}

/* Takes and runs tids of the open region until none is left. */
static void help(void) {
    const uint64_t c = atomic_load_explicit(&pool.claim, memory_order_acquire);
    const uint32_t epoch = CLAIM_EPOCH(c);
    for (int tid; (tid = claim_tid(epoch)) >= 0;) run_tid(tid, CLAIM_NT(c));
}

static void* worker_main(void* arg) {
    worker* w = arg;
    in_region = 1; /* whatever a worker runs is inside a region */
    uint32_t seen = 0; /* wake's value at creation: bumps made before this thread ran must not be missed */
    for (;;) {
        wait_while_equal(&w->wake, seen, &w->sleeping);
        seen = atomic_load(&w->wake);
        if (atomic_load(&pool.shutdown)) return 0;
        help();
        watch_preemption();
    }
}

/* Creates workers until `count` exist; returns how many do (fewer if the system refuses threads). Owner only. */
static int start_workers(int count) {
    if (count <= pool.started || pool.failed) return pool.started < count ? pool.started : count;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* workers inherit the mask: no signal is ever delivered to them */
    while (pool.started < count) {
        worker* w = &pool.workers[pool.started];
        atomic_store(&w->wake, 0);
        atomic_store(&w->sleeping, 0);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pool.failed = 1; /* run with the workers we have; the caller takes the tids nobody else does */
            break;
        }
        char name[16];
        snprintf(name, sizeof name, "eetune-pool%u", (unsigned)(pool.started + 1) % 10000u); /* 15 characters at most */
        pthread_setname_np(w->thread, name);
        pool.started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool.started < count ? pool.started : count;
}

void ee_parallel(int nt, ee_team_fn fn, void* ctx) {
    const int configured = ee_num_threads();
    if (nt > configured) nt = configured;
    int expected = 0;
    if (nt <= 1 || in_region || atomic_load_explicit(&pool.shutdown, memory_order_relaxed) || !atomic_compare_exchange_strong(&pool.owner, &expected, 1)) {
        fn(ctx, 0, 1);
        return;
    }
    const int helpers = start_workers(nt - 1);
    nt = helpers + 1;
    if (nt == 1) {
        atomic_store(&pool.owner, 0);
        fn(ctx, 0, 1);
        return;
    }
    watch_preemption();
    in_region = 1;
    pool.fn = fn;
    pool.ctx = ctx;
    const uint32_t epoch = ++pool.epoch;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    /* tid 0 is the caller's; the release publishes fn, ctx and done = 0 with the region */
    atomic_store_explicit(&pool.claim, (uint64_t)epoch << 32 | (uint64_t)nt << 16 | 1, memory_order_release);
    for (int i = 0; i < helpers; i++) {
        worker* w = &pool.workers[i];
        atomic_fetch_add(&w->wake, 1);
        if (atomic_load(&w->sleeping)) futex_wake(&w->wake, 1);
    }
    run_tid(0, nt);
    help(); /* the tids of workers that have not started yet */
    const uint32_t all = (uint32_t)nt;
    for (uint32_t d; (d = atomic_load(&pool.done)) != all;) wait_while_equal(&pool.done, d, &pool.caller_sleeping);
    in_region = 0;
    atomic_store(&pool.owner, 0);
}

void ee_team_barrier(int nt) {
    if (nt <= 1) return;
    const uint32_t gen = atomic_load(&pool.bar_gen);
    if (atomic_fetch_add(&pool.bar_count, 1) + 1 == (uint32_t)nt) {
        atomic_store_explicit(&pool.bar_count, 0, memory_order_relaxed); /* published by the bar_gen store */
        atomic_fetch_add(&pool.bar_gen, 1);
        if (atomic_load(&pool.bar_sleepers)) futex_wake(&pool.bar_gen, INT_MAX);
    } else {
        wait_while_equal(&pool.bar_gen, gen, &pool.bar_sleepers);
    }
}

typedef struct {
    ee_range_fn fn;
    void* ctx;
    int64_t n;
} range_job;

static void range_part(void* p, int tid, int nt) {
    const range_job* job = p;
    const int64_t begin = job->n * tid / nt, end = job->n * (tid + 1) / nt;
    if (begin < end) job->fn(job->ctx, begin, end);
}

void ee_parallel_range(int nt, int64_t n, ee_range_fn fn, void* ctx) {
    if (n <= 0) return;
    if (nt > n) nt = (int)n;
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job job = {fn, ctx, n};
    ee_parallel(nt, range_part, &job);
}

/* Range stealing: each thread runs its own contiguous part (as in ee_parallel_range) front to back, a block at a
 * time; a thread whose part is done takes the back half of what is left of another's. One word per part holds the
 * items not yet taken (begin << 32 | end): the owner moves begin by compare-and-swap, a thief moves end. */
typedef struct {
    _Alignas(64) _Atomic uint64_t left;
} steal_part;

typedef struct {
    ee_range_fn fn;
    void* ctx;
    int64_t block;
    int parts;
    steal_part* part;
} steal_job;

#define RANGE_WORD(b, e) ((uint64_t)(b) << 32 | (uint32_t)(e))

static void run_own_part(steal_job* job, steal_part* own) {
    for (uint64_t w = atomic_load(&own->left);;) {
        const int64_t b = (int64_t)(w >> 32), e = (uint32_t)w;
        if (b >= e) return;
        const int64_t nb = b + job->block < e ? b + job->block : e;
        if (atomic_compare_exchange_weak(&own->left, &w, RANGE_WORD(nb, e))) {
            job->fn(job->ctx, b, nb);
            w = atomic_load(&own->left);
        }
    }
}

static void steal_team(void* p, int tid, int nt) {
    steal_job* job = p;
    (void)nt;
    /* a team smaller than the parts (nesting, a lower thread cap) takes the parts nobody owns by stealing */
    steal_part* own = &job->part[tid];
    for (;;) {
        run_own_part(job, own);
        int stole = 0;
        for (int i = 1; i <= job->parts && !stole; i++) {
            steal_part* victim = &job->part[(tid + i) % job->parts];
            uint64_t w = atomic_load(&victim->left);
            for (;;) {
                const int64_t b = (int64_t)(w >> 32), e = (uint32_t)w;
                if (b >= e) break;
                const int64_t mid = b + (e - b) / 2; /* the back half; the last item when one is left */
                if (atomic_compare_exchange_weak(&victim->left, &w, RANGE_WORD(b, mid))) {
                    atomic_store(&own->left, RANGE_WORD(mid, e));
                    stole = 1;
                    break;
                }
            }
        }
        if (!stole) return;
    }
}

void ee_parallel_range_stealing(int nt, int64_t n, int64_t block, ee_range_fn fn, void* ctx) {
    if (n <= 0) return;
    if (nt > n) nt = (int)n;
    if (nt <= 1 || n > UINT32_MAX) {
        if (nt <= 1) fn(ctx, 0, n);
        else ee_parallel_range(nt, n, fn, ctx);
        return;
    }
    steal_part part[nt];
    for (int t = 0; t < nt; t++) atomic_init(&part[t].left, RANGE_WORD(n * t / nt, n * (t + 1) / nt));
    steal_job job = {fn, ctx, block < 1 ? 1 : block, nt, part};
    ee_parallel(nt, steal_team, &job);
}

/* A forked child has none of the parent's workers (Java forks only to exec, but a C host may not). */
static void pool_after_fork_child(void) {
    pool.started = 0;
    pool.failed = 0;
    atomic_store(&pool.owner, 0);
    in_region = 0;
    for (int i = 0; i < EE_MAX_THREADS - 1; i++) atomic_store(&pool.workers[i].sleeping, 0);
}

__attribute__((constructor)) static void pool_init(void) { pthread_atfork(NULL, NULL, pool_after_fork_child); }

/* After an unload the workers would run unmapped code: stop and join them first. A region still running on another
 * thread finishes first (workers look at shutdown only between regions). */
__attribute__((destructor)) static void pool_fini(void) {
    atomic_store(&pool.shutdown, 1);
    for (int i = 0; i < pool.started; i++) {
        atomic_fetch_add(&pool.workers[i].wake, 1);
        futex_wake(&pool.workers[i].wake, 1);
    }
    for (int i = 0; i < pool.started; i++) pthread_join(pool.workers[i].thread, NULL);
    pool.started = 0;
}
