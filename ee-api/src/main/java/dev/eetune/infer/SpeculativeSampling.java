package dev.eetune.infer;

import java.util.Arrays;

/**
 * The sampling side of lossless speculative decoding (Leviathan et al. 2023; Chen et al. 2023), on host-side fp32
 * distributions (softmax computed natively, copied only when sampling): the top-p nucleus actually sampled, drawing
 * from it, and the accept / residual rule that makes drafted tokens follow the target distribution exactly.
 * Stateless: thread-safe.
 */
public final class SpeculativeSampling {
    private SpeculativeSampling() {}

    /**
     * A softmax distribution (computed natively at the sampling temperature) restricted to the top-p nucleus (highest
     * probabilities first, ties by lower id) and renormalised: the same distribution {@code ee_sample_top_p} samples
     * from. {@code probs} is overwritten.
     */
    public static float[] nucleus(float[] probs, float topP) {
        int n = probs.length;
        if (topP >= 1f) return probs;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> probs[a] != probs[b] ? Float.compare(probs[b], probs[a]) : Integer.compare(a, b));
        double kept = 0;
        int count = 0;
        while (count < n) {
            kept += probs[order[count++]];
            if (kept >= topP) break;
        }
        float[] out = new float[n];
        for (int i = 0; i < count; i++) out[order[i]] = (float) (probs[order[i]] / kept);
        return out;
    }

    /** The token whose cumulative probability (in id order) first exceeds u ∈ [0, 1). */
    public static int draw(float[] p, float u) {
        double total = 0;
        for (float v : p) total += v;
        double target = u * total, cum = 0;
        int lastPositive = -1;
        for (int i = 0; i < p.length; i++) {
            if (p[i] <= 0) continue;
            cum += p[i];
            lastPositive = i;
            if (cum > target) return i;
        }
        return lastPositive;
    }

    /** Accept draft token d (drawn from q) with probability min(1, p(d) / q(d)), decided by u ∈ [0, 1). */
    public static boolean accept(float[] p, float[] q, int d, float u) {
        return u * q[d] < p[d];
    }

    /**
     * The replacement after a rejection: a draw from r = max(0, p − q) / Σ max(0, p − q); when that mass underflows
     * to 0, a draw from p (no epsilon in the denominator: it would bias r).
     */
    public static int residual(float[] p, float[] q, float u) {
        float[] r = new float[p.length];
        double mass = 0;
        for (int i = 0; i < p.length; i++) mass += r[i] = Math.max(0f, p[i] - q[i]);
        return mass > 0 ? draw(r, u) : draw(p, u);
    }

}
