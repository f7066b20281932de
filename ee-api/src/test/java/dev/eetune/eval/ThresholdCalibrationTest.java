package dev.eetune.eval;

import dev.eetune.exit.ExitArchitecture;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.model.LlamaConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Threshold calibration on synthetic traces (scores and agreement drawn with a known relation) and its file. */
class ThresholdCalibrationTest {
    /** Two exits; a position's head agrees with probability = its score (a perfectly calibrated score). */
    static ExitTrace synthetic(long seed, int n) {
        Random r = new Random(seed);
        float[][] score = new float[2][n];
        boolean[][] agrees = new boolean[2][n];
        for (int h = 0; h < 2; h++) {
            for (int p = 0; p < n; p++) {
                score[h][p] = r.nextFloat();
                agrees[h][p] = r.nextFloat() < score[h][p];
            }
        }
        return new ExitTrace(new int[] {1, 2}, score, score, score, agrees, 0);
    }

    /** stories260K's shape with 3 layers: an {@code mlp} head costs 1.45 layers, a {@code norm} head 0.72. */
    static final LlamaConfig SHAPE = new LlamaConfig(64, 172, 3, 8, 4, 8, 512, 256, 1e-5f, 10000f, null, false, false, false, LlamaConfig.LLAMA);
    static final int[] EXITS = {1, 2};

    static ExitTrace.Costs costs(ExitArchitecture arch, ConfidenceMethod method) {
        return ExitTrace.Costs.of(SHAPE, new ExitArchitecture[] {arch, arch}, EXITS, method, 16);
    }

    static ExitTrace.Decisions decide(ExitTrace t, EarlyExitPolicy p, ExitArchitecture arch) {
        return t.decide(p, costs(arch, p.confidence()));
    }

    @Test
    void theWholeMeetsTheTargetOnTheCalibrationTraceAndCloseToItOnAnother() {
        ExitTrace a = synthetic(1, 8000), b = synthetic(2, 8000);
        for (ConfidenceMethod m : new ConfidenceMethod[] {ConfidenceMethod.GATE, ConfidenceMethod.SOFTMAX, ConfidenceMethod.CASCADE}) {
            for (double target : new double[] {0.8, 0.9, 0.95}) {
                ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(target, 1.645, 20);
                EarlyExitPolicy p = ThresholdCalibration.choose(a, m, st, costs(ExitArchitecture.NORM, m));
                double onA = a.agreement(p), onB = b.agreement(p);
                assertThat(onA).as("%s: calibration split at target %s", m, target).isGreaterThanOrEqualTo(target);
                assertThat(onB).as("%s: held-out split at target %s", m, target).isGreaterThan(target - 0.015);
                // softmax pays a 0.72-layer head on every row: it gains only by taking 36% of them at exit 1, which 95% forbids
                if (m != ConfidenceMethod.SOFTMAX || target < 0.95) {
                    assertThat(p.thresholds().values()).as("%s: some exit is enabled at target %s", m, target).anyMatch(v -> v < 1f);
                }
                assertThat(decide(a, p, ExitArchitecture.NORM).layersPerToken()).as("%s: never dearer than the full model", m).isLessThan(costs(ExitArchitecture.NORM, m).fullCost() + 1e-9);
                assertThat(p.confidence()).isEqualTo(m);
            }
        }
    }

    @Test
    void anUnreachableTargetDisablesEveryExit() {
        ExitTrace a = synthetic(3, 2000);
        EarlyExitPolicy p = ThresholdCalibration.choose(a, ConfidenceMethod.SOFTMAX, new ThresholdCalibration.Settings(1.0, 1.645, 20),
            costs(ExitArchitecture.NORM, ConfidenceMethod.SOFTMAX));
        assertThat(p.thresholds()).containsEntry(1, 1f).containsEntry(2, 1f);
    }

