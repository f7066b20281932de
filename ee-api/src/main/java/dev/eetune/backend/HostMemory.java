package dev.eetune.backend;

import java.nio.ByteBuffer;

/** Host-memory access a binding provides (FFM or JNA): direct ByteBuffers over native memory, and back. */
public interface HostMemory {
    /** A native-order view of {@code bytes} bytes at {@code address}; valid while that memory is. */
    ByteBuffer view(long address, long bytes);

    /** The native address of a direct buffer's current position; valid while the buffer is reachable. */
    long address(ByteBuffer direct);

    /** Reads a NUL-terminated UTF-8 string (at most 4096 bytes). */
    default String string(long address) {
        if (address == 0) return "";
        ByteBuffer b = view(address, 4096);
        int n = 0;
        while (n < 4096 && b.get(n) != 0) n++;
        byte[] bytes = new byte[n];
        b.get(bytes);
        return new String(bytes, java.nio.charset.StandardCharsets.UTF_8);
    }
}
