package dev.eetune.train;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Training settings that would train on silently (a NaN floor or exit weight, a negative weight, a learning rate of
 * infinity) are refused, saying which; clipping to 0 means no clipping, as the commands' help says.
 */
class TrainingSettingsTest {
    static TunerConfig tuner(double[] exitWeights, int weightWarmup, float clip) {
        return new TunerConfig(10, 2, 8, 1, LrSchedule.cosine(1e-3f, 1, 10, 1e-4f), 0f, clip, exitWeights, weightWarmup, false, false, false, 0, null, 10, 3, 3);
    }

    @Test
    void badSchedulesAreRefused() {
        assertThatThrownBy(() -> LrSchedule.cosine(Float.POSITIVE_INFINITY, 1, 10, 0f)).hasMessageContaining("learning rate must be > 0 and finite");
        assertThatThrownBy(() -> LrSchedule.cosine(1e-3f, 1, 10, Float.NaN)).hasMessageContaining("LR floor NaN");
        assertThatThrownBy(() -> LrSchedule.Decay.parse("bogus")).hasMessageContaining("'bogus'").hasMessageContaining("cosine, linear or constant");
        assertThat(LrSchedule.Decay.parse(" Linear ")).isEqualTo(LrSchedule.Decay.LINEAR);
    }

    @Test
    void exitWeightsMustBeFiniteNonNegativeAndNotAllZero() {
        assertThatThrownBy(() -> tuner(new double[] {1, Double.NaN}, 0, 1f)).hasMessageContaining("exit weight 1").hasMessageContaining("NaN");
        assertThatThrownBy(() -> tuner(new double[] {1, -1}, 0, 1f)).hasMessageContaining("exit weight 1").hasMessageContaining("-1.0");
        assertThatThrownBy(() -> tuner(new double[] {0, 0}, 0, 1f)).hasMessageContaining("at least one must be > 0");
        assertThatThrownBy(() -> tuner(null, -1, 1f)).hasMessageContaining("warm-up steps must be >= 0");
        assertThatThrownBy(() -> tuner(null, 0, Float.NaN)).hasMessageContaining("clip norm");
        double[] w = {1, 0.5};
        TunerConfig c = tuner(w, 0, 0f);
        w[1] = 7; // the config keeps its own copy
        assertThat(c.exitWeight(1, 0)).isEqualTo(0.5);
    }

    @Test
    void clippingToZeroIsNoClipping() {
        assertThat(AdamW.clipScale(5.0, 0f)).isEqualTo(1f);
        assertThat(AdamW.clipScale(5.0, 1f)).isEqualTo(0.2f);
        assertThat(AdamW.clipScale(0.5, 1f)).isEqualTo(1f);
    }
}
