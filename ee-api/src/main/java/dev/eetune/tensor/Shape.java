package dev.eetune.tensor;

import java.util.Arrays;

/**
 * An immutable, row-major tensor shape.
 * Thread-safe.
 */
public final class Shape {
    private final int[] dims;
    private final long size;

    private Shape(int[] dims) {
        long n = 1;
        for (int d : dims) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(dims));
            n = Math.multiplyExact(n, d);
        }
        this.dims = dims;
        this.size = n;
    }

    public static Shape of(int... dims) { return new Shape(dims.clone()); }

    public int rank() { return dims.length; }

    public int dim(int i) { return dims[i < 0 ? dims.length + i : i]; }

    public int[] dims() { return dims.clone(); }

    /** Number of elements. */
    public long size() { return size; }

    /** Elements per index of dimension 0: the product of the other dimensions (1 for a scalar). */
    public long rowSize() {
        long n = 1;
        for (int i = 1; i < dims.length; i++) n *= dims[i];
        return n;
    }

    /** The same shape with dimension 0 replaced. */
    public Shape withDim0(int d0) {
        if (dims.length > 0 && dims[0] == d0) return this; // immutable: decode slices whole buffers every layer
        int[] d = dims.clone();
        d[0] = d0;
        return new Shape(d);
    }

    @Override
    public boolean equals(Object o) { return o instanceof Shape s && Arrays.equals(dims, s.dims); }

    @Override
    public int hashCode() { return Arrays.hashCode(dims); }

    @Override
    public String toString() { return Arrays.toString(dims); }
}
