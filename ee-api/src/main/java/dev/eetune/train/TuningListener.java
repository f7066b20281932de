package dev.eetune.train;

import java.nio.file.Path;

/** Callbacks of a {@link Tuner}. */
public interface TuningListener {
    default void onStep(StepReport report) {}

    default void onCheckpoint(int step, Path dir) {}

    /** A listener that hands every step report to {@code action} (e.g. {@code System.out::println}). */
    static TuningListener onEachStep(java.util.function.Consumer<StepReport> action) {
        return new TuningListener() {
            @Override
            public void onStep(StepReport report) { action.accept(report); }
        };
    }
}
