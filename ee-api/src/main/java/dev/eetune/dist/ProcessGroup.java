package dev.eetune.dist;

import dev.eetune.tensor.Tensor;

/**
 * The processes of one distributed run: each has a rank in [0, size). Collectives are called by every rank in the same
 * order; point-to-point calls pair a send with the peer's recv. Every call either completes or fails within the group's
 * time-out with an {@link IllegalStateException} naming the ranks that did not take part (dead, hung or far behind);
 * after such a failure the run cannot continue and {@link #abort} ends every rank.
 *
 * <p>Sums are added in rank order (rank 0 + rank 1 + ...), so every rank gets the same bits whatever the timing.
 * Tensors are f32 on the host for the MPI group; device tensors need a device group (NCCL).
 *
 * <p>Thread-safety: one thread, the one that made the group.
 */
public interface ProcessGroup extends AutoCloseable {
    /** This process's rank, in [0, size). */
    int rank();

    /** Number of processes. */
    int size();

    /** Replaces {@code t} (f32) on every rank with the element-wise sum over all ranks. */
    void allReduceSum(Tensor t);

    /** Replaces {@code values} on every rank with the element-wise sum over all ranks. */
    void allReduceSum(double[] values);

    /** Copies rank {@code root}'s {@code t} into every other rank's {@code t}. */
    void broadcast(Tensor t, int root);

    /** Copies rank {@code root}'s bytes to every rank and returns them (every rank passes the same length). */
    byte[] broadcast(byte[] bytes, int root);

    /** Sends {@code t} to rank {@code peer}, which receives it with {@link #recv} and the same tag. */
    void send(Tensor t, int peer, int tag);

    /** Receives into {@code t} what rank {@code peer} sent with {@code tag}. */
    void recv(Tensor t, int peer, int tag);

    /** Returns once every rank has called it. */
    void barrier();

    /** Bytes this rank has sent to the others so far (message payloads). */
    long bytesSent();

    /** Ends every rank of the run with {@code code}; for when a peer failed (no clean shutdown is possible). */
    void abort(int code);

    /** "rank 1 of 4 on host-a (MPI)" and the like. */
    String describe();

    /** Leaves the group after a successful run (every rank calls it). */
    @Override
    void close();
}
