/*
 * libeenccl: the NCCL process group behind eetune_nccl.h. NCCL's entry points are looked up with dlopen/dlsym (the
 * declarations below follow NVIDIA's nccl.h; enums are C ints), so the library compiles in CI without NCCL and loads
 * on machines without it, failing with a clear message only when a distributed CUDA run starts.
 *
 * Why the sum is not ncclAllReduce: NCCL adds in the order of its algorithm (ring or tree, chosen by message size,
 * topology, NCCL_ALGO / NCCL_PROTO and version), so its bits can change with any of these, and differ from the MPI
 * group's. Here it is libeedist's scheme on NCCL's point-to-point calls: a reduce-scatter in which rank c receives
 * chunk c from every rank and adds the contributions in rank order (x0 + x1 + ...; float additions only, so nvcc
 * cannot contract them), then an all-gather of the sums. The bits depend on nothing but the values and the rank
 * count, and equal libeedist's; each rank sends 2 (size-1)/size of the buffer, like a ring.
 */
#include "eetune/eetune_nccl.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct ncclComm* ncclComm_t;
typedef int ncclResult_t; /* 0 = ncclSuccess, 7 = ncclInProgress */
typedef struct { char internal[128]; } ncclUniqueId;
enum { EE_NCCL_SUCCESS = 0, EE_NCCL_IN_PROGRESS = 7, EE_NCCL_UINT8 = 1, EE_NCCL_FLOAT32 = 7, EE_NCCL_SUM = 0 };

static struct {
    ncclResult_t (*get_unique_id)(ncclUniqueId*);
    ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int);
    ncclResult_t (*group_start)(void);
    ncclResult_t (*group_end)(void);
    ncclResult_t (*broadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*send)(const void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*recv)(void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*async_error)(ncclComm_t, ncclResult_t*);
    ncclResult_t (*abort)(ncclComm_t);
    ncclResult_t (*destroy)(ncclComm_t);
    const char* (*error_string)(ncclResult_t);
} nccl;

static ncclComm_t comm;
static int comm_rank, comm_size;
static int64_t bytes_sent;
/* the all-reduce's receive area (chunk x size floats), grown as needed and kept until ee_nccl_destroy */
static float* scratch;
static int64_t scratch_floats;
static char last_error[1024];

static int fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return 1;
}

extern "C" EE_API const char* ee_nccl_last_error(void) { return last_error; }

static int load(void) {
    if (nccl.get_unique_id) return 0;
    const char* env = getenv("EETUNE_NCCL");
    const char* name = env && *env ? env : "libnccl.so.2";
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        return fail("cannot load NCCL, %s (%s): the CUDA backend sums gradients with NCCL when started by a launcher; install libnccl2 "
                    "(NVIDIA's CUDA repository) or pip install nvidia-nccl-cu12, and set EETUNE_NCCL to the libnccl.so.2 file if it is not on "
                    "the library path: %s", name, env && *env ? "from EETUNE_NCCL" : "the default name", dlerror());
    }
#define SYM(field, name)                                                                                      \
    if (!(*(void**) &nccl.field = dlsym(lib, name))) return fail("the loaded NCCL has no %s (NCCL 2.12 or newer is needed)", name);
    SYM(comm_init_rank, "ncclCommInitRank")
    SYM(group_start, "ncclGroupStart")
    SYM(group_end, "ncclGroupEnd")
    SYM(broadcast, "ncclBroadcast")
    SYM(send, "ncclSend")
    SYM(recv, "ncclRecv")
    SYM(async_error, "ncclCommGetAsyncError")
    SYM(abort, "ncclCommAbort")
    SYM(destroy, "ncclCommDestroy")
    SYM(error_string, "ncclGetErrorString")
    SYM(get_unique_id, "ncclGetUniqueId") /* last: it marks the table complete */
#undef SYM
    return 0;
}

