package dev.eetune.eval;

import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitPolicy;
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

    @Test
    void theWholeMeetsTheTargetOnTheCalibrationTraceAndCloseToItOnAnother() {
        ExitTrace a = synthetic(1, 20000), b = synthetic(2, 20000);
        for (double target : new double[] {0.8, 0.9, 0.95}) {
            ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(target, 1.645, 20);
            Map<Integer, Float> t = ThresholdCalibration.choose(a, ConfidenceMethod.GATE, st);
            double onA = a.agreement(ConfidenceMethod.GATE, t), onB = b.agreement(ConfidenceMethod.GATE, t);
            assertThat(onA).as("calibration split at target %s", target).isGreaterThanOrEqualTo(target);
            assertThat(onB).as("held-out split at target %s", target).isGreaterThan(target - 0.01);
            assertThat(t.values()).as("some exit is enabled at target %s", target).anyMatch(v -> v < 1f);
        }
    }

    @Test
    void anUnreachableTargetDisablesEveryExit() {
        ExitTrace a = synthetic(3, 2000);
        Map<Integer, Float> t = ThresholdCalibration.choose(a, ConfidenceMethod.SOFTMAX, new ThresholdCalibration.Settings(1.0, 1.645, 20));
        assertThat(t).containsEntry(1, 1f).containsEntry(2, 1f);
    }

    @Test
    void wilsonBoundIsBelowTheRateAndTightensWithMoreData() {
        assertThat(ThresholdCalibration.lowerBound(95, 100, 1.645)).isLessThan(0.95).isGreaterThan(0.89);
        assertThat(ThresholdCalibration.lowerBound(9500, 10000, 1.645)).isGreaterThan(ThresholdCalibration.lowerBound(95, 100, 1.645));
        assertThat(ThresholdCalibration.lowerBound(95, 100, 0)).isEqualTo(0.95);
    }

    @Test
    void thresholdsFileRoundTripsAndBadFilesAreNamed(@TempDir Path dir) throws Exception {
        ExitTrace a = synthetic(4, 5000);
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(0.9, 1.645, 20);
        Map<Integer, Float> t = ThresholdCalibration.choose(a, ConfidenceMethod.SATURATION, st);
        ExitTrace.Decisions d = new ExitTrace.Decisions(a.agreement(ConfidenceMethod.SATURATION, t), new double[3], 3);
        Path file = ThresholdCalibration.save(dir, new ThresholdCalibration.Result(ConfidenceMethod.SATURATION, st, t, d, d, 5000, 5000));
        EarlyExitPolicy p = ThresholdCalibration.load(file);
        assertThat(p.confidence()).isEqualTo(ConfidenceMethod.SATURATION);
        assertThat(p.thresholds()).isEqualTo(t);
        Files.writeString(file, Files.readString(file).replace("\"saturation\"", "\"entropy\""));
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining(file.toString()).hasMessageContaining("entropy");
        Files.writeString(file, "{\"format\":\"eetune-exit-thresholds\",\"version\":1,\"confidence\":\"gate\",\"thresholds\":{\"x\":0.5}}");
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining("'x' is not an exit layer");
        Files.writeString(file, "{\"format\":\"eetune-exit-thresholds\",\"version\":1,\"confidence\":\"gate\",\"thresholds\":{\"2\":-1}}");
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining("thresholds.2");
        Files.writeString(file, "[1,2");
        assertThatThrownBy(() -> ThresholdCalibration.load(file)).hasMessageContaining(file.toString());
    }
}
