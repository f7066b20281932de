/*
 * Read-only file mappings (model weights). Both libraries map into HOST memory: the CPU kernels read it in place;
 * the CUDA backend copies what it needs to the device (ee-cuda's CudaBackend.map).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

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
