package dev.eetune.model;

import dev.eetune.backend.Ops;
import dev.eetune.tensor.Tensor;

/**
 * The one forward of a Llama decoder layer, for every caller: prefill, decode, early-exit passes, speculative
 * verification, tuning (frozen backbone) and training (activations kept for {@code TransformerBlock.backward}).
 * Which buffers it writes is the caller's choice ({@link LayerActivations}); the arithmetic is the same.
 * Thread-safety: holds only read-only tensors (shared by the model's threads); the buffers it writes are the caller's.
 */
public final class DecoderLayer {
    private final LlamaConfig c;
    private final Tensor invFreq;
    private final float scale;

    /** {@code invFreq} [headDim / 2]: the model's RoPE inverse frequencies. */
    public DecoderLayer(LlamaConfig config, Tensor invFreq) {
        this.c = config;
        this.invFreq = invFreq;
        this.scale = (float) (1.0 / Math.sqrt(config.headDim()));
    }

    public LlamaConfig config() { return c; }

    /** The RoPE inverse frequencies [headDim / 2]. */
    public Tensor ropeInverseFrequencies() { return invFreq; }

    public float attentionScale() { return scale; }

    /**
     * out [rows, dim] = layer(x) over packed rows (out may be x). With a cache, each row's K/V are written at (seq, pos)
     * first and the row attends to its sequence's cached positions 0..pos; with {@code cache} null the rows must be
     * dense ({@link Workspace#denseRows}) and attend to their own keys and values. {@code a.residual()} is left holding
     * x + attn(x).
     */
    public void forward(LayerWeights w, Tensor x, Tensor out, Workspace.Rows rows, KvCache.Layer cache, LayerActivations a) {
        forward(w, false, x, out, rows, cache, a);
    }

    /** {@link #forward(LayerWeights, Tensor, Tensor, Workspace.Rows, KvCache.Layer, LayerActivations)} with {@code w}'s
     * matrices packed by {@link Ops#packPanels} when {@code panels} (at most {@link Ops#PANELS_MAX_ROWS} rows). */
    public void forward(LayerWeights w, boolean panels, Tensor x, Tensor out, Workspace.Rows rows, KvCache.Layer cache, LayerActivations a) {
        Tensor keys, values;
        if (cache != null) {
            rows.checkFits(cache);
            keys = cache.keys();
            values = cache.values();
        } else {
            if (!rows.isDense()) throw new IllegalArgumentException("a layer without a KV cache needs dense rows (batch x seqLen), got " + rows.count() + " packed rows");
            int kd = c.nKvHeads() * c.headDim();
            keys = a.k().reshape(rows.batch(), rows.seqLen(), kd); // dense rows are already the cache layout
            values = a.v().reshape(rows.batch(), rows.seqLen(), kd);
        }
        // one native call for the whole layer (ee_decoder_layer_fwd: the ops' composition, same bits): at decode
        // sizes the per-op calls, checks and views cost as much as the arithmetic
        x.backend().ops().decoderLayer(x, out, a.residual(), a.xn1(), a.inv1(), a.q(), a.k(), a.v(), a.att(), a.lse(), a.xn2(), a.inv2(), a.gate(), a.up(), a.act(),
            w.attnNorm(), w.wq(), w.wk(), w.wv(), w.wo(), w.bq(), w.bk(), w.bv(), w.ffnNorm(), w.wGate(), w.wUp(), w.wDown(), panels,
            keys, values, cache != null, rows.seq(), rows.pos(), invFreq, c.nHeads(), c.nKvHeads(), c.headDim(), c.ropeInterleaved(), c.normEps(), scale);
    }

    /**
     * Writes the K/V of {@code rows} at this layer into {@code cache} and computes nothing else: the attention norm,
     * the k and v projections with their biases and k's rotation, the calls {@link #forward} makes before its
     * attention (ee_decoder_layer_fwd's first part), so the cache holds the same bits. Why: a layer exit head's own
     * cache must hold every row, but only the rows that take the head need its attention and MLP; the K/V cost
     * {@code 2 dim kvDim} of a layer's multiply-adds. Scratch: {@code a.xn1()}, {@code a.k()}, {@code a.v()}.
     */
    public void writeKv(LayerWeights w, Tensor x, Workspace.Rows rows, KvCache.Layer cache, LayerActivations a) {
        rows.checkFits(cache);
        Ops ops = x.backend().ops();
        ops.rmsnorm(a.xn1(), null, x, w.attnNorm(), c.normEps());
        ops.linear(a.k(), a.xn1(), w.wk());
        ops.linear(a.v(), a.xn1(), w.wv());
        if (w.bk() != null) ops.addBias(a.k(), w.bk());
        if (w.bv() != null) ops.addBias(a.v(), w.bv());
        ops.rope(a.k(), rows.pos(), invFreq, c.nKvHeads(), c.headDim(), c.ropeInterleaved(), false);
        ops.kvWrite(cache.keys(), a.k(), rows.seq(), rows.pos());
        ops.kvWrite(cache.values(), a.v(), rows.seq(), rows.pos());
    }

