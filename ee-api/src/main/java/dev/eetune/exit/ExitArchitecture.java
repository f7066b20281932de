package dev.eetune.exit;

import java.util.Locale;

/**
 * What an exit head computes on top of layer L (EE-LLM / EE-Tuning architectures).
 * Immutable: thread-safe.
 */
public enum ExitArchitecture {
    /** The LM head alone, on layer L's output. */
    EMBEDDING,
    /** RMSNorm + LM head on layer L's output. */
    NORM,
    /**
     * EE-LLM's ExitMLP: a branch SwiGLU MLP fed by layer L's post-attention norm of its attention residual, added to
     * that residual, then RMSNorm + LM head. With copy init it reproduces layer L's output exactly.
     */
    MLP,
    /** A full transformer layer on layer L's output, then RMSNorm + LM head. */
    LAYER;

    public static ExitArchitecture parse(String s) {
        try {
            return valueOf(s.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown exit architecture '" + s + "' (expected embedding, norm, mlp or layer)");
        }
    }

    public String label() { return name().toLowerCase(Locale.ROOT); }
}
