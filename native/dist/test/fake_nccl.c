/*
 * A test double of NCCL for machines without a GPU: the ten nccl* entry points libeenccl looks up (../nccl.cu), done
 * with MPI on host memory, which is what "device" memory is in the CUDA emulation (native/cuda/test/emu). Loaded by
 * libeenccl through EETUNE_NCCL like the real libnccl.so.2, it lets ee-cli's EmulatedNcclTuneTest run the CUDA
 * backend's distributed path (Java NcclGroup, the unique id broadcast over MPI, libeenccl's rank-order all-reduce,
 * device send/recv between pipeline stages) under mpirun with the emulated libeecuda. Build and layout:
 * native/dist/test/emulated-nccl.sh.
 *
 * It checks what real NCCL would reject or hang on: every rank joins with the same unique id (a wrong broadcast of
 * the id), ranks and sizes agree with MPI's, and the sends and receives of one group pair up (a length or peer
 * mismatch in libeenccl's exchange makes MPI report truncation, returned as ncclInvalidUsage). Operations complete
 * within the call (the emulation's stream is always idle).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { char internal[128]; } ncclUniqueId;
typedef int ncclResult_t;
enum { SUCCESS = 0, SYSTEM_ERROR = 2, INVALID_ARGUMENT = 4, INVALID_USAGE = 5 };
enum { UINT8 = 1, FLOAT32 = 7 };

struct ncclComm {
    MPI_Comm mpi;
    int rank, size;
};
typedef struct ncclComm* ncclComm_t;

/* the point-to-point calls of an open group (ncclGroupStart .. ncclGroupEnd), posted together at its end */
typedef struct {
    int send;
    void* buf;
    int bytes, peer;
    ncclComm_t comm;
} op;
static op pending[256];
static int npending, group_depth;

static int type_bytes(int type) { return type == FLOAT32 ? 4 : type == UINT8 ? 1 : 0; }

const char* ncclGetErrorString(ncclResult_t r) {
    switch (r) {
        case SUCCESS: return "no error";
        case SYSTEM_ERROR: return "fake NCCL: MPI call failed";
        case INVALID_ARGUMENT: return "fake NCCL: invalid argument";
        case INVALID_USAGE: return "fake NCCL: invalid usage (mismatched ranks, ids or messages)";
        default: return "fake NCCL: unknown error";
    }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "fake-nccl pid %ld", (long) getpid()); /* differs per process: a rank that made its own is caught */
    return SUCCESS;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
    int ready = 0, mpi_rank, mpi_size;
    MPI_Initialized(&ready);
    if (!ready) return INVALID_USAGE; /* eetune initialises MPI (libeedist) before NCCL */
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    if (rank != mpi_rank || nranks != mpi_size) {
        fprintf(stderr, "fake NCCL: ncclCommInitRank(rank %d of %d) on MPI rank %d of %d\n", rank, nranks, mpi_rank, mpi_size);
        return INVALID_ARGUMENT;
    }
    ncclUniqueId root = id;
    if (MPI_Bcast(&root, sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return SYSTEM_ERROR;
    if (memcmp(&root, &id, sizeof id) != 0) {
        fprintf(stderr, "fake NCCL: rank %d joined with another unique id than rank 0's\n", rank);
        return INVALID_USAGE;
    }
    struct ncclComm* c = calloc(1, sizeof *c);
    if (!c || MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi) != MPI_SUCCESS) return SYSTEM_ERROR;
    c->rank = rank;
    c->size = nranks;
    *comm = c;
    return SUCCESS;
}

static ncclResult_t flush(void) {
    MPI_Request reqs[256];
    MPI_Status status[256];
    for (int i = 0; i < npending; i++) {
        op* o = &pending[i];
        int rc = o->send ? MPI_Isend(o->buf, o->bytes, MPI_BYTE, o->peer, 0, o->comm->mpi, &reqs[i])
                         : MPI_Irecv(o->buf, o->bytes, MPI_BYTE, o->peer, 0, o->comm->mpi, &reqs[i]);
        if (rc != MPI_SUCCESS) return SYSTEM_ERROR;
    }
    int n = npending;
    npending = 0;
    if (MPI_Waitall(n, reqs, status) != MPI_SUCCESS) return INVALID_USAGE;
    for (int i = 0; i < n; i++) {
        int got = 0;
        if (pending[i].send) continue;
        MPI_Get_count(&status[i], MPI_BYTE, &got);
        if (got != pending[i].bytes) {
            fprintf(stderr, "fake NCCL: rank %d expected %d bytes from rank %d, got %d\n", pending[i].comm->rank, pending[i].bytes, pending[i].peer, got);
            return INVALID_USAGE;
        }
    }
    return SUCCESS;
}

static ncclResult_t post(int send, const void* buf, size_t count, int type, int peer, ncclComm_t comm) {
    size_t bytes = count * (size_t) type_bytes(type);
    if (!type_bytes(type) || peer < 0 || peer >= comm->size || peer == comm->rank || bytes > (size_t) 1 << 30 || npending == 256) return INVALID_ARGUMENT;
    pending[npending++] = (op){send, (void*) buf, (int) bytes, peer, comm};
    return group_depth ? SUCCESS : flush();
}

ncclResult_t ncclSend(const void* buf, size_t count, int type, int peer, ncclComm_t comm, void* stream) { return post(1, buf, count, type, peer, comm); }

ncclResult_t ncclRecv(void* buf, size_t count, int type, int peer, ncclComm_t comm, void* stream) { return post(0, buf, count, type, peer, comm); }

ncclResult_t ncclGroupStart(void) {
    group_depth++;
    return SUCCESS;
}

ncclResult_t ncclGroupEnd(void) {
    if (group_depth == 0) return INVALID_USAGE;
    return --group_depth ? SUCCESS : flush();
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, int type, int root, ncclComm_t comm, void* stream) {
    size_t bytes = count * (size_t) type_bytes(type);
    if (!type_bytes(type) || root < 0 || root >= comm->size || bytes > (size_t) 1 << 30) return INVALID_ARGUMENT;
    if (send != recv && comm->rank == root) memcpy(recv, send, bytes);
    return MPI_Bcast(recv, (int) bytes, MPI_BYTE, root, comm->mpi) == MPI_SUCCESS ? SUCCESS : SYSTEM_ERROR;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* error) {
    *error = SUCCESS;
    return SUCCESS;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
    free(comm); /* its MPI communicator is left: MPI_Comm_free would wait for the peers */
    return SUCCESS;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    MPI_Comm_free(&comm->mpi);
    free(comm);
    return SUCCESS;
}