    /**
     * A perfect score at both exits of a 3-layer model whose LM head costs 0.72 layers, with {@code mlp} heads of 1.45
     * layers: a token leaving after layer 2 saves a layer and the LM head, 1.72, and pays its head, so it gains 0.27;
     * only 5% of the rows reaching exit 2 agree there, so it gains 0.014 per row while its gate costs 0.023 on every
     * row. The calibration keeps exit 1 and switches exit 2 off; with {@code norm} heads (0.72 layers, gaining 1.0 per
     * exiting token) both pay and both stay on.
     */
    /**
     * A layer head's own layer in the cost model: with softmax decisions every row runs it; with a cheap score a row
     * pays its K/V there (2 dim kvDim of a layer's multiply-adds) and only the rows the head runs for pay the rest.
     */
    @Test
    void aLayerHeadCostsTheRowsThatDoNotTakeItOnlyTheirKv() {
        double kv = dev.eetune.exit.ExitCost.kvLayers(SHAPE);
        assertThat(kv).isEqualTo(2.0 * 64 * 32 / dev.eetune.exit.ExitCost.layerMacs(SHAPE)).isBetween(0.05, 0.1);
        for (ConfidenceMethod m : ConfidenceMethod.values()) {
            ExitTrace.Costs layer = costs(ExitArchitecture.LAYER, m), lmOnly = costs(ExitArchitecture.EMBEDDING, m);
            boolean cheap = m != ConfidenceMethod.SOFTMAX;
            assertThat(layer.visit()[0] - lmOnly.visit()[0]).as("%s: a visit", m).isCloseTo(cheap ? kv : 1, org.assertj.core.data.Offset.offset(1e-12));
            assertThat(layer.head()[0] - lmOnly.head()[0]).as("%s: a row the head runs for", m).isCloseTo(cheap ? 1 : 0, org.assertj.core.data.Offset.offset(1e-12));
        }
    }

    @Test
    void anExitThatSavesLessThanItCostsIsSwitchedOff() {
        int n = 4000;
        Random r = new Random(5);
        float[][] score = new float[2][n];
        boolean[][] agrees = new boolean[2][n];
        for (int p = 0; p < n; p++) {
            agrees[0][p] = r.nextFloat() < 0.4;
            agrees[1][p] = agrees[0][p] || r.nextFloat() < 0.05;
            for (int h = 0; h < 2; h++) score[h][p] = agrees[h][p] ? 0.9f : 0.1f;
        }
        ExitTrace t = new ExitTrace(EXITS, score, score, score, agrees, 16);
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(0.99, 1.645, 20);
        EarlyExitPolicy mlp = ThresholdCalibration.choose(t, ConfidenceMethod.GATE, st, costs(ExitArchitecture.MLP, ConfidenceMethod.GATE));
        assertThat(mlp.canExit(1)).isTrue();
        assertThat(mlp.canExit(2)).as("exit 2 gains 0.27 layers on 5% of its rows and its gate costs 0.023 on each").isFalse();
        EarlyExitPolicy norm = ThresholdCalibration.choose(t, ConfidenceMethod.GATE, st, costs(ExitArchitecture.NORM, ConfidenceMethod.GATE));
        assertThat(norm.canExit(1)).isTrue();
        assertThat(norm.canExit(2)).isTrue();
        assertThat(decide(t, mlp, ExitArchitecture.MLP).layersPerToken())
            .as("switching exit 2 off is cheaper than keeping it on")
            .isLessThan(decide(t, new EarlyExitPolicy(Map.of(1, 0.5f, 2, 0.5f), false, ConfidenceMethod.GATE), ExitArchitecture.MLP).layersPerToken());
    }

    /**
     * Two independent signals, each of which one score sees: the head agrees (up to 2% noise) only when both are above
     * 0.3. The gate alone, or the softmax alone, finds the agreeing rows at 70% precision; the cascade (gate passes AND
     * softmax passes) at 98%, and so costs less than either at the same target on held-out data.
     */
    @Test
    void theCascadeCombinesTwoScoresAndCostsLessThanEither() {
        ExitTrace a = twoSignals(6, 8000), b = twoSignals(7, 8000);
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(0.95, 1.645, 20);
        double[] cost = new double[3];
        ConfidenceMethod[] methods = {ConfidenceMethod.GATE, ConfidenceMethod.SOFTMAX, ConfidenceMethod.CASCADE};
        for (int i = 0; i < 3; i++) {
            EarlyExitPolicy p = ThresholdCalibration.choose(a, methods[i], st, costs(ExitArchitecture.NORM, methods[i]));
            ExitTrace.Decisions d = decide(b, p, ExitArchitecture.NORM);
            assertThat(d.agreement()).as("%s held out", methods[i]).isGreaterThan(0.94);
            cost[i] = d.layersPerToken();
        }
        assertThat(cost[2]).as("cascade against gate").isLessThan(cost[0]);
        assertThat(cost[2]).as("cascade against softmax").isLessThan(cost[1]);
    }

    static ExitTrace twoSignals(long seed, int n) {
        Random r = new Random(seed);
        float[][] gate = new float[2][n], softmax = new float[2][n];
        boolean[][] agrees = new boolean[2][n];
        for (int h = 0; h < 2; h++) {
            for (int p = 0; p < n; p++) {
                gate[h][p] = r.nextFloat();
                softmax[h][p] = r.nextFloat();
                agrees[h][p] = (gate[h][p] > 0.3f && softmax[h][p] > 0.3f) != r.nextFloat() < 0.02f;
            }
        }
        return new ExitTrace(EXITS, softmax, gate, gate, agrees, 16);
    }

