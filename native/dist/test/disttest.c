/*
 * Self-test of libeedist under a launcher: mpirun --oversubscribe -np 3 eedist_selftest.
 * Checks the rank-order sums (f32 and f64, sizes not divisible by the rank count, and smaller than it), broadcast,
 * send/recv, barrier, and that a rank that stays away is named in the others' error within the deadline.
 */
#include "eetune/eetune_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("rank %d: FAIL: ", rs[0]); printf(__VA_ARGS__); printf("\n"); } } while (0)

int main(void) {
    int32_t rs[2];
    if (ee_dist_init(rs)) { printf("init: %s\n", ee_dist_last_error()); return 1; }
    int rank = rs[0], size = rs[1];
    long sizes[] = {1, 2, 7, 1000, 1 << 20};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        long n = sizes[t];
        float* f = malloc(n * sizeof *f);
        double* d = malloc(n * sizeof *d);
        for (long i = 0; i < n; i++) { f[i] = (float) (0.1 * (rank + 1) + i * 1e-3); d[i] = 0.1 * (rank + 1) + i; }
        CHECK(!ee_dist_allreduce_sum(f, n, EE_DIST_F32, 10) && !ee_dist_allreduce_sum(d, n, EE_DIST_F64, 10), "allreduce %ld: %s", n, ee_dist_last_error());
        for (long i = 0; i < n; i++) {
            float fs = 0; double ds = 0; /* rank order, as promised */
            for (int p = 0; p < size; p++) { fs = p == 0 ? (float) (0.1 * (p + 1) + i * 1e-3) : fs + (float) (0.1 * (p + 1) + i * 1e-3); ds = p == 0 ? 0.1 * (p + 1) + i : ds + (0.1 * (p + 1) + i); }
            if (f[i] != fs || d[i] != ds) { CHECK(0, "allreduce %ld: element %ld is %.9g / %.17g, expected %.9g / %.17g", n, i, f[i], d[i], fs, ds); break; }
        }
        free(f);
        free(d);
    }
    char msg[32];
    snprintf(msg, sizeof msg, rank == 1 ? "from rank one" : "not yet");
    CHECK(!ee_dist_broadcast(msg, sizeof msg, 1, 10), "broadcast: %s", ee_dist_last_error());
    CHECK(!strcmp(msg, "from rank one"), "broadcast gave '%s'", msg);
    int token = rank * 10;
    if (rank == 0) CHECK(!ee_dist_send(&token, sizeof token, 1, 5, 10), "send: %s", ee_dist_last_error());
    if (rank == 1) CHECK(!ee_dist_recv(&token, sizeof token, 0, 5, 10) && token == 0, "recv: %s (token %d)", ee_dist_last_error(), token);
    CHECK(!ee_dist_barrier(10), "barrier: %s", ee_dist_last_error());
    /* The last rank comes late to a broadcast it roots: the others must fail within 2 s naming it. It then sends,
     * which completes the others' abandoned receives (into a buffer that stays valid), so everyone can finalize. */
    static char late[16];
    if (rank != size - 1) {
        int rc = ee_dist_broadcast(late, sizeof late, size - 1, 2);
        char expect[64];
        snprintf(expect, sizeof expect, "no message from rank %d within 2 s", size - 1);
        CHECK(rc && strstr(ee_dist_last_error(), expect), "a missing rank gave rc %d, '%s'", rc, ee_dist_last_error());
    } else {
        sleep(3);
        CHECK(!ee_dist_broadcast(late, sizeof late, size - 1, 10), "late broadcast: %s", ee_dist_last_error());
    }
    CHECK(!ee_dist_barrier(10), "final barrier: %s", ee_dist_last_error());
    printf("rank %d of %d: %s\n", rank, size, failures ? "FAILED" : "ok");
    fflush(stdout);
    if (failures) ee_dist_abort(1);
    return ee_dist_finalize();
}
