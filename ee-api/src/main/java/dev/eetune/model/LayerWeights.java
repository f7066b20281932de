package dev.eetune.model;

import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * One transformer layer's weights, in one order everywhere: attention (norm, q, k, v, o, optional q/k/v biases), then
 * the MLP (norm, gate, up, down). Projections are [out, in] (as nn.Linear.weight), in F32, BF16 or F16; norms and
 * biases are F32. Biases are null unless the architecture has them (Qwen2's q/k/v).
 * Thread-safety: read-only weights, shared like their model.
 */
public record LayerWeights(Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo,
                           Tensor bq, Tensor bk, Tensor bv,
                           Tensor ffnNorm, Tensor wGate, Tensor wUp, Tensor wDown) {

    /** The tensors that are present, in record order. */
    public List<Tensor> tensors() {
        List<Tensor> out = new ArrayList<>();
        for (Tensor t : new Tensor[] {attnNorm, wq, wk, wv, wo, bq, bk, bv, ffnNorm, wGate, wUp, wDown}) if (t != null) out.add(t);
        return out;
    }

    /**
     * Fresh F32 weights in {@code s}: matrices N(0, std), the residual output projections (wo, down) N(0, residStd),
     * norms 1, biases 0.
     */
    public static LayerWeights random(LlamaConfig c, Scope s, Random r, float std, float residStd) {
        int d = c.dim(), qd = c.nHeads() * c.headDim(), kd = c.nKvHeads() * c.headDim(), f = c.hiddenDim();
        return new LayerWeights(ones(s, d), gaussian(s, r, std, qd, d), gaussian(s, r, std, kd, d), gaussian(s, r, std, kd, d), gaussian(s, r, residStd, d, qd),
            c.qkvBias() ? s.zeros(DType.F32, qd) : null, c.qkvBias() ? s.zeros(DType.F32, kd) : null, c.qkvBias() ? s.zeros(DType.F32, kd) : null,
            ones(s, d), gaussian(s, r, std, f, d), gaussian(s, r, std, f, d), gaussian(s, r, residStd, d, f));
    }

    static Tensor gaussian(Scope s, Random r, float std, int... dims) {
        Tensor t = s.allocate(DType.F32, dims);
        float[] v = new float[Math.toIntExact(t.size())];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * std);
        return t.copyFrom(v);
    }

    static Tensor ones(Scope s, int n) {
        float[] v = new float[n];
        Arrays.fill(v, 1f);
        return s.of(v, n);
    }
}