    /** The trace's cascade decisions are exactly "gate passes AND softmax passes", at the first exit where both do. */
    @Test
    void cascadeDecisionsAreGateAndSoftmax() {
        ExitTrace t = twoSignals(8, 3000);
        EarlyExitPolicy p = new EarlyExitPolicy(Map.of(1, 0.6f, 2, 0.3f), false, ConfidenceMethod.CASCADE, Map.of(1, 0.7f, 2, 0.5f));
        long ok = 0;
        float[][] g = t.gate(), s = t.softmax();
        for (int q = 0; q < t.positions(); q++) {
            boolean agree = true;
            if (g[0][q] >= 0.6f && s[0][q] >= 0.7f) agree = t.agrees()[0][q];
            else if (g[1][q] >= 0.3f && s[1][q] >= 0.5f) agree = t.agrees()[1][q];
            if (agree) ok++;
        }
        assertThat(t.agreement(p)).isEqualTo((double) ok / t.positions());
        assertThat(p.exits(1, 0.6f, 0.7f)).isTrue();
        assertThat(p.exits(1, 0.59f, 0.99f)).isFalse();
        assertThat(p.exits(1, 0.99f, 0.69f)).isFalse();
    }

    @Test
    void wilsonBoundIsBelowTheRateAndTightensWithMoreData() {
        assertThat(ThresholdCalibration.lowerBound(0.95, 100, 1.645)).isLessThan(0.95).isGreaterThan(0.89);
        assertThat(ThresholdCalibration.lowerBound(0.95, 10000, 1.645)).isGreaterThan(ThresholdCalibration.lowerBound(0.95, 100, 1.645));
        assertThat(ThresholdCalibration.lowerBound(0.95, 100, 0)).isEqualTo(0.95);
    }

    /**
     * A rate over windows is worth as many independent positions as the spread of the windows' own rates allows:
     * windows that each agree wholly or not at all are worth one draw each (W - 1 by the unbiased variance), windows of
     * one rate all their positions, and never more than the positions.
     */
    @Test
    void windowsAreTheIndependentDraws() {
        int w = 40, m = 50;
        int[] windows = new int[w];
        java.util.Arrays.fill(windows, m);
        long[] whole = new long[w], even = new long[w];
        for (int i = 0; i < w; i++) {
            whole[i] = i % 2 == 0 ? m : 0;
            even[i] = 45;
        }
        assertThat(ExitTrace.effectivePositions(whole, windows)).isCloseTo(w - 1, org.assertj.core.data.Offset.offset(1e-9));
        assertThat(ExitTrace.effectivePositions(even, windows)).isEqualTo(w * m);
        long[] one = {45};
        assertThat(ExitTrace.effectivePositions(one, new int[] {m})).as("one window: nothing to tell the spread by").isEqualTo(m);
    }

    /**
     * Windows that differ in how easy their text is (a window's offset moves every position's chance to agree): the
     * trace that knows its windows bounds the agreement lower than one taking its positions as independent, so its
     * calibration is stricter, and on twenty more traces of the same kind it falls short of the target less often.
     */
    @Test
    void calibrationOnWindowsOfDifferentTextsHoldsOnOthers() {
        double target = 0.9;
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(target, 1.645, 20);
        ExitTrace.Costs c = costs(ExitArchitecture.NORM, ConfidenceMethod.GATE);
        ExitTrace a = clustered(21, 100, 80), positionsOnly = new ExitTrace(a.layers(), a.softmax(), a.gate(), a.saturation(), a.agrees(), a.gateHidden());
        EarlyExitPolicy windowed = ThresholdCalibration.choose(a, ConfidenceMethod.GATE, st, c), independent = ThresholdCalibration.choose(positionsOnly, ConfidenceMethod.GATE, st, c);
        ExitTrace.Decisions byWindows = a.decide(windowed, c);
        assertThat(byWindows.effectivePositions()).as("effective positions of 8000").isLessThan(4000);
        assertThat(byWindows.agreementBound(1.645)).isGreaterThanOrEqualTo(target);
        assertThat(a.agreement(windowed)).as("stricter").isGreaterThan(a.agreement(independent));
        int shortWindowed = 0, shortIndependent = 0;
        for (int k = 0; k < 20; k++) {
            ExitTrace b = clustered(100 + k, 100, 80);
            if (b.agreement(windowed) < target) shortWindowed++;
            if (b.agreement(independent) < target) shortIndependent++;
        }
        assertThat(shortWindowed).as("held-out traces below the target, windows known (positions taken as independent: %d)", shortIndependent)
            .isLessThan(shortIndependent).isLessThanOrEqualTo(4);
    }

