package dev.eetune.cuda;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.spi.Binding;
import dev.eetune.backend.spi.NativeLibraryLoader;
import dev.eetune.dist.ProcessGroup;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;

/**
 * The process group of a distributed run on the CUDA backend: device tensors (the heads' gradients, a pipeline's
 * hidden states) go through NCCL (libeenccl, generated binding {@link NcclAbi}); host values, byte arrays, barriers and
 * aborting go through the launcher's group it is made from (MPI), which also bootstraps NCCL: rank 0's unique id is
 * broadcast over it. Sums are added in rank order, as in the MPI group, so they have the same bits (eetune_nccl.h).
 *
 * <p>Each rank uses the first GPU it sees (libeecuda's device 0): one rank per GPU means one visible GPU per rank
 * (CUDA_VISIBLE_DEVICES; the {@code ee} launcher sets it from the launcher's local rank, Slurm's
 * {@code --gpus-per-task=1} does too). Thread-safety: one thread, the one that made it.
 */
final class NcclGroup implements ProcessGroup {
    private static final int UNIQUE_ID_BYTES = 128;

    private final ProcessGroup host;
    private final NcclAbi abi;
    private final HostMemory memory;
    private final double timeoutSeconds;

    private NcclGroup(ProcessGroup host, NcclAbi abi, HostMemory memory, double timeoutSeconds) {
        this.host = host;
        this.abi = abi;
        this.memory = memory;
        this.timeoutSeconds = timeoutSeconds;
    }

    /** Joins the NCCL communicator of all ranks of {@code host} (every rank calls this at the same point). */
    static NcclGroup join(ProcessGroup host, Duration timeout) {
        Path library;
        try {
            library = NativeLibraryLoader.load(NcclGroup.class, "eenccl");
        } catch (UnsatisfiedLinkError e) {
            throw new IllegalStateException("distributed runs on the CUDA backend need libeenccl, built beside libeecuda by native/cuda/build.sh (needs nvcc): " + e.getMessage(), e);
        }
        Binding binding = Binding.selected(FfmCuda.unavailableReason());
        NcclAbi abi = binding == Binding.FFM ? FfmCuda.bindNccl(library) : JnaCuda.bindNccl(library);
        HostMemory memory = binding == Binding.FFM ? FfmCuda.hostMemory() : JnaCuda.hostMemory();
        NcclGroup g = new NcclGroup(host, abi, memory, timeout.toMillis() / 1000.0);
        ByteBuffer id = ByteBuffer.allocateDirect(UNIQUE_ID_BYTES).order(ByteOrder.nativeOrder());
        long address = memory.address(id);
        try {
            if (host.rank() == 0) g.check(abi.ee_nccl_unique_id(address), "");
            byte[] bytes = new byte[UNIQUE_ID_BYTES];
            id.get(0, bytes);
            id.put(0, host.broadcast(bytes, 0));
            g.check(abi.ee_nccl_init(address, host.rank(), host.size(), 0), " (each rank needs a GPU of its own: a rank uses the first GPU it sees, so "
                + "give each rank one with CUDA_VISIBLE_DEVICES; the ee launcher does so from the launcher's local rank; NCCL_DEBUG=WARN says more)");
        } finally {
            Reference.reachabilityFence(id);
        }
        return g;
    }

    @Override public int rank() { return host.rank(); }

    @Override public int size() { return host.size(); }

    @Override
    public void allReduceSum(Tensor t) {
        if (t.device().isHost()) {
            host.allReduceSum(t);
            return;
        }
        if (t.dtype() != DType.F32) throw new IllegalArgumentException("allReduceSum: the NCCL group sums f32 tensors, not " + t);
        check(abi.ee_nccl_allreduce_sum(t.address(), t.size(), timeoutSeconds), "");
    }

    @Override public void allReduceSum(double[] values) { host.allReduceSum(values); }

    @Override
    public void broadcast(Tensor t, int root) {
        if (t.device().isHost()) host.broadcast(t, root);
        else check(abi.ee_nccl_broadcast(t.address(), t.byteSize(), root, timeoutSeconds), "");
    }

    @Override public byte[] broadcast(byte[] bytes, int root) { return host.broadcast(bytes, root); }

    /** Device tensors: NCCL carries no tags, it delivers one peer's messages in order; only tag 0 is accepted. */
    @Override
    public void send(Tensor t, int peer, int tag) {
        if (t.device().isHost()) {
            host.send(t, peer, tag);
            return;
        }
        requireNoTag(tag, "send");
        check(abi.ee_nccl_send(t.address(), t.byteSize(), peer, timeoutSeconds), "");
    }

    @Override
    public void recv(Tensor t, int peer, int tag) {
        if (t.device().isHost()) {
            host.recv(t, peer, tag);
            return;
        }
        requireNoTag(tag, "recv");
        check(abi.ee_nccl_recv(t.address(), t.byteSize(), peer, timeoutSeconds), "");
    }

    @Override public void barrier() { host.barrier(); }

    /** The launcher group's bytes plus NCCL's. */
    @Override public long bytesSent() { return host.bytesSent() + abi.ee_nccl_bytes_sent(); }

    @Override public void abort(int code) { host.abort(code); }

    @Override public String describe() { return host.describe() + ", device tensors through NCCL"; }

    /** Leaves the NCCL communicator, then the launcher's group. */
    @Override
    public void close() {
        check(abi.ee_nccl_destroy(), "");
        host.close();
    }

    private static void requireNoTag(int tag, String call) {
        if (tag != 0) throw new IllegalArgumentException(call + ": tag " + tag + ": NCCL has no message tags (device tensors take tag 0 and arrive in order)");
    }

    private void check(int rc, String hint) {
        if (rc != 0) throw new IllegalStateException(memory.string(abi.ee_nccl_last_error()) + "; this is " + host.describe() + hint);
    }

    @Override public String toString() { return "NcclGroup[" + describe() + "]"; }
}
