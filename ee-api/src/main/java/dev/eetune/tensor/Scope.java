package dev.eetune.tensor;

import dev.eetune.backend.Backend;

import java.util.ArrayDeque;
import java.util.Deque;

/**
 * Owns native memory: every tensor made through a scope is freed when the scope closes (DJL's NDManager idea).
 * Scopes nest ({@link #child()}); a child closes before its parent. Thread-safe.
 */
public final class Scope implements AutoCloseable {
    private final Backend backend;
    private final Scope parent;
    private final Deque<AutoCloseable> owned = new ArrayDeque<>();
    private boolean closed;

    private Scope(Backend backend, Scope parent) {
        this.backend = backend;
        this.parent = parent;
    }

    public static Scope of(Backend backend) { return new Scope(backend, null); }

    public Backend backend() { return backend; }

    /** A nested scope on the same backend, closed with this one at the latest. */
    public Scope child() { return track(new Scope(backend, this)); }

    /** Uninitialised memory. */
    public Tensor allocate(DType dtype, int... dims) {
        Shape shape = Shape.of(dims);
        long bytes = Math.max(1, shape.size() * dtype.bytes());
        long address = backend.allocate(bytes);
        return track(new Tensor(new Storage(backend, address, bytes, () -> backend.free(address)), 0, dtype, shape, true));
    }

    public Tensor zeros(DType dtype, int... dims) {
        Tensor t = allocate(dtype, dims);
        backend.ops().zero(t);
        return t;
    }

    public Tensor of(float[] values, int... dims) { return allocate(DType.F32, dims).copyFrom(values); }

    public Tensor of(DType dtype, float[] values, int... dims) { return allocate(dtype, dims).copyFrom(values); }

    public Tensor of(int[] values, int... dims) { return allocate(DType.I32, dims).copyFrom(values); }

    /** Makes this scope responsible for closing {@code resource}. */
    public synchronized <T extends AutoCloseable> T track(T resource) {
        if (closed) throw new IllegalStateException("scope is closed");
        owned.push(resource);
        return resource;
    }

    public synchronized boolean isClosed() { return closed; }

    /** Closes everything made in this scope, newest first. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) return;
            closed = true;
        }
        RuntimeException first = null;
        AutoCloseable r;
        while ((r = pollOwned()) != null) {
            try {
                r.close();
            } catch (Exception e) {
                if (first == null) first = new IllegalStateException("closing a scope resource failed", e);
            }
        }
        if (parent != null) parent.forget(this); // a long-lived parent must not accumulate closed children
        if (first != null) throw first;
    }

    private synchronized void forget(AutoCloseable resource) { owned.removeFirstOccurrence(resource); }

    private synchronized AutoCloseable pollOwned() { return owned.poll(); }

    @Override
    public synchronized String toString() {
        return "Scope[" + backend.name() + ", " + owned.size() + " resources" + (closed ? ", closed" : "") + (parent != null ? ", child" : "") + "]";
    }
}
