package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.spi.Binding;
import dev.eetune.nativelib.CpuLibrary;
import dev.eetune.nativelib.OpenBlas;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The tuning step read against OpenBLAS in one run: issue 10's "tuning step ≥ 0.8× of the same run's OpenBLAS sgemm
 * rate, counting useful FLOPs only". Each round times {@code --steps} steps of {@link TuningStepBenchmark} (useful
 * FLOPs from {@link TuningStepBenchmark#flopsPerStep}) and, right after, {@code cblas_sgemm} on OpenBLAS's own threads
 * (same thread count) at two shapes: the step's dominant GEMM, the LM head's logits (2048 tokens × 32000 × 288,
 * C = A B^T), and 2048³, OpenBLAS's best case. Rates are medians (min..max) over rounds; the ratio is the median of the
 * per-round ratios, so a drift of the machine's load hits both sides alike.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp ee-bench/target/ee-bench.jar dev.eetune.bench.TuningStepReport --rounds 5
 * </pre>
 * Unset {@code OPENBLAS_CORETYPE} and {@code OPENBLAS_L2_SIZE} for the run (docs/benchmarks.md).
 */
public final class TuningStepReport {
    private TuningStepReport() {}

    /** An sgemm shape C[m, n] = A[m, k] B[n, k]^T, the layout of a linear layer. */
    record Shape(String name, int m, int n, int k) {
        double flops() { return 2.0 * m * n * k; }
    }

    static final List<Shape> SHAPES = List.of(
        new Shape("LM head 2048x32000x288", TuningStepBenchmark.BATCH * TuningStepBenchmark.SEQ, TuningStepBenchmark.CONFIG.vocabSize(), TuningStepBenchmark.CONFIG.dim()),
        new Shape("square 2048^3", 2048, 2048, 2048));

    public static void main(String[] args) {
        int rounds = 5, steps = 3, warmup = 2;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--rounds" -> rounds = Integer.parseInt(args[++i]);
                case "--steps" -> steps = Integer.parseInt(args[++i]);
                case "--warmup" -> warmup = Integer.parseInt(args[++i]);
                default -> throw new IllegalArgumentException("unknown option '" + args[i] + "' (expected --rounds N, --steps N, --warmup N)");
            }
        }
        TuningStepBenchmark step = new TuningStepBenchmark();
        step.setUp();
        OpenBlas blas = CpuLibrary.openBlas(Binding.valueOf(step.backend.binding().toUpperCase(Locale.ROOT)));
        if (!step.backend.features().contains(Backend.Feature.OPENBLAS)) throw new IllegalStateException("OpenBLAS is not loaded: no sgemm to compare with");
        List<Double> stepRates = new ArrayList<>();
        List<List<Double>> gemmRates = new ArrayList<>(), ratios = new ArrayList<>();
        for (int s = 0; s < SHAPES.size(); s++) {
            gemmRates.add(new ArrayList<>());
            ratios.add(new ArrayList<>());
        }
        try (Scope scope = Scope.of(step.backend)) {
            List<Tensor[]> operands = new ArrayList<>();
            for (Shape sh : SHAPES) {
                operands.add(new Tensor[] {BenchSupport.randomFill(scope.allocate(DType.F32, sh.m(), sh.k()), 1),
                    BenchSupport.randomFill(scope.allocate(DType.F32, sh.n(), sh.k()), 2), scope.zeros(DType.F32, sh.m(), sh.n())});
            }
            for (int i = 0; i < warmup; i++) {
                step.step();
                for (int s = 0; s < SHAPES.size(); s++) sgemm(blas, SHAPES.get(s), operands.get(s), 1);
            }
            for (int r = 0; r < rounds; r++) {
                long t0 = System.nanoTime();
                for (int i = 0; i < steps; i++) step.step();
                double stepRate = steps * TuningStepBenchmark.flopsPerStep() / ((System.nanoTime() - t0) / 1e9) / 1e9;
                stepRates.add(stepRate);
                StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "round %d: step %.1f GFLOP/s", r + 1, stepRate));
                for (int s = 0; s < SHAPES.size(); s++) {
                    Shape sh = SHAPES.get(s);
                    int calls = Math.max(1, (int) Math.round(steps * TuningStepBenchmark.flopsPerStep() / sh.flops() / 2));
                    long g0 = System.nanoTime();
                    sgemm(blas, sh, operands.get(s), calls);
                    double gemmRate = calls * sh.flops() / ((System.nanoTime() - g0) / 1e9) / 1e9;
                    gemmRates.get(s).add(gemmRate);
                    ratios.get(s).add(stepRate / gemmRate);
                    line.append(String.format(Locale.ROOT, ", sgemm %s %.1f GFLOP/s", sh.name(), gemmRate));
                }
                System.out.println(line);
            }
        } finally {
            step.tearDown();
        }
        BenchSupport.Spread st = BenchSupport.Spread.of(stepRates);
        System.out.printf(Locale.ROOT, "%nEE-Tuning step (15M shape, mlp exits 2 and 4, 2048 tokens, %.1f useful GFLOP), %d threads, %d rounds x %d steps%n",
            TuningStepBenchmark.flopsPerStep() / 1e9, BenchSupport.threads(), rounds, steps);
        System.out.printf(Locale.ROOT, "  step: %s GFLOP/s = %.0f tokens/s%n", st.format("%.1f"),
            st.median() * 1e9 / TuningStepBenchmark.flopsPerStep() * TuningStepBenchmark.BATCH * TuningStepBenchmark.SEQ);
        for (int s = 0; s < SHAPES.size(); s++) {
            System.out.printf(Locale.ROOT, "  OpenBLAS sgemm %-24s %s GFLOP/s; step / sgemm = %s%n", SHAPES.get(s).name() + ":",
                BenchSupport.Spread.of(gemmRates.get(s)).format("%.1f"), BenchSupport.Spread.of(ratios.get(s)).format("%.2f"));
        }
    }

    /**
     * {@code calls} sgemm calls on OpenBLAS's own threads; then back to one OpenBLAS thread, as libeecpu runs it on slices
     * of its own pool (two pools at once would slow the step).
     */
    private static void sgemm(OpenBlas blas, Shape sh, Tensor[] abc, int calls) {
        blas.openblas_set_num_threads(BenchSupport.threads());
        for (int i = 0; i < calls; i++) blas.cblas_sgemm(BenchSupport.CBLAS_ROW_MAJOR, BenchSupport.CBLAS_NO_TRANS, BenchSupport.CBLAS_TRANS, sh.m(), sh.n(), sh.k(),
            1f, abc[0].address(), sh.k(), abc[1].address(), sh.k(), 0f, abc[2].address(), sh.n());
        blas.openblas_set_num_threads(1);
    }
}
