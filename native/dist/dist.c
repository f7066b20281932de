/*
 * libeedist: the MPI process group behind eetune_dist.h. Open MPI is loaded with dlopen (RTLD_GLOBAL: its plug-ins
 * resolve symbols of libmpi) and every entry point and predefined handle is looked up with dlsym, so this library
 * links no MPI and loads on machines without one. mpi.h supplies the types; the handles (MPI_COMM_WORLD, MPI_BYTE)
 * are Open MPI's exported globals, which is why only Open MPI (libmpi.so.40, 4.x and 5.x) is supported.
 *
 * Why collectives are written here from point-to-point messages instead of MPI_Allreduce / MPI_Bcast: (1) a
 * blocking MPI collective waits forever for a hung peer, and MPI-3's non-blocking collectives cannot say which rank
 * is missing; (2) MPI_Allreduce's summation order is the library's choice; here it is rank order, fixed.
 */
#define _GNU_SOURCE
#include "eetune/eetune_dist.h"

#include <dlfcn.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char last_error[1024];

static int fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return 1;
}

EE_API const char* ee_dist_last_error(void) { return last_error; }

/* ---- Open MPI, loaded at run time ------------------------------------------------------------------------------ */

static struct {
    __typeof__(MPI_Initialized)* Initialized;
    __typeof__(MPI_Init_thread)* Init_thread;
    __typeof__(MPI_Comm_rank)* Comm_rank;
    __typeof__(MPI_Comm_size)* Comm_size;
    __typeof__(MPI_Get_processor_name)* Get_processor_name;
    __typeof__(MPI_Isend)* Isend;
    __typeof__(MPI_Irecv)* Irecv;
    __typeof__(MPI_Test)* Test;
    __typeof__(MPI_Abort)* Abort;
    __typeof__(MPI_Finalize)* Finalize;
    MPI_Comm world;
    MPI_Datatype byte;
} mpi;

static int rank = -1, size = 0;
static int64_t bytes_sent;

static int load_mpi(void) {
    const char* env = getenv("EETUNE_MPI");
    const char* candidates[] = {env, "libmpi.so.40", "libmpi.so"};
    void* lib = NULL;
    char tried[512] = "";
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates && !lib; i++) {
        if (!candidates[i] || !*candidates[i]) continue;
        lib = dlopen(candidates[i], RTLD_NOW | RTLD_GLOBAL);
        if (!lib) {
            size_t used = strlen(tried);
            snprintf(tried + used, sizeof tried - used, "%s%s", used ? "; " : "", dlerror());
        }
        if (env && i == 0 && !lib) break; /* an explicit choice that fails is an error, not a reason to load another */
    }
    if (!lib) return fail("cannot load Open MPI (libmpi.so.40; set EETUNE_MPI to its path, or apt-get install openmpi-bin): %s", tried);
#define SYM(field, name)                                                                                        \
    if (!(*(void**) &mpi.field = dlsym(lib, name)))                                                              \
        return fail("the loaded MPI library has no %s: eetune needs Open MPI 4 or 5 (libmpi.so.40)", name);
    SYM(Initialized, "MPI_Initialized")
    SYM(Init_thread, "MPI_Init_thread")
    SYM(Comm_rank, "MPI_Comm_rank")
    SYM(Comm_size, "MPI_Comm_size")
    SYM(Get_processor_name, "MPI_Get_processor_name")
    SYM(Isend, "MPI_Isend")
    SYM(Irecv, "MPI_Irecv")
    SYM(Test, "MPI_Test")
    SYM(Abort, "MPI_Abort")
    SYM(Finalize, "MPI_Finalize")
    SYM(world, "ompi_mpi_comm_world")
    SYM(byte, "ompi_mpi_byte")
#undef SYM
    return 0;
}

EE_API int32_t ee_dist_init(int32_t* rank_size) {
    if (rank < 0) {
        if (load_mpi()) return 1;
        /* The JVM handles SIGSEGV/SIGBUS itself (implicit null checks, safepoints): Open MPI's back-trace handlers
         * for them would turn the JVM's routine signals into job aborts. Empty list = install none. */
        setenv("OMPI_MCA_opal_signal", "", 0);
        int done = 0, provided = 0;
        mpi.Initialized(&done);
        if (!done && mpi.Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) return fail("MPI_Init_thread failed");
        if (!done && provided < MPI_THREAD_SERIALIZED) return fail("MPI provides thread level %d, eetune needs MPI_THREAD_SERIALIZED", provided);
        int r, s;
        if (mpi.Comm_rank(mpi.world, &r) != MPI_SUCCESS || mpi.Comm_size(mpi.world, &s) != MPI_SUCCESS) return fail("MPI_Comm_rank/size failed");
        rank = r;
        size = s;
    }
    rank_size[0] = rank;
    rank_size[1] = size;
    return 0;
}

