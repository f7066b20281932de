package dev.eetune.exit;

import dev.eetune.model.KvCache;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.Tensor;

/**
 * What a head reads at its exit: layer L's output {@code hidden} [rows, dim] for every row of the pass, the layer's
 * attention residual (only for heads that {@linkplain ExitHead#readsAttentionResidual() read it}, else null), the
 * rows, the head's own K/V cache (decoding with a LAYER head; null for dense rows) and the pass's workspace.
 * Thread-safety: one pass's view, used by the thread running the pass.
 */
public record ExitInput(Tensor hidden, Tensor attnResidual, Workspace.Rows rows, KvCache.Layer ownCache, Workspace workspace) {

    /** Rows 0..k-1 of a packed pass, with the same cache and workspace. */
    public ExitInput firstRows(int k) {
        return new ExitInput(hidden.slice(0, k), attnResidual == null ? null : attnResidual.slice(0, k), rows.first(k), ownCache, workspace);
    }
}