static int check(ncclResult_t r, const char* what) {
    return r == EE_NCCL_SUCCESS ? 0 : fail("%s: %s", what, nccl.error_string(r));
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Waits for the default stream; a peer that never comes leaves NCCL's kernel spinning, so on the deadline the
 * communicator is aborted (which ends that kernel) and the group cannot be used again. */
static int wait(const char* what, double timeout_s) {
    double deadline = now() + timeout_s;
    for (;;) {
        cudaError_t e = cudaStreamQuery(0);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) return fail("%s: %s", what, cudaGetErrorString(e));
        ncclResult_t async = EE_NCCL_SUCCESS;
        if (nccl.async_error(comm, &async) == EE_NCCL_SUCCESS && async != EE_NCCL_SUCCESS && async != EE_NCCL_IN_PROGRESS) {
            nccl.abort(comm);
            comm = NULL;
            return fail("%s: %s", what, nccl.error_string(async));
        }
        if (now() > deadline) {
            nccl.abort(comm);
            comm = NULL;
            return fail("%s: not complete within %.0f s: a rank is dead or hung (the NCCL communicator is aborted)", what, timeout_s);
        }
        struct timespec pause = {0, 50000};
        nanosleep(&pause, NULL);
    }
}

static int ready(const char* what) {
    if (!comm) return fail("%s: no NCCL communicator (ee_nccl_init first, or it was aborted after a failure)", what);
    return 0;
}

extern "C" EE_API int32_t ee_nccl_unique_id(void* id_out) {
    if (load()) return 1;
    return check(nccl.get_unique_id((ncclUniqueId*) id_out), "ncclGetUniqueId");
}

extern "C" EE_API int32_t ee_nccl_init(const void* id, int32_t rank, int32_t size, int32_t device) {
    if (load()) return 1;
    if (comm) return fail("ee_nccl_init: already a member of a communicator");
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return fail("ee_nccl_init: cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
    if (rank < 0 || size < 1 || rank >= size) return fail("ee_nccl_init: rank %d of %d ranks", rank, size);
    ncclUniqueId uid = *(const ncclUniqueId*) id;
    if (check(nccl.comm_init_rank(&comm, size, uid, rank), "ncclCommInitRank")) {
        comm = NULL;
        return 1;
    }
    comm_rank = rank;
    comm_size = size;
    return 0;
}

/* out[i] = parts[i] + parts[chunk + i] + ... + parts[(size-1) chunk + i], added in that order */
__global__ void sum_in_rank_order(float* out, const float* parts, int64_t chunk, int64_t len, int size) {
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < len; i += (int64_t) gridDim.x * blockDim.x) {
        float s = parts[i];
        for (int p = 1; p < size; p++) s += parts[(int64_t) p * chunk + i];
        out[i] = s;
    }
}

/* floats of rank p's chunk of n (the last chunks may be short or empty) */
static int64_t chunk_len(int64_t n, int64_t chunk, int p) {
    int64_t left = n - chunk * p;
    return left < 0 ? 0 : left < chunk ? left : chunk;
}

/* One phase of the all-reduce as one NCCL group of point-to-point calls with every other rank p (zero-length chunks
 * are skipped on both sides alike): scatter sends chunk p of buf to p and receives p's share of this rank's chunk
 * into scratch slot p; otherwise this rank's chunk goes to p and chunk p comes from p. */
static int exchange(float* buf, int64_t chunk, int64_t n, int scatter) {
    int64_t mine = chunk_len(n, chunk, comm_rank);
    if (check(nccl.group_start(), "ncclGroupStart")) return 1;
    int rc = 0;
    for (int p = 0; p < comm_size && !rc; p++) {
        if (p == comm_rank) continue;
        int64_t len = chunk_len(n, chunk, p), out = scatter ? len : mine, in = scatter ? mine : len;
        const float* from = scatter ? buf + chunk * p : buf + chunk * comm_rank;
        float* into = scatter ? scratch + chunk * p : buf + chunk * p;
        rc = (out > 0 && check(nccl.send(from, (size_t) out, EE_NCCL_FLOAT32, p, comm, 0), "ncclSend"))
             || (in > 0 && check(nccl.recv(into, (size_t) in, EE_NCCL_FLOAT32, p, comm, 0), "ncclRecv"));
        bytes_sent += 4 * out;
    }
    if (check(nccl.group_end(), "ncclGroupEnd")) rc = 1;
    return rc;
}

