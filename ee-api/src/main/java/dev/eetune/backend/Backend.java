package dev.eetune.backend;

import dev.eetune.tensor.Device;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.Set;
import java.util.function.IntUnaryOperator;

/**
 * A compute backend: memory plus the kernels of the one native ABI ({@link Kernels}). Implementations come from
 * {@link BackendProvider}s found by {@link Backends}. The library computes only through {@link #ops()}, which
 * validates shapes and dtypes in Java before any native call; settings (threads, GEMM path) are methods here. The
 * raw ABI ({@link #kernels()}) is internal: for this package and for backend implementations.
 */
public abstract class Backend implements AutoCloseable {
    private final Kernels kernels;
    private final HostMemory host;
    private final Ops ops;
    private final java.util.concurrent.ConcurrentHashMap<Long, Long> sizes = new java.util.concurrent.ConcurrentHashMap<>();
    private final java.util.concurrent.atomic.AtomicLong live = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong peak = new java.util.concurrent.atomic.AtomicLong();

    /** Which GEMM implementation the ops use (ee_set_gemm_path; declared in the order of its codes 0, 1, 2). */
    public enum GemmPath {
        /**
         * BLAS (OpenBLAS on the CPU, cuBLAS on CUDA) when the library found it, else the built-in kernel; also the
         * built-in kernel where OpenBLAS runs kernels older than the CPU's ({@link Feature#OPENBLAS_OLDER_KERNELS}).
         */
        AUTO,
        /** BLAS only: setting it fails when the library found none. */
        BLAS,
        /** The built-in kernel (exact f32 inputs on both backends). */
        FALLBACK
    }

    /** What the native library can use (the bits of ee_features). */
    public enum Feature {
        AVX2(1), OPENBLAS(2), AVX512(4), CUDA(8),
        /**
         * OpenBLAS runs kernels older than the CPU's (e.g. {@code OPENBLAS_CORETYPE=Haswell} on an AVX-512 CPU, where the
         * built-in AVX-512 GEMM measured 2.5x faster), so {@link GemmPath#AUTO} uses the built-in kernel.
         */
        OPENBLAS_OLDER_KERNELS(16),
        /** AVX-512 BW and VNNI: the 8-bit screens' integer kernel (else an AVX2 form of it). */
        AVX512_VNNI(32);

        private final int bit;

        Feature(int bit) { this.bit = bit; }
    }

    /** Refuses kernels of another ABI version (the library's ee_abi_version vs the header this code was generated from). */
    protected Backend(Kernels kernels, HostMemory host) {
        int abi = kernels.ee_abi_version();
        if (abi != Kernels.EE_ABI_VERSION) {
            throw new IllegalStateException("the native library has ABI version " + abi + " but this eetune needs " + Kernels.EE_ABI_VERSION
                + " (a stale -Deetune.native.path?)");
        }
        this.kernels = kernels;
        this.host = host;
        this.ops = new Ops(this);
    }

    /** Short name, e.g. {@code cpu} or {@code cuda}. */
    public abstract String name();

    public abstract Device device();

    /** Which binding calls the native library (e.g. {@code ffm}, {@code jna}). */
    public abstract String binding();

    /** The raw native ABI, unchecked: for {@link Ops}, {@link MappedFile}, {@link KernelProfile} and backend implementations. */
    protected final Kernels kernels() { return kernels; }

    public final HostMemory host() { return host; }

    /** The validated op set. */
    public final Ops ops() { return ops; }

    /** Allocates backend memory (64-byte aligned), reusing a freed block of exactly this size when one is cached. */
    public long allocate(long bytes) {
        long address = bytes >= CACHED_BLOCK_MIN ? takeCached(bytes) : 0;
        if (address == 0) address = kernels.ee_alloc(bytes);
        if (address == 0) throw new OutOfMemoryError(name() + ": cannot allocate " + bytes + " bytes: " + lastError());
        sizes.put(address, bytes);
        long now = live.addAndGet(bytes);
        peak.accumulateAndGet(now, Math::max);
        return address;
    }

    public void free(long address) {
        Long bytes = sizes.remove(address);
        if (bytes != null) live.addAndGet(-bytes);
        if (bytes != null && bytes >= CACHED_BLOCK_MIN && offerCached(address, bytes)) return;
        kernels.ee_free(address);
    }

    /*
     * Freed blocks of CACHED_BLOCK_MIN bytes and more are kept, up to cacheLimit bytes in all, and handed out again
     * for an allocation of the same size. A training step allocates and frees the same few hundred megabytes of
     * activations every step; through malloc they went back to the system and came back as fresh pages, and the
     * page faults (zeroing included) cost about a fifth of `ee pretrain`'s CPU time. Only memory that was allocated
     * before is cached, so the process never holds more than its high-water mark; releaseCachedMemory() returns it.
     */
    private static final long CACHED_BLOCK_MIN = 256 << 10;
    private final java.util.Map<Long, java.util.ArrayDeque<Long>> cached = new java.util.HashMap<>();
    private long cachedBytes, cacheLimit;

