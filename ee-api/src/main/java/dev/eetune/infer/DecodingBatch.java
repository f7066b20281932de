package dev.eetune.infer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The sequences of one {@link Decoder#generate} call: tokens so far (prompt + generated), and why each stopped
 * (null while it runs). Shared by every decoder: prompt checks, emitting a token (listener, stop rules), results.
 */
final class DecodingBatch {
    private final int[][] tokens;
    private final int[] length, promptLength;
    private final GenerationResult.StopReason[] stop;
    private final GenerationConfig cfg;
    private final TokenListener listener;

    /**
     * Checks the prompts (1..maxBatch of them, non-empty, tokens in the vocabulary, prompt + maxNewTokens within
     * maxLen) and starts them.
     */
    DecodingBatch(List<int[]> prompts, GenerationConfig cfg, TokenListener listener, int maxBatch, int maxLen, int vocab) {
        int b = prompts.size();
        if (b == 0 || b > maxBatch) throw new IllegalArgumentException(b + " prompts for a decoder of batch " + maxBatch);
        this.cfg = cfg;
        this.listener = listener;
        tokens = new int[b][];
        length = new int[b];
        promptLength = new int[b];
        stop = new GenerationResult.StopReason[b];
        for (int s = 0; s < b; s++) {
            int[] p = prompts.get(s);
            if (p.length == 0) throw new IllegalArgumentException("prompt " + s + " is empty (start with BOS)");
            for (int t : p) if (t < 0 || t >= vocab) throw new IllegalArgumentException("prompt " + s + " has token " + t + " outside the vocabulary of " + vocab);
            if (p.length + cfg.maxNewTokens() > maxLen) throw new IllegalArgumentException("prompt " + s + " (" + p.length + " tokens) + " + cfg.maxNewTokens() + " new tokens exceeds maxLen " + maxLen);
            tokens[s] = Arrays.copyOf(p, p.length + cfg.maxNewTokens());
            length[s] = promptLength[s] = p.length;
            if (cfg.maxNewTokens() == 0) stop[s] = GenerationResult.StopReason.MAX_TOKENS;
        }
    }

    int size() { return tokens.length; }

    /** The running sequences, in order. */
    int[] live() {
        int n = 0;
        int[] out = new int[stop.length];
        for (int s = 0; s < stop.length; s++) if (stop[s] == null) out[n++] = s;
        return Arrays.copyOf(out, n);
    }

    boolean running(int s) { return stop[s] == null; }

    /** Tokens of sequence s so far. */
    int length(int s) { return length[s]; }

    int promptLength(int s) { return promptLength[s]; }

    int token(int s, int position) { return tokens[s][position]; }

    /** Tokens sequence s may still emit. */
    int budget(int s) { return cfg.maxNewTokens() - (length[s] - promptLength[s]); }

    /** Appends a generated token to a running sequence (telling the listener); it stops at a stop token or its budget. */
    void emit(int s, int token) {
        tokens[s][length[s]++] = token;
        if (listener != null) listener.onToken(s, token);
        if (cfg.stopTokens().contains(token)) stop[s] = GenerationResult.StopReason.STOP_TOKEN;
        else if (budget(s) <= 0) stop[s] = GenerationResult.StopReason.MAX_TOKENS;
    }

    int promptTokens() { return Arrays.stream(promptLength).sum(); }

    int generatedTokens() {
        int n = 0;
        for (int s = 0; s < length.length; s++) n += length[s] - promptLength[s];
        return n;
    }

    List<GenerationResult> results() {
        List<GenerationResult> out = new ArrayList<>();
        for (int s = 0; s < tokens.length; s++) out.add(new GenerationResult(Arrays.copyOf(tokens[s], length[s]), promptLength[s], stop[s]));
        return out;
    }
}