extern "C" EE_API int32_t ee_nccl_allreduce_sum(float* buf, int64_t n, double timeout_s) {
    if (ready("allreduce")) return 1;
    if (n < 0) return fail("allreduce: %lld values", (long long) n);
    if (comm_size == 1 || n == 0) return 0;
    int64_t chunk = (n + comm_size - 1) / comm_size, mine_at = chunk * comm_rank, mine = chunk_len(n, chunk, comm_rank);
    if (chunk * comm_size > scratch_floats) {
        cudaFree(scratch);
        scratch = NULL;
        scratch_floats = 0;
        cudaError_t e = cudaMalloc((void**) &scratch, (size_t) (chunk * comm_size) * sizeof(float));
        if (e != cudaSuccess) return fail("allreduce: cannot allocate %lld bytes of device memory: %s", (long long) (chunk * comm_size * 4), cudaGetErrorString(e));
        scratch_floats = chunk * comm_size;
    }
    /* reduce-scatter: chunk p of this rank's buffer to rank p; rank p's contribution to chunk `rank` into slot p */
    if (exchange(buf, chunk, n, 1)) return 1;
    if (mine > 0) {
        cudaError_t e = cudaMemcpyAsync(scratch + chunk * comm_rank, buf + mine_at, (size_t) mine * sizeof(float), cudaMemcpyDeviceToDevice, 0);
        if (e != cudaSuccess) return fail("allreduce: copy of this rank's chunk: %s", cudaGetErrorString(e));
        int blocks = (int) ((mine + 255) / 256 < 1024 ? (mine + 255) / 256 : 1024);
        sum_in_rank_order<<<blocks, 256>>>(buf + mine_at, scratch, chunk, mine, comm_size);
        e = cudaGetLastError();
        if (e != cudaSuccess) return fail("allreduce: sum kernel: %s", cudaGetErrorString(e));
    }
    /* all-gather: this rank's sums to every rank, chunk p from rank p */
    if (exchange(buf, chunk, n, 0)) return 1;
    return wait("allreduce", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s) {
    if (ready("broadcast")) return 1;
    if (root < 0 || root >= comm_size) return fail("broadcast: root %d is not a rank of this group of %d", root, comm_size);
    if (check(nccl.broadcast(buf, buf, (size_t) bytes, EE_NCCL_UINT8, root, comm, 0), "ncclBroadcast")) return 1;
    if (comm_rank == root) bytes_sent += bytes * (comm_size - 1); /* what a flat broadcast sends; NCCL's ring forwards it */
    return wait("broadcast", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_send(const void* buf, int64_t bytes, int32_t peer, double timeout_s) {
    if (ready("send")) return 1;
    if (peer < 0 || peer >= comm_size || peer == comm_rank) return fail("send: peer %d is not another rank of this group of %d (this is rank %d)", peer, comm_size, comm_rank);
    if (check(nccl.send(buf, (size_t) bytes, EE_NCCL_UINT8, peer, comm, 0), "ncclSend")) return 1;
    bytes_sent += bytes;
    return wait("send", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_recv(void* buf, int64_t bytes, int32_t peer, double timeout_s) {
    if (ready("recv")) return 1;
    if (peer < 0 || peer >= comm_size || peer == comm_rank) return fail("recv: peer %d is not another rank of this group of %d (this is rank %d)", peer, comm_size, comm_rank);
    if (check(nccl.recv(buf, (size_t) bytes, EE_NCCL_UINT8, peer, comm, 0), "ncclRecv")) return 1;
    return wait("recv", timeout_s);
}

extern "C" EE_API int64_t ee_nccl_bytes_sent(void) { return bytes_sent; }

extern "C" EE_API int32_t ee_nccl_destroy(void) {
    cudaFree(scratch);
    scratch = NULL;
    scratch_floats = 0;
    if (!comm) return 0;
    ncclResult_t r = nccl.destroy(comm);
    comm = NULL;
    return check(r, "ncclCommDestroy");
}
