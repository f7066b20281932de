package dev.eetune.nn;

import dev.eetune.backend.Ops;
import dev.eetune.model.LayerWeights;
import dev.eetune.model.LlamaConfig;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/**
 * A trainable Llama layer over dense batches [batch, seq] (causal attention within each sequence), forward and
 * backward side by side. Its parameters are exposed as {@link LayerWeights} for inference with the same tensors.
 */
public final class TransformerBlock {
    private final LlamaConfig c;
    private final Parameter attnNorm, wq, wk, wv, wo, bq, bk, bv, ffnNorm;
    private final SwiGluMlp mlp;
    private final Tensor invFreq;
    private final float scale;

    /** Biases may be null (no q/k/v bias); invFreq [headDim/2] are the model's RoPE frequencies. */
    public TransformerBlock(LlamaConfig c, Parameter attnNorm, Parameter wq, Parameter wk, Parameter wv, Parameter wo,
                            Parameter bq, Parameter bk, Parameter bv, Parameter ffnNorm, SwiGluMlp mlp, Tensor invFreq) {
        this.c = c;
        this.attnNorm = attnNorm;
        this.wq = wq;
        this.wk = wk;
        this.wv = wv;
        this.wo = wo;
        this.bq = bq;
        this.bk = bk;
        this.bv = bv;
        this.ffnNorm = ffnNorm;
        this.mlp = mlp;
        this.invFreq = invFreq;
        this.scale = (float) (1 / Math.sqrt(c.headDim()));
    }

    /** Trainable parameters named {@code prefix + HF name}, initialised from {@code w} (any dtype). */
    public static TransformerBlock copyOf(LlamaConfig c, LayerWeights w, ParameterSet ps, String prefix, Tensor invFreq) {
        return new TransformerBlock(c, ps.copyOf(prefix + "input_layernorm.weight", w.attnNorm()),
            ps.copyOf(prefix + "self_attn.q_proj.weight", w.wq()), ps.copyOf(prefix + "self_attn.k_proj.weight", w.wk()),
            ps.copyOf(prefix + "self_attn.v_proj.weight", w.wv()), ps.copyOf(prefix + "self_attn.o_proj.weight", w.wo()),
            w.bq() == null ? null : ps.copyOf(prefix + "self_attn.q_proj.bias", w.bq()),
            w.bk() == null ? null : ps.copyOf(prefix + "self_attn.k_proj.bias", w.bk()),
            w.bv() == null ? null : ps.copyOf(prefix + "self_attn.v_proj.bias", w.bv()),
            ps.copyOf(prefix + "post_attention_layernorm.weight", w.ffnNorm()),
            new SwiGluMlp(ps.copyOf(prefix + "mlp.gate_proj.weight", w.wGate()), ps.copyOf(prefix + "mlp.up_proj.weight", w.wUp()),
                ps.copyOf(prefix + "mlp.down_proj.weight", w.wDown())), invFreq);
    }

    /** Every parameter (biases only when present). */
    public java.util.List<Parameter> parameters() {
        java.util.List<Parameter> out = new java.util.ArrayList<>(java.util.List.of(attnNorm, wq, wk, wv, wo));
        if (bq != null) out.addAll(java.util.List.of(bq, bk, bv));
        out.addAll(java.util.List.of(ffnNorm, mlp.gate(), mlp.up(), mlp.down()));
        return out;
    }

    /** The same tensors, as inference weights. */
    public LayerWeights weights() {
        return new LayerWeights(attnNorm.value(), wq.value(), wk.value(), wv.value(), wo.value(),
            bq == null ? null : bq.value(), bk == null ? null : bk.value(), bv == null ? null : bv.value(),
            ffnNorm.value(), mlp.gate().value(), mlp.down().value(), mlp.up().value());
    }

    /** Activations saved by {@link #forward}. */
    public record Saved(Tensor x, Tensor inv1, Tensor xn1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor lse, Tensor h1,
                        Tensor inv2, Tensor xn2, SwiGluMlp.Saved mlp, Tensor seq, Tensor pos, int batch, int seqLen) {}

