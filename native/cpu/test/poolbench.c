/*
 * Cost of the thread pool (cpu/pool.c, compiled in: its functions are not exported by libeecpu), quiet and next to a
 * competing process that keeps BUSY threads spinning. Not a test: numbers for choosing PARALLEL_MIN_WORK (info.c).
 *   eecpu_poolbench [THREADS [BUSY [SECONDS_PER_CASE]]]      defaults: 2 0 0.5
 * Reports, for the given team size, medians: ns per empty region back to back (workers still spinning), ns of an empty
 * region after 200 us of serial work (workers asleep: the futex wake-up path), and for x[i] *= s over n floats (ee_scale's
 * loop, work = n in ee_threads_for units) the serial and parallel ns, whose crossing is the break-even work.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../internal.h"

static int team = 2;
int ee_num_threads(void) { return team; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void empty(void* ctx, int tid, int nt) {}

static volatile float sink;

static void spin_for(double seconds) {
    const double end = now_s() + seconds;
    while (now_s() < end) sink += 1.0f;
}

typedef struct {
    float* x;
    float s;
} scale_job;

static void scale_range(void* ctx, int64_t i0, int64_t i1) {
    const scale_job* j = ctx;
    for (int64_t i = i0; i < i1; i++) j->x[i] *= j->s;
}

/* median of 5 runs of (calls of fn per `seconds`), in ns per call */
static double time_ns(void (*fn)(void*), void* arg, double seconds) {
    double runs[5];
    for (int r = 0; r < 5; r++) {
        long calls = 0;
        const double t0 = now_s(), end = t0 + seconds / 5;
        double t;
        do {
            for (int i = 0; i < 16; i++) fn(arg);
            calls += 16;
        } while ((t = now_s()) < end);
        runs[r] = (t - t0) / calls * 1e9;
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (runs[j] < runs[i]) {
                double t = runs[i];
                runs[i] = runs[j];
                runs[j] = t;
            }
    return runs[2];
}

static void region_back_to_back(void* arg) { ee_parallel(team, empty, 0); }

/* median ns of an empty region that follows 200 us of serial work, timed alone */
static double region_after_gap_ns(double seconds) {
    enum { MAX = 1 << 16 };
    static double ns[MAX];
    int count = 0;
    for (const double end = now_s() + seconds; count < MAX && now_s() < end; count++) {
        spin_for(200e-6);
        const double t0 = now_s();
        ee_parallel(team, empty, 0);
        ns[count] = (now_s() - t0) * 1e9;
    }
    for (int i = 1; i < count; i++) /* insertion sort: a few thousand values */
        for (int j = i; j > 0 && ns[j] < ns[j - 1]; j--) {
            const double t = ns[j];
            ns[j] = ns[j - 1];
            ns[j - 1] = t;
        }
    return ns[count / 2];
}

typedef struct {
    scale_job job;
    int64_t n;
    int nt;
} scale_case;

static void scale_call(void* arg) {
    scale_case* c = arg;
    ee_parallel_range(c->nt, c->n, scale_range, &c->job);
}

int main(int argc, char** argv) {
    team = argc > 1 ? atoi(argv[1]) : 2;
    const int busy = argc > 2 ? atoi(argv[2]) : 0;
    const double seconds = argc > 3 ? atof(argv[3]) : 0.5;
    if (team < 1 || busy < 0 || !(seconds > 0)) {
        fprintf(stderr, "usage: eecpu_poolbench [THREADS [BUSY [SECONDS_PER_CASE]]]\n");
        return 2;
    }
    pid_t children[64];
    int started = 0;
    for (; started < busy && started < 64; started++) { /* the competing load: one spinning process per busy thread */
        children[started] = fork();
        if (children[started] == 0) {
            for (;;) sink += 1.0f;
        }
    }
    printf("threads %d, competing busy processes %d (machine: %ld CPUs online)\n", team, busy, sysconf(_SC_NPROCESSORS_ONLN));
    printf("empty region, back to back: %.0f ns\n", time_ns(region_back_to_back, 0, seconds));
    printf("empty region after 200 us of serial work (workers asleep): %.0f ns\n", region_after_gap_ns(seconds));
    printf("x[i] *= s over n floats: n, serial ns, %d threads ns\n", team);
    float* x = calloc(1 << 20, sizeof(float));
    for (int64_t n = 1024; n <= 1 << 20; n *= 2) {
        scale_case serial = {{x, 1.0f}, n, 1}, parallel = {{x, 1.0f}, n, team};
        printf("%8ld %10.0f %10.0f\n", (long)n, time_ns(scale_call, &serial, seconds), time_ns(scale_call, &parallel, seconds));
    }
    free(x);
    for (int i = 0; i < started; i++) kill(children[i], SIGKILL);
    for (int i = 0; i < started; i++) waitpid(children[i], NULL, 0);
    return 0;
}
