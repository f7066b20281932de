package dev.eetune.nn;

import dev.eetune.backend.Ops;
import dev.eetune.model.DecoderLayer;
import dev.eetune.model.LayerActivations;
import dev.eetune.model.LayerWeights;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * A trainable Llama layer: its parameters, the shared forward ({@link DecoderLayer}, over dense rows, keeping
 * activations) and the backward side by side. {@link #weights()} views the same tensors for inference.
 */
public final class TransformerBlock {
    private final DecoderLayer layer;
    private final LlamaConfig c;
    private final Parameter attnNorm, wq, wk, wv, wo, bq, bk, bv, ffnNorm;
    private final SwiGluMlp mlp;
    private final LayerWeights weights;

    private TransformerBlock(DecoderLayer layer, Parameter attnNorm, Parameter wq, Parameter wk, Parameter wv, Parameter wo,
                             Parameter bq, Parameter bk, Parameter bv, Parameter ffnNorm, SwiGluMlp mlp) {
        this.layer = layer;
        this.c = layer.config();
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
        this.weights = new LayerWeights(attnNorm.value(), wq.value(), wk.value(), wv.value(), wo.value(), value(bq), value(bk), value(bv),
            ffnNorm.value(), mlp.gate().value(), mlp.up().value(), mlp.down().value());
    }

    private static Tensor value(Parameter p) { return p == null ? null : p.value(); }

    /** Parameters named {@code prefix + HF name}, initialised from {@code w} (any dtype). */
    public static TransformerBlock copyOf(DecoderLayer layer, LayerWeights w, ParameterSet ps, String prefix) {
        return new TransformerBlock(layer, ps.copyOf(prefix + "input_layernorm.weight", w.attnNorm()),
            ps.copyOf(prefix + "self_attn.q_proj.weight", w.wq()), ps.copyOf(prefix + "self_attn.k_proj.weight", w.wk()),
            ps.copyOf(prefix + "self_attn.v_proj.weight", w.wv()), ps.copyOf(prefix + "self_attn.o_proj.weight", w.wo()),
            w.bq() == null ? null : ps.copyOf(prefix + "self_attn.q_proj.bias", w.bq()),
            w.bk() == null ? null : ps.copyOf(prefix + "self_attn.k_proj.bias", w.bk()),
            w.bv() == null ? null : ps.copyOf(prefix + "self_attn.v_proj.bias", w.bv()),
            ps.copyOf(prefix + "post_attention_layernorm.weight", w.ffnNorm()),
            new SwiGluMlp(ps.copyOf(prefix + "mlp.gate_proj.weight", w.wGate()), ps.copyOf(prefix + "mlp.up_proj.weight", w.wUp()),
                ps.copyOf(prefix + "mlp.down_proj.weight", w.wDown())));
    }

    /**
     * Fresh parameters named {@code prefix + HF name}: matrices N(0, std), the residual output projections (o, down)
     * N(0, residStd), norms 1, biases (when the config has them) 0.
     */
    public static TransformerBlock random(DecoderLayer layer, ParameterSet ps, String prefix, Random r, float std, float residStd) {
        LlamaConfig c = layer.config();
        int d = c.dim(), qd = c.nHeads() * c.headDim(), kd = c.nKvHeads() * c.headDim(), f = c.hiddenDim();
        Parameter attnNorm = ps.constant(prefix + "input_layernorm.weight", 1f, d);
        Parameter q = ps.gaussian(prefix + "self_attn.q_proj.weight", r, std, qd, d), k = ps.gaussian(prefix + "self_attn.k_proj.weight", r, std, kd, d);
        Parameter v = ps.gaussian(prefix + "self_attn.v_proj.weight", r, std, kd, d), o = ps.gaussian(prefix + "self_attn.o_proj.weight", r, residStd, d, qd);
        Parameter bq = c.qkvBias() ? ps.constant(prefix + "self_attn.q_proj.bias", 0f, qd) : null;
        Parameter bk = c.qkvBias() ? ps.constant(prefix + "self_attn.k_proj.bias", 0f, kd) : null;
        Parameter bv = c.qkvBias() ? ps.constant(prefix + "self_attn.v_proj.bias", 0f, kd) : null;
        Parameter ffnNorm = ps.constant(prefix + "post_attention_layernorm.weight", 1f, d);
        SwiGluMlp mlp = new SwiGluMlp(ps.gaussian(prefix + "mlp.gate_proj.weight", r, std, f, d), ps.gaussian(prefix + "mlp.up_proj.weight", r, std, f, d),
            ps.gaussian(prefix + "mlp.down_proj.weight", r, residStd, d, f));
        return new TransformerBlock(layer, attnNorm, q, k, v, o, bq, bk, bv, ffnNorm, mlp);
    }

    /** Every parameter, in {@link LayerWeights} order (biases only when present). */
    public List<Parameter> parameters() {
        List<Parameter> out = new ArrayList<>(List.of(attnNorm, wq, wk, wv, wo));
        if (bq != null) out.addAll(List.of(bq, bk, bv));
        out.addAll(List.of(ffnNorm, mlp.gate(), mlp.up(), mlp.down()));
        return out;
    }

    /** The same tensors, as inference weights. */
    public LayerWeights weights() { return weights; }

    /** What {@link #forward} keeps for {@link #backward}; the rows must stay loaded until then. */
    public record Saved(Tensor x, Workspace.Rows rows, LayerActivations a) {}

    /** y [rows, dim] = layer(x) over dense rows; activations live in {@code s}. */
    public Saved forward(Scope s, Tensor x, Tensor y, Workspace.Rows rows) {
        LayerActivations a = LayerActivations.allocate(s, c, rows.count());
        layer.forward(weights, x, y, rows, null, a);
        return new Saved(x, rows, a);
    }

    /** Accumulates parameter gradients for upstream dy; writes dx (the gradient of the block input) when not null. */
    public void backward(Scope s, Saved sv, Tensor dy, Tensor dx) {
        Ops ops = s.backend().ops();
        LayerActivations a = sv.a();
        Workspace.Rows rows = sv.rows();
        int n = rows.count(), d = c.dim(), hd = c.headDim(), qd = c.nHeads() * hd, kd = c.nKvHeads() * hd;
        Tensor invFreq = layer.ropeInverseFrequencies();
        Tensor dxn = s.allocate(DType.F32, n, d), tmp = s.allocate(DType.F32, n, d), dh1 = s.allocate(DType.F32, n, d);
        mlp.backward(s, a, dy, dxn);
        ops.rmsnormBackward(tmp, ffnNorm.grad(), dxn, a.residual(), ffnNorm.value(), a.inv2());
        ops.add(dh1, dy, tmp);                                              // y = h1 + mlp(norm(h1))
        ops.gemm(true, false, 1f, dh1, a.att(), 1f, wo.grad());            // h1 = x + att Wo^T
        Tensor datt = s.allocate(DType.F32, n, qd), dq = s.allocate(DType.F32, n, qd);
        Tensor dk = s.zeros(DType.F32, n, kd), dv = s.zeros(DType.F32, n, kd);
        ops.gemm(false, false, 1f, dh1, wo.value(), 0f, datt);
        ops.attentionBackward(dq, dk, dv, datt, a.att(), a.lse(), a.q(), a.k(), a.v(), rows.batch(), rows.seqLen(), c.nHeads(), c.nKvHeads(), hd, layer.attentionScale());
        ops.rope(dq, rows.pos(), invFreq, c.nHeads(), hd, c.ropeInterleaved(), true);  // a rotation's transpose is its inverse
        ops.rope(dk, rows.pos(), invFreq, c.nKvHeads(), hd, c.ropeInterleaved(), true);
        if (bq != null) {
            float[] one = new float[n];
            Arrays.fill(one, 1f);
            Tensor ones = s.of(one, 1, n);
            ops.gemm(false, false, 1f, ones, dq, 1f, bq.grad().reshape(1, qd)); // bias gradient = column sums
            ops.gemm(false, false, 1f, ones, dk, 1f, bk.grad().reshape(1, kd));
            ops.gemm(false, false, 1f, ones, dv, 1f, bv.grad().reshape(1, kd));
        }
        ops.gemm(true, false, 1f, dq, a.xn1(), 1f, wq.grad());
        ops.gemm(true, false, 1f, dk, a.xn1(), 1f, wk.grad());
        ops.gemm(true, false, 1f, dv, a.xn1(), 1f, wv.grad());
        ops.gemm(false, false, 1f, dq, wq.value(), 0f, dxn);
        ops.gemm(false, false, 1f, dk, wk.value(), 1f, dxn);
        ops.gemm(false, false, 1f, dv, wv.value(), 1f, dxn);
        ops.rmsnormBackward(dx == null ? null : tmp, attnNorm.grad(), dxn, sv.x(), attnNorm.value(), a.inv1());
        if (dx != null) ops.add(dx, dh1, tmp);
    }
}
