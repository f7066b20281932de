package dev.eetune.exit;

import dev.eetune.model.LlamaConfig;

/**
 * Multiply-adds per row, the unit in which the sweep's layers/token counts heads and gates as fractions of a layer
 * (docs/exit-gates.md). A layer: its projections, dim·(dim + 2·kvDim) + dim·dim, and its SwiGLU MLP, 3·dim·ffn
 * (attention scores grow with the context and are left out, as is everything elementwise). A head: its LM head,
 * vocab·dim, plus an MLP head's MLP; a {@code layer} head's own layer is counted as a layer by the decoder, not here (or
 * {@link #kvLayers} for a row that only writes its K/V there).
 * Pure functions of the shape: thread-safe.
 */
public final class ExitCost {
    private ExitCost() {}

    public static double layerMacs(LlamaConfig c) {
        double d = c.dim(), kv = (double) c.nKvHeads() * c.headDim();
        return d * (d + 2 * kv) + d * d + 3 * d * c.hiddenDim();
    }

    /**
     * The K/V projections of a layer as a fraction of it, 2·dim·kvDim over {@link #layerMacs}: what a {@code layer}
     * head's own layer costs a row that does not take the head with a cheap decision (its cache must hold the row).
     */
    public static double kvLayers(LlamaConfig c) { return 2.0 * c.dim() * c.nKvHeads() * c.headDim() / layerMacs(c); }

    /** A head's multiply-adds per evaluated row beyond any layer of its own. */
    public static double headMacs(ExitArchitecture a, LlamaConfig c) {
        double lm = (double) c.vocabSize() * c.dim();
        return a == ExitArchitecture.MLP ? lm + 3.0 * c.dim() * c.hiddenDim() : lm;
    }

    /**
     * The backbone's own LM head per row that reaches the last layer, vocab·dim: a row that exits early pays its exit's
     * head instead (the decoder computes the final logits only for rows that reach the last layer).
     */
    public static double finalHeadMacs(LlamaConfig c) { return (double) c.vocabSize() * c.dim(); }

    /** A gate's multiply-adds per row with {@code hiddenUnits} (0: linear; see {@link ExitGate#macs}). */
    public static double gateMacs(LlamaConfig c, int hiddenUnits) { return ExitGate.macs(c.dim(), hiddenUnits); }

    /** Saturation's multiply-adds per row: the dot product and the two norms of the cosine. */
    public static double saturationMacs(LlamaConfig c) { return 3.0 * c.dim(); }
}
