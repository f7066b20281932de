/* The CPU emulation's scheduler and runtime API (see cuda_runtime.h beside this file). */
#include <stdio.h>
#include <ucontext.h>

#include <vector>

#include "cuda_runtime.h"

dim3 ee_emu_grid, ee_emu_block, ee_emu_block_idx;

namespace {

const size_t STACK = 256 * 1024;

struct Fiber {
    ucontext_t ctx;
    ee_emu_thread t;
    bool done;
    std::vector<char> stack;
};

std::vector<Fiber> fibers;
ucontext_t scheduler;
Fiber* current;
const std::function<void()>* body;

/* a barrier completes when every live thread of its scope has arrived; finished threads leave it */
struct Barrier {
    int arrived = 0, alive = 0;
    unsigned long generation = 0;
};
Barrier block_barrier;
std::vector<Barrier> warp_barriers;
std::vector<uint64_t> slots;

void yield() { swapcontext(&current->ctx, &scheduler); }

void wait(Barrier& b) {
    unsigned long gen = b.generation;
    if (++b.arrived == b.alive) {
        b.arrived = 0;
        b.generation++;
        return;
    }
    while (b.generation == gen) yield();
}

void leave(Barrier& b) {
    b.alive--;
    if (b.arrived > 0 && b.arrived == b.alive) {
        b.arrived = 0;
        b.generation++;
    }
}

void trampoline() {
    (*body)();
    current->done = true;
    leave(block_barrier);
    leave(warp_barriers[current->t.warp]);
    swapcontext(&current->ctx, &scheduler);
}

cudaError_t last = cudaSuccess;

}  // namespace

ee_emu_thread* ee_emu_current(void) { return &current->t; }

void ee_emu_syncthreads(void) { wait(block_barrier); }

void ee_emu_syncwarp(void) { wait(warp_barriers[current->t.warp]); }

void ee_emu_warp_exchange(uint64_t* value, int src_lane) {
    const int warp = current->t.warp, lane = current->t.lane;
    slots[warp * 32 + lane] = *value;
    wait(warp_barriers[warp]);
    uint64_t v = slots[warp * 32 + (src_lane & 31)];
    wait(warp_barriers[warp]); /* nobody overwrites a slot before every lane has read */
    *value = v;
}

/* Kernel launches and device copies since load: what a real GPU pays a launch for (eecuda_check's launch budget) */
static long long launches;
extern "C" __attribute__((visibility("default"))) long long ee_emu_launches(void) { return launches; }

/* A graph: the recorded work, in order. While `capturing` is set, work on that stream is appended to `recording`. */
struct ee_emu_graph {
    std::vector<std::function<void()>> work;
};
static cudaStream_t capturing;
static ee_emu_graph* recording;

/* Work issued on `stream`: 0 to run it now; 1 when recorded (or refused: `last` then holds the error) */
static int captured(cudaStream_t stream, std::function<void()> work) {
    if (!capturing) return 0;
    if (stream != capturing) { /* the real runtime invalidates the capture: the legacy stream during a capture */
        last = cudaErrorStreamCaptureUnsupported;
        delete recording;
        recording = 0;
        return 1;
    }
    if (recording) recording->work.push_back(std::move(work));
    return 1;
}

static void run_launch(dim3 grid, dim3 block, std::function<void()> fn);

void ee_emu_launch(dim3 grid, dim3 block, std::function<void()> fn, cudaStream_t stream) {
    launches++;
    if (captured(stream, [=] { run_launch(grid, block, fn); })) return;
    run_launch(grid, block, fn);
}

static void run_launch(dim3 grid, dim3 block, std::function<void()> fn) {
    const int n = (int)(block.x * block.y * block.z);
    if (n <= 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: bad launch grid (%u, %u, %u) block (%u, %u, %u)\n", grid.x, grid.y, grid.z, block.x, block.y, block.z);
        last = cudaErrorInvalidValue;
        return;
    }
    ee_emu_grid = grid;
    ee_emu_block = block;
    body = &fn;
    if ((int)fibers.size() < n) fibers.resize(n);
    const int warps = (n + 31) / 32;
    warp_barriers.assign(warps, Barrier());
    slots.assign((size_t)warps * 32, 0);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                ee_emu_block_idx = dim3(bx, by, bz);
                block_barrier = Barrier();
                block_barrier.alive = n;
                for (int w = 0; w < warps; w++) warp_barriers[w] = Barrier(), warp_barriers[w].alive = w == warps - 1 ? n - 32 * w : 32;
                for (int i = 0; i < n; i++) {
                    Fiber& f = fibers[i];
                    if (f.stack.empty()) f.stack.resize(STACK);
                    f.t.tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
                    f.t.lane = i % 32;
                    f.t.warp = i / 32;
                    f.done = false;
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = STACK;
                    f.ctx.uc_link = &scheduler;
                    makecontext(&f.ctx, trampoline, 0);
                }
                for (int live = n; live > 0;) {
                    live = 0;
                    for (int i = 0; i < n; i++) {
                        if (fibers[i].done) continue;
                        current = &fibers[i];
                        swapcontext(&scheduler, &fibers[i].ctx);
                        live += !fibers[i].done;
                    }
                }
            }
}

cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
    /* few "SMs" by default: small grids exercise the grid-stride loops; EE_EMU_SMS=100 exercises the attention splits */
    const char* sms = getenv("EE_EMU_SMS");
    *value = attr == cudaDevAttrMultiProcessorCount ? (sms ? atoi(sms) : 2) : 0;
    return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last;
    last = cudaSuccess;
    return e;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaMalloc(void** p, size_t bytes) {
    *p = malloc(bytes);
    if (*p) memset(*p, 0xa5, bytes); /* uninitialised device memory is garbage */
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void* p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
    if (capturing) return cudaErrorStreamCaptureUnsupported; /* synchronous: not allowed while this thread captures */
    launches++;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    if (capturing && (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToHost)) return cudaErrorStreamCaptureUnsupported; /* not in our graphs */
    launches++;
    if (captured(stream, [=] { memmove(dst, src, bytes); })) return cudaGetLastError();
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
    if (capturing) return cudaErrorStreamCaptureUnsupported;
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
    if (captured(stream, [=] { memset(dst, value, bytes); })) return cudaGetLastError();
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
    *stream = (cudaStream_t) new char;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    delete (char*)stream;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
    if (!stream || capturing) return cudaErrorInvalidValue;
    capturing = stream;
    recording = new ee_emu_graph;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
    if (stream != capturing) return cudaErrorInvalidValue;
    capturing = 0;
    *graph = recording;
    recording = 0;
    return *graph ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
    *exec = new ee_emu_graph(*graph);
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
    if (capturing) return cudaErrorStreamCaptureUnsupported;
    for (auto& w : exec->work) w();
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
