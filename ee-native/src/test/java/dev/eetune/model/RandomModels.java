package dev.eetune.model;

import dev.eetune.backend.Backend;

/** Test fixture: small Llama-family models with random weights, in memory or written as HF checkpoints. */
public final class RandomModels {
    private RandomModels() {}

    public static LlamaConfig config(int dim, int layers, int heads, int kvHeads, int hidden, int vocab, boolean tied, boolean qkvBias, RopeScaling scaling) {
        return new LlamaConfig(dim, hidden, layers, heads, kvHeads, dim / heads, vocab, 128, 1e-5f, scaling == null ? 10000f : 500000f, scaling,
            tied, qkvBias, false, qkvBias ? LlamaConfig.QWEN2 : LlamaConfig.LLAMA);
    }

    /** The backbone of the head-file tests and of the nasty head files: dim 32, 3 layers, 4 heads (2 KV), hidden 48, vocabulary 64. */
    public static LlamaModel headBackbone(Backend backend) { return random(config(32, 3, 4, 2, 48, 64, false, false, null), backend, 7); }

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