    /**
     * Layers [from, to) of {@code table} ({@link #tableRow}s over one cache) over packed rows in one native call, x
     * updated in place: the same bits as {@link #forward} layer by layer with the table's weights and caches.
     * {@code a.residual()} is left holding the last layer's x + attn(x).
     */
    public void forward(Ops.LayerTable table, int from, int to, Tensor x, Workspace.Rows rows, KvCache.Layer cache, LayerActivations a) {
        rows.checkFits(cache);
        x.backend().ops().decoderLayers(table, from, to, x, x, a.residual(), a.xn1(), a.inv1(), a.q(), a.k(), a.v(), a.att(), a.lse(), a.xn2(), a.inv2(), a.gate(), a.up(),
            a.act(), rows.seq(), rows.pos(), invFreq, c.ropeInterleaved(), c.normEps(), scale);
    }

    /**
     * Decode steps over all of {@code table}'s layers prepared for native calls ({@link Ops#prepareDecodeSteps}): the
     * embedding of {@code firstIds} (then of each step's tokens), the layers writing K/V at {@code rowPos[t]}, the final
     * norm, the classifier and the next tokens into {@code outIds[t]} (greedy where {@code uniforms} is null, else
     * sampled with them); {@code a}, {@code normed} and {@code logits} are scratch.
     */
    public Ops.DecodeStepsCall prepareDecodeSteps(Ops.LayerTable table, Tensor embedding, Tensor finalNorm, Tensor classifier, boolean packedClassifier, Tensor firstIds,
                                                  Tensor outIds, Tensor x, Tensor rowSeq, Tensor rowPos, Tensor uniforms, float temperature, float topP, LayerActivations a,
                                                  Tensor normed, Tensor logits) {
        return x.backend().ops().prepareDecodeSteps(table, embedding, finalNorm, classifier, packedClassifier, firstIds, outIds, x, a.residual(), a.xn1(), a.q(), a.k(), a.v(),
            a.att(), a.xn2(), a.gate(), a.up(), a.act(), normed, logits, rowSeq, rowPos, invFreq, c.ropeInterleaved(), c.normEps(), scale, uniforms, temperature, topP);
    }

    /**
     * Early-exit decode steps of up to firstIds' size sequences prepared for native calls ({@link Ops#prepareExitSteps}),
     * passes of r rows over {@code passesByRows[r]}; {@code a} (for x's rows), {@code normed} and {@code logits} are scratch.
     */
    public Ops.ExitStepsCall prepareExitSteps(Ops.PassTables[] passesByRows, Tensor embedding, Tensor finalNorm, Tensor firstIds, Tensor outIds, Tensor x, Tensor rowSeq,
                                              Tensor pos, Tensor uniforms, float temperature, float topP, LayerActivations a, Tensor normed, Tensor logits,
                                              Ops.ExitMethod method, java.util.List<Ops.ExitStep> exits, Tensor states, Tensor score, Tensor chosen, Tensor pre, Tensor z) {
        return x.backend().ops().prepareExitSteps(passesByRows, embedding, finalNorm, firstIds, outIds, x, a.residual(), a.xn1(), a.q(), a.k(), a.v(), a.att(), a.xn2(),
            a.gate(), a.up(), a.act(), normed, logits, rowSeq, pos, invFreq, c.ropeInterleaved(), c.normEps(), scale, uniforms, temperature, topP, method, exits, states,
            score, chosen, pre, z);
    }

    /** One layer's tensors in {@link Ops#layerTable}'s order: its weights (as given: plain or packed), then its caches. */
    public static Tensor[] tableRow(LayerWeights w, KvCache.Layer cache) {
        return new Tensor[] {w.attnNorm(), w.wq(), w.wk(), w.wv(), w.wo(), w.bq(), w.bk(), w.bv(), w.ffnNorm(), w.wGate(), w.wUp(), w.wDown(), cache.keys(), cache.values()};
    }

    /**
     * out = h + down(silu(gate n) * up n), n = rmsnorm(h, norm): the layer's second half, and an MLP exit head's
     * (with the backbone's norm and the head's own projections). out may be h.
     */
    public void feedForward(Tensor norm, Tensor wGate, Tensor wUp, Tensor wDown, Tensor h, Tensor out, LayerActivations a) {
        h.backend().ops().feedForward(h, out, a.xn2(), a.inv2(), a.gate(), a.up(), a.act(), norm, wGate, wUp, wDown, false, c.normEps());
    }
}
