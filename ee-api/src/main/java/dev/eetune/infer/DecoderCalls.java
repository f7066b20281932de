package dev.eetune.infer;

import dev.eetune.exit.EarlyExitModel;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.SingleThreadGuard;

import java.util.function.Supplier;

/**
 * What every decoder's public calls share: one thread at a time (a second thread gets a
 * {@link java.util.ConcurrentModificationException}), and a lease on the model and heads while a call runs, so
 * closing them waits for it.
 */
final class DecoderCalls {
    private final SingleThreadGuard thread;
    private final EarlyExitModel exits;

    /** {@code type}: the decoder the user holds, named when misused. */
    DecoderCalls(Class<? extends Decoder> type, EarlyExitModel exits) {
        this.thread = new SingleThreadGuard(type);
        this.exits = exits;
    }

    /** Runs one decoding call under the guard and the lease. */
    <T> T call(Supplier<T> body) {
        try (Scope.Lease call = thread.enter(); Scope.Lease use = exits.use()) {
            return body.get();
        }
    }

    /** Releases a decoder's resources under the guard (never while another thread decodes with it). */
    void close(Runnable release) {
        try (Scope.Lease call = thread.enter()) {
            release.run();
        }
    }
}