EE_API int32_t ee_dist_host_name(char* out, int32_t cap) {
    if (rank < 0) return fail("ee_dist_host_name: MPI is not initialised");
    char name[MPI_MAX_PROCESSOR_NAME + 1];
    int len = 0;
    if (mpi.Get_processor_name(name, &len) != MPI_SUCCESS) return fail("MPI_Get_processor_name failed");
    name[len] = 0;
    snprintf(out, (size_t) cap, "%s", name);
    return 0;
}

/* ---- messages with a deadline ---------------------------------------------------------------------------------- */

/* One message may be split into pieces: MPI counts are int. */
#define PIECE ((int64_t) 1 << 30)

typedef struct {
    MPI_Request req;
    int peer;
    int done;
} pending;

typedef struct {
    pending* items;
    int n, cap;
} batch;

static int post(batch* b, int send, void* buf, int64_t bytes, int peer, int tag) {
    for (int64_t off = 0; off < bytes || (bytes == 0 && off == 0); off += PIECE) {
        if (b->n == b->cap) {
            int cap = b->cap ? 2 * b->cap : 16;
            pending* grown = realloc(b->items, (size_t) cap * sizeof *grown);
            if (!grown) return fail("out of memory posting MPI messages");
            b->items = grown;
            b->cap = cap;
        }
        pending* p = &b->items[b->n++];
        int count = (int) (bytes - off < PIECE ? bytes - off : PIECE);
        p->peer = peer;
        p->done = 0;
        int rc = send ? mpi.Isend((char*) buf + off, count, mpi.byte, peer, tag, mpi.world, &p->req)
                      : mpi.Irecv((char*) buf + off, count, mpi.byte, peer, tag, mpi.world, &p->req);
        if (rc != MPI_SUCCESS) return fail("MPI_%s to rank %d failed (code %d)", send ? "Isend" : "Irecv", peer, rc);
        if (send) bytes_sent += count;
        if (bytes == 0) break;
    }
    return 0;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Waits for every posted message; on the deadline names the peers whose messages did not complete. */
static int wait_all(batch* b, const char* what, double timeout_s) {
    double deadline = now() + timeout_s;
    long idle = 0;
    for (;;) {
        int open = 0;
        for (int i = 0; i < b->n; i++) {
            if (b->items[i].done) continue;
            int flag = 0;
            if (mpi.Test(&b->items[i].req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return fail("%s: MPI_Test failed for rank %d", what, b->items[i].peer);
            if (flag) b->items[i].done = 1;
            else open++;
        }
        if (!open) {
            b->n = 0;
            return 0;
        }
        if (now() > deadline) break;
        /* spin briefly (latency), then yield the core to the computation of the other ranks on shared machines */
        if (++idle > 1000) {
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
    }
    char peers[256] = "";
    int listed[64], nlisted = 0;
    for (int i = 0; i < b->n; i++) {
        if (b->items[i].done) continue;
        int seen = 0;
        for (int k = 0; k < nlisted; k++) seen |= listed[k] == b->items[i].peer;
        if (seen || nlisted == 64) continue;
        listed[nlisted++] = b->items[i].peer;
        size_t used = strlen(peers);
        snprintf(peers + used, sizeof peers - used, "%s%d", used ? ", " : "", b->items[i].peer);
    }
    return fail("%s: no message from rank%s %s within %.0f s (dead, hung or far behind?); this is rank %d of %d", what,
                nlisted > 1 ? "s" : "", peers, timeout_s, rank, size);
}

static int ready(const char* what) {
    if (rank < 0) return fail("%s: MPI is not initialised (ee_dist_init)", what);
    return 0;
}

/* ---- collectives --------------------------------------------------------------------------------------------- */

EE_API int32_t ee_dist_allreduce_sum(void* buf, int64_t n, int32_t dtype, double timeout_s) {
    if (ready("allreduce")) return 1;
    if (dtype != EE_DIST_F32 && dtype != EE_DIST_F64) return fail("allreduce: unknown dtype %d", dtype);
    if (size == 1 || n == 0) return 0;
    size_t es = dtype == EE_DIST_F32 ? 4 : 8;
    /* Reduce-scatter then all-gather over n/size chunks: rank c owns chunk c, receives it from every rank, adds the
     * contributions in rank order, and sends the sum back to everyone (2 (size-1)/size of the buffer per rank). */
    int64_t chunk = (n + size - 1) / size;
    char* recv = malloc((size_t) chunk * es * (size_t) size);
    if (!recv) return fail("allreduce: cannot allocate %lld bytes", (long long) (chunk * (int64_t) es * size));
    int64_t mine_at = chunk * rank, mine = n - mine_at < chunk ? (n - mine_at > 0 ? n - mine_at : 0) : chunk;
    batch b = {0};
    int rc = 0;
    for (int p = 0; p < size && !rc; p++) {
        if (p == rank) continue;
        int64_t at = chunk * p, len = n - at < chunk ? (n - at > 0 ? n - at : 0) : chunk;
        rc = post(&b, 0, recv + (size_t) p * chunk * es, mine * (int64_t) es, p, 1) || post(&b, 1, (char*) buf + at * es, len * (int64_t) es, p, 1);
    }
    if (!rc) rc = wait_all(&b, "allreduce (reduce-scatter)", timeout_s);
    if (!rc) {
        memcpy(recv + (size_t) rank * chunk * es, (char*) buf + mine_at * es, (size_t) mine * es);
        for (int64_t i = 0; i < mine; i++) {
            if (dtype == EE_DIST_F32) {
                float s = ((float*) recv)[i];
                for (int p = 1; p < size; p++) s += ((float*) recv)[(int64_t) p * chunk + i];
                ((float*) buf)[mine_at + i] = s;
            } else {
                double s = ((double*) recv)[i];
                for (int p = 1; p < size; p++) s += ((double*) recv)[(int64_t) p * chunk + i];
                ((double*) buf)[mine_at + i] = s;
            }
        }
        for (int p = 0; p < size && !rc; p++) {
            if (p == rank) continue;
            int64_t at = chunk * p, len = n - at < chunk ? (n - at > 0 ? n - at : 0) : chunk;
            rc = post(&b, 0, (char*) buf + at * es, len * (int64_t) es, p, 2) || post(&b, 1, (char*) buf + mine_at * es, mine * (int64_t) es, p, 2);
        }
        if (!rc) rc = wait_all(&b, "allreduce (all-gather)", timeout_s);
    }
    free(b.items);
    free(recv);
    return rc;
}

EE_API int32_t ee_dist_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s) {
    if (ready("broadcast")) return 1;
    if (root < 0 || root >= size) return fail("broadcast: root %d is not a rank of this group of %d", root, size);
    if (size == 1) return 0;
    batch b = {0};
    int rc = 0;
    if (rank == root) {
        for (int p = 0; p < size && !rc; p++) if (p != root) rc = post(&b, 1, buf, bytes, p, 3);
    } else {
        rc = post(&b, 0, buf, bytes, root, 3);
    }
    if (!rc) rc = wait_all(&b, "broadcast", timeout_s);
    free(b.items);
    return rc;
}

static int point_to_point(int send, void* buf, int64_t bytes, int peer, int tag, double timeout_s) {
    const char* what = send ? "send" : "recv";
    if (ready(what)) return 1;
    if (peer < 0 || peer >= size || peer == rank) return fail("%s: peer %d is not another rank of this group of %d (this is rank %d)", what, peer, size, rank);
    if (tag < 0 || tag > 32767 - 16) return fail("%s: tag %d outside [0, 32751]", what, tag);
    batch b = {0};
    int rc = post(&b, send, buf, bytes, peer, 16 + tag);
    if (!rc) rc = wait_all(&b, what, timeout_s);
    free(b.items);
    return rc;
}

EE_API int32_t ee_dist_send(const void* buf, int64_t bytes, int32_t peer, int32_t tag, double timeout_s) {
    return point_to_point(1, (void*) buf, bytes, peer, tag, timeout_s);
}

EE_API int32_t ee_dist_recv(void* buf, int64_t bytes, int32_t peer, int32_t tag, double timeout_s) {
    return point_to_point(0, buf, bytes, peer, tag, timeout_s);
}

EE_API int32_t ee_dist_barrier(double timeout_s) {
    if (ready("barrier")) return 1;
    if (size == 1) return 0;
    /* every rank tells every other one it is here: a missing rank is named, unlike with MPI_Ibarrier */
    char token = 1, *seen = malloc((size_t) size);
    if (!seen) return fail("barrier: out of memory");
    batch b = {0};
    int rc = 0;
    for (int p = 0; p < size && !rc; p++) {
        if (p == rank) continue;
        rc = post(&b, 0, seen + p, 1, p, 4) || post(&b, 1, &token, 1, p, 4);
    }
    if (!rc) rc = wait_all(&b, "barrier", timeout_s);
    free(b.items);
    free(seen);
    return rc;
}

EE_API int64_t ee_dist_bytes_sent(void) { return bytes_sent; }

EE_API void ee_dist_abort(int32_t code) {
    if (rank >= 0) mpi.Abort(mpi.world, code);
    exit(code);
}

EE_API int32_t ee_dist_finalize(void) {
    if (rank < 0) return 0;
    if (mpi.Finalize() != MPI_SUCCESS) return fail("MPI_Finalize failed");
    rank = -1;
    return 0;
}
