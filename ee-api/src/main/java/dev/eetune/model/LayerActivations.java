package dev.eetune.model;

import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/**
 * The buffers one {@link DecoderLayer} forward writes, each [rows, width]. Inference passes reused scratch
 * ({@link Workspace#activations}: the two norm outputs share a buffer, the SwiGLU product overwrites the gate, no
 * 1/rms or log-sum-exp is kept); training passes fresh buffers ({@link #allocate}) and keeps them for the backward.
 * {@code residual} receives x + attn(x); it may be the layer's input itself (updated in place).
 * Thread-safety: buffers of one pass, used by the thread running it.
 */
public record LayerActivations(Tensor xn1, Tensor inv1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor lse,
                               Tensor residual, Tensor xn2, Tensor inv2, Tensor gate, Tensor up, Tensor act) {

    /** Every buffer of a layer over {@code rows} rows, distinct, in {@code s} (what the backward needs). */
    public static LayerActivations allocate(Scope s, LlamaConfig c, int rows) {
        int d = c.dim(), qd = c.nHeads() * c.headDim(), kd = c.nKvHeads() * c.headDim(), f = c.hiddenDim();
        return new LayerActivations(s.allocate(DType.F32, rows, d), s.allocate(DType.F32, rows), s.allocate(DType.F32, rows, qd),
            s.allocate(DType.F32, rows, kd), s.allocate(DType.F32, rows, kd), s.allocate(DType.F32, rows, qd), s.allocate(DType.F32, rows, c.nHeads()),
            s.allocate(DType.F32, rows, d), s.allocate(DType.F32, rows, d), s.allocate(DType.F32, rows), s.allocate(DType.F32, rows, f),
            s.allocate(DType.F32, rows, f), s.allocate(DType.F32, rows, f));
    }

    /** The feed-forward half's buffers only (an MLP exit head's), in {@code s}; {@code inv2} kept for the backward. */
    public static LayerActivations allocateFeedForward(Scope s, LlamaConfig c, int rows) {
        int d = c.dim(), f = c.hiddenDim();
        return new LayerActivations(null, null, null, null, null, null, null, null, s.allocate(DType.F32, rows, d), s.allocate(DType.F32, rows),
            s.allocate(DType.F32, rows, f), s.allocate(DType.F32, rows, f), s.allocate(DType.F32, rows, f));
    }
}
