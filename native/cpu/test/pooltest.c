/*
 * Test of the thread pool (cpu/pool.c, compiled in: its functions are not exported by libeecpu): every tid runs once
 * per region, barriers separate phases, ranges cover [0, n) once, nested regions and regions of several threads at
 * once run alone, regions spaced past the spin time (workers asleep) still complete, and beside as many spinning
 * processes as CPUs the pool notices that it is contended. Exits non-zero on failure.
 * Run by ctest, also under ASan + UBSan (.ci/native-checks.sh); eecpu_pooltest THREADS overrides the team size.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../internal.h"

static int team = 4;
int ee_num_threads(void) { return team; }

static int failures;

static void expect(int ok, const char* what, long a, long b) {
    if (!ok) {
        printf("FAIL %s (%ld, %ld)\n", what, a, b);
        failures++;
    }
}

/* ---- every tid once, with the team size the region reports ---- */

typedef struct {
    _Atomic int runs[EE_MAX_THREADS];
    _Atomic int nt_seen;
} team_job;

static void count_tids(void* p, int tid, int nt) {
    team_job* j = p;
    atomic_fetch_add(&j->runs[tid], 1);
    atomic_store(&j->nt_seen, nt);
}

static void test_team(int asked) {
    static team_job j;
    for (int i = 0; i < EE_MAX_THREADS; i++) atomic_store(&j.runs[i], 0);
    ee_parallel(asked, count_tids, &j);
    const int nt = atomic_load(&j.nt_seen), want = asked < 1 ? 1 : asked < team ? asked : team;
    expect(nt == want, "team size", nt, want);
    for (int t = 0; t < EE_MAX_THREADS; t++) expect(atomic_load(&j.runs[t]) == (t < nt), "tid ran once", t, atomic_load(&j.runs[t]));
}

/* ---- barriers: phase p of every tid writes slot[p][tid]; after a barrier, each tid checks all of phase p ---- */

#define PHASES 50

typedef struct {
    int slot[PHASES][EE_MAX_THREADS];
    _Atomic int bad;
} barrier_job;

static void phases(void* p, int tid, int nt) {
    barrier_job* j = p;
    for (int ph = 0; ph < PHASES; ph++) {
        j->slot[ph][tid] = ph + 1;
        ee_team_barrier(nt);
        for (int t = 0; t < nt; t++)
            if (j->slot[ph][t] != ph + 1) atomic_fetch_add(&j->bad, 1);
    }
}

static void test_barrier(void) {
    static barrier_job j;
    for (int rep = 0; rep < 20; rep++) {
        for (int ph = 0; ph < PHASES; ph++)
            for (int t = 0; t < EE_MAX_THREADS; t++) j.slot[ph][t] = 0;
        atomic_store(&j.bad, 0);
        ee_parallel(team, phases, &j);
        expect(atomic_load(&j.bad) == 0, "barrier phases", rep, atomic_load(&j.bad));
    }
}

/* ---- ranges cover [0, n) exactly once ---- */

static void mark(void* p, int64_t begin, int64_t end) {
    _Atomic int* hits = p;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&hits[i], 1);
}

static void test_range(void) {
    const int64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4099};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int nt = 1; nt <= team + 2; nt++) {
            const int64_t n = sizes[s];
            _Atomic int* hits = calloc((size_t)n, sizeof *hits);
            ee_parallel_range(nt, n, mark, hits);
            for (int64_t i = 0; i < n; i++) expect(atomic_load(&hits[i]) == 1, "range element once", (long)n, (long)i);
            free(hits);
        }
    ee_parallel_range(team, 0, mark, 0); /* empty: fn must not run (a null array would crash) */
}

/* ---- stealing ranges cover [0, n) exactly once, and a held-up thread's part is taken over ---- */

static void test_stealing(void) {
    const int64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4099}, blocks[] = {1, 3, 64};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
            for (int nt = 1; nt <= team + 2; nt++) {
                const int64_t n = sizes[s];
                _Atomic int* hits = calloc((size_t)n, sizeof *hits);
                ee_parallel_range_stealing(nt, n, blocks[b], mark, hits);
                for (int64_t i = 0; i < n; i++) expect(atomic_load(&hits[i]) == 1, "stolen range element once", (long)n, (long)i);
                free(hits);
            }
    ee_parallel_range_stealing(team, 0, 1, mark, 0);
}

typedef struct {
    _Atomic int hits[1000];
    _Atomic long slow_thread_items;
} held_up_job;

static __thread int held_up; /* this thread ran the first block and slept in it */

static void held_up_part(void* p, int64_t begin, int64_t end) {
    held_up_job* j = p;
    if (begin == 0) {
        held_up = 1;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL); /* 50 ms: descheduled, as by a busy machine */
    }
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&j->hits[i], 1);
    if (held_up) atomic_fetch_add(&j->slow_thread_items, end - begin);
}

