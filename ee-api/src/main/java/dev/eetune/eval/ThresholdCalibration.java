package dev.eetune.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitCost;
import dev.eetune.exit.ExitHead;
import dev.eetune.model.LlamaConfig;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.ExitScores;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.io.JsonFields;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.zip.CRC32C;

/**
 * Per-exit thresholds chosen for a target teacher-forced agreement at the least cost (docs/exit-gates.md, "Calibrated
 * thresholds"). For a price λ (layers one disagreeing token is worth), exits are fixed in layer order on a calibration
 * trace: at exit L, among the positions no earlier exit took, the thresholds are chosen that maximise
 * takings · (N + F − L) − the exit's cost (scores, heads; F: the backbone's LM head, which an exit saves) − λ · disagreeing takings, with at least {@code minExits}
 * takings; an exit where no choice gains anything is disabled (τ = 1): so an exit whose head costs more than it saves
 * is switched off. With cascade confidence the choice is a pair (gate threshold, softmax confirmation threshold). Two
 * scans, each from strict to loose: λ down from {@link #PRICE_MAX} by factors of {@link #PRICE_STEP}, and (λ = 0) a
 * floor q on each exit's takings' agreement, down from 1 by {@link #PRECISION_STEP} — the Lagrangian skips operating
 * points where an exit's fixed cost makes the gain jump. Each keeps the last level before the first whose whole
 * agreement on the calibration trace falls below the target by a one-sided lower confidence bound (Wilson score,
 * {@code z}, over the trace's effective positions: its windows, not its tokens, are the independent draws;
 * {@link ExitTrace.Decisions#agreementBound}); the cheaper of the two on the calibration trace is used (none: every exit disabled), then
 * {@link #refine refined} one exit at a time up to the target. Also reads and
 * writes the thresholds file kept beside the heads. Stateless: thread-safe.
 */
public final class ThresholdCalibration {
    static final String FORMAT = "eetune-exit-thresholds";
    static final int VERSION = 1;
    /** The file beside the heads that holds calibrated thresholds. */
    public static final String FILE_NAME = "thresholds.json";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Logger LOG = LoggerFactory.getLogger(ThresholdCalibration.class);

    /** The highest price of a disagreement tried (layers per disagreeing token): in effect "no disagreement". */
    static final double PRICE_MAX = 1e4;
    /** Each price tried is the previous one divided by this. */
    static final double PRICE_STEP = 1.2;
    static final int PRICE_LEVELS = 70; // down to 1e4 / 1.2^70 ≈ 0.03: below any exit's gain per token
    /** The precision levels tried: 1, 1 - step, .., 0. */
    static final double PRECISION_STEP = 0.005;
    static final int PRECISION_LEVELS = 200;
    /** Cascade: gate thresholds tried per exit (quantiles of the gate scores reaching it, and 0: every row). */
    static final int GATE_LEVELS = 32;
    /** The share of the positions each refinement step takes more at one exit (see {@link #refine}). */
    static final double REFINE_STEP = 0.0025;

    private ThresholdCalibration() {}

    /** How thresholds are chosen: target agreement, the bound's z (0: the plain rate), the fewest exiting positions trusted. */
    public record Settings(double target, double z, int minExits) {
        public Settings {
            if (!(target > 0 && target <= 1)) throw new IllegalArgumentException("target agreement must be in (0, 1], got " + target);
            if (!(z >= 0) || Double.isInfinite(z)) throw new IllegalArgumentException("z must be >= 0 and finite, got " + z);
            if (minExits < 1) throw new IllegalArgumentException("minExits must be >= 1, got " + minExits);
        }
    }

