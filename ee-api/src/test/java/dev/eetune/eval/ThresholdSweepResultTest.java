package dev.eetune.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import dev.eetune.eval.ThresholdSweep.Row;
import dev.eetune.eval.ThresholdSweep.Verdict;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The sweep's verdicts on its own timings, and its outputs (table, JSON) for rows with missing values. */
class ThresholdSweepResultTest {
    @Test
    void aThresholdOneRowFasterThanTheFullModelInEveryRoundIsAMeasurementFailure() {
        assertThat(ThresholdSweep.verdict(true, 3.05, 2.9, 3.2)).isEqualTo(Verdict.MEASUREMENT_FAILURE);
        assertThat(ThresholdSweep.verdict(true, 1.0, 0.97, 1.02)).as("within noise of the full model").isEqualTo(Verdict.NOISY);
        assertThat(ThresholdSweep.verdict(true, 0.96, 0.95, 0.98)).as("slower: the heads' bookkeeping").isEqualTo(Verdict.OK);
        assertThat(ThresholdSweep.verdict(false, 3.05, 2.9, 3.2)).as("a threshold below 1 may be faster").isEqualTo(Verdict.OK);
    }

    @Test
    void aSpeedUpWhoseRoundsStraddleOneOrSpreadWidelyIsNoisy() {
        assertThat(ThresholdSweep.verdict(false, 1.3, 0.7, 1.9)).isEqualTo(Verdict.NOISY);
        assertThat(ThresholdSweep.verdict(false, 1.8, 1.1, 2.5)).isEqualTo(Verdict.NOISY);
        assertThat(ThresholdSweep.verdict(false, 1.6, 1.5, 1.7)).isEqualTo(Verdict.OK);
    }

    @Test
    void jsonIsValidWithMissingValuesAsNullAndTheTableFlagsTheRows() throws Exception {
        Row full = new Row("full", "-", 1f, 100, 5, 1, 1, 1, Verdict.OK, 8, new double[] {0, 0, 1}, 8, 1, 1, 64, 3.5, Double.NaN);
        Row one = new Row("early-exit", "softmax", 1f, 300, 5, 3, 2.9, 3.1, Verdict.MEASUREMENT_FAILURE, 8, new double[] {0, 0, 1}, 8, 1, 1, 64, 3.5, Double.NaN);
        Row noisy = new Row("early-exit", "gate", 0.8f, 120, 60, 1.2, 0.8, 1.6, Verdict.NOISY, 5, new double[] {0.3, 0.2, 0.5}, 6, 0.9, 0.7, 20, Double.POSITIVE_INFINITY, Double.NaN);
        ThresholdSweep.Result r = new ThresholdSweep.Result(List.of(full, one, noisy), new int[] {2, 4}, 8, 64, 5, 3, true);
        String json = r.toJson();
        // strict JSON: a NaN or Infinity token fails to parse
        JsonNode root = JsonMapper.builder().disable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build().readTree(json);
        assertThat(root.get("rows")).hasSize(3);
        assertThat(root.get("rows").get(0).get("acceptanceRate").isNull()).isTrue();
        assertThat(root.get("rows").get(2).get("perplexity").isNull()).isTrue();
        assertThat(root.get("rows").get(1).get("verdict").asText()).isEqualTo("MEASUREMENT_FAILURE");
        assertThat(root.get("rows").get(2).get("confidence").asText()).isEqualTo("gate");
        assertThat(root.get("rows").get(2).get("speedupLow").asDouble()).isEqualTo(0.8);
        assertThat(root.get("exitLayers").get(1).asInt()).isEqualTo(4);
        assertThat(new ObjectMapper().readTree(json).get("warmupSettled").asBoolean()).isTrue();
        assertThat(r.toTable()).contains("MEASUREMENT FAILURE").contains("noisy: speed-up within noise").contains("(2.90..3.10)").contains("gate");
        assertThat(r.measurementFailures()).containsExactly(one);
    }
}
