/* Host memory: aligned allocation, copies and fills (file mappings are in common/map_file.c). */
#include <stdlib.h>
#include <sys/mman.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

#include "internal.h"

#define HUGE_PAGE ((size_t)2 << 20)

/* Buffers of 4 MiB and more are 2 MiB aligned and asked for transparent huge pages: GEMM packing walks large
 * matrices with strides of kilobytes, and TLB misses then cost as much as the copy. */
void* ee_alloc_host(size_t bytes) {
    const size_t align = bytes >= 2 * HUGE_PAGE ? HUGE_PAGE : 64;
    /* aligned_alloc wants a multiple of the alignment; 0 bytes still gets a unique pointer so 0 means failure */
    const size_t rounded = bytes ? (bytes + align - 1) & ~(align - 1) : align;
    void* p = aligned_alloc(align, rounded);
    if (p && align == HUGE_PAGE) madvise(p, rounded, MADV_HUGEPAGE); /* a hint: failure is harmless */
#ifdef __SANITIZE_ADDRESS__
    /* ASan builds (EE_SANITIZE): the rounding slack is poisoned, so a kernel reading or writing even one element past
     * a buffer is reported instead of landing in bytes that happen to be ours */
    if (p) ASAN_POISON_MEMORY_REGION((char*)p + bytes, rounded - bytes);
#endif
    return p;
}

EE_API void* ee_alloc(int64_t bytes) {
    if (bytes < 0) {
        ee_fail("ee_alloc: negative size %lld", (long long)bytes);
        return 0;
    }
    void* p = ee_alloc_host((size_t)bytes);
    if (!p) ee_fail("ee_alloc: out of memory allocating %lld bytes", (long long)bytes);
    return p;
}

EE_API void ee_free(void* ptr) { free(ptr); }

EE_API int32_t ee_copy(void* dst, const void* src, int64_t bytes, int32_t direction) {
    (void)direction; /* host and device are the same memory here */
    if (bytes < 0) return ee_fail("ee_copy: negative size %lld", (long long)bytes);
    if (bytes == 0) return 0;
    if (!dst || !src) return ee_fail("ee_copy: null pointer");
    memmove(dst, src, (size_t)bytes);
    return 0;
}

EE_API int32_t ee_fill_bytes(void* dst, int32_t value, int64_t bytes) {
    if (bytes < 0) return ee_fail("ee_fill_bytes: negative size %lld", (long long)bytes);
    if (bytes == 0) return 0;
    if (!dst) return ee_fail("ee_fill_bytes: null pointer");
    memset(dst, value & 0xff, (size_t)bytes);
    return 0;
}
