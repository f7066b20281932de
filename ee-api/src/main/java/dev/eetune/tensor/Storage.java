package dev.eetune.tensor;

import dev.eetune.backend.Backend;

import java.util.function.LongSupplier;

/**
 * A block of backend memory shared by a tensor and its views; released once, with the scope {@code owner} names.
 * Its address may be found on first use ({@link #place}): a mapped file's tensor on a device backend is copied to the
 * device only when something first reads it, so a pipeline stage holds only the weights it uses.
 */
final class Storage {
    final Backend backend;
    final long bytes;
    final String owner;
    private final Runnable release;
    private LongSupplier place; // null once the address is known
    private volatile long address;
    private volatile boolean released;

    Storage(Backend backend, long address, long bytes, Runnable release, String owner) {
        this.backend = backend;
        this.address = address;
        this.bytes = bytes;
        this.release = release;
        this.owner = owner;
    }

    /** Storage whose address {@code place} gives on first use (and memory released with whatever owns it). */
    static Storage placedOnFirstUse(Backend backend, LongSupplier place, long bytes, String owner) {
        Storage s = new Storage(backend, 0, bytes, null, owner);
        s.place = place;
        return s;
    }

    long address() {
        long a = address;
        return a != 0 ? a : placeNow();
    }

    private synchronized long placeNow() {
        if (place != null) {
            address = place.getAsLong();
            place = null;
        }
        return address;
    }

    boolean isReleased() { return released; }

    synchronized void release() {
        if (released) return;
        released = true;
        if (release != null) release.run();
    }
}
