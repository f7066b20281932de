package dev.eetune.exit;

import dev.eetune.backend.Ops;
import dev.eetune.model.LlamaConfig;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.List;
import java.util.Random;

/**
 * A confidence gate at the exit after layer L (CALM's learned early-exit classifier, docs/exit-gates.md): P(the head's
 * top token equals the full model's) from the exit's hidden state, with f = rmsnorm(h) without a weight (so the gate
 * sees the direction of h, whatever its scale). Two kinds:
 * <ul>
 *   <li>{@code linear-rmsnorm}: σ(w · f + b), dim multiply-adds per row;</li>
 *   <li>{@code mlp-rmsnorm}: σ(w · relu(W₁ f + b₁) + b), one hidden layer of k units, dim·k + k multiply-adds per row
 *   (k = 16 on stories260K: 2.3% of a layer). {@code W₁ f + b₁} runs on the backend; the k-wide second layer runs on
 *   the host, where the linear gate's logit goes anyway (k numbers per row: no kernel call pays for itself).</li>
 * </ul>
 * Either costs a small fraction of the head's dim·vocab and more, so a row that does not exit pays almost nothing.
 * Scoring ({@link #score}) is one backend call (ee_gate_score: the rmsnorm, both layers and the sigmoid fused) and one
 * copy of the scores out: on stories260K the separate kernel calls of {@link #backendPart} cost about as much as a
 * layer, and the host scoring that replaced them (a copy of the hidden states out, the arithmetic in Java) still
 * about 0.5 µs per visit. Training ({@link dev.eetune.train.GateTrainer}) runs batches of hundreds of rows through
 * {@link #backendPart} instead.
 * Thread-safety: as {@link ExitHead}: read-only while decoding; only {@link dev.eetune.train.GateTrainer} writes it.
 *
 * @param hidden     W₁ [k, dim], or null for a linear gate
 * @param hiddenBias b₁ [k], or null for a linear gate
 * @param weight     w [1, dim] (linear) or [1, k] (mlp)
 * @param bias       b [1]
 */
public record ExitGate(int layer, Parameter hidden, Parameter hiddenBias, Parameter weight, Parameter bias, Tensor unitNorm, float eps) {
    /** Metadata names of the two kinds. */
    public static final String LINEAR = "linear-rmsnorm", MLP = "mlp-rmsnorm";

    /** Parameter-name prefix of the gate at the exit after layer L. */
    static String prefix(int layer) { return ExitHead.prefix(layer) + "gate."; }

    /**
     * A fresh gate: {@code hiddenUnits} 0 gives a linear gate with zero weights (P = 0.5 until trained); otherwise an
     * MLP gate whose W₁ and w are drawn N(0, 1/fan-in) from {@code seed} (a zero W₁ would never break the symmetry).
     */
    static ExitGate create(int layer, LlamaConfig c, ParameterSet ps, Tensor unitNorm, int hiddenUnits, long seed) {
        if (hiddenUnits < 0) throw new IllegalArgumentException("gate hidden units must be >= 0, got " + hiddenUnits);
        String p = prefix(layer);
        if (hiddenUnits == 0) {
            return new ExitGate(layer, null, null, ps.constant(p + "weight", 0f, 1, c.dim()), ps.constant(p + "bias", 0f, 1), unitNorm, c.normEps());
        }
        Random r = new Random(seed + layer);
        Parameter w1 = ps.constant(p + "hidden.weight", 0f, hiddenUnits, c.dim()), b1 = ps.constant(p + "hidden.bias", 0f, hiddenUnits);
        Parameter w = ps.constant(p + "weight", 0f, 1, hiddenUnits);
        w1.value().copyFrom(gaussian(r, hiddenUnits * c.dim(), 1 / Math.sqrt(c.dim())));
        w.value().copyFrom(gaussian(r, hiddenUnits, 1 / Math.sqrt(hiddenUnits)));
        return new ExitGate(layer, w1, b1, w, ps.constant(p + "bias", 0f, 1), unitNorm, c.normEps());
    }

    private static float[] gaussian(Random r, int n, double std) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (r.nextGaussian() * std);
        return a;
    }

    /** Hidden units: 0 for a linear gate. */
    public int hiddenUnits() { return hidden == null ? 0 : hidden.value().dim(0); }

    /** The kind, as the heads file's metadata names it. */
    public String kind() { return hidden == null ? LINEAR : MLP; }

    public List<Parameter> parameters() { return hidden == null ? List.of(weight, bias) : List.of(hidden, hiddenBias, weight, bias); }

    /** The gate's input: rmsnorm(hidden) without a weight, into {@code out} [rows, dim]. */
    public void features(Ops ops, Tensor out, Tensor hidden) { ops.rmsnorm(out, null, hidden, unitNorm, eps); }

    /**
     * What the backend computes from features {@code f} [rows, dim]: the logit w · f + b [rows, 1] (linear), or the
     * hidden pre-activations W₁ f + b₁ [rows, k] (mlp); {@link #logits} finishes on the host.
     */
    public Tensor backendPart(Scope s, Tensor f) {
        Ops ops = s.backend().ops();
        Parameter w = hidden == null ? weight : hidden, b = hidden == null ? bias : hiddenBias;
        Tensor out = s.allocate(DType.F32, f.dim(0), w.value().dim(0));
        ops.linear(out, f, w.value());
        ops.addBias(out, b.value());
        return out;
    }

    /** The logits of rows whose {@link #backendPart} is {@code part} (row-major [rows, k]; k = 1 for a linear gate). */
    public float[] logits(float[] part, int rows) {
        if (hidden == null) return part;
        int k = hiddenUnits();
        float[] w = weight.value().toFloatArray(), z = new float[rows];
        float b = bias.value().toFloatArray()[0];
        for (int r = 0; r < rows; r++) {
            double acc = b;
            for (int j = 0; j < k; j++) acc += w[j] * Math.max(0f, part[r * k + j]);
            z[r] = (float) acc;
        }
        return z;
    }

    /**
     * P(agreement) for rows 0..rows-1 of {@code hidden}, one backend call (see the class comment) into the first
     * {@code rows} values of {@code scratch} (F32; reused by the caller: an allocation per call costs as much as the
     * scoring), returned on the host: the same function as σ({@link #logits}({@link #backendPart}({@link #features}))),
     * up to float rounding.
     */
    public float[] score(Tensor scratch, Tensor hidden, int rows) {
        Tensor out = scratch.slice(0, rows);
        hidden.backend().ops().gateScore(out, hidden.slice(0, rows), this.hidden == null ? null : this.hidden.value(), hiddenBias == null ? null : hiddenBias.value(),
            weight.value(), bias.value(), eps);
        return out.toFloatArray();
    }

    /** Multiply-adds per scored row on a backbone of width {@code dim}: the rmsnorm, like every elementwise step, left out. */
    public static double macs(int dim, int hiddenUnits) { return hiddenUnits == 0 ? dim : (double) dim * hiddenUnits + hiddenUnits; }

    /** σ(z), NaN for NaN (a broken gate never exits: {@code confident} rejects NaN). */
    public static float sigmoid(float z) { return (float) (1 / (1 + Math.exp(-z))); }
}
