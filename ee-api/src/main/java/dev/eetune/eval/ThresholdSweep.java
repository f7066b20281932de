package dev.eetune.eval;

import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.Pass;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.infer.SelfSpeculativeDecoder;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The speed / quality trade-off of early exits over thresholds (docs/sweep-metrics.md), on fixed prompts with greedy
 * decoding: for each threshold, wall-clock decode tokens/s and speed-up over the full model on the same backend
 * (median of repeats), mean exit layer, share of tokens per exit, layers run per token, teacher-forced agreement
 * (along the full model's own greedy continuation) and free-running quality (exact-match share and prefix length
 * against full greedy output, the full model's perplexity of the generated text); and the same for self-speculative
 * decoding (acceptance rate, speed-up, whether the output equals full greedy). Thread-safe: each call makes its own
 * decoders and workspaces, which hold leases on the model while they run (timings are then shared with the others).
 */
public final class ThresholdSweep {
    private ThresholdSweep() {}

    /**
     * One row of the sweep. {@code mode} is "early-exit", "full" or "speculative@E k"; {@code confidence} the exit
     * decision's {@link ConfidenceMethod} label (early-exit rows), else "-".
     */
    public record Row(String mode, String confidence, float threshold, double tokensPerSecond, double tokensPerSecondSpread, double speedup, double meanExitLayer,
                      double[] exitShare, double layersPerToken, double teacherForcedAgreement, double freeRunningMatch, double meanMatchedPrefix,
                      double perplexity, double acceptanceRate) {}

    /** The sweep's rows and the exit layers the share columns refer to (the last column is the final layer). */
    public record Result(List<Row> rows, int[] exitLayers, int promptCount, int newTokens) {
        public String toTable() {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-16s %-10s %6s %9s %7s %6s %6s %8s %8s %8s %7s", "mode", "confidence", "tau", "tok/s", "speedup",
                "exit", "layers", "TF-agree", "FR-match", "FR-prefix", "ppl"));
            for (int l : exitLayers) sb.append(String.format(Locale.ROOT, " %6s", "@" + l));
            sb.append(String.format(Locale.ROOT, " %6s %7s%n", "final", "accept"));
            for (Row r : rows) {
                sb.append(String.format(Locale.ROOT, "%-16s %-10s %6.3f %9.1f %6.2fx %6.2f %6.2f %7.1f%% %7.1f%% %8.1f %7.3f", r.mode(), r.confidence(), r.threshold(), r.tokensPerSecond(),
                    r.speedup(), r.meanExitLayer(), r.layersPerToken(), 100 * r.teacherForcedAgreement(), 100 * r.freeRunningMatch(), r.meanMatchedPrefix(), r.perplexity()));
                for (double s : r.exitShare()) sb.append(String.format(Locale.ROOT, " %5.1f%%", 100 * s));
                sb.append(Double.isNaN(r.acceptanceRate()) ? "       -" : String.format(Locale.ROOT, " %6.1f%%", 100 * r.acceptanceRate())).append('\n');
            }
            return sb.append(String.format(Locale.ROOT, "(%d prompts x %d new tokens, greedy; tok/s = median of repeats; TF = teacher-forced, FR = free-running vs full greedy)",
                promptCount, newTokens)).toString();
        }

        public String toCsv() {
            StringBuilder sb = new StringBuilder("mode,confidence,threshold,tokens_per_s,tokens_per_s_spread,speedup,mean_exit_layer,layers_per_token,tf_agreement,fr_match,fr_prefix,perplexity,acceptance");
            for (int l : exitLayers) sb.append(",share_exit_").append(l);
            sb.append(",share_final\n");
            for (Row r : rows) {
                sb.append(String.format(Locale.ROOT, "%s,%s,%.4f,%.2f,%.2f,%.4f,%.4f,%.4f,%.5f,%.5f,%.3f,%.5f,%s", r.mode(), r.confidence(), r.threshold(), r.tokensPerSecond(), r.tokensPerSecondSpread(),
                    r.speedup(), r.meanExitLayer(), r.layersPerToken(), r.teacherForcedAgreement(), r.freeRunningMatch(), r.meanMatchedPrefix(), r.perplexity(),
                    Double.isNaN(r.acceptanceRate()) ? "" : String.format(Locale.ROOT, "%.5f", r.acceptanceRate())));
                for (double s : r.exitShare()) sb.append(String.format(Locale.ROOT, ",%.5f", s));
                sb.append('\n');
            }
            return sb.toString();
        }

        public String toJson() {
            StringBuilder sb = new StringBuilder("{\"prompts\":" + promptCount + ",\"new_tokens\":" + newTokens + ",\"exit_layers\":" + Arrays.toString(exitLayers) + ",\"rows\":[");
            for (int i = 0; i < rows.size(); i++) {
                Row r = rows.get(i);
                sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT,
                    "{\"mode\":\"%s\",\"confidence\":\"%s\",\"threshold\":%.4f,\"tokens_per_s\":%.2f,\"spread\":%.2f,\"speedup\":%.4f,\"mean_exit_layer\":%.4f,\"layers_per_token\":%.4f,"
                        + "\"tf_agreement\":%.5f,\"fr_match\":%.5f,\"fr_prefix\":%.3f,\"perplexity\":%.5f,\"acceptance\":%s,\"exit_share\":%s}",
                    r.mode(), r.confidence(), r.threshold(), r.tokensPerSecond(), r.tokensPerSecondSpread(), r.speedup(), r.meanExitLayer(), r.layersPerToken(), r.teacherForcedAgreement(),
                    r.freeRunningMatch(), r.meanMatchedPrefix(), r.perplexity(), Double.isNaN(r.acceptanceRate()) ? "null" : String.format(Locale.ROOT, "%.5f", r.acceptanceRate()),
                    Arrays.toString(r.exitShare())));
            }
            return sb.append("]}").toString();
        }
    }

    /**
     * What to run: thresholds for all heads at once, each with every confidence method in {@code confidence}, and
     * self-speculative settings (draft exits x draft lengths).
     */
    public record Settings(float[] thresholds, int newTokens, int batch, int repeats, int[] draftExits, int[] draftLengths, List<ConfidenceMethod> confidence) {
        public Settings {
            confidence = List.copyOf(confidence);
            if (confidence.isEmpty()) throw new IllegalArgumentException("at least one confidence method");
        }

        /** Softmax confidence only. */
        public Settings(float[] thresholds, int newTokens, int batch, int repeats, int[] draftExits, int[] draftLengths) {
            this(thresholds, newTokens, batch, repeats, draftExits, draftLengths, List.of(ConfidenceMethod.SOFTMAX));
        }
    }

    public static Result run(EarlyExitModel ee, List<int[]> prompts, Settings st) {
        LlamaModel m = ee.backbone();
        int[] layers = ee.heads().stream().mapToInt(ExitHead::layer).toArray();
        GenerationConfig cfg = GenerationConfig.greedy(st.newTokens(), Set.of());
        int maxLen = prompts.stream().mapToInt(p -> p.length).max().orElse(1) + st.newTokens();
        // warm the JIT on both paths first, so the first timed mode is not penalised
        for (int w = 0; w < 2; w++) {
            decode(m, null, EarlyExitPolicy.none(), prompts, st.batch(), maxLen, cfg, new ArrayList<>());
            if (st.thresholds().length > 0) {
                for (ConfidenceMethod method : st.confidence()) {
                    decode(m, ee, EarlyExitPolicy.global(st.thresholds()[st.thresholds().length - 1], layers).withConfidence(method), prompts, st.batch(), maxLen, cfg, new ArrayList<>());
                }
            }
        }
        // the full model: baseline speed and the greedy continuations everything is compared with
        List<int[]> full = new ArrayList<>();
        double[] fullTps = time(st.repeats(), () -> decode(m, null, EarlyExitPolicy.none(), prompts, st.batch(), maxLen, cfg, full));
        int[] traceFrom = prompts.stream().mapToInt(p -> p.length - 1).toArray();
        ExitTrace teacher = ExitTrace.of(ee, full, traceFrom);
        List<Row> rows = new ArrayList<>();
        rows.add(new Row("full", "-", 1f, fullTps[0], fullTps[1], 1.0, m.config().nLayers(), share(new long[m.config().nLayers() + 1], layers, m.config().nLayers()),
            m.config().nLayers(), 1.0, 1.0, st.newTokens(), perplexity(m, prompts, full), Double.NaN));
        for (float tau : st.thresholds()) for (ConfidenceMethod method : st.confidence()) {
            EarlyExitPolicy policy = EarlyExitPolicy.global(tau, layers).withConfidence(method);
            List<int[]> out = new ArrayList<>();
            EarlyExitGenerator.Stats[] stats = new EarlyExitGenerator.Stats[1];
            double[] tps = time(st.repeats(), () -> {
                out.clear();
                stats[0] = decodeWithStats(m, ee, policy, prompts, st.batch(), maxLen, cfg, out);
                return (long) st.newTokens() * prompts.size();
            });
            double[] fr = match(prompts, out, full);
            rows.add(new Row("early-exit", method.label(), tau, tps[0], tps[1], tps[0] / fullTps[0], stats[0].meanExitLayer(), share(stats[0].exitCounts(), layers, m.config().nLayers()),
                stats[0].layersPerToken(), teacher.decide(method, policy.thresholds(), ee).agreement(), fr[0], fr[1], perplexity(m, prompts, out), Double.NaN));
        }
        for (int e : st.draftExits()) {
            for (int k : st.draftLengths()) {
                List<int[]> out = new ArrayList<>();
                SelfSpeculativeDecoder.Stats[] stats = new SelfSpeculativeDecoder.Stats[1];
                double[] tps = time(st.repeats(), () -> {
                    out.clear();
                    try (SelfSpeculativeDecoder d = new SelfSpeculativeDecoder(ee, e, k, false, 0f, st.batch(), maxLen)) {
                        for (int from = 0; from < prompts.size(); from += st.batch()) {
                            List<int[]> chunk = prompts.subList(from, Math.min(prompts.size(), from + st.batch()));
                            for (GenerationResult r : d.generate(chunk, cfg, null)) out.add(r.tokens());
                        }
                        stats[0] = d.lastStats();
                    }
                    return (long) st.newTokens() * prompts.size();
                });
                double[] fr = match(prompts, out, full);
                rows.add(new Row("speculative@" + e + " k" + k, "-", 1f, tps[0], tps[1], tps[0] / fullTps[0], m.config().nLayers(),
                    share(new long[m.config().nLayers() + 1], layers, m.config().nLayers()), Double.NaN, 1.0, fr[0], fr[1], perplexity(m, prompts, out), stats[0].acceptanceRate()));
            }
        }
        return new Result(rows, layers, prompts.size(), st.newTokens());
    }

    private interface Job {
        long run();
    }

    /** Median and spread (max - min) of generated tokens per second over {@code repeats} runs, after one warm-up. */
    private static double[] time(int repeats, Job job) {
        job.run();
        double[] tps = new double[Math.max(1, repeats)];
        for (int i = 0; i < tps.length; i++) {
            long t0 = System.nanoTime();
            long tokens = job.run();
            tps[i] = tokens / ((System.nanoTime() - t0) / 1e9);
        }
        Arrays.sort(tps);
        return new double[] {tps[tps.length / 2], tps[tps.length - 1] - tps[0]};
    }

    private static long decode(LlamaModel m, EarlyExitModel ee, EarlyExitPolicy policy, List<int[]> prompts, int batch, int maxLen, GenerationConfig cfg, List<int[]> out) {
        out.clear();
        decodeWithStats(m, ee, policy, prompts, batch, maxLen, cfg, out);
        return (long) cfg.maxNewTokens() * prompts.size();
    }

    private static EarlyExitGenerator.Stats decodeWithStats(LlamaModel m, EarlyExitModel ee, EarlyExitPolicy policy, List<int[]> prompts, int batch, int maxLen,
                                                           GenerationConfig cfg, List<int[]> out) {
        long[] exits = new long[m.config().nLayers() + 1];
        long rowLayers = 0, generated = 0;
        double headLayers = 0;
        try (EarlyExitGenerator g = new EarlyExitGenerator(m, ee, policy, batch, maxLen)) {
            for (int from = 0; from < prompts.size(); from += batch) {
                List<int[]> chunk = prompts.subList(from, Math.min(prompts.size(), from + batch));
                for (GenerationResult r : g.generate(chunk, cfg, null)) out.add(r.tokens());
                EarlyExitGenerator.Stats s = g.lastStats();
                for (int l = 0; l < exits.length; l++) exits[l] += s.exitCounts()[l];
                rowLayers += s.rowLayers();
                headLayers += s.headLayers();
                generated += s.generatedTokens();
            }
        }
        return new EarlyExitGenerator.Stats(prompts.size(), 0, (int) generated, exits, rowLayers, 0, headLayers, 0, 0);
    }

    private static double[] share(long[] counts, int[] layers, int nLayers) {
        double total = Arrays.stream(counts).sum();
        double[] out = new double[layers.length + 1];
        for (int i = 0; i < layers.length; i++) out[i] = total == 0 ? 0 : counts[layers[i]] / total;
        out[layers.length] = total == 0 ? 1 : counts[nLayers] / total;
        return out;
    }

    /** Share of generated positions equal to full greedy output, and the mean length of the matching prefix. */
    private static double[] match(List<int[]> prompts, List<int[]> out, List<int[]> full) {
        double same = 0, prefix = 0, total = 0;
        for (int i = 0; i < prompts.size(); i++) {
            int p = prompts.get(i).length;
            int[] a = out.get(i), b = full.get(i);
            int n = Math.min(a.length, b.length) - p;
            boolean diverged = false;
            for (int j = 0; j < n; j++) {
                boolean eq = a[p + j] == b[p + j];
                if (eq) same++;
                if (!eq) diverged = true;
                if (!diverged) prefix++;
            }
            total += b.length - p;
        }
        return new double[] {total == 0 ? 1 : same / total, prefix / prompts.size()};
    }

    /** The full model's perplexity of the generated continuations (teacher-forced, given the prompts). */
    public static double perplexity(LlamaModel m, List<int[]> prompts, List<int[]> outputs) {
        LlamaConfig c = m.config();
        Ops ops = m.backend().ops();
        double nll = 0;
        long count = 0;
        for (int i = 0; i < prompts.size(); i++) {
            int[] seq = outputs.get(i);
            int n = seq.length - 1, p0 = prompts.get(i).length - 1;
            if (n <= p0) continue;
            try (Scope.Lease use = m.use(); Scope s = Scope.of(m.backend()); Workspace ws = m.newWorkspace()) {
                int[] targets = new int[n];
                for (int j = 0; j < n; j++) targets[j] = j >= p0 ? seq[j + 1] : -1;
                Workspace.Rows rows = ws.denseRows(Arrays.copyOf(seq, n), 1, n);
                Tensor x = ws.x(n), normed = s.allocate(DType.F32, n, c.dim()), loss = s.allocate(DType.F32, n);
                m.embed(x, rows);
                m.layers(x, rows, null, 0, c.nLayers(), ws);
                ops.rmsnorm(normed, null, x, m.weights().finalNorm(), c.normEps());
                ops.linearCrossEntropy(loss, null, null, null, null, normed, m.weights().lmHead(), s.of(targets, n), null, 4096, 1f);
                for (float l : loss.toFloatArray()) nll += l;
                count += n - p0;
            }
        }
        return count == 0 ? Double.NaN : Math.exp(nll / count);
    }
}
