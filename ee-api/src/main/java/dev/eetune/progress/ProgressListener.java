package dev.eetune.progress;

/**
 * Told how far a long piece of work (a sweep, an evaluation, pretraining) has got, so that a caller can show it; the
 * library itself prints nothing. Called on the thread doing the work, so an implementation must be quick.
 */
@FunctionalInterface
public interface ProgressListener {
    /** {@code done} of {@code total} units (total 0 when unknown); {@code detail} is a short status such as a loss, or "". */
    void update(long done, long total, String detail);

    /** Ignores every update. */
    ProgressListener NONE = (done, total, detail) -> {};
}
