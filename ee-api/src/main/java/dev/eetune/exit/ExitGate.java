package dev.eetune.exit;

import dev.eetune.backend.Ops;
import dev.eetune.model.LlamaConfig;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.List;

/**
 * A confidence gate at the exit after layer L (CALM's learned early-exit classifier, docs/exit-gates.md): logistic
 * regression on the exit's hidden state, P(the head's top token equals the full model's) = σ(w · rmsnorm(h) + b), with
 * rmsnorm without a weight (so the gate sees the direction of h, whatever its scale). It costs 2·dim multiply-adds per
 * row, against the head's dim·vocab and more, so a row that does not exit pays almost nothing for the exit.
 * Thread-safety: as {@link ExitHead}: read-only while decoding; only {@link dev.eetune.train.GateTrainer} writes it.
 */
public record ExitGate(int layer, Parameter weight, Parameter bias, Tensor unitNorm, float eps) {
    /** Parameter-name prefix of the gate at the exit after layer L. */
    static String prefix(int layer) { return ExitHead.prefix(layer) + "gate."; }

    /** A gate with zero weights (P = 0.5 everywhere until trained). */
    static ExitGate create(int layer, LlamaConfig c, ParameterSet ps, Tensor unitNorm) {
        return new ExitGate(layer, ps.constant(prefix(layer) + "weight", 0f, 1, c.dim()), ps.constant(prefix(layer) + "bias", 0f, 1), unitNorm, c.normEps());
    }

    public List<Parameter> parameters() { return List.of(weight, bias); }

    /** The gate's input: rmsnorm(hidden) without a weight, into {@code out} [rows, dim]. */
    public void features(Ops ops, Tensor out, Tensor hidden) { ops.rmsnorm(out, null, hidden, unitNorm, eps); }

    /** The gate's logit w · f + b for each row of features {@code f} [rows, dim], into {@code out} [rows, 1]. */
    public void logits(Ops ops, Tensor out, Tensor f) {
        ops.linear(out, f, weight.value());
        ops.addBias(out, bias.value());
    }

    /** P(agreement) for rows 0..rows-1 of {@code hidden}. */
    public float[] score(Scope s, Tensor hidden, int rows) {
        Ops ops = s.backend().ops();
        Tensor f = s.allocate(DType.F32, rows, unitNorm.dim(0)), z = s.allocate(DType.F32, rows, 1);
        features(ops, f, hidden.slice(0, rows));
        logits(ops, z, f);
        float[] p = z.toFloatArray();
        for (int i = 0; i < p.length; i++) p[i] = sigmoid(p[i]);
        return p;
    }

    /** σ(z), NaN for NaN (a broken gate never exits: {@code confident} rejects NaN). */
    public static float sigmoid(float z) { return (float) (1 / (1 + Math.exp(-z))); }
}
