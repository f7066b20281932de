package dev.eetune.exit;

import java.util.Locale;

/**
 * How exit heads start: {@code COPY} (LM head, final norm, layer L's MLP, the last layer: every exit starts as the
 * "logit lens" of its layer) or {@code RANDOM} (N(0, 0.02), norms at 1).
 * Immutable: thread-safe.
 */
public enum ExitInit {
    COPY,
    RANDOM;

    public static ExitInit parse(String s) {
        try {
            return valueOf(s.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown exit init '" + s + "' (expected copy or random)");
        }
    }

    public String label() { return name().toLowerCase(Locale.ROOT); }
}
