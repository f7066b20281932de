/*
 * libeenccl: the NCCL process group behind eetune_nccl.h. NCCL's entry points are looked up with dlopen/dlsym (the
 * declarations below follow NVIDIA's nccl.h; enums are C ints), so the library compiles in CI without NCCL and loads
 * on machines without it, failing with a clear message only when a distributed CUDA run starts.
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
    ncclResult_t (*all_reduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*broadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*send)(const void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*recv)(void*, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*async_error)(ncclComm_t, ncclResult_t*);
    ncclResult_t (*abort)(ncclComm_t);
    ncclResult_t (*destroy)(ncclComm_t);
    const char* (*error_string)(ncclResult_t);
} nccl;

static ncclComm_t comm;
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
    void* lib = dlopen(env && *env ? env : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return fail("cannot load NCCL (%s; set EETUNE_NCCL to libnccl.so.2, or install libnccl2 / the nvidia-nccl wheel): %s", env && *env ? env : "libnccl.so.2", dlerror());
#define SYM(field, name)                                                                                      \
    if (!(*(void**) &nccl.field = dlsym(lib, name))) return fail("the loaded NCCL has no %s (NCCL 2.12 or newer is needed)", name);
    SYM(comm_init_rank, "ncclCommInitRank")
    SYM(all_reduce, "ncclAllReduce")
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
    ncclUniqueId uid = *(const ncclUniqueId*) id;
    return check(nccl.comm_init_rank(&comm, size, uid, rank), "ncclCommInitRank");
}

extern "C" EE_API int32_t ee_nccl_allreduce_sum(float* buf, int64_t n, double timeout_s) {
    if (ready("allreduce")) return 1;
    if (check(nccl.all_reduce(buf, buf, (size_t) n, EE_NCCL_FLOAT32, EE_NCCL_SUM, comm, 0), "ncclAllReduce")) return 1;
    return wait("allreduce", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s) {
    if (ready("broadcast")) return 1;
    if (check(nccl.broadcast(buf, buf, (size_t) bytes, EE_NCCL_UINT8, root, comm, 0), "ncclBroadcast")) return 1;
    return wait("broadcast", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_send(const void* buf, int64_t bytes, int32_t peer, double timeout_s) {
    if (ready("send")) return 1;
    if (check(nccl.send(buf, (size_t) bytes, EE_NCCL_UINT8, peer, comm, 0), "ncclSend")) return 1;
    return wait("send", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_recv(void* buf, int64_t bytes, int32_t peer, double timeout_s) {
    if (ready("recv")) return 1;
    if (check(nccl.recv(buf, (size_t) bytes, EE_NCCL_UINT8, peer, comm, 0), "ncclRecv")) return 1;
    return wait("recv", timeout_s);
}

extern "C" EE_API int32_t ee_nccl_destroy(void) {
    if (!comm) return 0;
    ncclResult_t r = nccl.destroy(comm);
    comm = NULL;
    return check(r, "ncclCommDestroy");
}
