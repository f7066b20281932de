/*
 * Code both native libraries (libeecpu and libeecuda) compile in, once: the thread-local last error, the one message
 * shape for impossible indices found by kernels, argument checks that do not depend on the device, and read-only
 * file mappings (the .c files beside this header). Plain C; the CUDA library reaches it through extern "C".
 * Nothing here is exported beyond the EE_API functions of eetune.h.
 */
#ifndef EE_COMMON_H
#define EE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "eetune/eetune.h"

/* Small helpers that run on the host (both libraries) and on the GPU (libeecuda's kernels). */
#if defined(__CUDACC__)
#define EE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define EE_HOST_DEVICE static inline __attribute__((always_inline))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Records a printf-style message as this thread's last error and returns 1 (the failure code). */
int ee_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* An index a kernel cannot use: which kernel, and which of its index inputs. */
enum {
    EE_INDEX_OK,
    EE_BAD_EMBEDDING_FWD_ID,
    EE_BAD_EMBEDDING_BWD_ID,
    EE_BAD_ATTENTION_SEQ,
    EE_BAD_ATTENTION_POS,
    EE_BAD_KV_SEQ,
    EE_BAD_KV_POS,
    EE_BAD_GATHER_INDEX,
    EE_BAD_TARGET,
    EE_INDEX_KINDS
};

/* Records "<kernel>: row <row> has <index> <value>, outside <bound>" plus `note` (may be "") and returns 1, e.g.
 * "ee_kv_write: row 3 has seq 7, outside the cache's 2 sequences". The CPU kernels report it when they find it, the
 * CUDA library when it collects what its kernels recorded; either way the message reads the same. */
int ee_fail_index(int kind, int64_t row, int32_t value, int32_t bound, const char* note);

/* ee_cast's argument checks: 1 after recording why they fail, else 0 (n == 0 then needs no pointers). */
int ee_cast_check(const void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n);

#ifdef __cplusplus
}
#endif

EE_HOST_DEVICE int ee_is_float_dtype(int dtype) { return dtype == EE_F32 || dtype == EE_BF16 || dtype == EE_F16; }
/* the weights ee_pack_panels, ee_pack_panels_bf16 and ee_pack_panels_i8 write (B of ee_gemm only) */
EE_HOST_DEVICE int ee_is_panels_dtype(int dtype) { return dtype == EE_F32_PANELS || dtype == EE_BF16_PANELS || dtype == EE_I8_PANELS || dtype == EE_F16_PANELS; }
EE_HOST_DEVICE size_t ee_dtype_size(int dtype) { return dtype == EE_BF16 || dtype == EE_F16 ? 2 : 4; }

#endif /* EE_COMMON_H */
