package dev.eetune.exit;

import dev.eetune.model.Workspace;
import dev.eetune.tensor.Tensor;

/** The rows in flight through the backbone: their residual stream {@code x} [rows, dim] and their description. */
public record Pass(Tensor x, Workspace.Rows rows) {
    public int rowCount() { return rows.count(); }
}
