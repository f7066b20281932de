/*
 * Library information and the process-wide runtime of libeecuda: CUDA errors and the kernels' index error record,
 * device discovery (never fatal without a GPU or driver), device memory, copies, scratch buffers and the op lock.
 * The last error and file mappings are shared with the CPU library (common/).
 */
#include <dlfcn.h>
#include <mutex>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"

/* ---- errors ---------------------------------------------------------------------------------------------------- */

int ee_cuda_fail(cudaError_t e, const char* what) {
    return ee_fail("%s: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

int ee_launched(const char* what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, what);
}

static pthread_once_t record_once = PTHREAD_ONCE_INIT;
static ee_index_error* index_record;

static void record_init(void) {
    ee_index_error* p = 0;
    if (cudaMalloc(&p, sizeof *p) == cudaSuccess && cudaMemset(p, 0, sizeof *p) == cudaSuccess) index_record = p;
    else cudaGetLastError();
}

ee_index_error* ee_index_error_record(void) {
    pthread_once(&record_once, record_init);
    return index_record;
}

int ee_collect_index_error(const char* where) {
    ee_index_error* record = ee_index_error_record();
    if (!record) return 0;
    ee_index_error e;
    cudaError_t c = cudaMemcpy(&e, record, sizeof e, cudaMemcpyDeviceToHost);
    if (c != cudaSuccess) return ee_cuda_fail(c, "reading the kernels' index error record");
    if (e.kind == EE_INDEX_OK) return 0;
    cudaMemset(record, 0, sizeof e);
    char note[160];
    snprintf(note, sizeof note, " (found by a CUDA kernel, reported by %s; rows it could not compute hold NaN)", where);
    return ee_fail_index(e.kind, e.row, e.value, e.bound, note);
}

/* ---- devices ------------------------------------------------------------------------------------------------- */

static pthread_once_t device_once = PTHREAD_ONCE_INIT;
static int device_count;
static int sm_count = 132;
static char device_problem[512];

/* cudaGetDeviceCount fails (no driver, no device, driver too old) on a machine without a usable GPU: that is a
 * count of 0 and a reason, never a crash. */
static void device_init(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
        if (!driver && e == cudaErrorInsufficientDriver) { /* the runtime says "insufficient" when there is none at all */
            const char* why = dlerror();
            snprintf(device_problem, sizeof device_problem, "no NVIDIA driver: libcuda.so.1 cannot be loaded (%s)", why ? why : "not found");
        } else {
            snprintf(device_problem, sizeof device_problem, "cudaGetDeviceCount: %s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
        }
        if (driver) dlclose(driver);
        cudaGetLastError(); /* not sticky, but clear it */
        n = 0;
    } else if (n == 0) {
        snprintf(device_problem, sizeof device_problem, "cudaGetDeviceCount: no CUDA device");
    }
    device_count = n;
    if (n > 0) {
        int sms = 0;
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess && sms > 0) sm_count = sms;
    }
}

int ee_sm_count(void) {
    pthread_once(&device_once, device_init);
    return sm_count;
}

EE_API int32_t ee_device_count(void) {
    pthread_once(&device_once, device_init);
    if (device_count == 0) ee_fail("%s", device_problem);
    return device_count;
}

EE_API int32_t ee_abi_version(void) { return EE_ABI_VERSION; }

EE_API int32_t ee_noop(int32_t x) { return x + 1; }

EE_API int32_t ee_features(void) {
    pthread_once(&device_once, device_init);
    return device_count > 0 ? 8 : 0;
}

/* The kernels use no host threads. */
EE_API int32_t ee_set_num_threads(int32_t n) {
    (void)n;
    return 1;
}

EE_API int32_t ee_synchronize(void) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return ee_cuda_fail(e, "ee_synchronize");
    return ee_collect_index_error("ee_synchronize");
}

/* ---- memory -------------------------------------------------------------------------------------------------- */

