package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.model.LlamaModel;
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

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Early-exit decode vs full decode (speed only): the 15M config of {@link TuningStepBenchmark} with copy-initialised
 * norm exits after layers 2 and 4 at thresholds 1.0 / 0.8 / 0.5 ("full" = no heads attached), batch 1 and 8, 64 new
 * tokens per sequence. The heads get temperature 0.1 so that a random-weight model's logit lens is confident enough
 * for exits to fire at all; the exit shares are printed at tear-down. Score: ms per generate call.
 *
 * <p>Run: {@code java -jar ee-bench/target/ee-bench.jar EarlyExitDecode -f 1 -wi 2 -i 5}
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2)
@Measurement(iterations = 5)
@Fork(value = 1, jvmArgsAppend = {BenchSupport.NATIVE_ACCESS, "-Xss4m"})
public class EarlyExitDecodeBenchmark {
    static final int NEW_TOKENS = 64;

    @Param({"full", "1.0", "0.8", "0.5"})
    String threshold;

    @Param({"1", "8"})
    int batch;

    Backend backend;
    LlamaModel model;
    EarlyExitModel ee;
    EarlyExitGenerator gen;
    List<int[]> prompts = new ArrayList<>();

    @Setup(Level.Trial)
    public void setUp() {
        backend = Backends.cpu();
        BenchSupport.configure(backend, Backend.GemmPath.AUTO);
        model = LlamaModel.random(TuningStepBenchmark.CONFIG, backend, 7, 0.02f);
        ee = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY), new ExitSpec(4, ExitArchitecture.NORM, ExitInit.COPY)), 1, 0.1f);
        EarlyExitPolicy policy = threshold.equals("full") ? EarlyExitPolicy.none()
            : Float.parseFloat(threshold) >= 1f ? EarlyExitPolicy.global(1f, 2, 4).evaluatingDisabledHeads() : EarlyExitPolicy.global(Float.parseFloat(threshold), 2, 4);
        gen = new EarlyExitGenerator(model, threshold.equals("full") ? null : ee, policy, batch, 8 + NEW_TOKENS);
        SplittableRandom r = new SplittableRandom(5);
        for (int b = 0; b < batch; b++) {
            int[] p = new int[8];
            for (int i = 0; i < p.length; i++) p[i] = r.nextInt(TuningStepBenchmark.CONFIG.vocabSize());
            prompts.add(p);
        }
    }

    @Benchmark
    public int generate() {
        return gen.generate(prompts, GenerationConfig.greedy(NEW_TOKENS, Set.of()), null).size();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        EarlyExitGenerator.Stats s = gen.lastStats();
        long total = s.generatedTokens();
        System.out.printf(Locale.ROOT, "%n[early-exit decode] threshold %s batch %d: decode %.1f tok/s, exits @2 %.1f%% @4 %.1f%%, mean exit layer %.2f, %.2f layers/token%n",
            threshold, batch, s.decodeTokensPerSecond(), 100.0 * s.exitCounts()[2] / total, 100.0 * s.exitCounts()[4] / total, s.meanExitLayer(), s.layersPerToken());
        gen.close();
        ee.close();
        model.close();
    }
}
