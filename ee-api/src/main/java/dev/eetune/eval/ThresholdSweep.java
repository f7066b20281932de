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

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializerProvider;
import com.fasterxml.jackson.databind.module.SimpleModule;
import com.fasterxml.jackson.databind.ser.std.StdSerializer;
import dev.eetune.progress.ProgressListener;

import java.io.IOException;
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

    /** How far a row's speed-up can be trusted (see {@link Row}). */
    public enum Verdict {
        /** Every timed round agrees on the direction of the speed-up, within a modest spread. */
        OK,
        /** The rounds' speed-ups straddle 1.0 or spread widely: faster or slower cannot be told from noise. */
        NOISY,
        /** A row that cannot be faster than the full model (no head may exit) was, in every round: the timing is broken. */
        MEASUREMENT_FAILURE;
    }

    /**
     * One row of the sweep. {@code mode} is "early-exit", "full" or "speculative@E k"; {@code confidence} the exit
     * decision's {@link ConfidenceMethod} label (early-exit rows), else "-". Tokens/s: the median over the
     * timed rounds and its spread (max - min); speed-up: the median of each round's ratio to the full model timed in the
     * same round, with the lowest and highest round's ratio, and the verdict those give.
     */
    public record Row(String mode, String confidence, float threshold, double tokensPerSecond, double tokensPerSecondSpread, double speedup, double speedupLow, double speedupHigh,
                      Verdict verdict, double meanExitLayer, double[] exitShare, double layersPerToken, double teacherForcedAgreement, double freeRunningMatch,
                      double meanMatchedPrefix, double perplexity, double acceptanceRate) {}

    /**
     * The sweep's rows and the exit layers the share columns refer to (the last column is the final layer), with the
     * warm-up it took: rounds run before timing, and whether the rates had settled by then.
     */
    public record Result(List<Row> rows, int[] exitLayers, int promptCount, int newTokens, int repeats, int warmupRounds, boolean warmupSettled) {
        /** Rows whose timing contradicts itself (threshold 1.0 faster than the full model beyond noise). */
        public List<Row> measurementFailures() { return rows.stream().filter(r -> r.verdict() == Verdict.MEASUREMENT_FAILURE).toList(); }

        public String toTable() {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-16s %-10s %6s %9s %7s %7s %-13s %6s %6s %8s %8s %8s %7s", "mode", "confidence", "tau", "tok/s", "+-", "speedup",
                "(min..max)", "exit", "layers", "TF-agree", "FR-match", "FR-prefix", "ppl"));
            for (int l : exitLayers) sb.append(String.format(Locale.ROOT, " %6s", "@" + l));
            sb.append(String.format(Locale.ROOT, " %6s %7s  %s%n", "final", "accept", "note"));
            for (Row r : rows) {
                sb.append(String.format(Locale.ROOT, "%-16s %-10s %6.3f %9.1f %7.1f %6.2fx %-13s %6.2f %6.2f %7.1f%% %7.1f%% %8.1f %7.3f", r.mode(), r.confidence(), r.threshold(), r.tokensPerSecond(),
                    r.tokensPerSecondSpread(), r.speedup(), String.format(Locale.ROOT, "(%.2f..%.2f)", r.speedupLow(), r.speedupHigh()), r.meanExitLayer(), r.layersPerToken(),
                    100 * r.teacherForcedAgreement(), 100 * r.freeRunningMatch(), r.meanMatchedPrefix(), r.perplexity()));
                for (double s : r.exitShare()) sb.append(String.format(Locale.ROOT, " %5.1f%%", 100 * s));
                sb.append(Double.isNaN(r.acceptanceRate()) ? "       -" : String.format(Locale.ROOT, " %6.1f%%", 100 * r.acceptanceRate()));
                sb.append(switch (r.verdict()) {
                    case OK -> "";
                    case NOISY -> "  noisy: speed-up within noise";
                    case MEASUREMENT_FAILURE -> "  MEASUREMENT FAILURE: no head may exit, yet faster than the full model";
                }).append('\n');
            }
            sb.append(String.format(Locale.ROOT, "(%d prompts x %d new tokens, greedy; modes interleaved round-robin, %d timed rounds after %d warm-up rounds%s;%n"
                    + " tok/s = median +- spread (max - min); speed-up = median of per-round ratios to the full model (min..max); TF = teacher-forced, FR = free-running vs full greedy)",
                promptCount, newTokens, repeats, warmupRounds, warmupSettled ? "" : " (rates had not settled: treat with care)"));
            if (!measurementFailures().isEmpty()) {
                sb.append("\nMEASUREMENT FAILURE: a row that does strictly more work than the full model ran faster in every round; these timings are not trustworthy"
                    + " (a busy machine, or too few --repeats / --max-tokens).");
            }
            return sb.toString();
        }

        public String toCsv() {
            StringBuilder sb = new StringBuilder("mode,confidence,threshold,tokens_per_s,tokens_per_s_spread,speedup,speedup_min,speedup_max,verdict,mean_exit_layer,layers_per_token,"
                + "tf_agreement,fr_match,fr_prefix,perplexity,acceptance");
            for (int l : exitLayers) sb.append(",share_exit_").append(l);
            sb.append(",share_final\n");
            for (Row r : rows) {
                sb.append(String.format(Locale.ROOT, "%s,%s,%.4f,%.2f,%.2f,%.4f,%.4f,%.4f,%s,%.4f,%.4f,%.5f,%.5f,%.3f,%.5f,%s", r.mode(), r.confidence(), r.threshold(), r.tokensPerSecond(),
                    r.tokensPerSecondSpread(), r.speedup(), r.speedupLow(), r.speedupHigh(), r.verdict(), r.meanExitLayer(), r.layersPerToken(), r.teacherForcedAgreement(),
                    r.freeRunningMatch(), r.meanMatchedPrefix(), r.perplexity(), Double.isNaN(r.acceptanceRate()) ? "" : String.format(Locale.ROOT, "%.5f", r.acceptanceRate())));
                for (double s : r.exitShare()) sb.append(String.format(Locale.ROOT, ",%.5f", s));
                sb.append('\n');
            }
            return sb.toString();
        }

        /** The result as JSON (Jackson; a value that is not a number, such as a missing acceptance rate, is null). */
        public String toJson() {
            try {
                return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(this);
            } catch (JsonProcessingException e) {
                throw new IllegalStateException("cannot write the sweep as JSON", e);
            }
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper().registerModule(new SimpleModule("finite-or-null")
        .addSerializer(Double.TYPE, new NonFiniteAsNull()).addSerializer(Double.class, new NonFiniteAsNull())
        .addSerializer(Float.TYPE, new NonFiniteFloatAsNull()).addSerializer(Float.class, new NonFiniteFloatAsNull()));

    /** As {@link NonFiniteAsNull}, for floats (the calibrated row's threshold). */
    private static final class NonFiniteFloatAsNull extends StdSerializer<Float> {
        NonFiniteFloatAsNull() { super(Float.class); }

        @Override
        public void serialize(Float v, JsonGenerator gen, SerializerProvider provider) throws IOException {
            if (Float.isFinite(v)) gen.writeNumber(v);
            else gen.writeNull();
        }
    }

    /** JSON has no NaN or infinity: such a value is written as null. */
    private static final class NonFiniteAsNull extends StdSerializer<Double> {
        NonFiniteAsNull() { super(Double.class); }

        @Override
        public void serialize(Double v, JsonGenerator gen, SerializerProvider provider) throws IOException {
            if (Double.isFinite(v)) gen.writeNumber(v);
            else gen.writeNull();
        }
    }

    /**
     * What to run: thresholds for all heads at once, each with every confidence method in {@code confidence}, and
     * self-speculative settings (draft exits x draft lengths);
     * {@code repeats} timed rounds after at most {@code maxWarmupRounds} warm-up rounds; {@code calibrated}: per-exit
     * thresholds (`ee calibrate`'s) timed as one more row, mode "calibrated", threshold NaN (JSON null), or null.
     */
    public record Settings(float[] thresholds, int newTokens, int batch, int repeats, int[] draftExits, int[] draftLengths, int maxWarmupRounds,
                           List<ConfidenceMethod> confidence, EarlyExitPolicy calibrated) {
        public Settings {
            confidence = List.copyOf(confidence);
            if (confidence.isEmpty()) throw new IllegalArgumentException("at least one confidence method");
            if (newTokens < 1 || batch < 1 || repeats < 1) throw new IllegalArgumentException("newTokens, batch and repeats must be >= 1, got " + newTokens + ", " + batch + ", " + repeats);
            if (maxWarmupRounds < MIN_WARMUP_ROUNDS) throw new IllegalArgumentException("maxWarmupRounds (--max-warmup-rounds) must be >= " + MIN_WARMUP_ROUNDS + ", got " + maxWarmupRounds);
        }

        public Settings(float[] thresholds, int newTokens, int batch, int repeats, int[] draftExits, int[] draftLengths) {
            this(thresholds, newTokens, batch, repeats, draftExits, draftLengths, DEFAULT_MAX_WARMUP_ROUNDS, List.of(ConfidenceMethod.SOFTMAX), null);
        }
    }

    static final int MIN_WARMUP_ROUNDS = 2, DEFAULT_MAX_WARMUP_ROUNDS = 8;
    /** Warm-up has settled when no mode's rate moved by more than this share between two rounds. */
    static final double SETTLED = 0.10;

    /** What {@link #roundRobin} measured: rates[run][round] of the timed rounds, the warm-up rounds run, whether the rates settled. */
    public record RoundRobin(double[][] rates, int warmupRounds, boolean settled) {}

    /**
     * Times {@code runs} (each returns its rate) against one another: warm-up rounds of every run until no run's rate
     * moves by more than {@link #SETTLED} between two rounds (at least {@link #MIN_WARMUP_ROUNDS}, at most
     * {@code maxWarmupRounds}), then {@code repeats} timed rounds, each starting one run later, so that JIT compilation,
     * caches and the machine's load fall on all runs alike. The one timing discipline of the sweep and of
     * {@link ThresholdCalibration#wallClockSpeedups}.
     */
    public static RoundRobin roundRobin(List<java.util.function.DoubleSupplier> runs, int maxWarmupRounds, int repeats, ProgressListener progress) {
        int n = runs.size();
        long total = (long) (maxWarmupRounds + repeats) * n;
        double[] previous = null;
        int warmup = 0;
        boolean settled = false;
        while (warmup < maxWarmupRounds && !settled) {
            double[] rates = new double[n];
            for (int i = 0; i < n; i++) {
                rates[i] = runs.get(i).getAsDouble();
                progress.update((long) warmup * n + i + 1, total, "warm-up round " + (warmup + 1));
            }
            warmup++;
            if (previous != null && warmup >= MIN_WARMUP_ROUNDS) {
                settled = true;
                for (int i = 0; i < n; i++) settled &= Math.abs(rates[i] - previous[i]) <= SETTLED * previous[i];
            }
            previous = rates;
        }
        long doneBefore = (long) maxWarmupRounds * n;
        double[][] rates = new double[n][repeats];
        for (int round = 0; round < repeats; round++) {
            for (int j = 0; j < n; j++) {
                int i = (round + j) % n; // round-robin: each round starts with the next run
                rates[i][round] = runs.get(i).getAsDouble();
                progress.update(doneBefore + (long) round * n + j + 1, total, "timed round " + (round + 1) + "/" + repeats);
            }
        }
        return new RoundRobin(rates, warmup, settled);
    }

    /** A row that cannot be faster (threshold 1.0) whose slowest round still beats the full model by this much is a failure. */
    static final double FAILURE_MARGIN = 0.03;
    /** A speed-up whose (max - min) / median exceeds this is noise, whatever its direction. */
    static final double NOISY_SPREAD = 0.5;

    public static Result run(EarlyExitModel ee, List<int[]> prompts, Settings st) { return run(ee, prompts, st, ProgressListener.NONE); }

    /**
     * Runs the sweep. Every mode (the full model, each threshold, each speculative setting) keeps its own decoder. They
     * run round-robin, each round starting one mode later, so JIT compilation, caches and the machine's load fall on
     * all modes alike: warm-up rounds until every mode's rate is steady, then {@code repeats} timed rounds.
     */
    public static Result run(EarlyExitModel ee, List<int[]> prompts, Settings st, ProgressListener progress) {
        LlamaModel m = ee.backbone();
        int n = m.config().nLayers();
        int[] layers = ee.heads().stream().mapToInt(ExitHead::layer).toArray();
        GenerationConfig cfg = GenerationConfig.greedy(st.newTokens(), Set.of());
        int maxLen = prompts.stream().mapToInt(p -> p.length).max().orElse(1) + st.newTokens();
        long tokensPerRun = (long) st.newTokens() * prompts.size();
        List<Mode> modes = new ArrayList<>();
        try {
            modes.add(new Mode("full", null, 1f, new EarlyExitGenerator(m, null, EarlyExitPolicy.none(), st.batch(), maxLen), null));
            for (float tau : st.thresholds()) for (ConfidenceMethod method : st.confidence()) {
                EarlyExitPolicy policy = EarlyExitPolicy.global(tau, layers).withConfidence(method);
                modes.add(new Mode("early-exit", policy, tau, new EarlyExitGenerator(m, ee, policy, st.batch(), maxLen), null));
            }
            if (st.calibrated() != null) modes.add(new Mode("calibrated", st.calibrated(), Float.NaN, new EarlyExitGenerator(m, ee, st.calibrated(), st.batch(), maxLen), null));
            for (int e : st.draftExits()) {
                for (int k : st.draftLengths()) modes.add(new Mode("speculative@" + e + " k" + k, null, 1f, null, new SelfSpeculativeDecoder(ee, e, k, false, 0f, st.batch(), maxLen)));
            }
            List<java.util.function.DoubleSupplier> runs = new ArrayList<>();
            for (Mode md : modes) runs.add(() -> md.timedRun(prompts, cfg, st.batch(), tokensPerRun));
            RoundRobin timed = roundRobin(runs, st.maxWarmupRounds(), st.repeats(), progress);
            double[][] rates = timed.rates();
            int warmup = timed.warmupRounds();
            boolean settled = timed.settled();
            Mode full = modes.get(0);
            ExitTrace teacher = ExitTrace.of(ee, full.out, prompts.stream().mapToInt(p -> p.length - 1).toArray());
            List<Row> rows = new ArrayList<>();
            for (int i = 0; i < modes.size(); i++) {
                Mode md = modes.get(i);
                double[] ratio = new double[st.repeats()];
                for (int r = 0; r < ratio.length; r++) ratio[r] = rates[i][r] / rates[0][r];
                double[] tps = medianAndRange(rates[i]), sp = medianAndRange(ratio);
                Verdict verdict = i == 0 ? Verdict.OK : verdict(md.generator != null && md.threshold >= 1f, sp[0], sp[1], sp[2]);
                double[] fr = match(prompts, md.out, full.out);
                double ppl = perplexity(m, prompts, md.out);
                if (md.generator != null) {
                    EarlyExitGenerator.Stats s = md.eeStats;
                    boolean isFull = i == 0;
                    rows.add(new Row(md.name, isFull ? "-" : md.policy.confidence().label(), md.threshold, tps[0], tps[2] - tps[1], sp[0], sp[1], sp[2], verdict, isFull ? n : s.meanExitLayer(),
                        share(isFull ? new long[n + 1] : s.exitCounts(), layers, n), isFull ? n : s.layersPerToken(),
                        isFull ? 1.0 : teacher.decide(md.policy, ee).agreement(), fr[0], fr[1], ppl, Double.NaN));
                } else {
                    rows.add(new Row(md.name, "-", md.threshold, tps[0], tps[2] - tps[1], sp[0], sp[1], sp[2], verdict, n, share(new long[n + 1], layers, n), Double.NaN,
                        1.0, fr[0], fr[1], ppl, md.speculative.lastStats().acceptanceRate()));
                }
            }
            return new Result(rows, layers, prompts.size(), st.newTokens(), st.repeats(), warmup, settled);
        } finally {
            for (Mode md : modes) md.close();
        }
    }

    /** The verdict on a row's per-round speed-ups; {@code cannotBeFaster}: an early-exit row where no head may exit. */
    static Verdict verdict(boolean cannotBeFaster, double median, double low, double high) {
        if (cannotBeFaster && low > 1 + FAILURE_MARGIN) return Verdict.MEASUREMENT_FAILURE;
        boolean straddles = low <= 1 && high >= 1;
        return straddles || high - low > NOISY_SPREAD * median ? Verdict.NOISY : Verdict.OK;
    }

    /** {median, min, max} of the values. */
    private static double[] medianAndRange(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        double median = v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
        return new double[] {median, v[0], v[v.length - 1]};
    }

    /** One setting of the sweep with its own decoder, and what its latest run produced. */
    private static final class Mode implements AutoCloseable {
        final String name;
        final EarlyExitPolicy policy; // early-exit modes; else null
        final float threshold;
        final EarlyExitGenerator generator; // early exit or the full model; else
        final SelfSpeculativeDecoder speculative;
        final List<int[]> out = new ArrayList<>();
        EarlyExitGenerator.Stats eeStats;

        Mode(String name, EarlyExitPolicy policy, float threshold, EarlyExitGenerator generator, SelfSpeculativeDecoder speculative) {
            this.name = name;
            this.policy = policy;
            this.threshold = threshold;
            this.generator = generator;
            this.speculative = speculative;
        }

        /** Decodes every prompt once; returns generated tokens per second of wall time. */
        double timedRun(List<int[]> prompts, GenerationConfig cfg, int batch, long tokens) {
            out.clear();
            long[] exits = new long[generator == null ? 1 : generator.lastStats().exitCounts().length];
            long rowLayers = 0, generated = 0;
            double headLayers = 0;
            long t0 = System.nanoTime();
            for (int from = 0; from < prompts.size(); from += batch) {
                List<int[]> chunk = prompts.subList(from, Math.min(prompts.size(), from + batch));
                if (generator == null) {
                    for (GenerationResult r : speculative.generate(chunk, cfg, null)) out.add(r.tokens());
                    continue;
                }
                for (GenerationResult r : generator.generate(chunk, cfg, null)) out.add(r.tokens());
                EarlyExitGenerator.Stats s = generator.lastStats();
                if (exits.length != s.exitCounts().length) exits = new long[s.exitCounts().length];
                for (int l = 0; l < exits.length; l++) exits[l] += s.exitCounts()[l];
                rowLayers += s.rowLayers();
                headLayers += s.headLayers();
                generated += s.generatedTokens();
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (generator != null) eeStats = new EarlyExitGenerator.Stats(prompts.size(), 0, (int) generated, exits, rowLayers, 0, 0, headLayers, 0, 0);
            return tokens / seconds;
        }

        @Override
        public void close() {
            if (generator != null) generator.close();
            if (speculative != null) speculative.close();
        }
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
                ops.linearCrossEntropy(loss, null, null, null, null, normed, m.weights().lmHead(), s.of(targets, n), null, 1f);
                for (float l : loss.toFloatArray()) nll += l;
                count += n - p0;
            }
        }
        return count == 0 ? Double.NaN : Math.exp(nll / count);
    }
}
