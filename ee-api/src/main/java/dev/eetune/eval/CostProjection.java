package dev.eetune.eval;

import dev.eetune.exit.ExitArchitecture;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.model.LlamaConfig;

import java.util.List;

/**
 * What exit decisions measured on a small model would save on a large one (docs/exit-gates.md, "Cost projection"):
 * the decisions of a teacher-forced {@link ExitTrace} are kept, each exit is moved to the same depth of the target's
 * layers (exit after layer l of N becomes the exit after round(l · N' / N)), and the cost of every token is recounted
 * with the target's layer, head and score costs ({@link dev.eetune.exit.ExitCost}). Immutable: thread-safe.
 */
public final class CostProjection {
    private CostProjection() {}

    public record Shape(String name, LlamaConfig config) {}

    /** Llama-3-8B: vocab 128256, dim 4096, 32 layers, ffn 14336, 32 heads, 8 kv heads. */
    public static final Shape LLAMA3_8B = new Shape("Llama-3-8B", new LlamaConfig(4096, 14336, 32, 32, 8, 128, 128256, 8192, 1e-5f, 500000f, null,
        false, false, false, LlamaConfig.LLAMA));
    /** Qwen2-0.5B: vocab 151936, dim 896, 24 layers, ffn 4864, 14 heads, 2 kv heads. */
    public static final Shape QWEN2_05B = new Shape("Qwen2-0.5B", new LlamaConfig(896, 4864, 24, 14, 2, 64, 151936, 32768, 1e-6f, 1e6f, null,
        true, true, false, LlamaConfig.QWEN2));
    public static final List<Shape> SHAPES = List.of(LLAMA3_8B, QWEN2_05B);

    /** The target's exit layers for the trace's exits (after layer l of {@code sourceLayers}). */
    public static int[] mapLayers(int[] layers, int sourceLayers, int targetLayers) {
        int[] out = new int[layers.length];
        for (int i = 0; i < layers.length; i++) out[i] = Math.max(1, (int) Math.round((double) layers[i] * targetLayers / sourceLayers));
        return out;
    }

    /** The trace's decisions under {@code policy} with {@code target}'s costs. */
    public static ExitTrace.Decisions project(ExitTrace trace, EarlyExitPolicy policy, ExitArchitecture[] archs, int sourceLayers, LlamaConfig target) {
        return trace.decide(policy, ExitTrace.Costs.of(target, archs, mapLayers(trace.layers(), sourceLayers, target.nLayers()), policy.confidence(), trace.gateHidden()));
    }
}
