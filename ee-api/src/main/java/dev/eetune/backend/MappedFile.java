package dev.eetune.backend;

import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/**
 * A file mapped read-only by the native library (never copied through the Java heap); tensors of a checkpoint
 * are views into it ({@code Scope.wrap}). Close unmaps.
 *
 * <p>On a host backend the kernels read the mapping itself. A device backend ({@link #mapForDevice}) cannot, so each
 * byte range a tensor asks for is copied into device memory the first time {@link #address} is called for it, through
 * {@link Backend#allocate} (counted in {@link Backend#liveBytes}): a pipeline stage thus holds only the tensors it
 * uses, as the host mapping only ever has the pages it reads. Closing frees the copies.
 *
 * <p>Thread-safety: any thread may ask for addresses and bytes; close once no thread uses it.
 */
public final class MappedFile implements AutoCloseable {
    private final Backend files;
    private final Path path;
    private final long address;
    private final long size;
    private final Backend device;
    private final Map<Long, long[]> copies = new HashMap<>(); // offset -> {bytes, device address}
    private boolean closed;

    private MappedFile(Backend files, Path path, long address, long size, Backend device) {
        this.files = files;
        this.path = path;
        this.address = address;
        this.size = size;
        this.device = device;
    }

    static MappedFile map(Backend backend, Path path) { return map(backend, path, null); }

    /**
     * Maps {@code path} on the host through {@code host} (a backend over host memory whose library maps files), for
     * the kernels of {@code device}: {@link #address} hands out device copies of the ranges asked for.
     */
    public static MappedFile mapForDevice(Backend host, Backend device, Path path) { return map(host, path, device); }

    private static MappedFile map(Backend backend, Path path, Backend device) {
        if (!Files.isRegularFile(path)) throw new IllegalArgumentException("cannot map " + path + ": not a readable file");
        Kernels k = backend.kernels();
        byte[] name = (path.toAbsolutePath().toString() + "\0").getBytes(StandardCharsets.UTF_8);
        long buf = backend.allocate(name.length + 8L);
        try {
            ByteBuffer b = backend.host().view(buf, name.length + 8L).order(ByteOrder.nativeOrder());
            b.put(8, name, 0, name.length);
            long addr = k.ee_map_file(buf + 8, buf);
            if (addr == 0) throw new IllegalArgumentException("cannot map " + path + ": " + backend.lastError());
            return new MappedFile(backend, path, addr, b.getLong(0), device);
        } finally {
            backend.free(buf);
        }
    }

    public Path path() { return path; }

    public long size() { return size; }

    /** Fails unless {@code length} bytes from {@code offset} lie in the file and it is still mapped. */
    public void requireRange(long offset, long length) {
        if (closed) throw new IllegalStateException(path + " was unmapped");
        if (offset < 0 || length < 0 || offset + length > size) {
            throw new IllegalArgumentException(path + ": bytes [" + offset + ", " + (offset + length) + ") lie outside the file (" + size + " bytes)");
        }
    }

    /**
     * The address the backend's kernels read byte {@code offset} at, checking that {@code length} bytes from there lie
     * in the file. For a device backend: the device copy of exactly this range, made on the first call for it.
     */
    public synchronized long address(long offset, long length) {
        requireRange(offset, length);
        if (device == null) return address + offset;
        long[] copy = copies.get(offset);
        if (copy != null && copy[0] == length) return copy[1];
        if (copy != null) throw new IllegalArgumentException(path + ": bytes from " + offset + " were asked for as " + copy[0] + " and as " + length + " bytes");
        long dst = device.allocate(Math.max(1, length));
        if (device.kernels().ee_copy(dst, address + offset, length, 1) != 0) {
            String why = device.lastError();
            device.free(dst);
            throw new IllegalStateException(path + ": copying bytes [" + offset + ", " + (offset + length) + ") to " + device.name() + " failed: " + why);
        }
        copies.put(offset, new long[] {length, dst});
        return dst;
    }

    /** A read-only view of a byte range of the host mapping (for headers). */
    public ByteBuffer bytes(long offset, int length) {
        requireRange(offset, length);
        return files.host().view(address + offset, length).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        for (long[] c : copies.values()) device.free(c[1]);
        copies.clear();
        files.kernels().ee_unmap_file(address, size);
    }

    @Override
    public String toString() { return "MappedFile[" + path + ", " + size + " bytes" + (closed ? ", closed" : "") + "]"; }
}
