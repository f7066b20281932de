package dev.eetune.backend;

import dev.eetune.tensor.Device;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * A compute backend: memory plus the kernels of the one native ABI ({@link Kernels}). Implementations come from
 * {@link BackendProvider}s found by {@link Backends}. The library computes only through {@link #ops()}, which
 * validates shapes and dtypes in Java before any native call.
 */
public abstract class Backend implements AutoCloseable {
    private final Kernels kernels;
    private final HostMemory host;
    private final Ops ops;
    private final java.util.concurrent.ConcurrentHashMap<Long, Long> sizes = new java.util.concurrent.ConcurrentHashMap<>();
    private final java.util.concurrent.atomic.AtomicLong live = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong peak = new java.util.concurrent.atomic.AtomicLong();

    protected Backend(Kernels kernels, HostMemory host) {
        this.kernels = kernels;
        this.host = host;
        this.ops = new Ops(this);
    }

    /** Short name, e.g. {@code cpu} or {@code cuda}. */
    public abstract String name();

    public abstract Device device();

    /** Which binding calls the native library (e.g. {@code ffm}, {@code jna}). */
    public abstract String binding();

    public final Kernels kernels() { return kernels; }

    public final HostMemory host() { return host; }

    /** The validated op set. */
    public final Ops ops() { return ops; }

    /** Allocates backend memory (64-byte aligned). */
    public long allocate(long bytes) {
        long address = kernels.ee_alloc(bytes);
        if (address == 0) throw new OutOfMemoryError(name() + ": cannot allocate " + bytes + " bytes: " + lastError());
        sizes.put(address, bytes);
        long now = live.addAndGet(bytes);
        peak.accumulateAndGet(now, Math::max);
        return address;
    }

    public void free(long address) {
        Long bytes = sizes.remove(address);
        if (bytes != null) live.addAndGet(-bytes);
        kernels.ee_free(address);
    }

    /** Bytes currently allocated through {@link #allocate} (mapped files not included). */
    public long liveBytes() { return live.get(); }

    /** The most bytes allocated at once since the last {@link #resetPeak()}. */
    public long peakBytes() { return peak.get(); }

    public void resetPeak() { peak.set(live.get()); }

    /** Copies {@code src}'s remaining bytes to backend memory at {@code dst}. */
    public void write(long dst, ByteBuffer src) {
        host.view(dst, src.remaining()).order(ByteOrder.nativeOrder()).put(src);
    }

    /** Fills {@code dst}'s remaining bytes from backend memory at {@code src}. */
    public void read(long src, ByteBuffer dst) {
        dst.put(host.view(src, dst.remaining()));
    }

    /** Maps a file read-only into memory this backend's kernels can read; see {@link MappedFile}. */
    public MappedFile map(Path file) {
        return MappedFile.map(this, file);
    }

    /** The native library's description of its last failure on this thread. */
    public String lastError() { return host.string(kernels.ee_last_error()); }

    /** One short line: backend, device, binding and the native library's features. */
    public String describe() {
        int f = kernels.ee_features();
        StringBuilder sb = new StringBuilder(name()).append(" (").append(device()).append(", ").append(binding());
        if ((f & 1) != 0) sb.append(", avx2");
        if ((f & 4) != 0) sb.append(", avx512");
        if ((f & 2) != 0) sb.append(", openblas");
        return sb.append(')').toString();
    }

    @Override
    public void close() {}

    @Override
    public String toString() { return "Backend[" + describe() + "]"; }
}
