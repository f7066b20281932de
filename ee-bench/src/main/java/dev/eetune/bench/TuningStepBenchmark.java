package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.backend.KernelProfile;
import dev.eetune.data.batch.Batch;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.train.AdamW;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * One EE-Tuning step (docs/benchmarks.md): the 15M config (dim 288, 6 layers, 6 heads, ffn 768, vocab 32000), {@code mlp}
 * exits after layers 2 and 4 (copy init), seq 256 x batch 8 = 2048 tokens: backbone forward to layer 4, both heads'
 * forward and backward (fused CE), AdamW. Score: ms per step; tokens/s = 2048 / that. At tear-down, two more steps
 * run under a {@link KernelProfile} and the share of time per kernel (GEMM, fused CE, attention...) is printed with
 * the step's FLOP count and its ratio to the OpenBLAS sgemm rate measured by {@link GemmBenchmark}.
 *
 * <p>Run: {@code java -jar ee-bench/target/ee-bench.jar TuningStep -f 1 -wi 2 -i 5}
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2)
@Measurement(iterations = 5)
@Fork(value = 1, jvmArgsAppend = {BenchSupport.NATIVE_ACCESS, "-Xss4m"})
public class TuningStepBenchmark {
    static final int BATCH = 8, SEQ = 256;
    static final LlamaConfig CONFIG = new LlamaConfig(288, 768, 6, 6, 6, 48, 32000, 512, 1e-5f, 10000f, null, true, false, false, LlamaConfig.LLAMA);

    Backend backend;
    LlamaModel model;
    EarlyExitModel ee;
    AdamW opt;
    Tuner tuner;
    Batch batch;

    @Setup(Level.Trial)
    public void setUp() {
        backend = Backends.cpu();
        BenchSupport.configure(backend, Backend.GemmPath.AUTO);
        model = LlamaModel.random(CONFIG, backend, 7, 0.02f);
        ee = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(4, ExitArchitecture.MLP, ExitInit.COPY)), 1);
        opt = AdamW.withDefaults(ee.parameters(), 0f);
        tuner = new Tuner(ee, TunerConfig.defaults(1_000_000, BATCH, SEQ, 1e-4f), null, opt, List.of());
        SplittableRandom r = new SplittableRandom(3);
        int[] in = new int[BATCH * SEQ], tg = new int[BATCH * SEQ];
        for (int i = 0; i < in.length; i++) {
            in[i] = r.nextInt(CONFIG.vocabSize());
            tg[i] = r.nextInt(CONFIG.vocabSize());
        }
        batch = new Batch(in, tg, BATCH, SEQ);
    }

    @Benchmark
    public double step() {
        ee.parameterSet().zeroGrad();
        double[] loss = new double[2];
        long[] count = new long[2];
        tuner.accumulateGradients(batch, loss, count);
        opt.step(1e-4f, 1f);
        return loss[0];
    }

    /** Algorithmic FLOPs of one step: backbone to layer 4, MLP heads forward + backward, LM heads 3 x 2·d·V. */
    static double flopsPerStep() {
        LlamaConfig c = CONFIG;
        double d = c.dim(), f = c.hiddenDim(), v = c.vocabSize(), kv = c.nKvHeads() * c.headDim(), t = SEQ;
        double layer = 2 * (2 * d * d + 2 * d * kv + 3 * d * f) + 2 * 2 * (t + 1) / 2 * d; // projections + causal attention
        double mlpHead = 2 * d * f * (3 + 4);   // forward 3 GEMMs, backward 4 (no dx into the frozen backbone)
        double lmHead = 3 * 2 * d * v;          // logits, dW, dz
        return BATCH * t * (4 * layer + 2 * (mlpHead + lmHead));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        try (KernelProfile p = backend.ops().profile()) {
            step();
            step();
            double wall = p.wallSeconds(), flops = 2 * flopsPerStep();
            System.out.printf(Locale.ROOT, "%n[tuning step profile] 2 steps in %.3f s = %.0f tokens/s, %.1f GFLOP/step, %.1f GFLOP/s achieved%n",
                wall, 2 * BATCH * SEQ / wall, flops / 2 / 1e9, flops / wall / 1e9);
            System.out.printf(Locale.ROOT, "[tuning step profile] GEMM share %.1f%% (ee_gemm), fused CE %.1f%% (its GEMMs inside), attention %.1f%%%n",
                100 * p.seconds("ee_gemm") / wall, 100 * p.seconds("ee_linear_cross_entropy") / wall,
                100 * (p.seconds("ee_attention_fwd") + p.seconds("ee_attention_bwd")) / wall);
            System.out.println(p.summary());
        }
        tuner.close();
        opt.close();
        ee.close();
        model.close();
    }
}
