package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.FileTrees;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.infer.Generator;
import dev.eetune.model.LayerWeights;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.LlamaWeights;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;
import org.openjdk.jmh.annotations.AuxCounters;
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
import org.openjdk.jmh.infra.IterationParams;
import org.openjdk.jmh.runner.IterationType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * KV-cached greedy decoding with {@link Generator}: {@code batch} prompts of {@value #PROMPT_LEN} tokens (BOS + 7
 * fixed pseudo-random tokens, different per sequence), {@code newTokens} new tokens each, stop tokens ignored (an
 * empty stop set), so every call does the same work. Models:
 * <ul>
 *   <li>{@code stories260K}: the real llama2.c checkpoint at {@code <data>/stories260K/stories260K.bin}
 *       ({@code -Deetune.data=DIR}, default {@code ../shared/data}); when missing, that parameter fails with a message
 *       saying so and JMH goes on with the others (or leave it out: {@code -p model=synthetic15M-f32,synthetic15M-bf16});</li>
 *   <li>{@code synthetic15M-f32}: the stories15M shape (dim 288, 6 layers, 6 heads, 6 KV heads, ffn 768, vocab 32000,
 *       context 512, tied classifier) from {@code LlamaModel.random(config, backend, 7, 0.02f)};</li>
 *   <li>{@code synthetic15M-bf16}: the same weights written as a bf16 Hugging Face checkpoint to a temporary folder and
 *       loaded back (matrices stay bf16, memory-mapped).</li>
 * </ul>
 * The JMH score is milliseconds per whole {@code generate} call (one call per iteration: single-shot). The secondary
 * results ({@link Split}, one value per iteration) split it: {@code decodeTokS} = decode tokens/s over all sequences,
 * prefill excluded ({@code Generator.Stats.decodeTokensPerSecond()}); {@code ttftMs} = prefill time (time to first
 * token); {@code bwGBs} = memory bandwidth measured right before that call over a {@code -Deetune.bench.bwMiB} = 256
 * MiB F32 buffer, the largest of three probes (best of 3 sweeps each): (1) read: OpenBLAS {@code cblas_sasum} over the
 * buffer (AVX-512/AVX2, OpenBLAS's threads; bound through JNA; skipped when OpenBLAS is missing); (2) STREAM-style copy:
 * one {@code Ops.copy} (memmove) slice per thread, bytes read + written; (3) {@code Ops.sumSquares}, 4 bytes read per
 * element, also reported alone as {@code bwSumSqGBs}. On the 2-core Xeon dev machines sumSquares is compute-bound (the
 * libeecpu build of it is SSE2 with a double-precision reduction: about 5 GB/s per core) and reads about 40% of the
 * bandwidth that sasum and copy agree on, so it must not set the roofline alone. {@code rooflineTokS} = batch x bandwidth
 * / weight bytes read per decode step (every matrix, norm and the classifier once, plus one embedding row per token);
 * {@code roofRatio} = decodeTokS / rooflineTokS (the docs/benchmarks.md figure). Because a 15M model's weights
 * (61 MB f32, 31 MB bf16) may partly stay in a large last-level cache between steps, the read probe is also run over a
 * buffer the size of the weights, swept again and again like decode sweeps the weights ({@code bwWsGBs}), and
 * {@code roofRatioWs} is decode tok/s over that roofline. The trial's tear-down prints medians and spreads. Note:
 * JMH's final table sums
 * these per-iteration counters over the iterations (AuxCounters EVENTS are summed), so divide those secondary scores by
 * Cnt; the per-iteration lines, the tear-down line and {@link DecodeReport} are per call.
 * {@link DecodeReport} runs this benchmark and adds the batch-8 / batch-1 speed-up.
 *
 * <pre>
 *   java -jar ee-bench/target/ee-bench.jar Decode                                   # ~1 minute on a quiet machine
 *   java -jar ee-bench/target/ee-bench.jar Decode -p model=synthetic15M-f32 -p batch=1
 *   java -Deetune.data=/work/shared/data -jar ee-bench/target/ee-bench.jar Decode
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.DecodeReport             # summary table
 * </pre>
 */
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3)
@Measurement(iterations = 8)
@Fork(value = 1, jvmArgsAppend = BenchSupport.NATIVE_ACCESS)
@State(Scope.Benchmark)
public class DecodeBenchmark {
    public static final String STORIES260K = "stories260K", SYNTH_F32 = "synthetic15M-f32", SYNTH_BF16 = "synthetic15M-bf16";
    static final int PROMPT_LEN = 8, MAX_BATCH_PROMPTS = 8;

