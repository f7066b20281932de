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
 * the host, copied whole into device memory and unmapped; closing the {@link MappedFile} frees the device copy, and
 * {@link MappedFile#bytes} returns host copies of the bytes asked for (headers).
 */
public final class CudaBackend extends Backend {
    private static final Device DEVICE = new Device("cuda", 0);

    private final Binding binding;
    private final Path library;
    private final HostMemory hostMemory;

    CudaBackend(Kernels kernels, HostMemory host, Binding binding, Path library) {
        super(kernels, host);
        this.binding = binding;
        this.library = library;
        this.hostMemory = host;
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
     * "Maps" a file for the GPU: it is mapped on the host, copied whole into device memory and unmapped again, so the
     * returned {@link MappedFile}'s addresses are device addresses that kernels (and {@code Scope.wrap}) can use.
     * Closing it frees the device copy; {@link MappedFile#bytes} reads host copies.
     */
    @Override
    public MappedFile map(Path file) { return DeviceFiles.create(kernels(), hostMemory, binding, this::addressOf).map(file); }

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
        return binding == Binding.FFM ? FfmCuda.address(direct) : JnaCuda.address(direct);
    }

    private void check(int rc, String what) {
        if (rc != 0) throw new IllegalStateException("cuda " + what + " failed: " + lastError());
    }

    /**
     * The backend behind {@link #map}: MappedFile asks it for a small host buffer (the path and the size), then calls
     * ee_map_file / ee_unmap_file, which this backend's kernels turn into "map on the host, copy to a new device
     * buffer, unmap" and "free the device buffer". Its host views of device ranges are copies (for headers).
     */
    private static final class DeviceFiles extends Backend {
        private final Binding binding;

        private DeviceFiles(Kernels kernels, HostMemory host, Binding binding) {
            super(kernels, host);
            this.binding = binding;
        }

        static DeviceFiles create(Kernels cuda, HostMemory realHost, Binding binding, java.util.function.ToLongFunction<ByteBuffer> addressOf) {
            java.util.concurrent.ConcurrentSkipListMap<Long, Long> device = new java.util.concurrent.ConcurrentSkipListMap<>(); // base -> bytes
            HostMemory host = (address, bytes) -> {
                java.util.Map.Entry<Long, Long> e = device.floorEntry(address);
                if (e == null || address >= e.getKey() + e.getValue()) return realHost.view(address, bytes);
                ByteBuffer copy = ByteBuffer.allocateDirect(Math.toIntExact(bytes)).order(ByteOrder.nativeOrder());
                int rc = cuda.ee_copy(addressOf.applyAsLong(copy), address, bytes, 2);
                Reference.reachabilityFence(copy);
                if (rc != 0) throw new IllegalStateException("cuda: reading " + bytes + " bytes of a mapped file failed: " + realHost.string(cuda.ee_last_error()));
                return copy;
            };
            java.lang.reflect.InvocationHandler handler = (proxy, method, args) -> {
                switch (method.getName()) {
                    case "ee_map_file": {
                        long hostAddr = cuda.ee_map_file((long) args[0], (long) args[1]);
                        if (hostAddr == 0) return 0L;
                        long size = realHost.view((long) args[1], 8).getLong(0);
                        long dev = cuda.ee_alloc(size);
                        if (dev == 0) {
                            cuda.ee_unmap_file(hostAddr, size);
                            return 0L;
                        }
                        int rc = cuda.ee_copy(dev, hostAddr, size, 1);
                        cuda.ee_unmap_file(hostAddr, size);
                        if (rc != 0) {
                            cuda.ee_free(dev);
                            return 0L;
                        }
                        device.put(dev, size);
                        return dev;
                    }
                    case "ee_unmap_file":
                        device.remove((long) args[0]);
                        cuda.ee_free((long) args[0]);
                        return 0;
                    default:
                        try {
                            return method.invoke(cuda, args);
                        } catch (java.lang.reflect.InvocationTargetException e) {
                            throw e.getCause();
                        }
                }
            };
            Kernels k = (Kernels) java.lang.reflect.Proxy.newProxyInstance(Kernels.class.getClassLoader(), new Class<?>[] {Kernels.class}, handler);
            return new DeviceFiles(k, host, binding);
        }

        @Override
        public String name() { return "cuda-files"; }

        @Override
        public Device device() { return DEVICE; }

        @Override
        public String binding() { return binding.label(); }

        /** Host memory for MappedFile's path and size buffer. */
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
