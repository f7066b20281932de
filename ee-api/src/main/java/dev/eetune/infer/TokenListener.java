package dev.eetune.infer;

/** Receives each generated token as soon as it is chosen (streaming output). */
@FunctionalInterface
public interface TokenListener {
    void onToken(int sequence, int token);
}
