package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A Llama-family decoder (Llama 2/3, TinyLlama, Mistral, Qwen2, llama2.c) on a backend. There is ONE layer loop,
 * {@link #layers}, parameterised by the packed rows it runs and the layer range, so prefill, decode, early-exit
 * recomputation, speculative verification and tuning all share it.
 */
public final class LlamaModel implements AutoCloseable {
    private final LlamaConfig config;
    private final LlamaWeights weights;
    private final Backend backend;
    private final Scope scope;
    private final Tensor invFreq;
    private final float attnScale;

    /** Takes ownership of {@code scope}, which holds the weights (and any mapped files). */
    public LlamaModel(LlamaConfig config, LlamaWeights weights, Backend backend, Scope scope) {
        config.validate();
        this.config = config;
        this.weights = weights;
        this.backend = backend;
        this.scope = scope;
        this.invFreq = scope.of(config.ropeInverseFrequencies(), config.headDim() / 2);
        this.attnScale = (float) (1.0 / Math.sqrt(config.headDim()));
    }

    /**
     * Loads a checkpoint: a Hugging Face directory (config.json + safetensors) or a llama2.c {@code .bin} file.
     * Weights are memory-mapped, never read through the Java heap.
     */
    public static LlamaModel load(Path path, Backend backend) {
        if (Files.isDirectory(path)) return HfCheckpointLoader.load(path, backend);
        if (Files.isRegularFile(path) && path.getFileName().toString().endsWith(".safetensors")) return HfCheckpointLoader.load(path.getParent(), backend);
        if (Files.isRegularFile(path)) return Llama2cLoader.load(path, backend);
        throw new IllegalArgumentException("no model at " + path + " (expected a Hugging Face directory or a llama2.c .bin file)");
    }

    /**
     * A model with freshly initialised F32 weights: matrices N(0, std) (the residual output projections wo and
     * down scaled by 1/sqrt(2 * layers), as in GPT-2), norms 1, biases 0. For pretraining and synthetic benchmarks.
     */
    public static LlamaModel random(LlamaConfig c, Backend backend, long seed, float std) {
        java.util.Random r = new java.util.Random(seed);
        Scope s = Scope.of(backend);
        int d = c.dim(), qd = c.nHeads() * c.headDim(), kd = c.nKvHeads() * c.headDim(), f = c.hiddenDim();
        float resid = (float) (std / Math.sqrt(2.0 * c.nLayers()));
        Tensor emb = gaussian(s, r, std, c.vocabSize(), d);
        java.util.List<LayerWeights> layers = new java.util.ArrayList<>();
        for (int l = 0; l < c.nLayers(); l++) {
            layers.add(new LayerWeights(ones(s, d), gaussian(s, r, std, qd, d), gaussian(s, r, std, kd, d), gaussian(s, r, std, kd, d), gaussian(s, r, resid, d, qd),
                c.qkvBias() ? s.zeros(dev.eetune.tensor.DType.F32, qd) : null, c.qkvBias() ? s.zeros(dev.eetune.tensor.DType.F32, kd) : null,
                c.qkvBias() ? s.zeros(dev.eetune.tensor.DType.F32, kd) : null,
                ones(s, d), gaussian(s, r, std, f, d), gaussian(s, r, resid, d, f), gaussian(s, r, std, f, d)));
        }
        Tensor head = c.tiedEmbeddings() ? emb : gaussian(s, r, std, c.vocabSize(), d);
        return new LlamaModel(c, new LlamaWeights(emb, layers, ones(s, d), head), backend, s);
    }

    private static Tensor gaussian(Scope s, java.util.Random r, float std, int... dims) {
        Tensor t = s.allocate(dev.eetune.tensor.DType.F32, dims);
        float[] v = new float[Math.toIntExact(t.size())];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * std);
        return t.copyFrom(v);
    }

    private static Tensor ones(Scope s, int n) {
        float[] v = new float[n];
        java.util.Arrays.fill(v, 1f);
        return s.of(v, n);
    }

    public LlamaConfig config() { return config; }

    public LlamaWeights weights() { return weights; }

    public Backend backend() { return backend; }

    public Workspace newWorkspace() { return new Workspace(config, backend); }

    /** x[r] = embedding of rows' tokens. */
    public void embed(Tensor x, Workspace.Rows rows) {
        backend.ops().embedding(x, weights.tokenEmbedding(), rows.tokens());
    }

    /** Called inside the layer loop; see {@link #layers}. */
    public interface LayerTap {
        /** After layer {@code layer}'s attention residual add: {@code residual} is h + attn(h), read it now. */
        default void afterAttention(int layer, Tensor residual) {}

        /** After layer {@code layer} (0-based): {@code hidden} is its output; returning false stops the loop. */
        default boolean afterLayer(int layer, Tensor hidden) { return true; }
    }

    /**
     * Runs layers [from, to) (0-based) over packed rows: the residual stream {@code x} [rows, dim] is updated in place
     * and each row's K/V are written to the cache at (seq, pos) before attention, so a row attends to its sequence's
     * cached positions 0..pos. Returns the index after the last layer run (to, or earlier if the tap stopped).
     */
    public int layers(Tensor x, Workspace.Rows rows, KvCache cache, int from, int to, Workspace ws, LayerTap tap) {
        if (from < 0 || to > config.nLayers() || from > to) throw new IllegalArgumentException("layers [" + from + ", " + to + ") outside 0.." + config.nLayers());
        for (int l = from; l < to; l++) {
            layer(weights.layers().get(l), cache.keys(l), cache.values(l), x, rows, ws, tap, l);
            if (tap != null && !tap.afterLayer(l, x)) return l + 1;
        }
        return to;
    }

    /**
     * One layer with the given weights (the backbone's, or an exit head's own) over packed rows, writing their K/V
     * into {@code keys}/{@code values} [sequences, maxLen, kvDim] first. {@code x} [rows, dim] is updated in place.
     */
    public void layer(LayerWeights w, Tensor keys, Tensor values, Tensor x, Workspace.Rows rows, Workspace ws) {
        layer(w, keys, values, x, rows, ws, null, -1);
    }

    private void layer(LayerWeights w, Tensor keys, Tensor values, Tensor x, Workspace.Rows rows, Workspace ws, LayerTap tap, int index) {
        Ops ops = backend.ops();
        int n = rows.count(), hd = config.headDim();
        ws.ensure(n);
        Tensor xb = ws.xb(n), q = ws.q(n), k = ws.k(n), v = ws.v(n), att = ws.att(n), gate = ws.gate(n), up = ws.up(n);
        ops.rmsnorm(xb, null, x, w.attnNorm(), config.normEps());
        ops.linear(q, xb, w.wq());
        ops.linear(k, xb, w.wk());
        ops.linear(v, xb, w.wv());
        if (w.bq() != null) {
            ops.addBias(q, w.bq());
            ops.addBias(k, w.bk());
            ops.addBias(v, w.bv());
        }
        ops.rope(q, rows.pos(), invFreq, config.nHeads(), hd, config.ropeInterleaved(), false);
        ops.rope(k, rows.pos(), invFreq, config.nKvHeads(), hd, config.ropeInterleaved(), false);
        ops.kvWrite(keys, k, rows.seq(), rows.pos());
        ops.kvWrite(values, v, rows.seq(), rows.pos());
        ops.attention(att, null, q, keys, values, rows.seq(), rows.pos(), config.nHeads(), config.nKvHeads(), hd, attnScale);
        ops.gemm(false, true, 1f, att, w.wo(), 1f, x); // x += att Wo^T
        if (tap != null) tap.afterAttention(index, x);
        ops.rmsnorm(xb, null, x, w.ffnNorm(), config.normEps());
        ops.linear(gate, xb, w.wGate());
        ops.linear(up, xb, w.wUp());
        ops.swiglu(gate, gate, up);
        ops.gemm(false, true, 1f, gate, w.wDown(), 1f, x); // x += mlp
    }

    /** logits [rows, vocab] = lmHead(finalNorm(hidden)); {@code normed} [rows, dim] is scratch. */
    public void logits(Tensor logits, Tensor hidden, Tensor normed) {
        Ops ops = backend.ops();
        ops.rmsnorm(normed, null, hidden, weights.finalNorm(), config.normEps());
        ops.linear(logits, normed, weights.lmHead());
    }

    /** The RoPE inverse frequencies [headDim / 2]. */
    public Tensor ropeInverseFrequencies() { return invFreq; }

    public float attentionScale() { return attnScale; }

    @Override
    public void close() { scope.close(); }

    @Override
    public String toString() {
        return "LlamaModel[" + config.architecture() + ", dim " + config.dim() + ", " + config.nLayers() + " layers, " + config.nHeads() + "/" + config.nKvHeads()
            + " heads, vocab " + config.vocabSize() + ", " + weights.tokenEmbedding().dtype() + ", " + backend.name() + "]";
    }
}
