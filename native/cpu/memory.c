/* Host memory: aligned allocation, copies, fills and read-only file mappings (model weights). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
    if (st.st_size == 0) { /* mmap rejects length 0 */
        ee_fail("ee_map_file: cannot map %s: the file is empty", path);
        close(fd);
        return 0;
    }
    void* p = mmap(0, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd); /* the mapping keeps the file alive */
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
