/*
 * eetune_dist — process-group collectives for distributed EE-Tuning (libeedist), declared like eetune.h so that
 * native/bindgen/BindGen.java generates its Java binding (one-line EE_API declarations, scalar or pointer types).
 *
 * libeedist is built where mpi.h is present and does NOT link MPI: ee_dist_init loads Open MPI's libmpi with dlopen
 * (EETUNE_MPI=/path/libmpi.so, else libmpi.so.40 / libmpi.so), so the library can ship in the jar of a machine
 * without MPI and fail with a clear message only when a launcher actually starts ranks.
 *
 * Every collective is built from non-blocking point-to-point messages with a deadline: when a peer does not take part
 * within timeout_s seconds (dead, hung, stopped) the call returns non-zero and ee_dist_last_error() names the ranks
 * whose messages are missing, e.g. "allreduce: no message from rank 1 within 30 s (dead, hung or far behind?)".
 * Sums are formed in rank order (rank 0 + rank 1 + ...), so every rank gets the same bits whatever the timing.
 * All calls come from the thread that called ee_dist_init.
 */
#ifndef EETUNE_DIST_H
#define EETUNE_DIST_H

#include <stdint.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif


#define EE_DIST_F32 0
#define EE_DIST_F64 1

/** Loads MPI and initialises it (once); writes this process's rank and the world size to rank_size[0..1]. */
EE_API int32_t ee_dist_init(int32_t* rank_size);
/** Address of a NUL-terminated UTF-8 message describing the last failure ("" if none). */
EE_API const char* ee_dist_last_error(void);
/** Host name of this rank (MPI_Get_processor_name), NUL-terminated, into out (capacity cap bytes). */
EE_API int32_t ee_dist_host_name(char* out, int32_t cap);
/** In-place element-wise sum of n values (dtype EE_DIST_F32 or EE_DIST_F64) over all ranks, added in rank order. */
EE_API int32_t ee_dist_allreduce_sum(void* buf, int64_t n, int32_t dtype, double timeout_s);
/** Copies bytes from rank root's buf into every other rank's buf. */
EE_API int32_t ee_dist_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s);
/** Sends bytes to rank peer with a tag (>= 0); completes when the peer has received them or the deadline passes. */
EE_API int32_t ee_dist_send(const void* buf, int64_t bytes, int32_t peer, int32_t tag, double timeout_s);
/** Receives exactly bytes from rank peer with a tag (>= 0). */
EE_API int32_t ee_dist_recv(void* buf, int64_t bytes, int32_t peer, int32_t tag, double timeout_s);
/** Returns once every rank has called it (or fails naming the ranks that did not within the deadline). */
EE_API int32_t ee_dist_barrier(double timeout_s);
/** Bytes this rank has sent since ee_dist_init (payload of every message; what the scaling model in docs/distributed.md uses). */
EE_API int64_t ee_dist_bytes_sent(void);
/** Ends every rank of the job with this exit code (MPI_Abort): the way out after a peer failed or hung. */
EE_API void ee_dist_abort(int32_t code);
/** Shuts MPI down after a successful run (all ranks call it). */
EE_API int32_t ee_dist_finalize(void);

#ifdef __cplusplus
}
#endif

#endif /* EETUNE_DIST_H */
