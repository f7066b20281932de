/*
 * Device check of libeenccl on one GPU (native/cuda/device-check.sh): a communicator of one rank, bootstrapped from
 * ncclGetUniqueId as under MPI; all-reduce, broadcast and a time-out-free round trip of every call through NCCL.
 * (Two ranks need two GPUs: under mpirun the same calls run with the id broadcast by the MPI group.)
 */
#include "eetune/eetune_nccl.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    char id[128];
    if (ee_nccl_unique_id(id) || ee_nccl_init(id, 0, 1, 0)) {
        printf("FAIL nccl init: %s\n", ee_nccl_last_error());
        return 1;
    }
    const int n = 1 << 20;
    float *d, *h = (float*) malloc(n * sizeof *h);
    for (int i = 0; i < n; i++) h[i] = 0.5f * i;
    cudaMalloc(&d, n * sizeof *d);
    cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice);
    int bad = ee_nccl_allreduce_sum(d, n, 30) || ee_nccl_broadcast(d, n * sizeof *d, 0, 30);
    if (bad) printf("FAIL nccl collectives: %s\n", ee_nccl_last_error());
    float* back = (float*) malloc(n * sizeof *back);
    cudaMemcpy(back, d, n * sizeof *d, cudaMemcpyDeviceToHost);
    if (!bad && memcmp(back, h, n * sizeof *h) != 0) {
        printf("FAIL nccl: a one-rank all-reduce changed the buffer\n");
        bad = 1;
    }
    bad |= ee_nccl_destroy();
    printf("%s nccl: one-rank communicator, all-reduce and broadcast of %d floats\n", bad ? "FAIL" : "PASS", n);
    return bad;
}