    /** {@code w} windows of {@code m} positions; a window's texts shift every position's chance to agree by one offset (sd 0.15). */
    static ExitTrace clustered(long seed, int w, int m) {
        Random r = new Random(seed);
        int n = w * m;
        float[][] score = new float[2][n];
        boolean[][] agrees = new boolean[2][n];
        int[] windows = new int[w];
        for (int i = 0; i < w; i++) {
            windows[i] = m;
            double offset = 0.15 * r.nextGaussian();
            for (int j = 0; j < m; j++) {
                for (int h = 0; h < 2; h++) {
                    int p = i * m + j;
                    score[h][p] = r.nextFloat();
                    agrees[h][p] = r.nextFloat() < score[h][p] + offset;
                }
            }
        }
        return new ExitTrace(EXITS, score, score, score, agrees, 16, windows);
    }

    @Test
    void thresholdsFileRoundTripsAndBadFilesAreNamed(@TempDir Path dir) throws Exception {
        ExitTrace a = synthetic(4, 5000);
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(0.9, 1.645, 20);
        EarlyExitPolicy t = ThresholdCalibration.choose(a, ConfidenceMethod.SATURATION, st, costs(ExitArchitecture.NORM, ConfidenceMethod.SATURATION));
        ExitTrace.Decisions d = new ExitTrace.Decisions(a.agreement(t), new double[3], 3, 3, 5000);
        Path heads = Files.writeString(dir.resolve("heads.safetensors"), "the heads");
        Path file = ThresholdCalibration.save(heads, new ThresholdCalibration.Result(st, t, d, d, 5000, 5000));
        EarlyExitPolicy p = ThresholdCalibration.load(file);
        assertThat(p.confidence()).isEqualTo(ConfidenceMethod.SATURATION);
        assertThat(p.thresholds()).isEqualTo(t.thresholds());

        Files.writeString(file, Files.readString(file).replace("\"saturation\"", "\"entropy\""));
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining(file.toString()).hasMessageContaining("entropy");
        Files.writeString(file, "{\"format\":\"eetune-exit-thresholds\",\"version\":1,\"confidence\":\"gate\",\"thresholds\":{\"x\":0.5}}");
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining("'x' is not an exit layer");
        Files.writeString(file, "{\"format\":\"eetune-exit-thresholds\",\"version\":1,\"confidence\":\"gate\",\"thresholds\":{\"2\":-1}}");
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining("thresholds.2");
        Files.writeString(file, "[1,2");
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining(file.toString());
        EarlyExitPolicy c = new EarlyExitPolicy(Map.of(1, 0.6f, 2, 1f), false, ConfidenceMethod.CASCADE, Map.of(1, 0.75f));
        ThresholdCalibration.save(heads, new ThresholdCalibration.Result(st, c, d, d, 5000, 5000));
        assertThat(ThresholdCalibration.load(file)).isEqualTo(c);
        Files.writeString(file, Files.readString(file).replace("confirm_thresholds", "confirm"));
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining(file.toString()).hasMessageContaining("confirm_thresholds");
    }
    /**
     * From thresholds well above the target (exit 1 at 0.99, exit 2 off), the refinement loosens the enabled exit
     * step by step: cheaper, the target still met by the lower bound, and no more than a step's worth of agreement
     * above it (it spent the budget); a disabled exit stays disabled; at a target no step meets (100%) it changes nothing.
     */
    @Test
    void theRefinementSpendsTheErrorBudgetTheScansLeave() {
        ExitTrace a = synthetic(11, 8000);
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(0.9, 1.645, 20);
        for (ConfidenceMethod m : new ConfidenceMethod[] {ConfidenceMethod.GATE, ConfidenceMethod.CASCADE}) {
            EarlyExitPolicy start = new EarlyExitPolicy(Map.of(1, 0.99f, 2, 1f), false, m, m == ConfidenceMethod.CASCADE ? Map.of(1, 0.99f) : Map.of());
            ExitTrace.Costs c = costs(ExitArchitecture.NORM, m);
            EarlyExitPolicy refined = ThresholdCalibration.refine(a, st, start, c);
            ExitTrace.Decisions before = a.decide(start, c), after = a.decide(refined, c);
            assertThat(after.layersPerToken()).as("%s: cheaper", m).isLessThan(before.layersPerToken() - 0.1);
            assertThat(after.agreementBound(1.645)).as("%s: target kept", m).isGreaterThanOrEqualTo(0.9);
            assertThat(after.agreement()).as("%s: budget spent", m).isLessThan(0.9 + 0.012);
            assertThat(refined.canExit(2)).isFalse();
            EarlyExitPolicy unreachable = ThresholdCalibration.refine(a, new ThresholdCalibration.Settings(1.0, 1.645, 20), start, c);
            assertThat(unreachable).isEqualTo(start);
        }
    }
}