    /** The chosen thresholds, the decisions they make on the calibration trace and on a second, held-out trace. */
    public record Result(Settings settings, EarlyExitPolicy policy, ExitTrace.Decisions calibration,
                         ExitTrace.Decisions heldOut, int calibrationPositions, int heldOutPositions) {
        public ConfidenceMethod method() { return policy.confidence(); }

        public Map<Integer, Float> thresholds() { return policy.thresholds(); }

        /** The exits left enabled (τ below 1). */
        public List<Integer> enabledExits() { return policy.thresholds().keySet().stream().filter(policy::canExit).toList(); }

        public String toTable(int[] layers) {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "confidence %s, target agreement %.2f%% (z %.3f, at least %d exits)%n",
                method().label(), 100 * settings.target(), settings.z(), settings.minExits()));
            sb.append("thresholds:");
            for (Map.Entry<Integer, Float> e : thresholds().entrySet()) {
                sb.append(String.format(Locale.ROOT, " @%d=%.4f", e.getKey(), e.getValue()));
                if (policy.confidence() == ConfidenceMethod.CASCADE && policy.canExit(e.getKey())) {
                    sb.append(String.format(Locale.ROOT, "+softmax %.4f", policy.confirmThreshold(e.getKey())));
                }
            }
            sb.append("; enabled: ").append(enabledExits().isEmpty() ? "none (the full model)" : enabledExits().toString());
            sb.append('\n').append(String.format(Locale.ROOT, "%-12s %9s %10s %9s %9s %7s", "split", "positions", "TF-agree", "bound", "effective", "layers"));
            for (int l : layers) sb.append(String.format(Locale.ROOT, " %6s", "@" + l));
            sb.append(String.format(Locale.ROOT, " %6s%n", "final"));
            row(sb, "calibration", calibrationPositions, calibration, settings.z());
            row(sb, "held-out", heldOutPositions, heldOut, settings.z());
            sb.append("(bound: the agreement's one-sided lower confidence bound at z over the effective positions, the positions over the design effect of their windows)\n");
            return sb.toString();
        }

        private static void row(StringBuilder sb, String name, int n, ExitTrace.Decisions d, double z) {
            sb.append(String.format(Locale.ROOT, "%-12s %9d %9.2f%% %8.2f%% %9.0f %7.3f", name, n, 100 * d.agreement(), 100 * d.agreementBound(z), d.effectivePositions(), d.layersPerToken()));
            for (double s : d.exitShare()) sb.append(String.format(Locale.ROOT, " %5.1f%%", 100 * s));
            sb.append('\n');
        }
    }

    /** Chooses thresholds on {@code calibration} and reports their decisions there and on {@code heldOut}. */
    public static Result calibrate(EarlyExitModel ee, ExitTrace calibration, ExitTrace heldOut, ConfidenceMethod method, Settings st) {
        EarlyExitPolicy p = choose(calibration, method, st, ExitTrace.Costs.of(ee, method));
        return new Result(st, p, calibration.decide(p, ee), heldOut.decide(p, ee), calibration.positions(), heldOut.positions());
    }

    /** The thresholds, one per traced exit (see the class comment). */
    public static EarlyExitPolicy choose(ExitTrace trace, ConfidenceMethod method, Settings st, ExitTrace.Costs costs) {
        if (!Arrays.equals(trace.layers(), costs.layers())) throw new IllegalArgumentException("costs for exits " + Arrays.toString(costs.layers())
            + ", trace of exits " + Arrays.toString(trace.layers()));
        Map<Integer, Float> off = new TreeMap<>();
        for (int l : trace.layers()) off.put(l, 1f);
        EarlyExitPolicy full = new EarlyExitPolicy(off, false, method); // every exit disabled: the full model
        EarlyExitPolicy byPrice = scan(trace, st, costs, full, PRICE_LEVELS, level -> atLevel(trace, method, PRICE_MAX / Math.pow(PRICE_STEP, level), 0, st.minExits(), costs));
        EarlyExitPolicy byPrecision = scan(trace, st, costs, full, PRECISION_LEVELS, level -> atLevel(trace, method, 0, 1 - PRECISION_STEP * level, st.minExits(), costs));
        return refine(trace, st, trace.decide(byPrice, costs).layersPerToken() <= trace.decide(byPrecision, costs).layersPerToken() ? byPrice : byPrecision, costs);
    }

    /**
     * Spends what the scans leave of the error budget. They move between operating points of the Lagrangian (and of
     * the precision floor), which jump: the last level that meets the target may be a point or more above it. From
     * their choice this loosens, one step at a time, the one threshold of an enabled exit (the cascade: its gate
     * threshold, its softmax confirmation, or both) that saves the most cost per disagreement it adds, each step letting
     * about {@link #REFINE_STEP} of the positions more pass it, while the cost falls and the agreement's lower bound
     * stays at the target.
     */
    static EarlyExitPolicy refine(ExitTrace trace, Settings st, EarlyExitPolicy start, ExitTrace.Costs costs) {
        boolean cascade = start.confidence() == ConfidenceMethod.CASCADE;
        float[][] score = trace.scores(start.confidence()), confirmScore = cascade ? trace.softmax() : null;
        int n = trace.positions(), step = Math.max(1, (int) Math.round(REFINE_STEP * n));
        float[][] sortedScore = sortedCopies(score), sortedConfirm = cascade ? sortedCopies(confirmScore) : null;
        EarlyExitPolicy current = start;
        ExitTrace.Decisions now = trace.decide(current, costs);
        while (true) {
            EarlyExitPolicy best = null;
            ExitTrace.Decisions bestDecisions = null;
            double bestRatio = 0;
            for (int h = 0; h < score.length; h++) {
                int layer = trace.layers()[h];
                if (!current.canExit(layer)) continue;
                // what a step loosens: the threshold; the cascade's gate, its confirmation, or both (a gate and a
                // softmax that agree on the rows pass none more when only one of them is loosened)
                for (int what : cascade ? new int[] {THRESHOLD_STEP, CONFIRM_STEP, THRESHOLD_STEP | CONFIRM_STEP} : new int[] {THRESHOLD_STEP}) {
                    Map<Integer, Float> thresholds = new TreeMap<>(current.thresholds()), confirm = new TreeMap<>(current.confirm());
                    boolean moved = false;
                    if ((what & THRESHOLD_STEP) != 0) moved |= loosen(thresholds, layer, current.threshold(layer), sortedScore[h], step);
                    if ((what & CONFIRM_STEP) != 0) moved |= loosen(confirm, layer, current.confirmThreshold(layer), sortedConfirm[h], step);
                    if (!moved) continue;
                    EarlyExitPolicy p = new EarlyExitPolicy(thresholds, false, current.confidence(), confirm);
                    ExitTrace.Decisions d = trace.decide(p, costs);
                    double saved = now.layersPerToken() - d.layersPerToken(), lost = now.agreement() - d.agreement();
                    if (!(saved > 0) || d.agreementBound(st.z()) < st.target()) continue;
                    double ratio = saved / Math.max(lost, 1e-12);
                    if (ratio > bestRatio) {
                        bestRatio = ratio;
                        best = p;
                        bestDecisions = d;
                    }
                }
            }
            if (best == null) return current;
            current = best;
            now = bestDecisions;
        }
    }

    private static final int THRESHOLD_STEP = 1, CONFIRM_STEP = 2;

    /** Puts into {@code thresholds} the value below {@code tau} that about {@code step} more of {@code sorted} pass; false when none is left. */
    private static boolean loosen(Map<Integer, Float> thresholds, int layer, float tau, float[] sorted, int step) {
        int at = firstAtLeast(sorted, tau) - step;
        if (at < 0) return false;
        thresholds.put(layer, sorted[at]);
        return true;
    }

    /** Each row of {@code scores} sorted ascending (NaN, no score, last: never a threshold). */
    private static float[][] sortedCopies(float[][] scores) {
        float[][] out = new float[scores.length][];
        for (int h = 0; h < scores.length; h++) {
            out[h] = scores[h].clone();
            Arrays.sort(out[h]);
        }
        return out;
    }

    /** The index of the first of {@code sorted} (ascending) that is at least {@code tau}; its length when none is. */
    private static int firstAtLeast(float[] sorted, float tau) {
        int lo = 0, hi = sorted.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] < tau) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /** The last of levels 0, 1, .. before the first whose agreement on {@code trace} has its lower bound below the target. */
    private static EarlyExitPolicy scan(ExitTrace trace, Settings st, ExitTrace.Costs costs, EarlyExitPolicy none, int levels, java.util.function.IntFunction<EarlyExitPolicy> atLevel) {
        EarlyExitPolicy best = none;
        for (int level = 0; level <= levels; level++) {
            EarlyExitPolicy p = atLevel.apply(level);
            if (trace.decide(p, costs).agreementBound(st.z()) < st.target()) break;
            best = p;
        }
        return best;
    }

    /**
     * Per exit in layer order, among the positions no earlier exit took, the thresholds of the highest gain
     * takings · (N + F − L) − the exit's cost − {@code price} · disagreeing takings, among those whose takings agree at
     * rate ≥ {@code precision}; none above 0: the exit is disabled (see the class comment).
     */
    static EarlyExitPolicy atLevel(ExitTrace trace, ConfidenceMethod method, double price, double precision, int minExits, ExitTrace.Costs costs) {
        float[][] score = trace.scores(method), softmax = trace.softmax();
        boolean[][] agrees = trace.agrees();
        int n = trace.positions();
        boolean cascade = method == ConfidenceMethod.CASCADE;
        boolean[] taken = new boolean[n];
        Map<Integer, Float> out = new TreeMap<>(), confirm = new TreeMap<>();
        for (int h = 0; h < trace.layers().length; h++) {
            int layer = trace.layers()[h], reach = 0;
            float[] rank = cascade ? softmax[h] : score[h], gate = score[h]; // takings are a prefix in rank's order
            long[] keys = new long[n];
            int k = 0;
            for (int p = 0; p < n; p++) {
                if (taken[p]) continue;
                reach++;
                if (!Float.isNaN(gate[p]) && !Float.isNaN(rank[p])) keys[k++] = (long) sortable(rank[p]) << 32 | p;
            }
            keys = Arrays.copyOf(keys, k);
            Arrays.sort(keys); // ascending rank: walked from the end
            int[] cand = new int[k];
            for (int i = 0; i < k; i++) cand[i] = (int) keys[k - 1 - i];
            double gain = costs.fullCost() - layer, head = costs.head()[h]; // the layers after it and the backbone's LM head
            // softmax pays the head on every row that reaches the exit, the others on the rows it runs for
            double fixed = reach * (costs.visit()[h] + (method == ConfidenceMethod.SOFTMAX ? head : 0));
            double perTaken = method.isCheap() && !cascade ? gain - head : gain;
            float[] gates = cascade ? gateLevels(gate, cand) : new float[] {Float.NEGATIVE_INFINITY};
            double bestValue = 0;
            float bestTau = 1f, bestConfirm = 1f; // disabled: gains nothing, costs nothing
            for (float tg : gates) {
                int passed = 0;
                for (int p : cand) if (gate[p] >= tg) passed++;
                double headCost = cascade ? passed * head : 0;
                int count = 0, wrong = 0;
                for (int i = 0; i < cand.length; i++) {
                    int p = cand[i];
                    if (gate[p] < tg) continue;
                    count++;
                    if (!agrees[h][p]) wrong++;
                    // a threshold takes every row with an equal score: test only at the end of a run of ties
                    int next = i + 1;
                    while (next < cand.length && gate[cand[next]] < tg) next++;
                    if (next < cand.length && rank[cand[next]] == rank[p]) continue;
                    if (count < minExits || !(rank[p] < 1f) || wrong > (1 - precision) * count) continue;
                    double value = count * perTaken - headCost - fixed - price * wrong;
                    if (value > bestValue) {
                        bestValue = value;
                        bestTau = cascade ? tg : rank[p];
                        bestConfirm = rank[p];
                    }
                }
            }
            out.put(layer, bestTau);
            if (bestTau < 1f) {
                if (cascade) confirm.put(layer, bestConfirm);
                for (int p : cand) if (cascade ? gate[p] >= bestTau && rank[p] >= bestConfirm : rank[p] >= bestTau) taken[p] = true;
            }
        }
        return new EarlyExitPolicy(out, false, method, confirm);
    }

    /** An int whose signed order is the float's order (finite floats and infinities). */
    private static int sortable(float f) {
        int b = Float.floatToIntBits(f);
        return b ^ ((b >> 31) & 0x7fffffff);
    }

    /** Cascade's gate thresholds to try at one exit: 0 (every row passes: softmax alone) and quantiles of the rows' gate scores below 1. */
    private static float[] gateLevels(float[] gate, int[] cand) {
        float[] g = new float[cand.length];
        for (int i = 0; i < g.length; i++) g[i] = gate[cand[i]];
        Arrays.sort(g);
        float[] out = new float[GATE_LEVELS + 1];
        for (int q = 0; q < GATE_LEVELS; q++) out[q + 1] = g.length == 0 ? 0f : Math.min(g[(int) ((long) q * g.length / GATE_LEVELS)], Math.nextDown(1f));
        return out;
    }

    /** Wilson score lower bound of a proportion {@code p} seen over {@code n} independent trials (the plain rate at z = 0). */
    static double lowerBound(double p, double n, double z) {
        if (z == 0) return p;
        double z2 = z * z, denom = 1 + z2 / n;
        return (p + z2 / (2 * n) - z * Math.sqrt(p * (1 - p) / n + z2 / (4.0 * n * n))) / denom;
    }

    /** A policy's wall-clock decode speed against the full model's: the median, least and greatest of the per-round ratios, and the median rates. */
    public record WallClock(double speedup, double min, double max, double fullTokensPerSecond, double tokensPerSecond) {}

    /** A timed run decodes its prompts again until at least this long has passed, so that one round is not timer noise. */
    static final long MIN_RUN_NANOS = 250_000_000L;

    /** {@link #wallClockSpeedups} of one policy. */
    public static WallClock wallClockSpeedup(EarlyExitModel ee, List<int[]> prompts, EarlyExitPolicy policy, int newTokens, int repeats) {
        return wallClockSpeedups(ee, prompts, List.of(policy), newTokens, repeats).get(0);
    }

    /**
     * Wall-clock decode speed of each of {@code policies} against the full model on {@code prompts} (greedy, batch 1,
     * the same new tokens each), all timed in one {@link ThresholdSweep#roundRobin} (warm-up rounds until every rate is
     * steady, then {@code repeats} rounds, each starting one decoder later), each run decoding the prompts again until
     * {@link #MIN_RUN_NANOS} have passed. A policy's speed-up is the median over the rounds of its rate over the full
     * model's in the same round: the machine's drift between rounds falls on both.
     */
    public static List<WallClock> wallClockSpeedups(EarlyExitModel ee, List<int[]> prompts, List<EarlyExitPolicy> policies, int newTokens, int repeats) {
        LlamaModel m = ee.backbone();
        GenerationConfig cfg = GenerationConfig.greedy(newTokens, Set.of());
        int maxLen = prompts.stream().mapToInt(p -> p.length).max().orElse(1) + newTokens;
        int rounds = Math.max(1, repeats);
        List<EarlyExitGenerator> decoders = new ArrayList<>();
        try {
            decoders.add(new EarlyExitGenerator(m, null, EarlyExitPolicy.none(), 1, maxLen));
            for (EarlyExitPolicy p : policies) decoders.add(new EarlyExitGenerator(m, ee, p, 1, maxLen));
            List<java.util.function.DoubleSupplier> runs = new ArrayList<>();
            for (EarlyExitGenerator g : decoders) runs.add(() -> tokensPerSecond(g, prompts, cfg));
            double[][] rates = ThresholdSweep.roundRobin(runs, ThresholdSweep.DEFAULT_MAX_WARMUP_ROUNDS, rounds, dev.eetune.progress.ProgressListener.NONE).rates();
            List<WallClock> out = new ArrayList<>();
            for (int i = 1; i < rates.length; i++) {
                double[] ratio = new double[rounds];
                for (int r = 0; r < rounds; r++) ratio[r] = rates[i][r] / rates[0][r];
                Arrays.sort(ratio);
                out.add(new WallClock(ratio[rounds / 2], ratio[0], ratio[rounds - 1], median(rates[0]), median(rates[i])));
            }
            return out;
        } finally {
            for (EarlyExitGenerator g : decoders) g.close();
        }
    }

    private static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        return v[v.length / 2];
    }

    private static double tokensPerSecond(EarlyExitGenerator g, List<int[]> prompts, GenerationConfig cfg) {
        long t0 = System.nanoTime(), tokens = 0, elapsed;
        do {
            for (int[] p : prompts) tokens += g.generate(List.of(p), cfg, null).get(0).tokens().length - p.length;
            elapsed = System.nanoTime() - t0;
        } while (elapsed < MIN_RUN_NANOS);
        return tokens / (elapsed / 1e9);
    }

    /** Where {@link #save} writes the thresholds of the heads in {@code headsFile}: {@link #FILE_NAME} beside it. */
    public static Path fileFor(Path headsFile) { return headsFile.toAbsolutePath().getParent().resolve(FILE_NAME); }

    /**
     * Writes the result, calibrated for the heads in {@code headsFile}, as {@link #FILE_NAME} beside that file,
     * atomically, with the heads file's size and CRC-32C ({@link #saved} refuses the thresholds once the heads change).
     */
    public static Path save(Path headsFile, Result r) {
        HeadsFingerprint heads = HeadsFingerprint.of(headsFile);
        ObjectNode m = JSON.createObjectNode();
        m.put("format", FORMAT).put("version", VERSION).put("confidence", r.method().label()).put("agreement_target", r.settings().target())
            .put("z", r.settings().z()).put("min_exits", r.settings().minExits());
        m.putObject("heads").put("bytes", heads.bytes()).put("crc32c", heads.crc32c());
        ObjectNode t = m.putObject("thresholds");
        for (Map.Entry<Integer, Float> e : r.thresholds().entrySet()) t.put(Integer.toString(e.getKey()), e.getValue());
        if (r.method() == ConfidenceMethod.CASCADE) {
            ObjectNode c = m.putObject("confirm_thresholds");
            for (Map.Entry<Integer, Float> e : r.policy().confirm().entrySet()) c.put(Integer.toString(e.getKey()), e.getValue());
        }
        m.putObject("calibration").put("positions", r.calibrationPositions()).put("agreement", r.calibration().agreement()).put("layers_per_token", r.calibration().layersPerToken());
        m.putObject("held_out").put("positions", r.heldOutPositions()).put("agreement", r.heldOut().agreement()).put("layers_per_token", r.heldOut().layersPerToken());
        Path file = fileFor(headsFile), tmp = file.resolveSibling(FILE_NAME + ".tmp");
        try {
            Files.writeString(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(m), StandardCharsets.UTF_8);
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot write " + file + ": " + e.getMessage(), e);
        }
        return file;
    }

    /**
     * The thresholds {@code ee calibrate} saved for these heads ({@link #fileFor}), or empty where there are none. Refuses
     * thresholds calibrated for other heads -- the heads file's size or CRC-32C differ from those recorded when they
     * were saved (the heads were tuned again, or their gates trained again, since) -- and thresholds for a layer
     * without an exit: either would silently give a policy no calibration stands behind. A file written before the
     * heads were recorded (2026-12-05) is used unchecked, with a warning.
     */
    public static Optional<EarlyExitPolicy> saved(EarlyExitModel ee, Path headsFile) {
        Path file = fileFor(headsFile);
        if (!Files.isRegularFile(file)) return Optional.empty();
        JsonNode m = readJson(file);
        JsonNode recorded = m.get("heads");
        if (recorded == null) {
            LOG.warn("{} does not record the heads it was calibrated for (written by an older `ee calibrate`): not checked against {}", file, headsFile);
        } else {
            JsonFields h = new JsonFields(file + ": heads", recorded);
            HeadsFingerprint then = new HeadsFingerprint(h.requiredLong("bytes"), h.requiredText("crc32c")), now = HeadsFingerprint.of(headsFile);
            if (!then.equals(now)) {
                throw new IllegalArgumentException(file + ": calibrated for heads of " + then + ", but " + headsFile + " now holds " + now
                    + ": the heads changed since (`ee tune` or `ee gates` wrote them again); run `ee calibrate --heads " + headsFile + "` again, or give --threshold");
            }
        }
        EarlyExitPolicy p = policy(file, m);
        Set<Integer> exits = new TreeSet<>();
        for (ExitHead head : ee.heads()) exits.add(head.layer());
        for (Map<Integer, Float> t : List.of(p.thresholds(), p.confirm())) {
            for (int layer : t.keySet()) {
                if (!exits.contains(layer)) throw new IllegalArgumentException(file + ": a threshold for layer " + layer + ", but the heads in " + headsFile + " exit after layers " + exits);
            }
        }
        return Optional.of(p);
    }

    /** Reads a thresholds file written by {@link #save}: the policy it describes, every field checked (not whose heads: {@link #saved}). */
    public static EarlyExitPolicy load(Path file) { return policy(file, readJson(file)); }

    private static JsonNode readJson(Path file) {
        JsonNode m;
        try {
            m = JSON.readTree(Files.readString(file, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new IllegalArgumentException(file + ": not readable JSON: " + e.getMessage(), e);
        }
        if (m == null || !m.isObject()) throw new IllegalArgumentException(file + ": not a JSON object");
        return m;
    }

    private static EarlyExitPolicy policy(Path file, JsonNode m) {
        JsonFields f = new JsonFields(file.toString(), m);
        String format = f.requiredText("format");
        if (!format.equals(FORMAT)) throw new IllegalArgumentException(file + ": format '" + format + "', expected '" + FORMAT + "'");
        int version = f.requiredInt("version");
        if (version != VERSION) throw new IllegalArgumentException(file + ": version " + version + ", but this build reads version " + VERSION);
        ConfidenceMethod method;
        try {
            method = ConfidenceMethod.parse(f.requiredText("confidence"));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
        Map<Integer, Float> thresholds = layerMap(file, f.requiredObject("thresholds").node(), "thresholds");
        if (thresholds.isEmpty()) throw new IllegalArgumentException(file + ": no thresholds");
        JsonNode c = m.get("confirm_thresholds");
        if (method == ConfidenceMethod.CASCADE && (c == null || !c.isObject())) {
            throw new IllegalArgumentException(file + ": cascade confidence needs the object confirm_thresholds (the softmax threshold per exit)");
        }
        Map<Integer, Float> confirm = c == null ? Map.of() : layerMap(file, c, "confirm_thresholds");
        try {
            return new EarlyExitPolicy(thresholds, false, method, confirm);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
    }

    /** What a thresholds file records of the heads file it was calibrated for: any rewrite of the heads changes it. */
    record HeadsFingerprint(long bytes, String crc32c) {
        static HeadsFingerprint of(Path file) {
            CRC32C crc = new CRC32C();
            long bytes = 0;
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
                for (int n; (n = ch.read(buf)) >= 0; buf.clear()) {
                    buf.flip();
                    crc.update(buf);
                    bytes += n;
                }
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage(), e);
            }
            return new HeadsFingerprint(bytes, String.format(Locale.ROOT, "%08x", crc.getValue()));
        }

        @Override
        public String toString() { return String.format(Locale.ROOT, "%,d bytes with CRC-32C %s", bytes, crc32c); }
    }

    /** A JSON object of exit layer number -> threshold (>= 0, finite), each bad entry named. */
    private static Map<Integer, Float> layerMap(Path file, JsonNode t, String name) {
        Map<Integer, Float> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = t.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            int layer;
            try {
                layer = Integer.parseInt(e.getKey());
            } catch (NumberFormatException x) {
                throw new IllegalArgumentException(file + ": " + name + ": key '" + e.getKey() + "' is not an exit layer number");
            }
            if (!e.getValue().isNumber()) throw new IllegalArgumentException(file + ": " + name + "." + layer + " must be a number, got " + e.getValue());
            float v = e.getValue().floatValue();
            if (!(v >= 0) || Float.isInfinite(v)) throw new IllegalArgumentException(file + ": " + name + "." + layer + " must be >= 0 and finite, got " + v);
            out.put(layer, v);
        }
        return out;
    }
}
