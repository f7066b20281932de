/*
 * Self-test of libeenccl (eetune_nccl.h). Built with MPI (EE_WITH_MPI, where CMake finds it) it runs under a
 * launcher, `mpirun -np N eenccl_selftest`, and bootstraps like eetune: rank 0's unique id broadcast over MPI.
 * Without MPI it is a communicator of one rank. It checks, on every rank:
 *   - the all-reduce of odd and even lengths (shorter than the rank count, not a multiple of it, large) against the
 *     rank-order sum x0 + x1 + ... computed here on the host, bit for bit;
 *   - broadcast from the last rank; a send/receive ring; refused peers and roots with their messages.
 * Where it runs: native/cuda/device-check.sh (real NCCL on the GPUs there, one rank per GPU) and
 * .ci/native-checks.sh (3 ranks on the CUDA emulation with the fake NCCL of fake_nccl.c, no GPU).
 */
#include "eetune/eetune_nccl.h"

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef EE_WITH_MPI
#include <mpi.h>
#endif

static int rank = 0, size = 1, failures = 0;

static void expect(int ok, const char* what, long long detail) {
    if (!ok) {
        printf("FAIL nccl rank %d: %s (%lld): %s\n", rank, what, detail, ee_nccl_last_error());
        failures++;
    }
}

/* rank r's value i: varied magnitudes and signs, so the order of the additions shows in the rounding */
static float value(int r, int64_t i) {
    uint32_t h = (uint32_t) (i * 2654435761u) ^ (uint32_t) (r * 40503u + 7u);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return ((float) (h % 20001u) - 10000.0f) * (r % 2 ? 1e-3f : 7.3e-7f) * (float) (1 + (h >> 28));
}

int main(int argc, char** argv) {
#ifdef EE_WITH_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
#endif
    char id[128];
    memset(id, 0, sizeof id);
    int bad = rank == 0 && ee_nccl_unique_id(id);
#ifdef EE_WITH_MPI
    MPI_Bcast(id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
    if (bad || ee_nccl_init(id, rank, size, 0)) {
        printf("FAIL nccl rank %d: init: %s\n", rank, ee_nccl_last_error());
#ifdef EE_WITH_MPI
        MPI_Abort(MPI_COMM_WORLD, 1);
#endif
        return 1;
    }
    const int64_t lengths[] = {1, 2, 3, 5, 1000, 65537, (1 << 20) + 3};
    int64_t most = lengths[sizeof lengths / sizeof *lengths - 1];
    float *d, *h = (float*) malloc(most * sizeof *h), *want = (float*) malloc(most * sizeof *want);
    cudaMalloc(&d, most * sizeof *d);
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
        int64_t n = lengths[k];
        for (int64_t i = 0; i < n; i++) {
            h[i] = value(rank, i);
            float s = value(0, i);
            for (int r = 1; r < size; r++) s += value(r, i);
            want[i] = s;
        }
        cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice);
        expect(ee_nccl_allreduce_sum(d, n, 30) == 0, "all-reduce", n);
        cudaMemcpy(h, d, n * sizeof *d, cudaMemcpyDeviceToHost);
        int64_t first = -1;
        for (int64_t i = 0; i < n && first < 0; i++) if (memcmp(&h[i], &want[i], sizeof *h) != 0) first = i;
        if (first >= 0) printf("FAIL nccl rank %d: all-reduce of %lld: element %lld is %.9g, the rank-order sum is %.9g\n", rank, (long long) n, (long long) first, h[first], want[first]);
        failures += first >= 0;
    }
    /* broadcast from the last rank */
    const int64_t bn = 4099;
    for (int64_t i = 0; i < bn; i++) h[i] = value(rank, i);
    cudaMemcpy(d, h, bn * sizeof *d, cudaMemcpyHostToDevice);
    expect(ee_nccl_broadcast(d, bn * sizeof *d, size - 1, 30) == 0, "broadcast", bn);
    cudaMemcpy(h, d, bn * sizeof *d, cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < bn; i++) if (h[i] != value(size - 1, i)) { expect(0, "broadcast: a value differs from the root's at", i); break; }
    /* a ring: even ranks send first, odd ranks receive first (a blocking send waits for its receiver) */
    if (size > 1) {
        int next = (rank + 1) % size, prev = (rank + size - 1) % size;
        for (int64_t i = 0; i < bn; i++) h[i] = value(rank, i);
        float* in;
        cudaMalloc(&in, bn * sizeof *in);
        cudaMemcpy(d, h, bn * sizeof *d, cudaMemcpyHostToDevice);
        for (int turn = 0; turn < 2; turn++) {
            if ((turn == 0) == (rank % 2 == 0)) expect(ee_nccl_send(d, bn * sizeof *d, next, 30) == 0, "send to", next);
            else expect(ee_nccl_recv(in, bn * sizeof *in, prev, 30) == 0, "recv from", prev);
        }
        cudaMemcpy(h, in, bn * sizeof *in, cudaMemcpyDeviceToHost);
        for (int64_t i = 0; i < bn; i++) if (h[i] != value(prev, i)) { expect(0, "recv: a value differs from the sender's at", i); break; }
        cudaFree(in);
    }
    /* refused arguments name themselves (and leave the communicator usable) */
    expect(ee_nccl_send(d, 4, rank, 30) != 0 && strstr(ee_nccl_last_error(), "peer") != NULL, "a send to this rank is refused", rank);
    expect(ee_nccl_broadcast(d, 4, size, 30) != 0 && strstr(ee_nccl_last_error(), "root") != NULL, "a broadcast from a rank outside the group is refused", size);
    expect(ee_nccl_allreduce_sum(d, 3, 30) == 0, "all-reduce after refused calls", 3);
    expect(ee_nccl_destroy() == 0, "destroy", 0);
    cudaFree(d);
    printf("%s nccl rank %d of %d: rank-order all-reduce of 7 lengths up to %lld floats bit for bit, broadcast, %s, refused arguments\n",
           failures ? "FAIL" : "PASS", rank, size, (long long) most, size > 1 ? "send/recv ring" : "(no send/recv: one rank)");
#ifdef EE_WITH_MPI
    MPI_Finalize();
#endif
    return failures != 0;
}
