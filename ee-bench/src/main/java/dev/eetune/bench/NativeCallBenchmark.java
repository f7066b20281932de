package dev.eetune.bench;

import dev.eetune.backend.spi.Binding;
import dev.eetune.nativelib.CpuLibrary;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.CompilerControl;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;
import java.util.function.IntUnaryOperator;

/**
 * Cost of one trivial native call, {@code ee_noop(x)} (returns x + 1), through the two bindings of libeecpu in one
 * JVM: Panama FFM (a downcall method handle) and JNA direct mapping. {@code javaBaseline} is the same work as a
 * non-inlined Java method: the floor of the measurement. The raw ABI is internal to the backends, so the calls come
 * from {@link dev.eetune.backend.Backend#noopCall()}: ee_noop through the backend's generated {@code Kernels}
 * binding, the path every op takes, and nothing else of the ABI. Score: ns per call.
 *
 * <pre>
 *   java -jar ee-bench/target/ee-bench.jar NativeCall                  # ~30 s
 *   java -jar ee-bench/target/ee-bench.jar NativeCall -f 3 -i 10       # tighter error bars
 * </pre>
 * FFM needs JDK 22+ (on JDK 17 the ffm benchmark fails with the reason; jna still runs).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = BenchSupport.NATIVE_ACCESS)
@State(Scope.Thread)
public class NativeCallBenchmark {
    private IntUnaryOperator ffm, jna;
    private int x = 41;

    @Setup
    public void setup() {
        jna = CpuLibrary.backend(Binding.JNA).noopCall();
        try {
            ffm = CpuLibrary.backend(Binding.FFM).noopCall();
        } catch (RuntimeException | LinkageError e) {
            System.out.println("# FFM binding unavailable: " + e.getMessage());
        }
        if (jna.applyAsInt(1) != 2 || (ffm != null && ffm.applyAsInt(1) != 2)) throw new IllegalStateException("ee_noop(1) != 2");
    }

    @Benchmark
    public int ffm() {
        if (ffm == null) throw new IllegalStateException("the FFM binding is unavailable in this JVM (needs JDK 22+)");
        return ffm.applyAsInt(x);
    }

    @Benchmark
    public int jna() { return jna.applyAsInt(x); }

    @Benchmark
    public int javaBaseline() { return noop(x); }

    @CompilerControl(CompilerControl.Mode.DONT_INLINE)
    private static int noop(int x) { return x + 1; }
}
