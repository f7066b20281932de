package dev.eetune.tensor;

import dev.eetune.backend.Backend;

/** A block of backend memory shared by a tensor and its views; released once. */
final class Storage {
    final Backend backend;
    final long address;
    final long bytes;
    private final Runnable release;
    private volatile boolean released;

    Storage(Backend backend, long address, long bytes, Runnable release) {
        this.backend = backend;
        this.address = address;
        this.bytes = bytes;
        this.release = release;
    }

    boolean isReleased() { return released; }

    synchronized void release() {
        if (released) return;
        released = true;
        if (release != null) release.run();
    }
}