    /**
     * y [batch * seqLen, dim] = layer(x); rows are batch-major with seq[r] = r / seqLen and pos[r] = r % seqLen.
     * Saved activations live in {@code s}.
     */
    public Saved forward(Scope s, Tensor x, Tensor y, Tensor seq, Tensor pos, int batch, int seqLen) {
        Ops ops = s.backend().ops();
        int rows = batch * seqLen, d = c.dim(), hd = c.headDim(), qd = c.nHeads() * hd, kd = c.nKvHeads() * hd;
        Tensor inv1 = s.allocate(DType.F32, rows), xn1 = s.allocate(DType.F32, rows, d);
        Tensor q = s.allocate(DType.F32, rows, qd), k = s.allocate(DType.F32, rows, kd), v = s.allocate(DType.F32, rows, kd);
        Tensor att = s.allocate(DType.F32, rows, qd), lse = s.allocate(DType.F32, rows, c.nHeads());
        Tensor h1 = s.allocate(DType.F32, rows, d), inv2 = s.allocate(DType.F32, rows), xn2 = s.allocate(DType.F32, rows, d);
        ops.rmsnorm(xn1, inv1, x, attnNorm.value(), c.normEps());
        ops.linear(q, xn1, wq.value());
        ops.linear(k, xn1, wk.value());
        ops.linear(v, xn1, wv.value());
        if (bq != null) {
            ops.addBias(q, bq.value());
            ops.addBias(k, bk.value());
            ops.addBias(v, bv.value());
        }
        ops.rope(q, pos, invFreq, c.nHeads(), hd, c.ropeInterleaved(), false);
        ops.rope(k, pos, invFreq, c.nKvHeads(), hd, c.ropeInterleaved(), false);
        // dense rows [batch, seqLen] are already the cache layout [sequences, maxLen, kvDim]
        ops.attention(att, lse, q, k.reshape(batch, seqLen, kd), v.reshape(batch, seqLen, kd), seq, pos, c.nHeads(), c.nKvHeads(), hd, scale);
        h1.copyFrom(x);
        ops.gemm(false, true, 1f, att, wo.value(), 1f, h1);
        ops.rmsnorm(xn2, inv2, h1, ffnNorm.value(), c.normEps());
        SwiGluMlp.Saved ms = mlp.forward(s, xn2, y);
        ops.add(y, y, h1);
        return new Saved(x, inv1, xn1, q, k, v, att, lse, h1, inv2, xn2, ms, seq, pos, batch, seqLen);
    }

    /** Accumulates parameter gradients for upstream dy; writes dx (the gradient of the block input) when not null. */
    public void backward(Scope s, Saved sv, Tensor dy, Tensor dx) {
        Ops ops = s.backend().ops();
        int rows = sv.batch() * sv.seqLen(), d = c.dim(), hd = c.headDim(), qd = c.nHeads() * hd, kd = c.nKvHeads() * hd;
        Tensor dxn = s.allocate(DType.F32, rows, d), tmp = s.allocate(DType.F32, rows, d), dh1 = s.allocate(DType.F32, rows, d);
        mlp.backward(s, sv.mlp(), dy, dxn);
        ops.rmsnormBackward(tmp, ffnNorm.grad(), dxn, sv.h1(), ffnNorm.value(), sv.inv2());
        ops.add(dh1, dy, tmp);                                              // y = h1 + mlp(norm(h1))
        ops.gemm(true, false, 1f, dh1, sv.att(), 1f, wo.grad());           // h1 = x + att Wo^T
        Tensor datt = s.allocate(DType.F32, rows, qd), dq = s.allocate(DType.F32, rows, qd);
        Tensor dk = s.zeros(DType.F32, rows, kd), dv = s.zeros(DType.F32, rows, kd);
        ops.gemm(false, false, 1f, dh1, wo.value(), 0f, datt);
        ops.attentionBackward(dq, dk, dv, datt, sv.att(), sv.lse(), sv.q(), sv.k(), sv.v(), sv.batch(), sv.seqLen(), c.nHeads(), c.nKvHeads(), hd, scale);
        ops.rope(dq, sv.pos(), invFreq, c.nHeads(), hd, c.ropeInterleaved(), true);  // a rotation's transpose is its inverse
        ops.rope(dk, sv.pos(), invFreq, c.nKvHeads(), hd, c.ropeInterleaved(), true);
        if (bq != null) {
            Tensor ones = s.allocate(DType.F32, 1, rows);
            float[] one = new float[rows];
            java.util.Arrays.fill(one, 1f);
            ones.copyFrom(one);
            ops.gemm(false, false, 1f, ones, dq, 1f, bq.grad().reshape(1, qd)); // bias gradient = column sums
            ops.gemm(false, false, 1f, ones, dk, 1f, bk.grad().reshape(1, kd));
            ops.gemm(false, false, 1f, ones, dv, 1f, bv.grad().reshape(1, kd));
        }
        ops.gemm(true, false, 1f, dq, sv.xn1(), 1f, wq.grad());
        ops.gemm(true, false, 1f, dk, sv.xn1(), 1f, wk.grad());
        ops.gemm(true, false, 1f, dv, sv.xn1(), 1f, wv.grad());
        ops.gemm(false, false, 1f, dq, wq.value(), 0f, dxn);
        ops.gemm(false, false, 1f, dk, wk.value(), 1f, dxn);
        ops.gemm(false, false, 1f, dv, wv.value(), 1f, dxn);
        ops.rmsnormBackward(dx == null ? null : tmp, attnNorm.grad(), dxn, sv.x(), attnNorm.value(), sv.inv1());
        if (dx != null) ops.add(dx, dh1, tmp);
    }
}
