package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;

/** Test fixture: small Llama-family models with random weights, in memory or written as HF checkpoints. */
public final class RandomModels {
    private RandomModels() {}

    public static LlamaConfig config(int dim, int layers, int heads, int kvHeads, int hidden, int vocab, boolean tied, boolean qkvBias, RopeScaling scaling) {
        return new LlamaConfig(dim, hidden, layers, heads, kvHeads, dim / heads, vocab, 128, 1e-5f, scaling == null ? 10000f : 500000f, scaling,
            tied, qkvBias, false, qkvBias ? LlamaConfig.QWEN2 : LlamaConfig.LLAMA);
    }

    /** The backbone of the head-file tests and of the nasty head files: dim 32, 3 layers, 4 heads (2 KV), hidden 48, vocabulary 64. */
    public static LlamaModel headBackbone(Backend backend) { return random(config(32, 3, 4, 2, 48, 64, false, false, null), backend, 7); }

    /**
     * What loading a bf16 or f16 checkpoint of {@link #random}'s weights gives: every matrix of the layers and the
     * classifier in {@code dtype}, the rest in f32, and fixed weights (decode may read packed copies and screen the classifier).
     */
    public static LlamaModel halfWidth(LlamaConfig c, DType dtype, Backend backend, long seed) {
        Scope fixed = Scope.of(backend, dtype + " weights");
        try (LlamaModel base = random(c, backend, seed)) {
            return new LlamaModel(c, castMatrices(base.weights(), dtype, fixed), backend, fixed, true);
        }
    }

    /** Copies of the weights in {@code scope}: every matrix of the layers and the classifier cast to {@code dtype}, the rest as they are. */
    public static LlamaWeights castMatrices(LlamaWeights w, DType dtype, Scope scope) {
        UnaryOperator<Tensor> cast = t -> {
            Tensor out = scope.allocate(dtype, t.dim(0), t.dim(1));
            t.backend().ops().cast(out, t);
            return out;
        };
        UnaryOperator<Tensor> copy = t -> t == null ? null : scope.allocate(t.dtype(), t.shape().dims()).copyFrom(t);
        List<LayerWeights> layers = new ArrayList<>();
        for (LayerWeights l : w.layers()) {
            layers.add(new LayerWeights(copy.apply(l.attnNorm()), cast.apply(l.wq()), cast.apply(l.wk()), cast.apply(l.wv()), cast.apply(l.wo()), copy.apply(l.bq()),
                copy.apply(l.bk()), copy.apply(l.bv()), copy.apply(l.ffnNorm()), cast.apply(l.wGate()), cast.apply(l.wUp()), cast.apply(l.wDown())));
        }
        return new LlamaWeights(copy.apply(w.tokenEmbedding()), layers, copy.apply(w.finalNorm()), cast.apply(w.lmHead()));
    }

    /** Rows {@link LlamaModel#greedyTokens} decided by its screen so far. */
    public static long screenedRows(LlamaModel m) { return m.screenedRows.get(); }

    /** A model with N(0, 0.3) matrices (large enough for non-trivial attention and logits). */
    public static LlamaModel random(LlamaConfig c, Backend backend, long seed) {
        LlamaModel m = LlamaModel.random(c, backend, seed, 0.3f);
        java.util.Random r = new java.util.Random(seed + 1);
        for (LayerWeights l : m.weights().layers()) { // non-zero biases, so the bias path is really exercised
            for (dev.eetune.tensor.Tensor b : new dev.eetune.tensor.Tensor[] {l.bq(), l.bk(), l.bv()}) {
                if (b == null) continue;
                float[] v = new float[Math.toIntExact(b.size())];
                for (int i = 0; i < v.length; i++) v[i] = (float) (0.2 * r.nextGaussian());
                b.copyFrom(v);
            }
        }
        return m;
    }
}
