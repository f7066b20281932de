package dev.eetune.tensor;

import java.util.ConcurrentModificationException;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Checks the "one thread at a time" rule of objects with mutable native state (decoders, tuners): each public call
 * {@link #enter() enters}, and a call from a second thread while one runs throws a
 * {@link ConcurrentModificationException} instead of silently mixing two calls' state in shared buffers and caches.
 * Nested calls on the same thread are allowed. One compare-and-set per call. Thread-safe.
 */
public final class SingleThreadGuard {
    private final String owner;
    private final AtomicReference<Thread> thread = new AtomicReference<>();
    private int depth; // only the thread in `thread` touches it; the atomic hand-over publishes it

    /** Guards an object of type {@code owner} (named in the error). */
    public SingleThreadGuard(Class<?> owner) { this.owner = owner.getSimpleName(); }

    /** Marks the calling thread as the one using the object until the returned lease is closed. */
    public Scope.Lease enter() {
        Thread me = Thread.currentThread();
        if (thread.get() != me && !thread.compareAndSet(null, me)) {
            Thread other = thread.get();
            throw new ConcurrentModificationException("this " + owner + " is in use by thread '" + (other == null ? "?" : other.getName()) + "' while thread '" + me.getName()
                + "' calls it; it is for one thread at a time: give each thread its own " + owner);
        }
        depth++;
        return this::exit;
    }

    private void exit() {
        if (--depth == 0) thread.set(null);
    }
}
