package dev.eetune.train;

import java.nio.file.Path;

/** Callbacks of a {@link Tuner}. */
public interface TuningListener {
    default void onStep(StepReport report) {}

    default void onCheckpoint(int step, Path dir) {}
}
