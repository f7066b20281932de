package dev.eetune.infer;

import java.util.Arrays;

/**
 * One sequence's output: prompt + generated tokens, and why it stopped.
 * Thread-safety: a plain value; its token array is the caller's.
 */
public record GenerationResult(int[] tokens, int promptLength, StopReason stopReason) {
    public enum StopReason { STOP_TOKEN, MAX_TOKENS }

    public int[] generated() { return Arrays.copyOfRange(tokens, promptLength, tokens.length); }

    @Override
    public String toString() {
        return "GenerationResult[" + (tokens.length - promptLength) + " new tokens after " + promptLength + ", " + stopReason + "]";
    }
}
