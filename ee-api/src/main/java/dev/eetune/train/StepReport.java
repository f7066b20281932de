package dev.eetune.train;

import java.util.Arrays;
import java.util.Locale;

/**
 * One optimizer step: mean CE per exit (over unmasked tokens), learning rate, gradient norm (before clipping),
 * tokens processed and wall time. {@code skipped} steps had a non-finite loss or gradient and changed nothing.
 */
public record StepReport(int step, double[] exitLosses, float lr, double gradNorm, long tokens, double seconds, boolean skipped) {
    public double tokensPerSecond() { return seconds > 0 ? tokens / seconds : 0; }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "step %d%s lr %.2e |g| %.3f loss", step, skipped ? " SKIPPED" : "", lr, gradNorm));
        for (double l : exitLosses) sb.append(String.format(Locale.ROOT, " %.4f", l));
        return sb.append(String.format(Locale.ROOT, " %.0f tok/s", tokensPerSecond())).toString();
    }

    public double[] exitLosses() { return Arrays.copyOf(exitLosses, exitLosses.length); }
}
