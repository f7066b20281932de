package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/**
 * Scratch activations for forward passes of up to {@link #capacity()} packed rows, reused across passes so decoding
 * does not allocate per token. Grows on demand. Not thread-safe: one per generator or tuner.
 */
public final class Workspace implements AutoCloseable {
    private final LlamaConfig c;
    private final Backend backend;
    private Scope scope;
    private int capacity;
    private Tensor x, xb, q, k, v, att, gate, up, tokens, seq, pos;

    public Workspace(LlamaConfig config, Backend backend) {
        this.c = config;
        this.backend = backend;
    }

    public int capacity() { return capacity; }

    /** Makes room for {@code rows} rows. */
    public Workspace ensure(int rows) {
        if (rows <= capacity) return this;
        int cap = Math.max(rows, capacity * 2);
        if (scope != null) scope.close();
        scope = Scope.of(backend);
        int qDim = c.nHeads() * c.headDim(), kvDim = c.nKvHeads() * c.headDim();
        x = scope.allocate(DType.F32, cap, c.dim());
        xb = scope.allocate(DType.F32, cap, c.dim());
        q = scope.allocate(DType.F32, cap, qDim);
        k = scope.allocate(DType.F32, cap, kvDim);
        v = scope.allocate(DType.F32, cap, kvDim);
        att = scope.allocate(DType.F32, cap, qDim);
        gate = scope.allocate(DType.F32, cap, c.hiddenDim());
        up = scope.allocate(DType.F32, cap, c.hiddenDim());
        tokens = scope.allocate(DType.I32, cap);
        seq = scope.allocate(DType.I32, cap);
        pos = scope.allocate(DType.I32, cap);
        capacity = cap;
        return this;
    }

    /** The residual stream [rows, dim]. */
    public Tensor x(int rows) { return x.slice(0, rows); }

    Tensor xb(int rows) { return xb.slice(0, rows); }

    Tensor q(int rows) { return q.slice(0, rows); }

    Tensor k(int rows) { return k.slice(0, rows); }

    Tensor v(int rows) { return v.slice(0, rows); }

    Tensor att(int rows) { return att.slice(0, rows); }

    Tensor gate(int rows) { return gate.slice(0, rows); }

    Tensor up(int rows) { return up.slice(0, rows); }

    /** Loads a batch's row description (token, sequence, position per row) and returns it as tensors. */
    public Rows rows(int[] tokenIds, int[] seqIds, int[] positions) {
        int n = tokenIds.length;
        if (seqIds.length != n || positions.length != n) throw new IllegalArgumentException("rows: " + n + " tokens, " + seqIds.length + " seq ids, " + positions.length + " positions");
        ensure(n);
        return new Rows(n, tokens.slice(0, n).copyFrom(tokenIds), seq.slice(0, n).copyFrom(seqIds), pos.slice(0, n).copyFrom(positions));
    }

    /** Packed rows of a pass: row r is token {@code tokens[r]} of sequence {@code seq[r]} at position {@code pos[r]}. */
    public record Rows(int count, Tensor tokens, Tensor seq, Tensor pos) {}

    @Override
    public void close() {
        if (scope != null) scope.close();
        scope = null;
        capacity = 0;
    }
}
