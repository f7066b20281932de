package dev.eetune.infer;

import java.util.Locale;

/**
 * How an exit decides whether a row leaves (docs/exit-gates.md). {@link #SOFTMAX}: the head's maximum softmax
 * probability, so the head runs for every row that reaches the exit. {@link #GATE}: the exit's learned gate, the
 * probability that the head's top token equals the full model's ({@link dev.eetune.exit.ExitGate}). {@link #SATURATION}:
 * the cosine similarity of the hidden state before and after the exit's layer. {@link #CASCADE}: the gate as a cheap
 * pre-filter, then the head's max softmax probability as confirmation: a row exits when its gate score reaches the
 * exit's threshold AND its softmax reaches the exit's confirmation threshold. With the three cheap methods the head runs
 * only for the rows whose (gate or saturation) score reaches the threshold.
 * Immutable: thread-safe.
 */
public enum ConfidenceMethod {
    SOFTMAX, GATE, SATURATION, CASCADE;

    public String label() { return name().toLowerCase(Locale.ROOT); }

    /** Whether the head runs only for rows whose score passes (the score does not need the head's logits). */
    public boolean isCheap() { return this != SOFTMAX; }

    /** Whether the method needs the exits' gates. */
    public boolean needsGates() { return this == GATE || this == CASCADE; }

    public static ConfidenceMethod parse(String s) {
        for (ConfidenceMethod m : values()) if (m.label().equals(s.strip().toLowerCase(Locale.ROOT))) return m;
        throw new IllegalArgumentException("confidence method '" + s + "': expected softmax, gate, saturation or cascade");
    }
}