    @Param({STORIES260K, SYNTH_F32, SYNTH_BF16})
    public String model;

    @Param({"1", "8"})
    public int batch;

    @Param({"128"})
    public int newTokens;

    private Backend backend;
    private LlamaModel llama;
    private Generator generator;
    private List<int[]> prompts;
    private GenerationConfig config;
    private Path tmpDir;
    private long weightBytes;
    private dev.eetune.tensor.Scope probeScope;
    private Tensor probe, probeDst, probeWs, probeWsDst;
    private ExecutorService probeThreads;
    private com.sun.jna.Function sasum;
    private double bandwidth, bandwidthWs, bandwidthSumSq; // bytes/s, measured before the current iteration
    private boolean measuring;
    private final List<double[]> measured = new ArrayList<>(); // decodeTokS, ttftMs, bwGBs, roofRatio, bwWsGBs, roofRatioWs

    /** Per-iteration split of the generate call (JMH secondary results; one invocation per iteration). */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.EVENTS)
    public static class Split {
        public double decodeTokS, ttftMs, bwGBs, rooflineTokS, roofRatio, bwWsGBs, roofRatioWs, bwSumSqGBs;

        @Setup(Level.Iteration)
        public void reset() { decodeTokS = ttftMs = bwGBs = rooflineTokS = roofRatio = bwWsGBs = roofRatioWs = bwSumSqGBs = 0; }
    }

    /** The 15M synthetic config (stories15M's shape, Hugging Face rotate-half RoPE so it can be written as a checkpoint). */
    public static LlamaConfig synthetic15M() {
        return new LlamaConfig(288, 768, 6, 6, 6, 48, 32000, 512, 1e-5f, 10000f, null, true, false, false, LlamaConfig.LLAMA).validate();
    }

    @Setup(Level.Trial)
    public void setup() throws IOException {
        backend = Backends.cpu();
        BenchSupport.configure(backend, Backend.GemmPath.AUTO);
        if (batch < 1 || batch > MAX_BATCH_PROMPTS) throw new IllegalArgumentException("batch must be 1.." + MAX_BATCH_PROMPTS + ", got " + batch);
        switch (model) {
            case STORIES260K -> {
                Path bin = BenchSupport.dataDir().resolve("stories260K").resolve("stories260K.bin");
                if (!Files.isRegularFile(bin)) {
                    String msg = "SKIPPED model=stories260K: " + bin + " not found (pass -Deetune.data=DIR holding stories260K/stories260K.bin, "
                        + "or leave it out with -p model=" + SYNTH_F32 + "," + SYNTH_BF16 + ")";
                    System.out.println("# " + msg);
                    throw new IllegalStateException(msg);
                }
                llama = LlamaModel.load(bin, backend);
            }
            case SYNTH_F32 -> llama = LlamaModel.random(synthetic15M(), backend, 7, 0.02f);
            case SYNTH_BF16 -> {
                tmpDir = Files.createTempDirectory("eetune-bench-bf16-");
                llama = BenchSupport.loadedRandom(synthetic15M(), backend, DType.BF16, tmpDir);
            }
            default -> throw new IllegalArgumentException("unknown model '" + model + "' (expected " + STORIES260K + ", " + SYNTH_F32 + " or " + SYNTH_BF16 + ")");
        }
        LlamaConfig c = llama.config();
        SplittableRandom r = new SplittableRandom(20240601L);
        prompts = new ArrayList<>();
        for (int s = 0; s < batch; s++) {
            int[] p = new int[PROMPT_LEN];
            p[0] = 1; // BOS in llama2.c / Llama 2 vocabularies
            for (int i = 1; i < p.length; i++) p[i] = 3 + r.nextInt(c.vocabSize() - 3);
            prompts.add(p);
        }
        config = GenerationConfig.greedy(newTokens, Set.of());
        generator = new Generator(llama, batch, PROMPT_LEN + newTokens);
        weightBytes = weightBytesPerStep(llama);
        probeScope = dev.eetune.tensor.Scope.of(backend);
        long elems = Long.getLong("eetune.bench.bwMiB", 256L) * (1L << 20) / 4;
        probe = probeScope.zeros(DType.F32, Math.toIntExact(elems)); // zeros: pages touched before timing
        probeDst = probeScope.zeros(DType.F32, Math.toIntExact(elems));
        probeWs = probeScope.zeros(DType.F32, Math.toIntExact((weightBytes + 3) / 4));
        probeWsDst = probeScope.zeros(DType.F32, Math.toIntExact((weightBytes + 3) / 4));
        sasum = BenchSupport.sasum();
        if (sasum == null) System.out.println("# OpenBLAS not found: the read-bandwidth probe (cblas_sasum) is skipped");
        probeThreads = Executors.newFixedThreadPool(BenchSupport.threads(), task -> {
            Thread t = new Thread(task, "bandwidth-probe");
            t.setDaemon(true);
            return t;
        });
        System.out.printf(Locale.ROOT, "# decode %s batch=%d: %s, weights read per step %.2f MB, %d threads, %s%n", model, batch, c.dim() + "d x "
            + c.nLayers() + " layers, vocab " + c.vocabSize() + ", matrices " + llama.weights().layers().get(0).wq().dtype(), weightBytes / 1e6,
            BenchSupport.threads(), backend.describe());
    }

    @Setup(Level.Iteration)
    public void beforeIteration(IterationParams ip) {
        measuring = ip.getType() == IterationType.MEASUREMENT;
        bandwidthSumSq = sumSquaresBandwidth(backend, probe);
        double read = sasum == null ? 0 : readBandwidth(sasum, probe);
        bandwidth = Math.max(read, Math.max(bandwidthSumSq, copyBandwidth(backend, probeThreads, BenchSupport.threads(), probeDst, probe)));
        bandwidthWs = sasum != null ? readBandwidth(sasum, probeWs) : copyBandwidth(backend, probeThreads, BenchSupport.threads(), probeWsDst, probeWs);
    }

    @Benchmark
    public List<GenerationResult> generate(Split split) {
        List<GenerationResult> out = generator.generate(prompts, config, null);
        var st = generator.lastStats(); // Generator.Stats, or EarlyExitGenerator.Stats since the early-exit engine
        split.decodeTokS = st.decodeTokensPerSecond();
        split.ttftMs = st.prefillSeconds() * 1e3;
        split.bwGBs = bandwidth / 1e9;
        split.rooflineTokS = batch * bandwidth / weightBytes;
        split.roofRatio = split.decodeTokS / split.rooflineTokS;
        split.bwWsGBs = bandwidthWs / 1e9;
        split.bwSumSqGBs = bandwidthSumSq / 1e9;
        split.roofRatioWs = split.decodeTokS / (batch * bandwidthWs / weightBytes);
        if (measuring) measured.add(new double[] {split.decodeTokS, split.ttftMs, split.bwGBs, split.roofRatio, split.bwWsGBs, split.roofRatioWs});
        return out;
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        if (!measured.isEmpty()) {
            System.out.printf(Locale.ROOT, "%n# decode %s batch=%d, %d new tokens, %d iterations, median (min..max): decode %s tok/s, TTFT %s ms, "
                    + "bandwidth %s GB/s, roofline %.0f tok/s at the median bandwidth, decode/roofline %s; "
                    + "weights-sized probe %s GB/s, decode/that roofline %s%n",
                model, batch, newTokens, measured.size(), col(0).format("%.1f"), col(1).format("%.2f"), col(2).format("%.2f"),
                batch * col(2).median() * 1e9 / weightBytes, col(3).format("%.3f"), col(4).format("%.2f"), col(5).format("%.3f"));
        }
        if (generator != null) generator.close();
        if (llama != null) llama.close();
        if (probeThreads != null) probeThreads.shutdownNow();
        if (probeScope != null) probeScope.close();
        if (tmpDir != null) FileTrees.delete(tmpDir);
    }

    private BenchSupport.Spread col(int i) { return BenchSupport.Spread.of(measured.stream().map(v -> v[i]).toList()); }

    /** Bytes one decode step reads from the weights: every layer tensor, the final norm and classifier once, one embedding row. */
    static long weightBytesPerStep(LlamaModel m) {
        LlamaWeights w = m.weights();
        long bytes = 0;
        for (LayerWeights l : w.layers()) {
            for (Tensor t : new Tensor[] {l.attnNorm(), l.wq(), l.wk(), l.wv(), l.wo(), l.bq(), l.bk(), l.bv(), l.ffnNorm(), l.wGate(), l.wDown(), l.wUp()}) {
                if (t != null) bytes += t.byteSize();
            }
        }
        bytes += w.finalNorm().byteSize() + w.lmHead().byteSize();
        bytes += (long) m.config().dim() * w.tokenEmbedding().dtype().bytes();
        return bytes;
    }

    /**
     * STREAM-copy bandwidth in bytes/s (bytes read + bytes written): {@code threads} Java threads each {@code Ops.copy}
     * (memmove) a slice of src into dst; the best of 3 (after one untimed).
     */
    static double copyBandwidth(Backend backend, ExecutorService pool, int threads, Tensor dst, Tensor src) {
        int n = Math.toIntExact(src.size());
        double best = Double.MAX_VALUE;
        for (int rep = 0; rep < 4; rep++) {
            List<Future<?>> fs = new ArrayList<>();
            long t0 = System.nanoTime();
            for (int k = 0; k < threads; k++) {
                int lo = (int) ((long) n * k / threads), hi = (int) ((long) n * (k + 1) / threads);
                fs.add(pool.submit(() -> backend.ops().copy(dst.slice(lo, hi), src.slice(lo, hi))));
            }
            try {
                for (Future<?> f : fs) f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            } catch (ExecutionException e) {
                throw new IllegalStateException("bandwidth probe failed", e.getCause());
            }
            if (rep > 0) best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
        return 2.0 * src.byteSize() / best;
    }

    /** Read bandwidth in bytes/s: OpenBLAS {@code cblas_sasum} over the buffer (its own threads); best of 3 after one untimed. */
    static double readBandwidth(com.sun.jna.Function sasum, Tensor buf) {
        Object[] args = {Math.toIntExact(buf.size()), new com.sun.jna.Pointer(buf.address()), 1};
        double best = Double.MAX_VALUE;
        float sink = sasum.invokeFloat(args);
        for (int i = 0; i < 3; i++) {
            long t0 = System.nanoTime();
            sink += sasum.invokeFloat(args);
            best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
        if (Float.isNaN(sink)) throw new IllegalStateException("read-bandwidth probe returned NaN");
        return buf.byteSize() / best;
    }

    /** Read bandwidth in bytes/s as {@code Ops.sumSquares} sees it: the best of 3 sweeps (after one untimed). */
    static double sumSquaresBandwidth(Backend backend, Tensor buf) {
        double best = Double.MAX_VALUE, sink = backend.ops().sumSquares(buf);
        for (int i = 0; i < 3; i++) {
            long t0 = System.nanoTime();
            sink += backend.ops().sumSquares(buf);
            best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
        if (Double.isNaN(sink)) throw new IllegalStateException("bandwidth probe returned NaN");
        return buf.byteSize() / best;
    }
}
