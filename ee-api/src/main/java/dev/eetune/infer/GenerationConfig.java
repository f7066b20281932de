package dev.eetune.infer;

import java.util.Set;

/**
 * How to generate: {@code temperature} 0 = greedy; otherwise softmax(logits / T) restricted to the top-p nucleus,
 * sampled with a counter-based RNG keyed by (seed, sequence, position) so a sequence's output does not depend on the
 * rest of the batch. Generation of a sequence stops at a stop token or after {@code maxNewTokens}.
 * Immutable: thread-safe.
 */
public record GenerationConfig(int maxNewTokens, float temperature, float topP, long seed, Set<Integer> stopTokens) {
    public GenerationConfig {
        if (maxNewTokens < 0) throw new IllegalArgumentException("maxNewTokens must be >= 0, got " + maxNewTokens);
        if (!(temperature >= 0) || Float.isInfinite(temperature)) throw new IllegalArgumentException("temperature must be >= 0 and finite, got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("topP must be in (0, 1], got " + topP);
        stopTokens = Set.copyOf(stopTokens);
    }

    public static GenerationConfig greedy(int maxNewTokens, Set<Integer> stopTokens) {
        return new GenerationConfig(maxNewTokens, 0f, 1f, 0L, stopTokens);
    }

    public boolean isGreedy() { return temperature == 0f; }
}
