package dev.eetune.cli;

import dev.eetune.eval.CostProjection;
import dev.eetune.eval.ExitTrace;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.eval.ThresholdCalibration;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitHead;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code ee calibrate}: per-exit thresholds for a target teacher-forced agreement, chosen on one held-out split,
 * checked on a second (agreement, cost-model and wall-clock speed-up), and saved beside the heads.
 */
@Command(name = "calibrate", mixinStandardHelpOptions = true, description = "Choose per-exit thresholds for a target agreement with the full model (saved beside the heads).")
final class CalibrateCommand implements Callable<Integer> {
    @Mixin ModelOptions model;
    @Mixin HeldOutText text;

    @Option(names = "--heads", required = true, description = "heads.safetensors, or the folder `ee tune --out` wrote (thresholds.json is written beside it).") Path heads;
    @Option(names = "--agreement", defaultValue = "0.95", description = "Target teacher-forced agreement with the full model.") double agreement;
    @Option(names = "--confidence", description = "softmax | gate | saturation | cascade (gate, then softmax confirms) (default: gate when the heads have gates, else softmax).") String confidence;
    @Option(names = "--skip-windows", defaultValue = "64", description = "Windows of --data to skip first: those `ee gates` trained on.") long skip;
    @Option(names = "--windows", defaultValue = "128", description = "Windows per split (calibration, held-out), spread evenly over --data after "
        + "--skip-windows and dealt to the two splits in turn.") int windows;
    @Option(names = "--z", defaultValue = "1.645", description = "z of the one-sided Wilson bound the calibration split's whole agreement must keep at the target, "
        + "over its effective positions (windows are the independent draws; 0: the plain rate).") double z;
    @Option(names = "--min-exits", defaultValue = "20", description = "Fewest calibration positions an exit must take to be enabled.") int minExits;
    @Option(names = "--prompts", defaultValue = "8", description = "Held-out windows whose first --prompt-tokens tokens time the decoder.") int prompts;
    @Option(names = "--prompt-tokens", defaultValue = "16", description = "Tokens per prompt for the wall-clock check (--compare).") int promptTokens;
    @Option(names = "--max-tokens", defaultValue = "64", description = "New tokens per timing prompt.") int maxTokens;
    @Option(names = "--repeats", defaultValue = "5", description = "Timed runs (median reported).") int repeats;
    @Option(names = "--compare", description = "Also calibrate every other confidence method at the same target and print a comparison, "
        + "with the cost each method's held-out decisions would have on Llama-3-8B and Qwen2-0.5B shapes (docs/exit-gates.md).") boolean compare;

    @Override
    public Integer call() {
        OptionChecks.atLeast("--windows", windows, 1);
        OptionChecks.atLeast("--skip-windows", skip, 0);
        OptionChecks.atLeast("--min-exits", minExits, 1);
        OptionChecks.atLeast("--prompts", prompts, 1);
        OptionChecks.atLeast("--prompt-tokens", promptTokens, 1);
        OptionChecks.atLeast("--max-tokens", maxTokens, 1);
        OptionChecks.atLeast("--repeats", repeats, 1);
        ThresholdCalibration.Settings settings = new ThresholdCalibration.Settings(agreement, z, minExits); // --agreement and --z too, before any work
        Path file = EvalCommand.headsFile(heads);
        try (LlamaModel backbone = model.loadModel(text.quiet); EarlyExitModel ee = EarlyExitModel.load(backbone, file)) {
            Tokenizer tok = model.loadTokenizer(backbone.config().vocabSize());
            ConfidenceMethod method = confidence != null ? ConfidenceMethod.parse(confidence) : ee.hasGates() ? ConfidenceMethod.GATE : ConfidenceMethod.SOFTMAX;
            List<List<int[]>> splits = text.spread(tok, backbone.config().maxSeqLen(), skip, windows, 2);
            List<int[]> a = splits.get(0), b = splits.get(1);
            int[] zeros = new int[windows];
            ExitTrace ta = ExitTrace.of(ee, a, zeros), tb = ExitTrace.of(ee, b, zeros);
            ThresholdCalibration.Result r = ThresholdCalibration.calibrate(ee, ta, tb, method, settings);
            int[] layers = ee.heads().stream().mapToInt(ExitHead::layer).toArray();
            System.out.print(r.toTable(layers));
            int n = backbone.config().nLayers();
            System.out.printf(Locale.ROOT, "cost-model speed-up (heads, scores and the final LM head counted): calibration %.3fx, held-out %.3fx%n",
                r.calibration().projectedSpeedup(), r.heldOut().projectedSpeedup());
            List<int[]> timing = new ArrayList<>();
            for (int i = 0; i < Math.min(prompts, b.size()); i++) timing.add(Arrays.copyOf(b.get(i), Math.min(promptTokens, b.get(i).length)));
            if (compare) compare(ee, ta, tb, settings, timing, r);
            else printWallClock(ThresholdCalibration.wallClockSpeedup(ee, timing, r.policy(), maxTokens, repeats), timing.size());
            Path saved = ThresholdCalibration.save(file, r);
            System.out.println("thresholds written to " + saved + " (`ee generate --heads` uses them when --threshold is not given)");
        }
        return 0;
    }

