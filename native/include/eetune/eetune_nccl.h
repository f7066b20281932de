/*
 * eetune_nccl — the device-buffer process group of the CUDA backend (libeenccl), declared like eetune.h for
 * native/bindgen/BindGen.java. NCCL is loaded with dlopen at run time (EETUNE_NCCL=/path/libnccl.so, else
 * libnccl.so.2), like cuBLAS in libeecuda: the library builds without NCCL headers or a GPU.
 *
 * Bootstrap through MPI, the standard way: rank 0 calls ee_nccl_unique_id, the MPI group broadcasts the 128 bytes,
 * every rank calls ee_nccl_init with them. Buffers are device addresses of libeecuda's allocations; all work is
 * issued on the legacy default stream, the stream libeecuda uses, so it is ordered after the kernels that made the
 * buffers. Each call waits for its operation with a deadline: a peer that does not take part within timeout_s makes
 * the call abort the communicator and fail ("allreduce: not complete within 30 s: a rank is dead or hung"); NCCL
 * cannot say which rank, the MPI group's next call does.
 * The sum order is NCCL's (ring or tree), fixed for a given NCCL version, rank count and topology.
 */
#ifndef EETUNE_NCCL_H
#define EETUNE_NCCL_H

#include <stdint.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif


/** Address of a NUL-terminated UTF-8 message describing the last failure ("" if none). */
EE_API const char* ee_nccl_last_error(void);
/** Loads NCCL and writes a new 128-byte ncclUniqueId to id_out (rank 0 does, then broadcasts it). */
EE_API int32_t ee_nccl_unique_id(void* id_out);
/** Joins the communicator of size ranks named by the 128-byte id as rank, on CUDA device `device`. */
EE_API int32_t ee_nccl_init(const void* id, int32_t rank, int32_t size, int32_t device);
/** In-place sum of n f32 values of a device buffer over all ranks. */
EE_API int32_t ee_nccl_allreduce_sum(float* buf, int64_t n, double timeout_s);
/** Copies bytes of rank root's device buffer into every other rank's. */
EE_API int32_t ee_nccl_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s);
/** Sends bytes of a device buffer to rank peer. */
EE_API int32_t ee_nccl_send(const void* buf, int64_t bytes, int32_t peer, double timeout_s);
/** Receives bytes into a device buffer from rank peer. */
EE_API int32_t ee_nccl_recv(void* buf, int64_t bytes, int32_t peer, double timeout_s);
/** Leaves the communicator (after a successful run). */
EE_API int32_t ee_nccl_destroy(void);

#ifdef __cplusplus
}
#endif

#endif /* EETUNE_NCCL_H */
