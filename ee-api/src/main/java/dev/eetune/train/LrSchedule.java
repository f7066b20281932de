package dev.eetune.train;

import java.util.Locale;

/**
 * Learning rate by step: linear warm-up from 0 to {@code peak} over {@code warmupSteps}, then decay to {@code floor}
 * at {@code totalSteps} (cosine, linear, or none).
 */
public record LrSchedule(float peak, int warmupSteps, int totalSteps, Decay decay, float floor) {
    public enum Decay {
        COSINE, LINEAR, CONSTANT;

        public static Decay parse(String s) {
            for (Decay d : values()) if (d.name().equalsIgnoreCase(s.trim())) return d;
            throw new IllegalArgumentException("learning-rate decay '" + s + "': expected cosine, linear or constant");
        }
    }

    public LrSchedule {
        if (!(peak > 0) || Float.isInfinite(peak)) throw new IllegalArgumentException("learning rate must be > 0 and finite, got " + peak);
        if (warmupSteps < 0 || totalSteps < 1) throw new IllegalArgumentException("warm-up " + warmupSteps + " and total steps " + totalSteps + " must be >= 0 and >= 1");
        if (!(floor >= 0 && floor <= peak)) throw new IllegalArgumentException("LR floor " + floor + " must lie in [0, " + peak + "]");
    }

    public static LrSchedule cosine(float peak, int warmupSteps, int totalSteps, float floor) {
        return new LrSchedule(peak, warmupSteps, totalSteps, Decay.COSINE, floor);
    }

    /** The learning rate of step {@code step} (0-based). */
    public float at(int step) {
        if (step < warmupSteps) return peak * (step + 1) / warmupSteps;
        if (totalSteps <= warmupSteps) return peak;
        return decayed((double) (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
    }

    /** For time-budgeted runs: warm-up by step, then decay by the fraction of the budget used (0..1). */
    public float at(int step, double budgetFraction) {
        if (step < warmupSteps) return peak * (step + 1) / warmupSteps;
        return decayed(budgetFraction);
    }

    private float decayed(double fraction) {
        if (decay == Decay.CONSTANT) return peak;
        double progress = Math.min(1.0, Math.max(0.0, fraction));
        double shape = decay == Decay.COSINE ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
        return (float) (floor + (peak - floor) * shape);
    }
}
