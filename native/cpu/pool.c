/*
 * The thread pool behind ee_parallel / ee_team_barrier / ee_parallel_range (see internal.h).
 * For now a thin layer over OpenMP; callers depend only on the three functions.
 */
#include <omp.h>

#include "internal.h"

void ee_parallel(int nt, ee_team_fn fn, void* ctx) {
    if (nt <= 1) {
        fn(ctx, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nt)
    fn(ctx, omp_get_thread_num(), omp_get_num_threads());
}

void ee_team_barrier(int nt) {
    if (nt > 1) {
#pragma omp barrier
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
    range_job job = {fn, ctx, n};
    ee_parallel(nt, range_part, &job);
}
