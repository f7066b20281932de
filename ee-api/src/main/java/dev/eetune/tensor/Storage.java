package dev.eetune.tensor;

import dev.eetune.backend.Backend;

/** A block of backend memory shared by a tensor and its views; released once, with the scope {@code owner} names. */
final class Storage {
    final Backend backend;
    final long address;
    final long bytes;
    final String owner;
    private final Runnable release;
    private volatile boolean released;

    Storage(Backend backend, long address, long bytes, Runnable release, String owner) {
        this.backend = backend;
        this.address = address;
        this.bytes = bytes;
        this.release = release;
        this.owner = owner;
    }

    boolean isReleased() { return released; }

    synchronized void release() {
        if (released) return;
        released = true;
        if (release != null) release.run();
    }
}
