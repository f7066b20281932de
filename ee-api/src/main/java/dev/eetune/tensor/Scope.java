package dev.eetune.tensor;

import dev.eetune.backend.Backend;
import dev.eetune.backend.MappedFile;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Owns native memory: every tensor made through a scope is freed when the scope closes (DJL's NDManager idea), and
 * from then on refuses use with an {@link IllegalStateException} before any native call. Scopes nest
 * ({@link #child()}); a child closes before its parent.
 *
 * <p>Thread-safety: allocating, tracking and closing are safe from any thread. A scope whose memory other threads
 * read (a model's weights, exit heads) is closed safely because those threads hold a {@link #use() lease} for each
 * call: {@link #close()} waits until the current leases end, and later leases fail. Without a lease, a tensor must not
 * be used by one thread while another closes its scope. The tensors themselves are not synchronized: a tensor
 * written by one thread must not be used by another at the same time.
 */
public final class Scope implements AutoCloseable {
    /** A held resource released by {@link #close()} (no checked exception, for try-with-resources). */
    public interface Lease extends AutoCloseable {
        @Override
        void close();
    }

    private final Backend backend;
    private final Scope parent;
    private final String name;
    private final Deque<AutoCloseable> owned = new ArrayDeque<>();
    // readers: calls running kernels on this scope's memory; the writer: close, which so never frees under a kernel
    private final ReentrantReadWriteLock uses = new ReentrantReadWriteLock();
    private boolean closed;

    private Scope(Backend backend, Scope parent, String name) {
        this.backend = backend;
        this.parent = parent;
        this.name = name;
    }

    public static Scope of(Backend backend) { return of(backend, "a scope"); }

    /** A scope whose {@code name} (e.g. "model stories260K.bin") appears in the errors of its closed tensors. */
    public static Scope of(Backend backend, String name) { return new Scope(backend, null, name); }

    public Backend backend() { return backend; }

    public String name() { return name; }

    /** A nested scope on the same backend, closed with this one at the latest. */
    public Scope child() { return track(new Scope(backend, this, name)); }

    /** Uninitialised memory. */
    public Tensor allocate(DType dtype, int... dims) {
        Shape shape = Shape.of(dims);
        long bytes = Math.max(1, shape.size() * dtype.bytes());
        long address = backend.allocate(bytes);
        return track(new Tensor(new Storage(backend, address, bytes, () -> backend.free(address), name), 0, dtype, shape, true));
    }

    /**
     * A tensor over bytes [offset, offset + size) of a mapped file this scope already tracks: closing the scope closes
     * the tensor before the file, so the tensor refuses use from then on rather than read unmapped memory. The range is
     * checked now; its address is taken on first use ({@link MappedFile#address}: on a device backend that is when
     * the range is copied to the device, so weights nobody uses are never copied).
     */
    public Tensor wrap(MappedFile file, long offset, DType dtype, Shape shape) {
        long bytes = shape.size() * dtype.bytes();
        file.requireRange(offset, bytes);
        return track(new Tensor(Storage.placedOnFirstUse(backend, () -> file.address(offset, bytes), bytes, name), 0, dtype, shape, true));
    }

    public Tensor zeros(DType dtype, int... dims) {
        Tensor t = allocate(dtype, dims);
        backend.ops().zero(t);
        return t;
    }

    public Tensor of(float[] values, int... dims) { return allocate(DType.F32, dims).copyFrom(values); }

    public Tensor of(DType dtype, float[] values, int... dims) { return allocate(dtype, dims).copyFrom(values); }

    public Tensor of(int[] values, int... dims) { return allocate(DType.I32, dims).copyFrom(values); }

    /** Makes this scope responsible for closing {@code resource}; a closed scope closes it at once and throws. */
    public <T extends AutoCloseable> T track(T resource) {
        synchronized (this) {
            if (!closed) {
                owned.push(resource);
                return resource;
            }
        }
        try {
            resource.close();
        } catch (Exception e) {
            throw new IllegalStateException(name + " is closed; closing the resource given to it failed", e);
        }
        throw new IllegalStateException(name + " is closed");
    }

    public synchronized boolean isClosed() { return closed; }

    /**
     * Keeps this scope open until the lease is closed: {@link #close()} (from another thread) waits for it. Held by
     * the calls that read a shared scope's memory (a decoder's {@code generate}, a tuner's step), so closing a model
     * never unmaps or frees under a running kernel. Throws if the scope is closed. Reentrant; about two atomic
     * operations per lease, so take one per call, not per kernel.
     */
    public Lease use() {
        uses.readLock().lock();
        if (isClosed()) {
            uses.readLock().unlock();
            throw new IllegalStateException(name + " is closed");
        }
        return uses.readLock()::unlock;
    }

    /**
     * Closes everything made in this scope, newest first, after waiting for the current {@link #use() leases} of
     * other threads to end. Closing from inside a call that holds a lease on this scope would wait for itself, so it
     * throws instead.
     */
    @Override
    public void close() {
        if (uses.getReadHoldCount() > 0) throw new IllegalStateException("cannot close " + name + " from a call that is using it on this thread");
        uses.writeLock().lock();
        try {
            synchronized (this) {
                if (closed) return;
                closed = true;
            }
        } finally {
            uses.writeLock().unlock();
        }
        RuntimeException first = null;
        AutoCloseable r;
        while ((r = pollOwned()) != null) {
            try {
                r.close();
            } catch (Exception e) {
                if (first == null) first = new IllegalStateException("closing a resource of " + name + " failed", e);
            }
        }
        if (parent != null) parent.forget(this); // a long-lived parent must not accumulate closed children
        if (first != null) throw first;
    }

    private synchronized void forget(AutoCloseable resource) { owned.removeFirstOccurrence(resource); }

    private synchronized AutoCloseable pollOwned() { return owned.poll(); }

    @Override
    public synchronized String toString() {
        return "Scope[" + name + ", " + backend.name() + ", " + owned.size() + " resources" + (closed ? ", closed" : "") + (parent != null ? ", child" : "") + "]";
    }
}
