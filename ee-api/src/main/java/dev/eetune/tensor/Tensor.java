package dev.eetune.tensor;

import dev.eetune.backend.Backend;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Locale;

/**
 * A row-major, contiguous tensor in backend memory (host or device), owned by a {@link Scope}: made by
 * {@link Scope#allocate} or, over a mapped file's memory, {@link Scope#wrap}. Views ({@link #reshape}, {@link #slice})
 * share the memory and are valid while the owner is open; after that every use throws before reaching native code,
 * since every native call takes its arguments through {@link #address()}.
 * Host access is explicit and bulk: {@link #toFloatArray()}, {@link #copyFrom(float[])}.
 *
 * <p>Thread-safety: not synchronized. Many threads may read a tensor nobody writes (model weights) while they hold a
 * lease on its scope ({@link Scope#use()}); a tensor that is written is used by one thread at a time.
 */
public final class Tensor implements AutoCloseable {
    private final Storage storage;
    private final long offset;
    private final DType dtype;
    private final Shape shape;
    private final boolean owner;

    Tensor(Storage storage, long offset, DType dtype, Shape shape, boolean owner) {
        if (offset + shape.size() * dtype.bytes() > storage.bytes) {
            throw new IllegalArgumentException("tensor " + dtype + shape + " at offset " + offset + " exceeds its storage of " + storage.bytes + " bytes");
        }
        this.storage = storage;
        this.offset = offset;
        this.dtype = dtype;
        this.shape = shape;
        this.owner = owner;
    }

    public Backend backend() { return storage.backend; }

    public Device device() { return storage.backend.device(); }

    public DType dtype() { return dtype; }

    public Shape shape() { return shape; }

    public int rank() { return shape.rank(); }

    public int dim(int i) { return shape.dim(i); }

    /** Number of elements. */
    public long size() { return shape.size(); }

    public long byteSize() { return shape.size() * dtype.bytes(); }

    public boolean isClosed() { return storage.isReleased(); }

    /** The backend address of element 0; fails if the memory was released (the one check before native code). */
    public long address() {
        if (storage.isReleased()) throw new IllegalStateException("tensor " + dtype + shape + " of " + storage.owner + " was used after it was closed (by closing " + storage.owner + " or the tensor)");
        return storage.address() + offset;
    }

    /** A view with another shape and the same number of elements. */
    public Tensor reshape(int... dims) {
        Shape s = Shape.of(dims);
        if (s.size() != shape.size()) throw new IllegalArgumentException("reshape: cannot view " + shape + " as " + s);
        return new Tensor(storage, offset, dtype, s, false);
    }

    /** A view of indices [from, to) of dimension 0. */
    public Tensor slice(int from, int to) {
        if (shape.rank() == 0 || from < 0 || to < from || to > shape.dim(0)) {
            throw new IllegalArgumentException("slice [" + from + ", " + to + ") out of range for shape " + shape);
        }
        long row = shape.rowSize() * dtype.bytes();
        return new Tensor(storage, offset + from * row, dtype, shape.withDim0(to - from), false);
    }

    /** A view of row i of dimension 0, with that dimension dropped. */
    public Tensor get(int i) {
        int[] d = shape.dims();
        if (d.length == 0 || i < 0 || i >= d[0]) throw new IllegalArgumentException("index " + i + " out of range for shape " + shape);
        return new Tensor(storage, offset + i * shape.rowSize() * dtype.bytes(), dtype, Shape.of(Arrays.copyOfRange(d, 1, d.length)), false);
    }

    /** Copies host values in (F32, or BF16/F16 with rounding to nearest even). */
    public Tensor copyFrom(float[] values) {
        checkCount(values.length);
        ByteBuffer buf = ByteBuffer.allocate((int) byteSize()).order(ByteOrder.nativeOrder());
        switch (dtype) {
            case F32: buf.asFloatBuffer().put(values); break;
            case BF16: for (float v : values) buf.putShort(DType.floatToBf16(v)); break;
            case F16: for (float v : values) buf.putShort(DType.floatToF16(v)); break;
            default: throw new IllegalArgumentException("copyFrom(float[]) into an " + dtype + " tensor");
        }
        buf.clear();
        backend().write(address(), buf);
        return this;
    }

    public Tensor copyFrom(int[] values) {
        if (dtype != DType.I32) throw new IllegalArgumentException("copyFrom(int[]) into an " + dtype + " tensor");
        checkCount(values.length);
        ByteBuffer buf = ByteBuffer.allocate((int) byteSize()).order(ByteOrder.nativeOrder());
        buf.asIntBuffer().put(values);
        backend().write(address(), buf);
        return this;
    }

    /** Copies another tensor's contents (same dtype and size) into this one. */
    public Tensor copyFrom(Tensor src) {
        if (src.dtype != dtype || src.size() != size()) {
            throw new IllegalArgumentException("copyFrom: " + src.dtype + src.shape + " into " + dtype + shape);
        }
        backend().ops().copy(this, src);
        return this;
    }

    /** All elements as floats (BF16/F16 widened exactly, I32 converted). */
    public float[] toFloatArray() {
        float[] out = new float[Math.toIntExact(size())];
        if (dtype == DType.F32) {
            backend().read(address(), out);
            return out;
        }
        ByteBuffer buf = readAll();
        switch (dtype) {
            case BF16: for (int i = 0; i < out.length; i++) out[i] = DType.bf16ToFloat(buf.getShort()); break;
            case F16: for (int i = 0; i < out.length; i++) out[i] = DType.f16ToFloat(buf.getShort()); break;
            case I32: for (int i = 0; i < out.length; i++) out[i] = buf.getInt(); break;
        }
        return out;
    }

    public int[] toIntArray() {
        if (dtype != DType.I32) throw new IllegalArgumentException("toIntArray() of an " + dtype + " tensor");
        int[] out = new int[Math.toIntExact(size())];
        readAll().asIntBuffer().get(out);
        return out;
    }

    private ByteBuffer readAll() {
        if (byteSize() > Integer.MAX_VALUE) throw new IllegalStateException("tensor of " + byteSize() + " bytes is too large for a host array");
        ByteBuffer buf = ByteBuffer.allocate((int) byteSize()).order(ByteOrder.nativeOrder());
        backend().read(address(), buf);
        buf.clear();
        return buf;
    }

    private void checkCount(int n) {
        if (n != size()) throw new IllegalArgumentException("copyFrom: " + n + " values for a tensor of shape " + shape + " (" + size() + " elements)");
    }

    /** Frees the memory if this tensor owns it (views do nothing); idempotent. */
    @Override
    public void close() {
        if (owner) storage.release();
    }

    /** Shape, dtype, device and the first values: what a JShell user wants to see. */
    @Override
    public String toString() {
        String head = "Tensor[" + dtype + " " + shape + " " + device() + "]";
        if (storage.isReleased()) return head + " (closed)";
        int n = (int) Math.min(size(), 8);
        if (n == 0) return head + " []";
        Tensor first = reshape(Math.toIntExact(size())).slice(0, n);
        float[] v = first.toFloatArray();
        StringBuilder sb = new StringBuilder(head).append(" [");
        for (int i = 0; i < n; i++) {
            sb.append(i > 0 ? ", " : "").append(dtype == DType.I32 ? String.valueOf((int) v[i]) : String.format(Locale.ROOT, "%.4g", v[i]));
        }
        return sb.append(size() > n ? ", ...]" : "]").toString();
    }
}
