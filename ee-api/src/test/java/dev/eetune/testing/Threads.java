package dev.eetune.testing;

/** Thread helpers for concurrency tests, with no timing assumptions. */
public final class Threads {
    private Threads() {}

    /** Waits (no time limit: the test run's own) until {@code t} blocks or ends; then its state says which. */
    public static void awaitBlocked(Thread t) {
        while (t.isAlive() && t.getState() != Thread.State.WAITING && t.getState() != Thread.State.TIMED_WAITING) Thread.onSpinWait();
    }
}