    private synchronized long takeCached(long bytes) {
        java.util.ArrayDeque<Long> blocks = cached.get(bytes);
        if (blocks == null || blocks.isEmpty()) return 0;
        cachedBytes -= bytes;
        return blocks.pop();
    }

    private synchronized boolean offerCached(long address, long bytes) {
        if (cachedBytes + bytes > cacheLimit) return false;
        cached.computeIfAbsent(bytes, b -> new java.util.ArrayDeque<>()).push(address);
        cachedBytes += bytes;
        return true;
    }

    /**
     * Sets how many bytes of freed blocks (of 256 KiB and more) are kept for reuse; 0 turns the cache off. A limit
     * below what is cached now releases the whole cache.
     */
    public synchronized void setMemoryCacheLimit(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("memory cache limit " + bytes + " is negative");
        cacheLimit = bytes;
        if (cachedBytes > cacheLimit) releaseCachedMemory();
    }

    public synchronized long memoryCacheLimit() { return cacheLimit; }

    /** Bytes of freed blocks kept for reuse (not counted in {@link #liveBytes()}). */
    public synchronized long cachedBytes() { return cachedBytes; }

    /** Returns every cached freed block to the system. */
    public synchronized void releaseCachedMemory() {
        for (java.util.ArrayDeque<Long> blocks : cached.values()) {
            for (long address : blocks) kernels.ee_free(address);
        }
        cached.clear();
        cachedBytes = 0;
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

    /**
     * Fills {@code dst} with the floats at {@code src}: on the CPU one copy from the memory itself (decode reads a few
     * hidden states per token this way), elsewhere through {@link #read(long, ByteBuffer)}.
     */
    public void read(long src, float[] dst) {
        if (dst.length == 0) return;
        if (device() == Device.CPU) {
            host.view(src, 4L * dst.length).order(ByteOrder.nativeOrder()).asFloatBuffer().get(dst);
            return;
        }
        ByteBuffer buf = ByteBuffer.allocate(4 * dst.length).order(ByteOrder.nativeOrder());
        read(src, buf);
        buf.clear().asFloatBuffer().get(dst);
    }

    /** Maps a file read-only into memory this backend's kernels can read; see {@link MappedFile}. */
    public MappedFile map(Path file) {
        return MappedFile.map(this, file);
    }

    /** The native library's description of its last failure on this thread. */
    public String lastError() { return host.string(kernels.ee_last_error()); }

    /**
     * Sets the number of worker threads of the kernels (on the CPU also OpenBLAS's; {@code <= 0}: the library
     * default); returns the number now in use (always 1 on CUDA, whose kernels use no host threads).
     */
    public int setThreads(int n) { return kernels.ee_set_num_threads(n); }

    /**
     * Steps of one-sequence early-exit decoding that this process has run as a two-thread pipeline (ee_exit_steps: a
     * small model's deeper layers on a second thread while the exits are decided; 0 on CUDA). For tests and benchmarks.
     */
    public long exitPipelineSteps() { return kernels.ee_exit_pipeline_steps(); }

    /** Chooses the GEMM implementation; throws when this library cannot use it (BLAS without a BLAS found). */
    public void setGemmPath(GemmPath path) {
        if (kernels.ee_set_gemm_path(path.ordinal()) != 0) throw new IllegalStateException(name() + ": GEMM path " + path + ": " + lastError());
    }

    /** What the native library can use here. */
    public Set<Feature> features() {
        int bits = kernels.ee_features();
        Set<Feature> out = EnumSet.noneOf(Feature.class);
        for (Feature f : Feature.values()) if ((bits & f.bit) != 0) out.add(f);
        return out;
    }

    /**
     * Waits for all queued work (nothing to wait for on the CPU) and throws what kernels found since the last check:
     * on CUDA, where kernels run asynchronously, that is where an impossible index (see {@link Ops}) is reported.
     */
    public void synchronize() {
        if (kernels.ee_synchronize() != 0) throw new IllegalStateException(name() + " synchronize failed: " + lastError());
    }

    /**
     * ee_noop (returns x + 1) through this backend's binding: one native call that does nothing, so that a benchmark
     * can measure what a call costs through each binding without reaching the raw ABI.
     */
    public final IntUnaryOperator noopCall() { return kernels::ee_noop; }

    /** One short line: backend, device, binding and the native library's features. */
    public String describe() {
        Set<Feature> f = features();
        StringBuilder sb = new StringBuilder(name()).append(" (").append(device()).append(", ").append(binding());
        if (f.contains(Feature.AVX2)) sb.append(", avx2");
        if (f.contains(Feature.AVX512)) sb.append(f.contains(Feature.AVX512_VNNI) ? ", avx512 (vnni)" : ", avx512");
        if (f.contains(Feature.OPENBLAS)) sb.append(f.contains(Feature.OPENBLAS_OLDER_KERNELS) ? ", openblas with older kernels: built-in GEMM" : ", openblas");
        return sb.append(')').toString();
    }

    @Override
    public void close() {}

    @Override
    public String toString() { return "Backend[" + describe() + "]"; }
}
