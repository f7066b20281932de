package dev.eetune.exit;

import dev.eetune.model.Workspace;
import dev.eetune.tensor.Tensor;

/**
 * The rows in flight through the backbone: their residual stream {@code x} [rows, dim] and their description.
 * Thread-safety: one pass's state, used by the thread running it.
 */
public record Pass(Tensor x, Workspace.Rows rows) {
    public int rowCount() { return rows.count(); }
}
