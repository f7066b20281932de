package dev.eetune.infer;

import dev.eetune.model.LlamaModel;

import java.util.List;

/**
 * KV-cached decoding of a batch of prompts: plain ({@link Generator}), with early exits
 * ({@link EarlyExitGenerator}) or self-speculative ({@link SelfSpeculativeDecoder}). Each sequence stops on its own
 * (stop token or token budget). A decoder owns its caches: one thread at a time, checked (a call from a second thread
 * while one runs throws a {@link java.util.ConcurrentModificationException}); many threads share one model, each with
 * its own decoder. A call holds a lease on the model and heads, so closing them waits for it to end.
 */
public interface Decoder extends AutoCloseable {
    LlamaModel model();

    /** Generates for each prompt (non-empty token ids); results in prompt order. */
    List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener);

    @Override
    void close();
}
