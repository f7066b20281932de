/*
 * A CPU emulation of the small part of CUDA that libeecuda uses, to run its kernels' LOGIC on a machine without a GPU
 * (see native/cuda/test/emulate.sh). It proves indexing, reductions, tiling and synchronisation logic against the
 * CPU library; it says nothing about speed, real memory-model races or GPU-only failures.
 *
 * "Device" memory is host memory. A launch runs the blocks one after another; the threads of a block are fibers
 * (ucontext) on one OS thread, switched at __syncthreads and at warp shuffles, so `__shared__` can be a static
 * variable shared by the running block. Exited threads leave the barriers, like on the GPU.
 */
#ifndef EE_EMU_CUDA_RUNTIME_H
#define EE_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <tuple>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef struct ee_emu_stream* cudaStream_t;

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInsufficientDriver = 35, cudaErrorNoDevice = 100,
                   cudaErrorInvalidDevice = 101, cudaErrorNotReady = 600, cudaErrorStreamCaptureUnsupported = 900, cudaErrorStreamCaptureInvalidated = 901 };
typedef cudaError_t cudaError;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__

/* ---- the scheduler (emu.cpp) ---------------------------------------------------------------------------------- */

struct ee_emu_thread {
    dim3 tid;
    int lane, warp;
};

ee_emu_thread* ee_emu_current(void);
extern dim3 ee_emu_grid, ee_emu_block, ee_emu_block_idx;
void ee_emu_syncthreads(void);
void ee_emu_syncwarp(void);
void ee_emu_warp_exchange(uint64_t* value, int src_lane); /* all lanes of the warp: publish *value, read src_lane's */
/* a kernel launch on `stream`: run now, or recorded while that stream captures a graph (work on another stream
 * during a capture is refused, as the real runtime refuses the legacy stream then) */
void ee_emu_launch(dim3 grid, dim3 block, std::function<void()> body, cudaStream_t stream = 0);

#define threadIdx (ee_emu_current()->tid)
#define blockIdx (ee_emu_block_idx)
#define blockDim (ee_emu_block)
#define gridDim (ee_emu_grid)
#define __shared__ static
#define __syncthreads() ee_emu_syncthreads()
#define __syncwarp(...) ee_emu_syncwarp()

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int offset) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    ee_emu_warp_exchange(&bits, ee_emu_current()->lane ^ offset);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

/* A misaligned vector load faults on the GPU: here too, rather than working by luck on x86. */
template <typename T>
inline T __ldg(const T* p) {
    if ((uintptr_t)p % alignof(T) != 0) abort();
    return *p;
}

inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }
inline int atomicCAS(int* p, int compare, int v) {
    int old = *p;
    if (old == compare) *p = v;
    return old;
}

template <typename A, typename B>
inline auto min(A a, B b) -> decltype(a + b) { return a < b ? a : b; }
template <typename A, typename B>
inline auto max(A a, B b) -> decltype(a + b) { return a > b ? a : b; }

/* ---- the runtime API -------------------------------------------------------------------------------------------- */

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc((void**)p, bytes); }
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = 0);
/* streams and graphs: work is done when its call returns, except on a stream that captures, where launches, async
 * copies and memsets are recorded into the graph, in order, and replayed by cudaGraphLaunch */
enum { cudaStreamDefault = 0, cudaStreamNonBlocking = 1 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
typedef struct ee_emu_graph* cudaGraph_t;
typedef struct ee_emu_graph* cudaGraphExec_t;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
/* for libeenccl (../../dist/nccl.cu): one device, and work is done when its call returns */
cudaError_t cudaSetDevice(int device);
cudaError_t cudaStreamQuery(cudaStream_t stream);

#endif
