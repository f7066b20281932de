package dev.eetune.exit;

import dev.eetune.model.KvCache;

/**
 * What a driver does inside {@link EarlyExitModel#run}: at each exit whose head it visits it gets the head's input;
 * between layers it may let rows join or leave the pass. Layers are numbered 1..N (exit L sits after layer L).
 * Thread-safety: called on the thread running the pass.
 */
public interface ExitVisitor {
    /** Before layer {@code layer} runs: returns the pass to run it on (e.g. with rows joining). */
    default Pass beforeLayer(int layer, Pass pass) { return pass; }

    /**
     * Whether {@link #beforeLayer} at {@code layer} returns the pass it gets and reads nothing of the layer's input, so
     * that the run may call it early and run the layer with the ones before it in one call. Default: false.
     */
    default boolean passesThrough(int layer) { return false; }

    /** Whether {@code head} runs in this pass (default: every head). */
    default boolean visits(ExitHead head) { return true; }

    /** The K/V cache of a head's own layer (LAYER heads while decoding), or null. */
    default KvCache.Layer ownCache(ExitHead head) { return null; }

    /** At the exit after {@code head.layer()}: returns the pass to continue with (e.g. fewer rows), or null to stop. */
    Pass atExit(ExitHead head, ExitInput in, Pass pass);
}
