package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.backend.spi.Binding;
import dev.eetune.nativelib.CpuLibrary;
import dev.eetune.nativelib.OpenBlas;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;
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

import java.util.concurrent.TimeUnit;

/**
 * f32 square GEMM, C[n,n] = A[n,n] B[n,n]^T (the layout of a linear layer, y = x W^T), through three paths on the same
 * memory:
 * <ul>
 *   <li>{@code default}: {@link Ops#gemm} with {@code GemmPath.AUTO} (automatic: OpenBLAS when loaded);</li>
 *   <li>{@code fallback}: {@link Ops#gemm} with {@code GemmPath.FALLBACK} (the portable packed kernel of libeecpu);</li>
 *   <li>{@code openblas-direct}: {@code cblas_sgemm} called from Java through the generated OpenBLAS binding
 *       ({@link CpuLibrary#openBlas}), no eetune code in between: the baseline.</li>
 * </ul>
 * Every path runs with the same thread count (all cores, or {@code -Deetune.bench.threads}): {@code ee_set_num_threads}
 * for libeecpu, which runs OpenBLAS single-threaded on slices of the problem in its own pool, and
 * {@code openblas_set_num_threads} for the direct call, which runs on OpenBLAS's own threads. The score is milliseconds per GEMM;
 * GFLOP/s = 2 n^3 / time. {@link GemmReport} runs this benchmark and prints GFLOP/s and the ratios to OpenBLAS.
 *
 * <pre>
 *   java -jar ee-bench/target/ee-bench.jar Gemm -f 1 -wi 2 -i 5                 # plain JMH output (ms/op)
 *   java -jar ee-bench/target/ee-bench.jar Gemm -p size=1024                    # one size
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.GemmReport           # GFLOP/s table with ratios
 * </pre>
 * Default: 1 fork, 2 x 1 s warm-up, 5 x 1 s measurement per (size, path): about 1.5 minutes in all (GemmReport, with
 * two rounds: about 2.5 minutes).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = BenchSupport.NATIVE_ACCESS)
@State(Scope.Benchmark)
public class GemmBenchmark {
    public static final String DEFAULT = "default", FALLBACK = "fallback", OPENBLAS = "openblas-direct";

    @Param({"256", "1024", "2048"})
    public int size;

    @Param({DEFAULT, FALLBACK, OPENBLAS})
    public String path;

    private dev.eetune.tensor.Scope scope;
    private Backend backend;
    private Ops ops;
    private OpenBlas blas;
    private boolean direct;
    private Tensor a, b, c;
    private long pa, pb, pc;

    @Setup(Level.Trial)
    public void setup() {
        backend = CpuLibrary.backend(); // the binding chosen by -Deetune.binding (default: FFM on JDK 22+)
        ops = backend.ops();
        direct = OPENBLAS.equals(path);
        switch (path) {
            case DEFAULT, OPENBLAS -> BenchSupport.configure(backend, Backend.GemmPath.AUTO);
            case FALLBACK -> BenchSupport.configure(backend, Backend.GemmPath.FALLBACK);
            default -> throw new IllegalArgumentException("unknown path '" + path + "' (expected " + DEFAULT + ", " + FALLBACK + " or " + OPENBLAS + ")");
        }
        blas = CpuLibrary.openBlas(Binding.valueOf(backend.binding().toUpperCase(java.util.Locale.ROOT)));
        // the baseline runs on OpenBLAS's own threads; libeecpu runs OpenBLAS single-threaded on slices of its own pool
        blas.openblas_set_num_threads(direct ? BenchSupport.threads() : 1);
        scope = dev.eetune.tensor.Scope.of(backend);
        a = BenchSupport.randomFill(scope.allocate(DType.F32, size, size), 1);
        b = BenchSupport.randomFill(scope.allocate(DType.F32, size, size), 2);
        c = scope.zeros(DType.F32, size, size);
        pa = a.address();
        pb = b.address();
        pc = c.address();
        if (!backend.features().contains(Backend.Feature.OPENBLAS) && !FALLBACK.equals(path)) {
            System.out.println("# note: libeecpu did not load OpenBLAS, so path 'default' is the fallback kernel");
        }
        System.out.printf("# gemm %s n=%d threads=%d backend=%s%n", path, size, BenchSupport.threads(), backend.describe());
    }

    @Benchmark
    public void gemm() {
        if (direct) {
            blas.cblas_sgemm(BenchSupport.CBLAS_ROW_MAJOR, BenchSupport.CBLAS_NO_TRANS, BenchSupport.CBLAS_TRANS, size, size, size,
                1f, pa, size, pb, size, 0f, pc, size);
        } else {
            ops.gemm(false, true, 1f, a, b, 0f, c);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        backend.setGemmPath(Backend.GemmPath.AUTO);
        scope.close();
    }

    /** FLOPs of one call. */
    public static double flops(int n) { return 2.0 * n * n * (double) n; }
}
