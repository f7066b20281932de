package dev.eetune.nn;

import dev.eetune.backend.Backend;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * Creates and owns parameters (values and gradients) in one scope. Thread-safety: creating parameters is one thread
 * at a time; reading them, as many threads as like while nobody trains.
 */
public final class ParameterSet implements AutoCloseable {
    private final Scope scope;
    private final List<Parameter> all = new ArrayList<>();

    public ParameterSet(Backend backend) { this(backend, "parameters"); }

    /** Parameters in a scope called {@code name} (which errors about its closed tensors show). */
    public ParameterSet(Backend backend, String name) { this.scope = Scope.of(backend, name); }

    public Scope scope() { return scope; }

    public Backend backend() { return scope.backend(); }

    /** A parameter initialised as a copy of {@code source} (any float dtype, converted to F32). */
    public Parameter copyOf(String name, Tensor source) {
        Tensor v = scope.allocate(DType.F32, source.shape().dims());
        if (source.dtype() == DType.F32) v.copyFrom(source);
        else backend().ops().cast(v, source);
        return add(name, v);
    }

    /** A parameter drawn from N(0, std). */
    public Parameter gaussian(String name, Random r, float std, int... dims) {
        Tensor v = scope.allocate(DType.F32, dims);
        float[] a = new float[Math.toIntExact(v.size())];
        for (int i = 0; i < a.length; i++) a[i] = (float) (r.nextGaussian() * std);
        return add(name, v.copyFrom(a));
    }

    /** A parameter filled with {@code value}. */
    public Parameter constant(String name, float value, int... dims) {
        Tensor v = scope.allocate(DType.F32, dims);
        float[] a = new float[Math.toIntExact(v.size())];
        java.util.Arrays.fill(a, value);
        return add(name, v.copyFrom(a));
    }

    private Parameter add(String name, Tensor value) {
        for (Parameter p : all) if (p.name().equals(name)) throw new IllegalArgumentException("duplicate parameter name '" + name + "'");
        Parameter p = new Parameter(name, value, scope.zeros(DType.F32, value.shape().dims()), value.rank() >= 2);
        all.add(p);
        return p;
    }

    public List<Parameter> parameters() { return Collections.unmodifiableList(all); }

    /** Sets every gradient to zero. */
    public void zeroGrad() {
        for (Parameter p : all) backend().ops().zero(p.grad());
    }

    public long count() { return all.stream().mapToLong(p -> p.value().size()).sum(); }

    @Override
    public void close() { scope.close(); }
}
