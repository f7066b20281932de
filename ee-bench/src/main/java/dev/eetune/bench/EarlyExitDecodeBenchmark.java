package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.FileTrees;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Early-exit decode vs full decode (speed only): the 15M config of {@link TuningStepBenchmark} (or, with
 * {@code -p size=110M}, the 110M one: dim 768, 12 layers, ffn 2048), random weights written to a temporary f32
 * checkpoint and loaded from it, with copy-initialised norm exits after a third and
 * two thirds of the layers (2 and 4; 4 and 8) at thresholds 1.0 / 0.8 / 0.5 ("full" = no heads attached), batch 1 and 8,
 * 64 new tokens per sequence. The heads get temperature 0.1 so that a random-weight model's logit lens is confident
 * enough for exits to fire at all; the exit shares are printed at tear-down. Score: ms per generate call.
 *
 * <p>The {@code 1.0} setting runs the disabled heads, so its time over "full" is what evaluating them costs. At batch 1
 * that cost is bandwidth: two 32000-row heads stream more bytes than the whole 15M model, and the model's own 61 MB per
 * token partly stays in the last-level cache where the heads' extra bytes do not, so at 15M the heads cost more than
 * their FLOPs' share; at 110M (440 MB a token, nothing cached) they cost their share.
 *
 * <p>Run: {@code java -jar ee-bench/target/ee-bench.jar EarlyExitDecode -f 1 -wi 2 -i 5} (add {@code -p size=110M
 * -p batch=1 -p threshold=full,1.0} for the large shape)
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2)
@Measurement(iterations = 5)
@Fork(value = 1, jvmArgsAppend = {BenchSupport.NATIVE_ACCESS, "-Xss4m"})
public class EarlyExitDecodeBenchmark {
    static final int NEW_TOKENS = 64;
    static final LlamaConfig CONFIG_110M = new LlamaConfig(768, 2048, 12, 12, 12, 64, 32000, 512, 1e-5f, 10000f, null, true, false, false, LlamaConfig.LLAMA);

    @Param({"full", "1.0", "0.8", "0.5"})
    String threshold;

    @Param({"1", "8"})
    int batch;

    @Param({"15M"})
    String size;

    Backend backend;
    LlamaModel model;
    EarlyExitModel ee;
    EarlyExitGenerator gen;
    List<int[]> prompts = new ArrayList<>();
    int exitA, exitB;

    Path checkpoint;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        backend = Backends.cpu();
        BenchSupport.configure(backend, Backend.GemmPath.AUTO);
        LlamaConfig config = switch (size) {
            case "15M" -> TuningStepBenchmark.CONFIG;
            case "110M" -> CONFIG_110M;
            default -> throw new IllegalArgumentException("size " + size + ": expected 15M or 110M");
        };
        // loaded as users' models are (packed weights, the classifier screen, packed heads of batches)
        checkpoint = Files.createTempDirectory("eetune-bench-ee-");
        model = BenchSupport.loadedRandom(config, backend, DType.F32, checkpoint);
        exitA = config.nLayers() / 3;
        exitB = 2 * config.nLayers() / 3;
        ee = EarlyExitModel.attach(model, List.of(new ExitSpec(exitA, ExitArchitecture.NORM, ExitInit.COPY), new ExitSpec(exitB, ExitArchitecture.NORM, ExitInit.COPY)), 1, 0.1f);
        EarlyExitPolicy policy = threshold.equals("full") ? EarlyExitPolicy.none()
            : Float.parseFloat(threshold) >= 1f ? EarlyExitPolicy.global(1f, exitA, exitB).evaluatingDisabledHeads() : EarlyExitPolicy.global(Float.parseFloat(threshold), exitA, exitB);
        gen = new EarlyExitGenerator(model, threshold.equals("full") ? null : ee, policy, batch, 8 + NEW_TOKENS);
        SplittableRandom r = new SplittableRandom(5);
        for (int b = 0; b < batch; b++) {
            int[] p = new int[8];
            for (int i = 0; i < p.length; i++) p[i] = r.nextInt(config.vocabSize());
            prompts.add(p);
        }
    }

    @Benchmark
    public int generate() {
        return gen.generate(prompts, GenerationConfig.greedy(NEW_TOKENS, Set.of()), null).size();
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        EarlyExitGenerator.Stats s = gen.lastStats();
        long total = s.generatedTokens();
        System.out.printf(Locale.ROOT, "%n[early-exit decode] %s threshold %s batch %d: decode %.1f tok/s, exits @%d %.1f%% @%d %.1f%%, mean exit layer %.2f, %.2f layers/token%n",
            size, threshold, batch, s.decodeTokensPerSecond(), exitA, 100.0 * s.exitCounts()[exitA] / total, exitB, 100.0 * s.exitCounts()[exitB] / total, s.meanExitLayer(), s.layersPerToken());
        gen.close();
        ee.close();
        model.close();
        FileTrees.delete(checkpoint);
    }
}
