package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.Arrays;

/**
 * Scratch activations for forward passes of up to {@link #capacity()} packed rows, reused across passes so decoding
 * does not allocate per token. Grows on demand. Thread-safety: one thread at a time (one workspace per decoder,
 * tuner or evaluation call).
 */
public final class Workspace implements AutoCloseable {
    private final LlamaConfig c;
    private final Backend backend;
    private Scope scope;
    private int capacity;
    private Tensor x, residual, xb, q, k, v, att, gate, up, tokens, seqPos; // seqPos: a pass's seq ids then positions (one host copy)
    private LayerActivations last; // the views handed out last, reused while rows, x and residual stay the same
    private Tensor lastX, lastResidual;
    private int viewRows = -1; // the row count of the scratch views below, reused while it stays the same
    private Tensor xbView, qView, kView, vView, attView, gateView, upView, residualView;

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
        last = null;
        viewRows = -1;
        scope = Scope.of(backend);
        int qDim = c.nHeads() * c.headDim(), kvDim = c.nKvHeads() * c.headDim();
        x = scope.allocate(DType.F32, cap, c.dim());
        residual = scope.allocate(DType.F32, cap, c.dim());
        xb = scope.allocate(DType.F32, cap, c.dim());
        q = scope.allocate(DType.F32, cap, qDim);
        k = scope.allocate(DType.F32, cap, kvDim);
        v = scope.allocate(DType.F32, cap, kvDim);
        att = scope.allocate(DType.F32, cap, qDim);
        gate = scope.allocate(DType.F32, cap, c.hiddenDim());
        up = scope.allocate(DType.F32, cap, c.hiddenDim());
        tokens = scope.allocate(DType.I32, cap);
        seqPos = scope.allocate(DType.I32, 2 * cap);
        capacity = cap;
        return this;
    }

    /** The residual stream [rows, dim]. */
    public Tensor x(int rows) { return x.slice(0, rows); }

    /** A buffer [rows, dim] for a layer's attention residual, read by exit heads that replace the layer's MLP. */
    public Tensor residual(int rows) {
        return views(rows).residualView;
    }

    /**
     * The scratch buffers' views of {@code rows} rows: made when the row count changes, not once per layer (early-exit
     * passes change x and the residual between layers, and each slice is a few allocations in decode's per-token cost).
     */
    private Workspace views(int rows) {
        ensure(rows);
        if (rows != viewRows) {
            xbView = xb.slice(0, rows);
            qView = q.slice(0, rows);
            kView = k.slice(0, rows);
            vView = v.slice(0, rows);
            attView = att.slice(0, rows);
            gateView = gate.slice(0, rows);
            upView = up.slice(0, rows);
            residualView = residual.slice(0, rows);
            viewRows = rows;
            last = null;
        }
        return this;
    }

    /**
     * Scratch for one layer over {@code rows} rows whose input is {@code x}; the attention residual goes to
     * {@code residual} when it is not null (to be read after the layer), else x is updated in place.
     */
    public LayerActivations activations(int rows, Tensor x, Tensor residual) {
        views(rows);
        if (last != null && lastX == x && lastResidual == residual) return last;
        lastX = x;
        lastResidual = residual;
        return last = new LayerActivations(xbView, null, qView, kView, vView, attView, null, residual == null ? x : residual, xbView, null, gateView, upView, gateView);
    }

    /**
     * Loads a pass's row description (token, sequence, position per row), checked here once on the host: tokens in
     * the vocabulary, sequence ids >= 0, positions in 0 .. maxSeqLen-1. Kernels get the checked rows.
     */
    public Rows rows(int[] tokenIds, int[] seqIds, int[] positions) {
        int n = tokenIds.length;
        if (seqIds.length != n || positions.length != n) throw new IllegalArgumentException("rows: " + n + " tokens, " + seqIds.length + " seq ids, " + positions.length + " positions");
        for (int r = 0; r < n; r++) {
            if (tokenIds[r] < 0 || tokenIds[r] >= c.vocabSize()) throw new IllegalArgumentException("row " + r + ": token " + tokenIds[r] + " outside the vocabulary of " + c.vocabSize());
        }
        return load(tokenIds, seqIds, positions);
    }

    /** Rows without tokens (for passes whose residual stream is already loaded), checked as in {@link #rows(int[], int[], int[])}. */
    public Rows rows(int[] seqIds, int[] positions) {
        if (positions.length != seqIds.length) throw new IllegalArgumentException("rows: " + seqIds.length + " seq ids, " + positions.length + " positions");
        return load(null, seqIds, positions);
    }

    /** Checks sequence ids and positions, then copies them in one host copy (and the tokens, when given, in another). */
    private Rows load(int[] tokenIds, int[] seqIds, int[] positions) {
        int n = seqIds.length, seqBound = 0, posBound = 0;
        for (int r = 0; r < n; r++) {
            if (seqIds[r] < 0) throw new IllegalArgumentException("row " + r + ": sequence id " + seqIds[r] + " < 0");
            if (positions[r] < 0 || positions[r] >= c.maxSeqLen()) throw new IllegalArgumentException("row " + r + ": position " + positions[r] + " outside the model's context of " + c.maxSeqLen());
            seqBound = Math.max(seqBound, seqIds[r] + 1);
            posBound = Math.max(posBound, positions[r] + 1);
        }
        ensure(n);
        int[] packed = Arrays.copyOf(seqIds, 2 * n);
        System.arraycopy(positions, 0, packed, n, n);
        seqPos.slice(0, 2 * n).copyFrom(packed);
        return new Rows(n, tokenIds == null ? null : tokens.slice(0, n).copyFrom(tokenIds), seqPos.slice(0, n), seqPos.slice(n, 2 * n), 0, 0, seqBound, posBound);
    }

    /**
     * Dense rows: {@code batch} sequences of {@code seqLen} tokens from position 0, batch-major (row r is sequence
     * r / seqLen at position r % seqLen). A layer over dense rows attends to the rows' own keys and values, no cache.
     */
    public Rows denseRows(int[] tokenIds, int batch, int seqLen) {
        int n = batch * seqLen;
        if (tokenIds.length != n) throw new IllegalArgumentException("dense rows: " + tokenIds.length + " tokens for " + batch + " x " + seqLen);
        int[] s = new int[n], p = new int[n];
        for (int r = 0; r < n; r++) {
            s[r] = r / seqLen;
            p[r] = r % seqLen;
        }
        Rows loaded = rows(tokenIds, s, p);
        return new Rows(n, loaded.tokens(), loaded.seq(), loaded.pos(), batch, seqLen, batch, seqLen);
    }

    /**
     * Packed rows of a pass: row r is token {@code tokens[r]} (null when not loaded) of sequence {@code seq[r]} at
     * position {@code pos[r]}. {@code batch x seqLen} is the dense shape (0 x 0 for packed rows). The bounds (largest
     * sequence id and position, plus one) were computed on the host, so a cache can be checked against them without
     * reading the tensors back.
     */
    public record Rows(int count, Tensor tokens, Tensor seq, Tensor pos, int batch, int seqLen, int sequenceBound, int positionBound) {
        public boolean isDense() { return batch > 0; }

        /** Rows 0..k-1 of packed rows (the bounds stay: they still bound them). */
        public Rows first(int k) {
            if (isDense() || k < 0 || k > count) throw new IllegalArgumentException("first " + k + " of " + count + (isDense() ? " dense" : "") + " rows");
            return new Rows(k, tokens == null ? null : tokens.slice(0, k), seq.slice(0, k), pos.slice(0, k), 0, 0, sequenceBound, positionBound);
        }

        /** Throws unless every row fits {@code cache} [sequences, maxLen, ...]. */
        public void checkFits(KvCache.Layer cache) {
            if (sequenceBound > cache.sequences() || positionBound > cache.maxLen()) {
                throw new IllegalArgumentException("rows reach sequence " + (sequenceBound - 1) + ", position " + (positionBound - 1) + ", outside the cache of "
                    + cache.sequences() + " sequences x " + cache.maxLen() + " positions");
            }
        }
    }

    @Override
    public void close() {
        if (scope != null) scope.close();
        scope = null;
        last = null;
        capacity = 0;
    }
}
