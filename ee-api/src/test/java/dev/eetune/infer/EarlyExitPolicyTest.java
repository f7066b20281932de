package dev.eetune.infer;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class EarlyExitPolicyTest {
    /** The thresholds print and iterate in layer order, whatever order they were given in (ee generate prints them). */
    @Test
    void thresholdsIterateInLayerOrder() {
        Map<Integer, Float> given = new HashMap<>(), confirm = new HashMap<>();
        for (int layer : List.of(17, 3, 29, 8, 1, 22, 12, 5, 26, 14, 9, 31, 2, 19)) {
            given.put(layer, layer / 40f);
            confirm.put(layer, 0.5f);
        }
        EarlyExitPolicy policy = new EarlyExitPolicy(given, false, ConfidenceMethod.CASCADE, confirm);
        List<Integer> sorted = given.keySet().stream().sorted().toList();
        assertThat(policy.thresholds().keySet()).containsExactlyElementsOf(sorted);
        assertThat(policy.confirm().keySet()).containsExactlyElementsOf(sorted);
        assertThat(policy.thresholds().toString()).startsWith("{1=0.025, 2=0.05, 3=0.075, 5=0.125, 8=0.2,");
        assertThat(policy.restrictedTo(java.util.Set.of(29, 2, 17)).thresholds().keySet()).containsExactly(2, 17, 29);
    }

    @Test
    void thresholdsAreImmutableAndRefuseNulls() {
        EarlyExitPolicy policy = EarlyExitPolicy.global(0.9f, 4, 2);
        assertThatThrownBy(() -> policy.thresholds().put(3, 0.5f)).isInstanceOf(UnsupportedOperationException.class);
        Map<Integer, Float> withNull = new HashMap<>();
        withNull.put(2, null);
        assertThatThrownBy(() -> new EarlyExitPolicy(withNull, false)).isInstanceOf(NullPointerException.class);
    }
}
