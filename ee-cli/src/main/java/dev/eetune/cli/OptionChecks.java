package dev.eetune.cli;

/** Checks of option values by the options' names, made before a command loads or computes anything. */
final class OptionChecks {
    private OptionChecks() {}

    /** Fails naming {@code option} unless {@code value >= min}. */
    static void atLeast(String option, long value, long min) {
        if (value < min) throw new IllegalArgumentException(option + " must be >= " + min + ", got " + value);
    }

    /** Fails naming {@code option} unless {@code value} is finite and >= 0 (or > 0 where {@code positive}); NaN never passes. */
    static void finite(String option, double value, boolean positive) {
        if (!(positive ? value > 0 : value >= 0) || Double.isInfinite(value)) {
            throw new IllegalArgumentException(option + " must be " + (positive ? "> 0" : ">= 0") + " and finite, got " + value);
        }
    }

    /** Fails naming {@code option} unless 0 < value < 1. */
    static void fraction(String option, double value) {
        if (!(value > 0 && value < 1)) throw new IllegalArgumentException(option + " must be in (0, 1), got " + value);
    }

    /** Fails naming --exits unless each layer has one after it in a model of {@code layers} layers (1 .. layers - 1). */
    static void exitLayers(Iterable<Integer> exits, int layers) {
        for (int l : exits) if (l < 1 || l >= layers) throw new IllegalArgumentException("--exits: layer " + l + " must be in 1.." + (layers - 1) + " of a " + layers + "-layer model");
    }

    /** Fails naming {@code option} where {@code tokens} would not fit the model's {@code context}. */
    static void withinContext(String option, long tokens, int context) {
        if (tokens > context) throw new IllegalArgumentException(option + " " + tokens + " exceeds the model's context of " + context + " tokens");
    }
}
