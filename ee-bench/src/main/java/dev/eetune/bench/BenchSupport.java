package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.model.HfCheckpointWriter;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Shared helpers of the benchmarks: thread count, GEMM path, data folder, loaded random models, and order statistics.
 *
 * <p>System properties (pass them to {@code java} before {@code -jar}; JMH forks inherit the host JVM's arguments):
 * <ul>
 *   <li>{@code -Deetune.bench.threads=N}: worker threads of libeecpu and OpenBLAS (default: all cores);</li>
 *   <li>{@code -Deetune.data=DIR}: the shared data folder holding {@code stories260K/stories260K.bin}
 *       (default {@code ../shared/data}, relative to the working directory);</li>
 *   <li>{@code -Deetune.bench.bwMiB=N}: size of the bandwidth probe buffer of {@link DecodeBenchmark} (default 256).</li>
 * </ul>
 */
final class BenchSupport {
    /** cblas constants. */
    static final int CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112;
    /** JVM flags every fork gets (forks are started with -cp, so the jar manifest's Enable-Native-Access does not apply). */
    static final String NATIVE_ACCESS = "--enable-native-access=ALL-UNNAMED";

    private BenchSupport() {}

    static int threads() {
        return Integer.getInteger("eetune.bench.threads", Runtime.getRuntime().availableProcessors());
    }

    /** Sets libeecpu's threads (which also sets OpenBLAS's, the same loaded library) and its GEMM path. */
    static void configure(Backend backend, Backend.GemmPath gemmPath) {
        int t = threads();
        int now = backend.setThreads(t);
        if (now != t) throw new IllegalStateException("setThreads(" + t + ") left " + now + " threads");
        backend.setGemmPath(gemmPath);
    }

    /**
     * OpenBLAS's {@code cblas_sasum} (float sum of |x|, AVX-512/AVX2 kernels, threaded by OpenBLAS) bound through JNA,
     * for the read-bandwidth probe; null when OpenBLAS is not found (same places as {@code CpuLibrary.openBlas}).
     */
    static com.sun.jna.Function sasum() {
        String env = System.getenv("EETUNE_BLAS");
        for (String c : new String[] {env, "/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib64/libopenblas.so.0", "/usr/lib/libopenblas.so.0"}) {
            if (c != null && java.nio.file.Files.isRegularFile(Path.of(c))) {
                return com.sun.jna.NativeLibrary.getInstance(c).getFunction("cblas_sasum");
            }
        }
        return null;
    }

    static Path dataDir() {
        String p = System.getProperty("eetune.data");
        return (p == null || p.isBlank() ? Path.of("..", "shared", "data") : Path.of(p)).toAbsolutePath().normalize();
    }

    /** Fills a F32 tensor with uniform values in [-1, 1). */
    /**
     * A random-weight model (seed 7, std 0.02) written to {@code dir} as a Hugging Face checkpoint of {@code dtype} and
     * loaded from it, as users' models are: loaded weights are fixed, so decode reads them packed and greedy decode
     * screens the classifier, which an in-memory random model does not. The caller deletes {@code dir} after closing it.
     */
    static LlamaModel loadedRandom(LlamaConfig config, Backend backend, DType dtype, Path dir) throws IOException {
        try (LlamaModel random = LlamaModel.random(config, backend, 7, 0.02f)) {
            HfCheckpointWriter.write(random, dir, dtype);
        }
        return LlamaModel.load(dir, backend);
    }

    static Tensor randomFill(Tensor t, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[Math.toIntExact(t.size())];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return t.copyFrom(v);
    }

    /** Median, min and max of some values. */
    record Spread(double median, double min, double max, int n) {
        static Spread of(List<Double> values) {
            double[] v = values.stream().mapToDouble(Double::doubleValue).sorted().toArray();
            if (v.length == 0) return new Spread(Double.NaN, Double.NaN, Double.NaN, 0);
            double med = v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
            return new Spread(med, v[0], v[v.length - 1], v.length);
        }

        static Spread of(double... values) { return of(Arrays.stream(values).boxed().toList()); }

        /** "median (min..max)" with a given format for each number. */
        String format(String fmt) {
            if (n == 0) return "n/a";
            return String.format(Locale.ROOT, fmt + " (" + fmt + ".." + fmt + ")", median, min, max);
        }
    }
}
