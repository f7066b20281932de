package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Test fixture: small Llama-family models with random weights, in memory or written as HF checkpoints. */
final class RandomModels {
    private RandomModels() {}

    static LlamaConfig config(int dim, int layers, int heads, int kvHeads, int hidden, int vocab, boolean tied, boolean qkvBias, RopeScaling scaling) {
        return new LlamaConfig(dim, hidden, layers, heads, kvHeads, dim / heads, vocab, 128, 1e-5f, scaling == null ? 10000f : 500000f, scaling,
            tied, qkvBias, false, qkvBias ? LlamaConfig.QWEN2 : LlamaConfig.LLAMA);
    }

    /** A model with N(0, std) matrices and norms near 1, in F32 memory owned by the model. */
    static LlamaModel random(LlamaConfig c, Backend backend, long seed) {
        Random r = new Random(seed);
        Scope s = Scope.of(backend);
        int d = c.dim(), qd = c.nHeads() * c.headDim(), kd = c.nKvHeads() * c.headDim(), f = c.hiddenDim();
        Tensor emb = gauss(s, r, 1.0, c.vocabSize(), d);
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < c.nLayers(); l++) {
            layers.add(new LayerWeights(norm(s, r, d), gauss(s, r, 0.3, qd, d), gauss(s, r, 0.3, kd, d), gauss(s, r, 0.3, kd, d), gauss(s, r, 0.15, d, qd),
                c.qkvBias() ? gauss(s, r, 0.2, qd) : null, c.qkvBias() ? gauss(s, r, 0.2, kd) : null, c.qkvBias() ? gauss(s, r, 0.2, kd) : null,
                norm(s, r, d), gauss(s, r, 0.2, f, d), gauss(s, r, 0.1, d, f), gauss(s, r, 0.2, f, d)));
        }
        Tensor head = c.tiedEmbeddings() ? emb : gauss(s, r, 0.2, c.vocabSize(), d);
        return new LlamaModel(c, new LlamaWeights(emb, layers, norm(s, r, d), head), backend, s);
    }

    private static Tensor gauss(Scope s, Random r, double std, int... dims) {
        Tensor t = s.allocate(DType.F32, dims);
        float[] v = new float[Math.toIntExact(t.size())];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * std);
        return t.copyFrom(v);
    }

    private static Tensor norm(Scope s, Random r, int d) {
        float[] v = new float[d];
        for (int i = 0; i < d; i++) v[i] = (float) (1 + 0.1 * r.nextGaussian());
        return s.of(v, d);
    }
}
