package dev.eetune.backend;

import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A file mapped read-only by the native library (never copied through the Java heap); tensors of a checkpoint
 * are views into it. Close unmaps.
 */
public final class MappedFile implements AutoCloseable {
    private final Backend backend;
    private final Path path;
    private final long address;
    private final long size;
    private boolean closed;

    private MappedFile(Backend backend, Path path, long address, long size) {
        this.backend = backend;
        this.path = path;
        this.address = address;
        this.size = size;
    }

    static MappedFile map(Backend backend, Path path) {
        if (!Files.isRegularFile(path)) throw new IllegalArgumentException("cannot map " + path + ": not a readable file");
        Kernels k = backend.kernels();
        byte[] name = (path.toAbsolutePath().toString() + "\0").getBytes(StandardCharsets.UTF_8);
        long buf = backend.allocate(name.length + 8L);
        try {
            ByteBuffer b = backend.host().view(buf, name.length + 8L).order(ByteOrder.nativeOrder());
            b.put(8, name, 0, name.length);
            long addr = k.ee_map_file(buf + 8, buf);
            if (addr == 0) throw new IllegalArgumentException("cannot map " + path + ": " + backend.lastError());
            return new MappedFile(backend, path, addr, b.getLong(0));
        } finally {
            backend.free(buf);
        }
    }

    public Path path() { return path; }

    public long size() { return size; }

    /** Address of byte {@code offset}, checking that {@code length} bytes from there lie in the file. */
    public long address(long offset, long length) {
        if (closed) throw new IllegalStateException(path + " was unmapped");
        if (offset < 0 || length < 0 || offset + length > size) {
            throw new IllegalArgumentException(path + ": bytes [" + offset + ", " + (offset + length) + ") lie outside the file (" + size + " bytes)");
        }
        return address + offset;
    }

    /** A read-only view of a byte range (for headers). */
    public ByteBuffer bytes(long offset, int length) {
        return backend.host().view(address(offset, length), length).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        backend.kernels().ee_unmap_file(address, size);
    }

    @Override
    public String toString() { return "MappedFile[" + path + ", " + size + " bytes" + (closed ? ", closed" : "") + "]"; }
}
