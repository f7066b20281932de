package dev.eetune.infer;

import java.util.Collections;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * When to exit: a confidence threshold per active exit layer (1-based) and how confidence is measured
 * ({@link ConfidenceMethod}: the head's max softmax probability by default, or a cheap score: the exit's gate, or
 * hidden-state saturation). At each active exit, in layer order, the score of a sequence's newest token is compared with
 * its threshold; the first exit with score ≥ τ emits its head's token. τ ≥ 1 disables an exit (EE-LLM's log-space test can still fire at "τ = 1" when the
 * probability rounds to 1; here it never does). {@code evaluateDisabled} runs disabled heads anyway (to measure their
 * overhead), without ever exiting. {@code confirm}: with {@link ConfidenceMethod#CASCADE} only, the softmax threshold a
 * row that passed the gate must also reach, per exit (an exit missing from it confirms with its gate threshold).
 * Immutable: thread-safe.
 */
public record EarlyExitPolicy(Map<Integer, Float> thresholds, boolean evaluateDisabled, ConfidenceMethod confidence, Map<Integer, Float> confirm) {
    public EarlyExitPolicy {
        if (confidence == null) throw new IllegalArgumentException("confidence method must not be null");
        thresholds = inLayerOrder(thresholds);
        confirm = inLayerOrder(confirm);
        for (Map.Entry<Integer, Float> e : thresholds.entrySet()) {
            if (e.getKey() < 1) throw new IllegalArgumentException("exit layer must be >= 1, got " + e.getKey());
            if (!(e.getValue() >= 0)) throw new IllegalArgumentException("threshold of exit " + e.getKey() + " must be >= 0, got " + e.getValue());
        }
        if (!confirm.isEmpty() && confidence != ConfidenceMethod.CASCADE) {
            throw new IllegalArgumentException("confirmation thresholds are for cascade confidence, not " + confidence.label());
        }
        for (Map.Entry<Integer, Float> e : confirm.entrySet()) {
            if (!thresholds.containsKey(e.getKey())) throw new IllegalArgumentException("confirmation threshold for exit " + e.getKey() + ", which has no threshold");
            if (!(e.getValue() >= 0)) throw new IllegalArgumentException("confirmation threshold of exit " + e.getKey() + " must be >= 0, got " + e.getValue());
        }
    }

    /** An immutable copy iterating in layer order (Map.copyOf alone iterates in an order that changes from run to run). */
    private static Map<Integer, Float> inLayerOrder(Map<Integer, Float> m) {
        return Collections.unmodifiableMap(new TreeMap<>(Map.copyOf(m))); // copyOf first: it refuses null keys and values
    }

    /** No confirmation thresholds (cascade: each exit confirms with its gate threshold). */
    public EarlyExitPolicy(Map<Integer, Float> thresholds, boolean evaluateDisabled, ConfidenceMethod confidence) {
        this(thresholds, evaluateDisabled, confidence, Map.of());
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

    public EarlyExitPolicy evaluatingDisabledHeads() { return new EarlyExitPolicy(thresholds, true, confidence, confirm); }

    /** The same thresholds, measured by {@code method} (confirmation thresholds dropped). */
    public EarlyExitPolicy withConfidence(ConfidenceMethod method) { return new EarlyExitPolicy(thresholds, evaluateDisabled, method); }

    /** The same policy with only the exits in {@code layers}. */
    public EarlyExitPolicy restrictedTo(Set<Integer> layers) {
        Map<Integer, Float> t = new TreeMap<>(thresholds), c = new TreeMap<>(confirm);
        t.keySet().retainAll(layers);
        c.keySet().retainAll(layers);
        return new EarlyExitPolicy(t, evaluateDisabled, confidence, c);
    }

    /** Whether the exit after {@code layer} can fire. */
    public boolean canExit(int layer) {
        Float t = thresholds.get(layer);
        return t != null && t < 1f;
    }

    /** Whether the head after {@code layer} runs at all. */
    public boolean evaluates(int layer) { return canExit(layer) || (evaluateDisabled && thresholds.containsKey(layer)); }

    public float threshold(int layer) { return thresholds.getOrDefault(layer, 1f); }

    /** Cascade: the softmax threshold a row that passed the exit's gate must reach. */
    public float confirmThreshold(int layer) { return confirm.getOrDefault(layer, threshold(layer)); }

    /**
     * Whether a row exits after {@code layer} (assumed enabled) with cheap score {@code score} and max softmax
     * probability {@code softmax}: the one decision rule, shared by the decoder and the teacher-forced trace. Softmax
     * reads only {@code softmax}; gate and saturation only {@code score}; cascade needs both.
     */
    public boolean exits(int layer, double score, double softmax) {
        switch (confidence) {
            case SOFTMAX: return confident(softmax, threshold(layer));
            case CASCADE: return confident(score, threshold(layer)) && confident(softmax, confirmThreshold(layer));
            default: return confident(score, threshold(layer));
        }
    }

    /**
     * Whether a score {@code maxProb} (a probability or cosine) reaches {@code tau}. Only a value ≤ 1 can: the argmax
     * kernel reports NaN, or a value above 1, for logits that are not all finite (a broken head), and such a head
     * must never exit, whatever the threshold.
     */
    public static boolean confident(double maxProb, float tau) { return maxProb >= tau && maxProb <= 1; }
}
