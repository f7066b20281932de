package dev.eetune.cuda;

import dev.eetune.backend.Backend;
import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;
import dev.eetune.backend.MappedFile;
import dev.eetune.backend.spi.Binding;
import dev.eetune.tensor.Device;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * The CUDA backend (libeecuda): tensors live in device memory (cudaMalloc), the kernels are the ABI of eetune.h run on
 * the GPU, all on one CUDA stream in call order. Host transfers go through direct-buffer staging and ee_copy.
 *
 * <p>{@link #map(Path)} gives the loaders (which wrap mapped bytes as tensors) device addresses: the file is mapped on
 * the host and each tensor's bytes are copied into device memory when the tensor is first used; closing the
 * {@link MappedFile} frees the device copies, and {@link MappedFile#bytes} reads the host mapping (headers).
 */
public final class CudaBackend extends Backend {
    private static final Device DEVICE = new Device("cuda", 0);

    private final Binding binding;
    private final Path library;
    private final HostFiles hostFiles;

    CudaBackend(Kernels kernels, HostMemory host, Binding binding, Path library) {
        super(kernels, host);
        this.binding = binding;
        this.library = library;
        this.hostFiles = new HostFiles(kernels, host, binding);
    }

    @Override
    public String name() { return "cuda"; }

    @Override
    public Device device() { return DEVICE; }

    @Override
    public String binding() { return binding.label(); }

    /** The libeecuda file in use. */
    public Path library() { return library; }

    /** Copies {@code src}'s remaining bytes from the host to device memory at {@code dst}. */
    @Override
    public void write(long dst, ByteBuffer src) {
        int n = src.remaining();
        if (n == 0) return;
        ByteBuffer direct = src;
        if (!src.isDirect()) {
            direct = ByteBuffer.allocateDirect(n).order(ByteOrder.nativeOrder());
            direct.put(src.duplicate()).flip();
        }
        try {
            check(kernels().ee_copy(dst, addressOf(direct), n, 1), "write (host to device)");
        } finally {
            Reference.reachabilityFence(direct);
        }
        src.position(src.limit());
    }

    /** Fills {@code dst}'s remaining bytes from device memory at {@code src}. */
    @Override
    public void read(long src, ByteBuffer dst) {
        int n = dst.remaining();
        if (n == 0) return;
        ByteBuffer direct = dst.isDirect() ? dst : ByteBuffer.allocateDirect(n).order(ByteOrder.nativeOrder());
        try {
            check(kernels().ee_copy(addressOf(direct), src, n, 2), "read (device to host)");
        } finally {
            Reference.reachabilityFence(direct);
        }
        if (direct != dst) dst.put(direct);
        else dst.position(dst.limit());
    }

    /**
     * Maps a file for the GPU: it is mapped on the host, and each byte range a tensor asks for is copied into device
     * memory on first use ({@link MappedFile#mapForDevice}), so a pipeline stage holds only the weights it uses.
     * Closing it frees the device copies and unmaps the file; {@link MappedFile#bytes} reads the host mapping.
     */
    @Override
    public MappedFile map(Path file) { return MappedFile.mapForDevice(hostFiles, this, file); }

    /** Copies {@code bytes} from host memory at {@code hostSrc} to device memory at {@code deviceDst}. */
    public void copyFromHost(long deviceDst, long hostSrc, long bytes) {
        check(kernels().ee_copy(deviceDst, hostSrc, bytes, 1), "copyFromHost");
    }

    @Override
    public String describe() { return "cuda (" + device() + ", " + binding() + ", " + library.getFileName() + ")"; }

    /** Finishes queued work (the memory itself belongs to the scopes that made it). */
    @Override
    public void close() { kernels().ee_synchronize(); }

    private long addressOf(ByteBuffer direct) {
        return host().address(direct);
    }

    private void check(int rc, String what) {
        if (rc != 0) throw new IllegalStateException("cuda " + what + " failed: " + lastError());
    }

    /**
     * The host side of {@link #map}: libeecuda's ee_map_file / ee_unmap_file (host mmap, shared with libeecpu through
     * native/common) on host memory, with host allocations for MappedFile's path and size buffer.
     */
    private static final class HostFiles extends Backend {
        private final Binding binding;

        HostFiles(Kernels kernels, HostMemory host, Binding binding) {
            super(kernels, host);
            this.binding = binding;
        }

        @Override
        public String name() { return "cuda-host-files"; }

        @Override
        public Device device() { return Device.CPU; }

        @Override
        public String binding() { return binding.label(); }

        @Override
        public long allocate(long bytes) {
            long p = com.sun.jna.Native.malloc(Math.max(1, bytes));
            if (p == 0) throw new OutOfMemoryError("cannot allocate " + bytes + " bytes of host memory");
            return p;
        }

        @Override
        public void free(long address) { if (address != 0) com.sun.jna.Native.free(address); }
    }
}
