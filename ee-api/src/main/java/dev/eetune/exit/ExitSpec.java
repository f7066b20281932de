package dev.eetune.exit;

/**
 * An exit after layer {@code layer} (1-based: 1 = after the first layer) with an architecture and an init.
 * Immutable: thread-safe.
 */
public record ExitSpec(int layer, ExitArchitecture architecture, ExitInit init) {
    public ExitSpec {
        if (layer < 1) throw new IllegalArgumentException("exit layer must be >= 1 (an exit sits after a layer), got " + layer);
    }

    @Override
    public String toString() { return architecture.label() + "@" + layer + "(" + init.label() + ")"; }
}
