package dev.eetune.infer;

import java.util.Map;
import java.util.TreeMap;

/**
 * When to exit: a confidence threshold per active exit layer (1-based) and how confidence is measured
 * ({@link ConfidenceMethod}: the head's max softmax probability by default, or a cheap score: the exit's gate, or
 * hidden-state saturation). At each active exit, in layer order, the score of a sequence's newest token is compared with
 * its threshold; the first exit with score ≥ τ emits its head's token. τ ≥ 1 disables an exit (EE-LLM's log-space test can still fire at "τ = 1" when the
 * probability rounds to 1; here it never does). {@code evaluateDisabled} runs disabled heads anyway (to measure their
 * overhead), without ever exiting.
 * Immutable: thread-safe.
 */
public record EarlyExitPolicy(Map<Integer, Float> thresholds, boolean evaluateDisabled, ConfidenceMethod confidence) {
    public EarlyExitPolicy {
        if (confidence == null) throw new IllegalArgumentException("confidence method must not be null");
        thresholds = Map.copyOf(new TreeMap<>(thresholds));
        for (Map.Entry<Integer, Float> e : thresholds.entrySet()) {
            if (e.getKey() < 1) throw new IllegalArgumentException("exit layer must be >= 1, got " + e.getKey());
            if (!(e.getValue() >= 0)) throw new IllegalArgumentException("threshold of exit " + e.getKey() + " must be >= 0, got " + e.getValue());
        }
    }

    /** Softmax confidence. */
    public EarlyExitPolicy(Map<Integer, Float> thresholds, boolean evaluateDisabled) { this(thresholds, evaluateDisabled, ConfidenceMethod.SOFTMAX); }

    /** No early exits: the full model. */
    public static EarlyExitPolicy none() { return new EarlyExitPolicy(Map.of(), false); }

    /** The same threshold at each of {@code layers}. */
    public static EarlyExitPolicy global(float threshold, int... layers) {
        Map<Integer, Float> m = new TreeMap<>();
        for (int l : layers) m.put(l, threshold);
        return new EarlyExitPolicy(m, false);
    }

    public EarlyExitPolicy evaluatingDisabledHeads() { return new EarlyExitPolicy(thresholds, true, confidence); }

    /** The same thresholds, measured by {@code method}. */
    public EarlyExitPolicy withConfidence(ConfidenceMethod method) { return new EarlyExitPolicy(thresholds, evaluateDisabled, method); }

    /** Whether the exit after {@code layer} can fire. */
    public boolean canExit(int layer) {
        Float t = thresholds.get(layer);
        return t != null && t < 1f;
    }

    /** Whether the head after {@code layer} runs at all. */
    public boolean evaluates(int layer) { return canExit(layer) || (evaluateDisabled && thresholds.containsKey(layer)); }

    public float threshold(int layer) { return thresholds.getOrDefault(layer, 1f); }

    /**
     * Whether a score {@code maxProb} (a probability or cosine) reaches {@code tau}. Only a value ≤ 1 can: the argmax
     * kernel reports NaN, or a value above 1, for logits that are not all finite (a broken head), and such a head
     * must never exit, whatever the threshold.
     */
    public static boolean confident(double maxProb, float tau) { return maxProb >= tau && maxProb <= 1; }
}
