package dev.eetune.infer;

/**
 * Receives each generated token as soon as it is chosen (streaming output).
 * Called on the thread that runs {@code generate}, inside the call (which holds the model's lease: closing the model
 * from the listener throws).
 */
@FunctionalInterface
public interface TokenListener {
    void onToken(int sequence, int token);
}
