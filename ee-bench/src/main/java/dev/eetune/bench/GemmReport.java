package dev.eetune.bench;

import org.openjdk.jmh.results.BenchmarkResult;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.CommandLineOptionException;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Runs {@link GemmBenchmark} through JMH and prints GFLOP/s per (size, path) and the ratios to direct OpenBLAS, each
 * as median (min..max) over the measurement iterations of all rounds. Each (size, path) is its own JMH run (its own
 * fork); sizes run one after the other, and within a size the paths run back to back in {@code -Deetune.bench.rounds}
 * rounds (default 2), the order reversed every other round (default, fallback, openblas, openblas, fallback, default),
 * so a slow drift of the machine's load hits every path alike. Plain JMH would run every size of one path first. Ratios are of medians; "ratio lo..hi" is the worst and best
 * pairing of iteration extremes (path min / openblas max .. path max / openblas min).
 *
 * <pre>
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.GemmReport                 # ~3 minutes
 *   java -Deetune.bench.rounds=1 -cp ee-bench/target/ee-bench.jar dev.eetune.bench.GemmReport
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.GemmReport -wi 3 -i 10 -p size=1024
 * </pre>
 * Any JMH command-line option is accepted (they override the benchmark's annotations). Java 25 prints a warning for
 * native access when started with -cp: add {@code --enable-native-access=ALL-UNNAMED} to silence it.
 */
public final class GemmReport {
    private GemmReport() {}

    public static void main(String[] args) throws RunnerException, CommandLineOptionException {
        CommandLineOptions cmd = new CommandLineOptions(args);
        Collection<String> sizes = cmd.getParameter("size").orElse(List.of("256", "1024", "2048"));
        List<String> paths = new ArrayList<>(cmd.getParameter("path").orElse(List.of(GemmBenchmark.DEFAULT, GemmBenchmark.FALLBACK, GemmBenchmark.OPENBLAS)));
        int rounds = Integer.getInteger("eetune.bench.rounds", 2);
        List<RunResult> results = new ArrayList<>();
        for (String size : sizes) {
            for (int round = 0; round < rounds; round++) { // paths of a size back to back, order reversed every other round
                List<String> order = new ArrayList<>(paths);
                if (round % 2 == 1) Collections.reverse(order);
                for (String path : order) {
                    Options opts = new OptionsBuilder().parent(cmd).include(GemmBenchmark.class.getName() + ".gemm")
                        .param("size", size).param("path", path).build();
                    results.addAll(new Runner(opts).run());
                }
            }
        }
        System.out.println();
        System.out.println(table(results));
    }

    /** The GFLOP/s table of some GemmBenchmark results. */
    static String table(Collection<RunResult> results) {
        Map<Integer, Map<String, List<Double>>> gflops = new TreeMap<>();
        for (RunResult rr : results) {
            int n = Integer.parseInt(rr.getParams().getParam("size"));
            String path = rr.getParams().getParam("path");
            List<Double> v = gflops.computeIfAbsent(n, k -> new TreeMap<>()).computeIfAbsent(path, k -> new ArrayList<>());
            for (BenchmarkResult br : rr.getBenchmarkResults()) {
                for (IterationResult ir : br.getIterationResults()) {
                    double ms = ir.getPrimaryResult().getScore(); // ms per GEMM (AverageTime, OutputTimeUnit ms)
                    v.add(GemmBenchmark.flops(n) / (ms * 1e-3) / 1e9);
                }
            }
        }
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "GEMM f32 C = A B^T, %d threads; GFLOP/s median (min..max) over iterations%n", BenchSupport.threads()));
        String head = String.format(Locale.ROOT, "%6s | %-22s | %-22s | %-22s | %-20s | %-20s%n", "n", "default", "fallback", "openblas-direct",
            "default/openblas", "fallback/openblas");
        sb.append(head).append("-".repeat(head.length() - 1)).append('\n');
        for (var e : gflops.entrySet()) {
            Map<String, List<Double>> m = e.getValue();
            BenchSupport.Spread d = BenchSupport.Spread.of(m.getOrDefault(GemmBenchmark.DEFAULT, List.of()));
            BenchSupport.Spread f = BenchSupport.Spread.of(m.getOrDefault(GemmBenchmark.FALLBACK, List.of()));
            BenchSupport.Spread o = BenchSupport.Spread.of(m.getOrDefault(GemmBenchmark.OPENBLAS, List.of()));
            sb.append(String.format(Locale.ROOT, "%6d | %-22s | %-22s | %-22s | %-20s | %-20s%n", e.getKey(),
                d.format("%.1f"), f.format("%.1f"), o.format("%.1f"), ratio(d, o), ratio(f, o)));
        }
        return sb.toString();
    }

    private static String ratio(BenchSupport.Spread x, BenchSupport.Spread base) {
        if (x.n() == 0 || base.n() == 0) return "n/a";
        return String.format(Locale.ROOT, "%.2f (%.2f..%.2f)", x.median() / base.median(), x.min() / base.max(), x.max() / base.min());
    }
}