    /** After heads were written again: thresholds beside them belong to the heads replaced (ThresholdCalibration.saved refuses them). */
    static void noteOutdatedThresholds(Path headsFile) {
        Path t = ThresholdCalibration.fileFor(headsFile);
        if (Files.isRegularFile(t)) System.err.println("note: " + t + " was calibrated for the heads just replaced: run `ee calibrate --heads " + headsFile.toAbsolutePath().getParent() + "` again before `ee generate` uses it");
    }

    private void printWallClock(ThresholdCalibration.WallClock w, int promptCount) {
        System.out.printf(Locale.ROOT, "held-out wall-clock decode speed-up: %.3fx (min %.3f, max %.3f over %d rounds; full %.1f tok/s, early exit %.1f tok/s; %d prompts x %d tokens, batch 1)%n",
            w.speedup(), w.min(), w.max(), repeats, w.fullTokensPerSecond(), w.tokensPerSecond(), promptCount, maxTokens);
    }

    /** Every method calibrated at the same target, timed in one round-robin against the full model; {@code main}: the run's own method. */
    private void compare(EarlyExitModel ee, ExitTrace ta, ExitTrace tb, ThresholdCalibration.Settings st, List<int[]> timing, ThresholdCalibration.Result main) {
        int n = ee.backbone().config().nLayers();
        ExitArchitecture[] archs = ee.heads().stream().map(ExitHead::architecture).toArray(ExitArchitecture[]::new);
        List<ThresholdCalibration.Result> results = new ArrayList<>();
        int mainIndex = -1;
        for (ConfidenceMethod m : ConfidenceMethod.values()) {
            if (m.needsGates() && !ee.hasGates()) continue;
            if (m == main.method()) mainIndex = results.size();
            results.add(m == main.method() ? main : ThresholdCalibration.calibrate(ee, ta, tb, m, st));
        }
        List<ThresholdCalibration.WallClock> walls = ThresholdCalibration.wallClockSpeedups(ee, timing, results.stream().map(ThresholdCalibration.Result::policy).toList(),
            maxTokens, repeats);
        printWallClock(walls.get(mainIndex), timing.size());
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%n%-11s %9s %10s %10s %15s", "confidence", "TF-agree", "cost x", "wall x", "wall min..max"));
        for (CostProjection.Shape s : CostProjection.SHAPES) sb.append(String.format(Locale.ROOT, " %13s", s.name() + " x"));
        sb.append("   (held-out split; cost x = (N + final LM head) / layers per token, heads, scores and the final LM head counted; wall x: median over ")
            .append(repeats).append(" rounds of the method's rate / the full model's in the same round, all methods in one round-robin; thresholds)\n");
        for (int i = 0; i < results.size(); i++) {
            ThresholdCalibration.Result r = results.get(i);
            ThresholdCalibration.WallClock wall = walls.get(i);
            sb.append(String.format(Locale.ROOT, "%-11s %8.2f%% %9.3fx %9.3fx %7.3f..%.3f", r.method().label(), 100 * r.heldOut().agreement(), r.heldOut().projectedSpeedup(),
                wall.speedup(), wall.min(), wall.max()));
            for (CostProjection.Shape s : CostProjection.SHAPES) {
                sb.append(String.format(Locale.ROOT, " %12.3fx", CostProjection.project(tb, r.policy(), archs, n, s.config()).projectedSpeedup()));
            }
            sb.append("   ").append(r.thresholds());
            if (r.method() == ConfidenceMethod.CASCADE) sb.append(" softmax ").append(r.policy().confirm());
            sb.append('\n');
        }
        // the bound any cheap score could reach with these heads: a perfect gate exits exactly where the head agrees, at
        // the exits the cost-aware calibration keeps on (an exit whose head costs more than it saves stays off)
        boolean[][] agrees = tb.agrees();
        float[][] perfect = new float[agrees.length][];
        for (int i = 0; i < agrees.length; i++) {
            perfect[i] = new float[agrees[i].length];
            for (int p = 0; p < agrees[i].length; p++) perfect[i][p] = agrees[i][p] ? 0.99f : 0.01f;
        }
        ExitTrace oracle = new ExitTrace(tb.layers(), perfect, perfect, perfect, agrees, tb.gateHidden(), tb.windows());
        EarlyExitPolicy perfectGate = ThresholdCalibration.choose(oracle, ConfidenceMethod.GATE, st, ExitTrace.Costs.of(ee, ConfidenceMethod.GATE));
        ExitTrace.Decisions d = oracle.decide(perfectGate, ee);
        sb.append(String.format(Locale.ROOT, "%-11s %8.2f%% %9.3fx %10s %15s", "perfect", 100 * d.agreement(), d.projectedSpeedup(), "-", "-"));
        for (CostProjection.Shape s : CostProjection.SHAPES) {
            sb.append(String.format(Locale.ROOT, " %12.3fx", CostProjection.project(oracle, perfectGate, archs, n, s.config()).projectedSpeedup()));
        }
        sb.append("   (a gate that is never wrong, at the exits worth keeping: the upper bound with these heads; exits");
        for (double share : d.exitShare()) sb.append(String.format(Locale.ROOT, " %.1f%%", 100 * share));
        sb.append(")\n");
        System.out.print(sb);
    }
}
