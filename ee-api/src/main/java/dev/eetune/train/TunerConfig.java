package dev.eetune.train;

import dev.eetune.model.LlamaConfig;

import java.nio.file.Path;

/**
 * Settings of an EE-Tuning run. Loss = Σ_i w_i · masked-mean CE_i; {@code exitWeights} null means 1 for every exit.
 * Exit weights ramp from 0 over {@code weightWarmupSteps} (linear or cosine); {@code confidenceWeighting} multiplies
 * each token's CE by the exit's detached max probability (EE-LLM's dynamic weighting). {@code distill} replaces each
 * position's target with the full model's top token (hard self-distillation: every exit learns to agree with the final
 * layer, which is what early exiting at a teacher-forced agreement target needs; costs one more backbone forward per
 * micro-batch). Checkpoints go to
 * {@code checkpointDir} every {@code checkpointEvery} steps (0 = only at the end) when the directory is set; only the
 * newest {@code keepLast} are kept (0 = all). A run stops with an error after {@code maxNonFiniteSteps} consecutive
 * steps with a non-finite loss or gradient (each is skipped, changing nothing): it has diverged.
 */
public record TunerConfig(int steps, int batchSize, int seqLen, int microBatches, LrSchedule lr, float weightDecay, float clipNorm,
                          double[] exitWeights, int weightWarmupSteps, boolean cosineWeightWarmup, boolean confidenceWeighting, boolean distill,
                          int checkpointEvery, Path checkpointDir, int logEvery, int maxNonFiniteSteps, int keepLast) {
    public TunerConfig {
        if (steps < 1 || batchSize < 1 || seqLen < 1 || microBatches < 1) {
            throw new IllegalArgumentException("steps " + steps + ", batch " + batchSize + ", seq-len " + seqLen + ", micro-batches " + microBatches + " must all be >= 1");
        }
        if (!(clipNorm >= 0)) throw new IllegalArgumentException("clip norm must be >= 0 (0 = no clipping), got " + clipNorm);
        if (weightWarmupSteps < 0) throw new IllegalArgumentException("exit-weight warm-up steps must be >= 0, got " + weightWarmupSteps);
        if (exitWeights != null) {
            exitWeights = exitWeights.clone();
            boolean any = false;
            for (int i = 0; i < exitWeights.length; i++) {
                if (!(exitWeights[i] >= 0) || Double.isInfinite(exitWeights[i])) throw new IllegalArgumentException("exit weight " + i + " must be >= 0 and finite, got " + exitWeights[i]);
                any |= exitWeights[i] > 0;
            }
            if (!any) throw new IllegalArgumentException("exit weights " + java.util.Arrays.toString(exitWeights) + ": at least one must be > 0, or nothing is tuned");
        }
        if (checkpointEvery < 0) throw new IllegalArgumentException("checkpoint interval must be >= 0 (0 = only at the end), got " + checkpointEvery);
        if (maxNonFiniteSteps < 1) throw new IllegalArgumentException("max non-finite steps must be >= 1, got " + maxNonFiniteSteps);
        if (keepLast < 0) throw new IllegalArgumentException("checkpoints to keep must be >= 0 (0 = all), got " + keepLast);
    }

    /** Consecutive non-finite steps after which a run stops, unless configured otherwise. */
    public static final int DEFAULT_MAX_NON_FINITE_STEPS = 3;
    /** Checkpoints kept, unless configured otherwise. */
    public static final int DEFAULT_KEEP_LAST = 3;

    /**
     * EE-Tuning-like defaults: AdamW lr with 5% warm-up and cosine decay to 10%, clip 1.0 (0: no clipping), no weight decay; stop after
     * {@value #DEFAULT_MAX_NON_FINITE_STEPS} non-finite steps in a row; keep {@value #DEFAULT_KEEP_LAST} checkpoints.
     */
    public static TunerConfig defaults(int steps, int batchSize, int seqLen, float lr) {
        return new TunerConfig(steps, batchSize, seqLen, 1, LrSchedule.cosine(lr, Math.max(1, steps / 20), steps, lr / 10), 0f, 1f,
            null, 0, false, false, false, 0, null, 10, DEFAULT_MAX_NON_FINITE_STEPS, DEFAULT_KEEP_LAST);
    }

    public TunerConfig withCheckpoints(Path dir, int every) {
        return new TunerConfig(steps, batchSize, seqLen, microBatches, lr, weightDecay, clipNorm, exitWeights, weightWarmupSteps, cosineWeightWarmup,
            confidenceWeighting, distill, every, dir, logEvery, maxNonFiniteSteps, keepLast);
    }

    /** The seq-len check that needs the model: callers run it before any expensive work. */
    public void requireFits(LlamaConfig model) {
        if (seqLen > model.maxSeqLen()) throw new IllegalArgumentException("seq-len " + seqLen + " exceeds the model's context of " + model.maxSeqLen());
    }

    /** Exit i's weight at {@code step}. */
    public double exitWeight(int i, int step) {
        double w = exitWeights == null ? 1.0 : exitWeights[i];
        if (weightWarmupSteps <= 0 || step >= weightWarmupSteps) return w;
        double p = (step + 1.0) / weightWarmupSteps;
        return w * (cosineWeightWarmup ? 0.5 * (1 - Math.cos(Math.PI * p)) : p);
    }
}