/* cudaMalloc aligns to at least 256 bytes; 0 bytes still gets a real allocation, so 0 means failure. */
EE_API void* ee_alloc(int64_t bytes) {
    if (bytes < 0) {
        ee_fail("ee_alloc: negative size %lld", (long long)bytes);
        return 0;
    }
    void* p = 0;
    cudaError_t e = cudaMalloc(&p, bytes > 0 ? (size_t)bytes : 1);
    if (e != cudaSuccess) {
        ee_fail("ee_alloc: cannot allocate %lld bytes of device memory: %s: %s", (long long)bytes, cudaGetErrorName(e), cudaGetErrorString(e));
        cudaGetLastError(); /* an out-of-memory error is not sticky: clear it so later launches don't report it */
        return 0;
    }
    return p;
}

EE_API void ee_free(void* ptr) {
    if (!ptr) return;
    if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
}

EE_API int32_t ee_copy(void* dst, const void* src, int64_t bytes, int32_t direction) {
    if (bytes < 0) return ee_fail("ee_copy: negative size %lld", (long long)bytes);
    if (bytes == 0) return 0;
    if (!dst || !src) return ee_fail("ee_copy: null pointer");
    cudaError_t e;
    switch (direction) {
    case 0: e = cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, ee_stream()); break;
    case 1: e = cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyHostToDevice); break;
    case 2: e = cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost); break;
    default: return ee_fail("ee_copy: unknown direction %d (0 = device, 1 = host to device, 2 = device to host)", direction);
    }
    if (e != cudaSuccess) {
        static const char* names[] = {"ee_copy (device to device)", "ee_copy (host to device)", "ee_copy (device to host)"};
        return ee_cuda_fail(e, names[direction]);
    }
    /* a copy to the host waited for every kernel before it: the moment to report what they found */
    return direction == 2 ? ee_collect_index_error("ee_copy (device to host)") : 0;
}

EE_API int32_t ee_fill_bytes(void* dst, int32_t value, int64_t bytes) {
    if (bytes < 0) return ee_fail("ee_fill_bytes: negative size %lld", (long long)bytes);
    if (bytes == 0) return 0;
    if (!dst) return ee_fail("ee_fill_bytes: null pointer");
    cudaError_t e = cudaMemsetAsync(dst, value & 0xff, (size_t)bytes, ee_stream());
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_fill_bytes");
}

/* ---- scratch and the op lock --------------------------------------------------------------------------------- */

static std::recursive_mutex op_mutex;

ee_op_lock::ee_op_lock() { op_mutex.lock(); }
ee_op_lock::~ee_op_lock() { op_mutex.unlock(); }

static void* scratch_ptr[EE_SCRATCH_SLOTS];
static size_t scratch_bytes[EE_SCRATCH_SLOTS];
static int64_t scratch_generation;

int64_t ee_scratch_generation(void) { return scratch_generation; }

/* The stream of this thread's work: the legacy stream, except while layer.cu captures a graph on its own. */
static thread_local cudaStream_t work_stream = 0;

cudaStream_t ee_stream(void) { return work_stream; }
void ee_set_stream(cudaStream_t stream) { work_stream = stream; }

/* Growing frees the old buffer: cudaFree waits for the device, so work still reading it finishes first. */
void* ee_scratch(int slot, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (scratch_bytes[slot] >= bytes) return scratch_ptr[slot];
    if (scratch_ptr[slot]) cudaFree(scratch_ptr[slot]);
    scratch_generation++; /* graphs that captured the old buffer are stale */
    scratch_ptr[slot] = 0;
    scratch_bytes[slot] = 0;
    size_t rounded = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); /* whole MiB: fewer regrowths */
    void* p = 0;
    cudaError_t e = cudaMalloc(&p, rounded);
    if (e != cudaSuccess) {
        ee_fail("scratch: cannot allocate %zu bytes of device memory: %s", rounded, cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    scratch_ptr[slot] = p;
    scratch_bytes[slot] = rounded;
    return p;
}
