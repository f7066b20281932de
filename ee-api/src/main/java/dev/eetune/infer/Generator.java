package dev.eetune.infer;

import dev.eetune.model.LlamaModel;

import java.util.List;

/**
 * KV-cached decoding of a batch of prompts with the full model: {@link EarlyExitGenerator} without exits (one
 * decoding loop for both). Greedy, or temperature + top-p sampling; each sequence stops on its own.
 *
 * <p>Thread-safety: one thread at a time, checked (a second thread's call throws a
 * {@link java.util.ConcurrentModificationException}); give each thread its own generator over the shared model.
 */
public final class Generator implements Decoder {
    private final EarlyExitGenerator engine;

    public Generator(LlamaModel model, int maxBatch, int maxLen) {
        this.engine = new EarlyExitGenerator(model, null, EarlyExitPolicy.none(), maxBatch, maxLen, Generator.class);
    }

    @Override
    public LlamaModel model() { return engine.model(); }

    @Override
    public List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        return engine.generate(prompts, cfg, listener);
    }

    /** Timing of the last {@link #generate} call. */
    public EarlyExitGenerator.Stats lastStats() { return engine.lastStats(); }

    @Override
    public String toString() { return "Generator[" + engine.model() + ", " + engine.capacity() + "]"; }

    @Override
    public void close() { engine.close(); }
}
