package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.spi.Binding;
import dev.eetune.backend.spi.NativeLibraryLoader;
import dev.eetune.dist.ProcessGroup;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.time.Duration;

/**
 * The MPI process group: libeedist (native/dist, generated binding {@link DistAbi}), which loads Open MPI at run time.
 * Host arrays are staged through CPU-backend memory; tensors are passed by address and must be f32 host tensors.
 */
final class MpiGroup implements ProcessGroup {
    private static MpiGroup joined;

    private final DistAbi abi;
    private final Backend cpu;
    private final int rank, size;
    private final double timeoutSeconds;
    private final String hostName;

    private MpiGroup(DistAbi abi, Backend cpu, double timeoutSeconds) {
        this.abi = abi;
        this.cpu = cpu;
        this.timeoutSeconds = timeoutSeconds;
        long buf = cpu.allocate(256);
        try {
            check(abi.ee_dist_init(buf));
            var ints = cpu.host().view(buf, 8).asIntBuffer();
            rank = ints.get(0);
            size = ints.get(1);
            check(abi.ee_dist_host_name(buf, 256));
            hostName = cpu.host().string(buf);
        } finally {
            cpu.free(buf);
        }
    }

    /** Joins the launcher's group (once per process: MPI is initialised once). */
    static synchronized MpiGroup join(Duration timeout) {
        if (joined != null) return joined;
        java.nio.file.Path library;
        try {
            library = NativeLibraryLoader.load(MpiGroup.class, "eedist");
        } catch (UnsatisfiedLinkError e) {
            throw new IllegalStateException("distributed runs need libeedist, which is built where MPI's headers are installed "
                + "(apt-get install libopenmpi-dev, then rebuild): " + e.getMessage(), e);
        }
        Binding binding = Binding.selected(Ffm.unavailableReason());
        DistAbi abi = binding == Binding.FFM ? Ffm.bindDist(library) : Jna.bindDist(library);
        joined = new MpiGroup(abi, CpuLibrary.backend(), timeout.toMillis() / 1000.0);
        return joined;
    }

    @Override public int rank() { return rank; }

    @Override public int size() { return size; }

    @Override
    public void allReduceSum(Tensor t) {
        requireHostF32(t, "allReduceSum");
        check(abi.ee_dist_allreduce_sum(t.address(), t.size(), 0, timeoutSeconds));
    }

    @Override
    public void allReduceSum(double[] values) {
        long bytes = 8L * values.length, buf = cpu.allocate(Math.max(8, bytes));
        try {
            cpu.host().view(buf, bytes).asDoubleBuffer().put(values);
            check(abi.ee_dist_allreduce_sum(buf, values.length, 1, timeoutSeconds));
            cpu.host().view(buf, bytes).asDoubleBuffer().get(values);
        } finally {
            cpu.free(buf);
        }
    }

    @Override
    public void broadcast(Tensor t, int root) {
        requireHostF32(t, "broadcast");
        check(abi.ee_dist_broadcast(t.address(), t.byteSize(), root, timeoutSeconds));
    }

    @Override
    public byte[] broadcast(byte[] bytes, int root) {
        long buf = cpu.allocate(Math.max(1, bytes.length));
        try {
            cpu.host().view(buf, bytes.length).put(bytes);
            check(abi.ee_dist_broadcast(buf, bytes.length, root, timeoutSeconds));
            byte[] out = new byte[bytes.length];
            cpu.host().view(buf, bytes.length).get(out);
            return out;
        } finally {
            cpu.free(buf);
        }
    }

    @Override
    public void send(Tensor t, int peer, int tag) {
        requireHostF32(t, "send");
        check(abi.ee_dist_send(t.address(), t.byteSize(), peer, tag, timeoutSeconds));
    }

    @Override
    public void recv(Tensor t, int peer, int tag) {
        requireHostF32(t, "recv");
        check(abi.ee_dist_recv(t.address(), t.byteSize(), peer, tag, timeoutSeconds));
    }

    @Override public void barrier() { check(abi.ee_dist_barrier(timeoutSeconds)); }

    @Override public long bytesSent() { return abi.ee_dist_bytes_sent(); }

    @Override public void abort(int code) { abi.ee_dist_abort(code); }

    @Override public String describe() { return "rank " + rank + " of " + size + " on " + hostName + " (MPI)"; }

    @Override public void close() { check(abi.ee_dist_finalize()); }

    private static void requireHostF32(Tensor t, String call) {
        if (t.dtype() != DType.F32 || !t.device().isHost()) {
            throw new IllegalArgumentException(call + ": the MPI group takes f32 host tensors, not " + t + " (device tensors go through NCCL)");
        }
    }

    private void check(int rc) {
        if (rc != 0) {
            long msg = abi.ee_dist_last_error();
            throw new IllegalStateException(cpu.host().string(msg));
        }
    }

    @Override public String toString() { return "MpiGroup[" + describe() + "]"; }
}
