package dev.eetune.bench;

import org.openjdk.jmh.results.BenchmarkResult;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.CommandLineOptionException;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Runs {@link DecodeBenchmark} through JMH and prints, per (model, batch), median (min..max) over the measurement
 * iterations of: decode tokens/s (prefill excluded), time to first token, the whole call, the bandwidth of the
 * 256 MiB probe and decode / its roofline (the docs/benchmarks.md figure), the bandwidth of a weights-sized probe and
 * decode / its roofline (see {@link DecodeBenchmark}); and
 * per model the batch-8 / batch-1 decode speed-up (ratio of medians, with the extreme pairings as the spread). Models
 * run one after the other, each with its batch sizes back to back. A model that cannot be set up (stories260K missing)
 * is reported by JMH and left out of the table.
 *
 * <pre>
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.DecodeReport
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.DecodeReport -p model=synthetic15M-f32,synthetic15M-bf16 -i 12
 * </pre>
 * Any JMH command-line option is accepted. Add {@code --enable-native-access=ALL-UNNAMED} before {@code -cp} to
 * silence Java 25's native-access warning in the host JVM.
 */
public final class DecodeReport {
    private DecodeReport() {}

    public static void main(String[] args) throws RunnerException, CommandLineOptionException {
        CommandLineOptions cmd = new CommandLineOptions(args);
        Collection<String> models = cmd.getParameter("model")
            .orElse(List.of(DecodeBenchmark.STORIES260K, DecodeBenchmark.SYNTH_F32, DecodeBenchmark.SYNTH_BF16));
        List<RunResult> results = new ArrayList<>();
        for (String model : models) { // one JMH run per model, so its batch sizes run back to back
            Options opts = new OptionsBuilder().parent(cmd).include(DecodeBenchmark.class.getName() + ".generate").param("model", model).build();
            results.addAll(new Runner(opts).run());
        }
        System.out.println();
        System.out.println(table(results));
    }

    static String table(Collection<RunResult> results) {
        // model -> batch -> metric -> values
        Map<String, Map<Integer, Map<String, List<Double>>>> all = new LinkedHashMap<>();
        int newTokens = 0;
        for (RunResult rr : results) {
            String model = rr.getParams().getParam("model");
            int batch = Integer.parseInt(rr.getParams().getParam("batch"));
            newTokens = Integer.parseInt(rr.getParams().getParam("newTokens"));
            Map<String, List<Double>> m = all.computeIfAbsent(model, k -> new LinkedHashMap<>()).computeIfAbsent(batch, k -> new LinkedHashMap<>());
            for (BenchmarkResult br : rr.getBenchmarkResults()) {
                for (IterationResult ir : br.getIterationResults()) {
                    m.computeIfAbsent("wholeMs", k -> new ArrayList<>()).add(ir.getPrimaryResult().getScore());
                    for (Map.Entry<String, Result> e : ir.getSecondaryResults().entrySet()) {
                        m.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(e.getValue().getScore());
                    }
                }
            }
        }
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "Greedy KV-cached decode, prompts of %d tokens, %d new tokens, %d threads; median (min..max) over iterations%n",
            DecodeBenchmark.PROMPT_LEN, newTokens, BenchSupport.threads()));
        String head = String.format(Locale.ROOT, "%-18s | %5s | %-24s | %-22s | %-24s | %-20s | %-20s | %-20s | %-20s | %-20s%n", "model", "batch",
            "decode tok/s", "TTFT ms", "whole call ms", "bw 256MiB GB/s", "decode/roofline", "bw weights-size GB/s", "decode/ws-roofline", "sumSquares GB/s");
        sb.append(head).append("-".repeat(head.length() - 1)).append('\n');
        for (var me : all.entrySet()) {
            for (var be : me.getValue().entrySet()) {
                Map<String, List<Double>> m = be.getValue();
                sb.append(String.format(Locale.ROOT, "%-18s | %5d | %-24s | %-22s | %-24s | %-20s | %-20s | %-20s | %-20s | %-20s%n", me.getKey(), be.getKey(),
                    s(m, "decodeTokS", "%.1f"), s(m, "ttftMs", "%.2f"), s(m, "wholeMs", "%.1f"), s(m, "bwGBs", "%.2f"), s(m, "roofRatio", "%.3f"),
                    s(m, "bwWsGBs", "%.1f"), s(m, "roofRatioWs", "%.3f"), s(m, "bwSumSqGBs", "%.2f")));
            }
        }
        sb.append('\n');
        for (var me : all.entrySet()) {
            Map<Integer, Map<String, List<Double>>> byBatch = me.getValue();
            if (!byBatch.containsKey(1)) continue;
            BenchSupport.Spread one = BenchSupport.Spread.of(byBatch.get(1).getOrDefault("decodeTokS", List.of()));
            for (var be : byBatch.entrySet()) {
                if (be.getKey() == 1) continue;
                BenchSupport.Spread b = BenchSupport.Spread.of(be.getValue().getOrDefault("decodeTokS", List.of()));
                if (one.n() == 0 || b.n() == 0) continue;
                sb.append(String.format(Locale.ROOT, "%-18s batch %d / batch 1 decode tok/s: %.2f (%.2f..%.2f)%n", me.getKey(), be.getKey(),
                    b.median() / one.median(), b.min() / one.max(), b.max() / one.min()));
            }
        }
        return sb.toString();
    }

    private static String s(Map<String, List<Double>> m, String key, String fmt) {
        return BenchSupport.Spread.of(m.getOrDefault(key, List.of())).format(fmt);
    }
}
