package dev.eetune.infer;

import java.util.Arrays;

/**
 * The sampling side of lossless speculative decoding (Leviathan et al. 2023; Chen et al. 2023), on host-side fp32
 * distributions: processing logits into the distribution actually sampled (temperature, top-p), drawing from it,
 * and the accept / residual rule that makes drafted tokens follow the target distribution exactly.
 */
public final class SpeculativeSampling {
    private SpeculativeSampling() {}

    /**
     * softmax(logits / temperature) restricted to the top-p nucleus (highest probabilities first, ties by lower id)
     * and renormalised: the same distribution {@code ee_sample_top_p} samples from.
     */
    public static float[] process(float[] logits, float temperature, float topP) {
        int n = logits.length;
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l / (double) temperature);
        double[] p = new double[n];
        double sum = 0;
        for (int i = 0; i < n; i++) sum += p[i] = Math.exp(logits[i] / (double) temperature - max);
        float[] out = new float[n];
        if (topP >= 1f) {
            for (int i = 0; i < n; i++) out[i] = (float) (p[i] / sum);
            return out;
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b));
        double kept = 0;
        int count = 0;
        while (count < n) {
            kept += p[order[count++]] / sum;
            if (kept >= topP) break;
        }
        for (int i = 0; i < count; i++) out[order[i]] = (float) (p[order[i]] / sum / kept);
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

    /** One-hot distribution at {@code token} (a greedy draft's q). */
    public static float[] oneHot(int n, int token) {
        float[] q = new float[n];
        q[token] = 1f;
        return q;
    }
}