static void test_stealing_from_a_held_up_thread(void) {
    if (team < 2) return;
    held_up_job* j = calloc(1, sizeof *j);
    ee_parallel_range_stealing(team, 1000, 10, held_up_part, j);
    held_up = 0;
    for (int i = 0; i < 1000; i++) expect(atomic_load(&j->hits[i]) == 1, "held-up range element once", 1000, i);
    /* its own part was 1000 / team items: the others took most of what it had not started */
    const long own = 1000 / team, ran = atomic_load(&j->slow_thread_items);
    expect(ran < own / 2, "a held-up thread's part is stolen", ran, own);
    free(j);
}

/* ---- a region inside a region runs alone on the calling thread ---- */

typedef struct {
    _Atomic int inner_nt_max, inner_runs;
} nested_job;

static void inner(void* p, int tid, int nt) {
    nested_job* j = p;
    atomic_fetch_add(&j->inner_runs, 1);
    int m = atomic_load(&j->inner_nt_max);
    while (nt > m && !atomic_compare_exchange_weak(&j->inner_nt_max, &m, nt)) {
    }
}

static void outer(void* p, int tid, int nt) { ee_parallel(team, inner, p); }

static void test_nested(void) {
    nested_job j = {0, 0};
    ee_parallel(team, outer, &j);
    expect(atomic_load(&j.inner_nt_max) == 1, "nested region runs alone", atomic_load(&j.inner_nt_max), 1);
    expect(atomic_load(&j.inner_runs) == team, "nested regions, one per outer tid", atomic_load(&j.inner_runs), team);
}

/* ---- several threads at once: each region completes with correct sums, whoever gets the pool ---- */

typedef struct {
    const int* x;
    int64_t n;
    _Atomic long sum;
} sum_job;

static void sum_part(void* p, int64_t begin, int64_t end) {
    sum_job* j = p;
    long s = 0;
    for (int64_t i = begin; i < end; i++) s += j->x[i];
    atomic_fetch_add(&j->sum, s);
}

static void* caller(void* arg) {
    const int id = (int)(intptr_t)arg;
    const int64_t n = 1000 + id * 37;
    int* x = malloc((size_t)n * sizeof *x);
    long want = 0;
    for (int64_t i = 0; i < n; i++) want += x[i] = (int)(i % 97) + id;
    long bad = 0;
    for (int rep = 0; rep < 2000; rep++) {
        sum_job j = {x, n, 0};
        ee_parallel_range(team, n, sum_part, &j);
        bad += atomic_load(&j.sum) != want;
    }
    free(x);
    return (void*)(intptr_t)bad;
}

static void test_concurrent_callers(void) {
    pthread_t threads[6];
    for (int i = 0; i < 6; i++) pthread_create(&threads[i], NULL, caller, (void*)(intptr_t)i);
    for (int i = 0; i < 6; i++) {
        void* bad;
        pthread_join(threads[i], &bad);
        expect(bad == 0, "concurrent callers: wrong sums", i, (long)(intptr_t)bad);
    }
}

/* ---- regions spaced past the spin time: workers sleep and must be woken ---- */

static void test_after_sleep(void) {
    for (int rep = 0; rep < 5; rep++) {
        nanosleep(&(struct timespec){0, 2000000}, NULL); /* 2 ms */
        test_team(team);
        test_barrier();
    }
}

/* ---- contention: one spinning process per CPU keeps preempting the pool's threads, and the pool must notice ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void busy_part(void* p, int tid, int nt) {
    volatile double x = 1;
    for (int i = 0; i < 20000; i++) x = x * 1.0000001 + 1e-9; /* tens of microseconds */
}

static void test_contention_is_noticed(void) {
    cpu_set_t cpus;
    const int n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    pid_t kids[n];
    int started = 0;
    for (; started < n; started++) {
        const pid_t pid = fork();
        if (pid < 0) break;
        if (pid == 0) { /* spins until killed, or until the test is gone or 20 s have passed */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            alarm(20);
            for (volatile double x = 1;;) x = x * 1.0000001 + 1e-9;
        }
        kids[started] = pid;
    }
    int seen = 0;
    for (const double end = now_s() + 5; !seen && now_s() < end;) {
        ee_parallel(team, busy_part, 0);
        seen = ee_pool_contended();
    }
    for (int i = 0; i < started; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < started; i++) waitpid(kids[i], NULL, 0);
    expect(started == n, "contention: spinning processes started", started, n);
    expect(seen, "contention: noticed beside one spinning process per CPU within 5 s", seen, n);
}

int main(int argc, char** argv) {
    if (argc > 1) team = atoi(argv[1]);
    if (team < 1 || team > EE_MAX_THREADS) {
        fprintf(stderr, "usage: eecpu_pooltest [THREADS]\n");
        return 2;
    }
    for (int asked = 0; asked <= team + 1; asked++) test_team(asked);
    test_barrier();
    test_range();
    test_stealing();
    test_stealing_from_a_held_up_thread();
    test_nested();
    test_concurrent_callers();
    test_after_sleep();
    team = 2; /* fewer than the workers started: the others stay asleep */
    test_team(2);
    test_barrier();
    test_contention_is_noticed();
    printf(failures ? "%d failure(s)\n" : "pool: all passed\n", failures);
    return failures != 0;
}
