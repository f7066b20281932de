package dev.eetune.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.io.JsonFields;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Per-exit thresholds chosen for a target teacher-forced agreement (docs/exit-gates.md, "Calibrated thresholds").
 * For a precision level q, exits are fixed in layer order on a calibration trace: at exit L, among the positions no
 * earlier exit took, the lowest threshold is chosen whose exiting positions agree with the final layer at least q of
 * the time (at least {@code minExits} of them); an exit where none qualifies is disabled (τ = 1). The final layer
 * always agrees, so the whole agrees more than q. The level used is the lowest q (scanned down from 1 in steps of
 * 0.005; none: every exit disabled) whose whole agreement on the calibration trace still reaches the target by a one-sided lower confidence bound
 * (Wilson score, {@code z}). Also reads and writes the thresholds file kept beside the heads. Stateless: thread-safe.
 */
public final class ThresholdCalibration {
    static final String FORMAT = "eetune-exit-thresholds";
    static final int VERSION = 1;
    /** The file beside the heads that holds calibrated thresholds. */
    public static final String FILE_NAME = "thresholds.json";
    private static final ObjectMapper JSON = new ObjectMapper();

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
    public record Result(ConfidenceMethod method, Settings settings, Map<Integer, Float> thresholds, ExitTrace.Decisions calibration,
                         ExitTrace.Decisions heldOut, int calibrationPositions, int heldOutPositions) {
        public EarlyExitPolicy policy() { return new EarlyExitPolicy(thresholds, false, method); }

        public String toTable(int[] layers) {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "confidence %s, target agreement %.2f%% (z %.3f, at least %d exits)%n",
                method.label(), 100 * settings.target(), settings.z(), settings.minExits()));
            sb.append("thresholds:");
            for (Map.Entry<Integer, Float> e : thresholds.entrySet()) sb.append(String.format(Locale.ROOT, " @%d=%.4f", e.getKey(), e.getValue()));
            sb.append('\n').append(String.format(Locale.ROOT, "%-12s %9s %10s %7s", "split", "positions", "TF-agree", "layers"));
            for (int l : layers) sb.append(String.format(Locale.ROOT, " %6s", "@" + l));
            sb.append(String.format(Locale.ROOT, " %6s%n", "final"));
            row(sb, "calibration", calibrationPositions, calibration);
            row(sb, "held-out", heldOutPositions, heldOut);
            return sb.toString();
        }

        private static void row(StringBuilder sb, String name, int n, ExitTrace.Decisions d) {
            sb.append(String.format(Locale.ROOT, "%-12s %9d %9.2f%% %7.3f", name, n, 100 * d.agreement(), d.layersPerToken()));
            for (double s : d.exitShare()) sb.append(String.format(Locale.ROOT, " %5.1f%%", 100 * s));
            sb.append('\n');
        }
    }

    /** Chooses thresholds on {@code calibration} and reports their decisions there and on {@code heldOut}. */
    public static Result calibrate(EarlyExitModel ee, ExitTrace calibration, ExitTrace heldOut, ConfidenceMethod method, Settings st) {
        Map<Integer, Float> t = choose(calibration, method, st);
        return new Result(method, st, t, calibration.decide(method, t, ee), heldOut.decide(method, t, ee), calibration.positions(), heldOut.positions());
    }

    /** The thresholds, one per traced exit (see the class comment). */
    public static Map<Integer, Float> choose(ExitTrace trace, ConfidenceMethod method, Settings st) {
        Map<Integer, Float> best = new TreeMap<>();
        for (int l : trace.layers()) best.put(l, 1f); // every exit disabled: the full model
        int n = trace.positions();
        for (int step = 0; step <= 200; step++) { // q = 1 .. 0
            double q = 1 - 0.005 * step;
            Map<Integer, Float> t = atLevel(trace, method, q, st.minExits());
            double agree = trace.agreement(method, t);
            if (lowerBound((int) Math.round(agree * n), n, st.z()) < st.target()) break;
            best = t;
        }
        return best;
    }

    /** Per exit in layer order, the lowest threshold whose takings (positions no earlier exit took) agree at ≥ q. */
    static Map<Integer, Float> atLevel(ExitTrace trace, ConfidenceMethod method, double q, int minExits) {
        float[][] score = trace.scores(method);
        int n = trace.positions();
        boolean[] taken = new boolean[n];
        Map<Integer, Float> out = new TreeMap<>();
        for (int h = 0; h < trace.layers().length; h++) {
            int k = 0;
            Integer[] idx = new Integer[n];
            for (int p = 0; p < n; p++) if (!taken[p] && !Float.isNaN(score[h][p])) idx[k++] = p;
            Integer[] cand = Arrays.copyOf(idx, k);
            final int hh = h;
            Arrays.sort(cand, (a, b) -> Float.compare(score[hh][b], score[hh][a])); // highest score first
            float tau = 1f;
            int agree = 0;
            for (int i = 0; i < cand.length; i++) {
                if (trace.agrees()[h][cand[i]]) agree++;
                int count = i + 1;
                // a threshold must take every position with an equal score: test only at the end of a run of ties
                if (i + 1 < cand.length && score[h][cand[i + 1]] == score[h][cand[i]]) continue;
                float s = score[h][cand[i]];
                if (count >= minExits && s < 1f && (double) agree / count >= q) tau = s;
            }
            out.put(trace.layers()[h], tau);
            if (tau < 1f) for (Integer p : cand) if (score[h][p] >= tau) taken[p] = true;
        }
        return out;
    }

    /** Wilson score lower bound of a binomial proportion (the plain rate at z = 0). */
    static double lowerBound(int successes, int n, double z) {
        double p = (double) successes / n;
        if (z == 0) return p;
        double z2 = z * z, denom = 1 + z2 / n;
        return (p + z2 / (2 * n) - z * Math.sqrt(p * (1 - p) / n + z2 / (4.0 * n * n))) / denom;
    }

    /**
     * Wall-clock decode speed of {@code policy} against the full model on {@code prompts} (greedy, batch 1, the same
     * new tokens each): runs alternate full / early-exit {@code repeats} times after one warm-up of each. Returns
     * {median speed-up, min, max, median full tok/s, median early-exit tok/s}.
     */
    public static double[] wallClockSpeedup(EarlyExitModel ee, List<int[]> prompts, EarlyExitPolicy policy, int newTokens, int repeats) {
        LlamaModel m = ee.backbone();
        GenerationConfig cfg = GenerationConfig.greedy(newTokens, Set.of());
        int maxLen = prompts.stream().mapToInt(p -> p.length).max().orElse(1) + newTokens;
        double[] ratio = new double[Math.max(1, repeats)], full = new double[ratio.length], early = new double[ratio.length];
        try (EarlyExitGenerator f = new EarlyExitGenerator(m, null, EarlyExitPolicy.none(), 1, maxLen);
             EarlyExitGenerator e = new EarlyExitGenerator(m, ee, policy, 1, maxLen)) {
            tokensPerSecond(f, prompts, cfg);
            tokensPerSecond(e, prompts, cfg);
            for (int i = 0; i < ratio.length; i++) {
                full[i] = tokensPerSecond(f, prompts, cfg);
                early[i] = tokensPerSecond(e, prompts, cfg);
                ratio[i] = early[i] / full[i];
            }
        }
        Arrays.sort(ratio);
        Arrays.sort(full);
        Arrays.sort(early);
        return new double[] {ratio[ratio.length / 2], ratio[0], ratio[ratio.length - 1], full[full.length / 2], early[early.length / 2]};
    }

    private static double tokensPerSecond(EarlyExitGenerator g, List<int[]> prompts, GenerationConfig cfg) {
        long t0 = System.nanoTime(), tokens = 0;
        for (int[] p : prompts) tokens += g.generate(List.of(p), cfg, null).get(0).tokens().length - p.length;
        return tokens / ((System.nanoTime() - t0) / 1e9);
    }

    /** Writes the result as {@link #FILE_NAME} in {@code dir}, atomically. */
    public static Path save(Path dir, Result r) {
        ObjectNode m = JSON.createObjectNode();
        m.put("format", FORMAT).put("version", VERSION).put("confidence", r.method().label()).put("agreement_target", r.settings().target())
            .put("z", r.settings().z()).put("min_exits", r.settings().minExits());
        ObjectNode t = m.putObject("thresholds");
        for (Map.Entry<Integer, Float> e : r.thresholds().entrySet()) t.put(Integer.toString(e.getKey()), e.getValue());
        m.putObject("calibration").put("positions", r.calibrationPositions()).put("agreement", r.calibration().agreement()).put("layers_per_token", r.calibration().layersPerToken());
        m.putObject("held_out").put("positions", r.heldOutPositions()).put("agreement", r.heldOut().agreement()).put("layers_per_token", r.heldOut().layersPerToken());
        Path file = dir.resolve(FILE_NAME), tmp = dir.resolve(FILE_NAME + ".tmp");
        try {
            Files.writeString(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(m), StandardCharsets.UTF_8);
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot write " + file + ": " + e.getMessage(), e);
        }
        return file;
    }

    /** Reads a thresholds file written by {@link #save}: the policy it describes, every field checked. */
    public static EarlyExitPolicy load(Path file) {
        JsonNode m;
        try {
            m = JSON.readTree(Files.readString(file, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new IllegalArgumentException(file + ": not readable JSON: " + e.getMessage(), e);
        }
        if (m == null || !m.isObject()) throw new IllegalArgumentException(file + ": not a JSON object");
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
        JsonNode t = f.requiredObject("thresholds").node();
        Map<Integer, Float> thresholds = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = t.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            int layer;
            try {
                layer = Integer.parseInt(e.getKey());
            } catch (NumberFormatException x) {
                throw new IllegalArgumentException(file + ": thresholds: key '" + e.getKey() + "' is not an exit layer number");
            }
            if (!e.getValue().isNumber()) throw new IllegalArgumentException(file + ": thresholds." + layer + " must be a number, got " + e.getValue());
            float v = e.getValue().floatValue();
            if (!(v >= 0) || Float.isInfinite(v)) throw new IllegalArgumentException(file + ": thresholds." + layer + " must be >= 0 and finite, got " + v);
            thresholds.put(layer, v);
        }
        if (thresholds.isEmpty()) throw new IllegalArgumentException(file + ": no thresholds");
        try {
            return new EarlyExitPolicy(thresholds, false, method);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
    }
}
