/*
 * Library information and the process-wide runtime of libeecuda: the thread-local last error, device discovery
 * (never fatal without a GPU or driver), device memory, copies, host file mappings, scratch buffers and the op lock.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <mutex>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.cuh"

/* ---- errors ---------------------------------------------------------------------------------------------------- */

static thread_local char last_error[1024];

int ee_fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return 1;
}

int ee_cuda_fail(cudaError_t e, const char* what) {
    return ee_fail("%s: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

int ee_launched(const char* what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, what);
}

EE_API const char* ee_last_error(void) { return last_error; }

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
    int* word = ee_device_error_word();
    if (!word) return 0;
    int flags = 0;
    e = cudaMemcpy(&flags, word, sizeof flags, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return ee_cuda_fail(e, "ee_synchronize: reading the device error word");
    if (flags == 0) return 0;
    cudaMemset(word, 0, sizeof(int));
    return ee_fail("ee_synchronize: kernels reported bad input since the last check (their outputs hold NaN):%s%s%s%s%s",
                   flags & EE_DERR_EMBEDDING_ID ? " embedding id out of range;" : "",
                   flags & EE_DERR_ATTENTION_ROW ? " attention row outside the cache;" : "",
                   flags & EE_DERR_KV_ROW ? " kv_write row outside the cache;" : "",
                   flags & EE_DERR_GATHER_INDEX ? " gather_rows index negative;" : "",
                   flags & EE_DERR_TARGET ? " cross-entropy target outside the vocabulary;" : "");
}

static pthread_once_t word_once = PTHREAD_ONCE_INIT;
static int* error_word;

static void error_word_init(void) {
    int* p = 0;
    if (cudaMalloc(&p, sizeof(int)) == cudaSuccess && cudaMemset(p, 0, sizeof(int)) == cudaSuccess) error_word = p;
    else cudaGetLastError();
}

int* ee_device_error_word(void) {
    pthread_once(&word_once, error_word_init);
    return error_word;
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
    case 0: e = cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, 0); break;
    case 1: e = cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyHostToDevice); break;
    case 2: e = cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost); break;
    default: return ee_fail("ee_copy: unknown direction %d (0 = device, 1 = host to device, 2 = device to host)", direction);
    }
    if (e != cudaSuccess) {
        static const char* names[] = {"ee_copy (device to device)", "ee_copy (host to device)", "ee_copy (device to host)"};
        return ee_cuda_fail(e, names[direction]);
    }
    return 0;
}

EE_API int32_t ee_fill_bytes(void* dst, int32_t value, int64_t bytes) {
    if (bytes < 0) return ee_fail("ee_fill_bytes: negative size %lld", (long long)bytes);
    if (bytes == 0) return 0;
    if (!dst) return ee_fail("ee_fill_bytes: null pointer");
    cudaError_t e = cudaMemsetAsync(dst, value & 0xff, (size_t)bytes, 0);
    return e == cudaSuccess ? 0 : ee_cuda_fail(e, "ee_fill_bytes");
}

/* Host mappings, as in the CPU library: the pointer is HOST memory; callers copy what they need to the device. */
EE_API void* ee_map_file(const char* path, int64_t* size_out) {
    if (!path || !size_out) {
        ee_fail("ee_map_file: null argument");
        return 0;
    }
    *size_out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ee_fail("ee_map_file: cannot open %s: %s", path, strerror(errno));
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ee_fail("ee_map_file: cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return 0;
    }
    if (st.st_size == 0) {
        ee_fail("ee_map_file: cannot map %s: the file is empty", path);
        close(fd);
        return 0;
    }
    void* p = mmap(0, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        ee_fail("ee_map_file: cannot map %s: %s", path, strerror(err));
        return 0;
    }
    *size_out = (int64_t)st.st_size;
    return p;
}

EE_API int32_t ee_unmap_file(void* addr, int64_t size) {
    if (!addr) return ee_fail("ee_unmap_file: null address");
    if (munmap(addr, (size_t)size) != 0) return ee_fail("ee_unmap_file: munmap failed: %s", strerror(errno));
    return 0;
}

/* ---- scratch and the op lock --------------------------------------------------------------------------------- */

static std::recursive_mutex op_mutex;

ee_op_lock::ee_op_lock() { op_mutex.lock(); }
ee_op_lock::~ee_op_lock() { op_mutex.unlock(); }

static void* scratch_ptr[EE_SCRATCH_SLOTS];
static size_t scratch_bytes[EE_SCRATCH_SLOTS];

/* Growing frees the old buffer: cudaFree waits for the device, so work still reading it finishes first. */
void* ee_scratch(int slot, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (scratch_bytes[slot] >= bytes) return scratch_ptr[slot];
    if (scratch_ptr[slot]) cudaFree(scratch_ptr[slot]);
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
