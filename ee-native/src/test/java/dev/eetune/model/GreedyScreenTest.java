package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@link LlamaModel#greedyTokens}: the bf16 screen of a large packed classifier picks the very token that the f32
 * logits' argmax picks, on random rows, on near-ties closer than bf16 can tell apart, on exact ties (lowest index) and
 * on non-finite rows; and it does screen (few f32 panels read per row).
 */
class GreedyScreenTest {
    static final Backend CPU = Backends.cpu();
    static final int DIM = 64, VOCAB = 32768; // 8 MiB of f32 classifier: LlamaModel.SCREEN_MIN_BYTES

    @Test
    void theScreenPicksTheF32ArgmaxOnRandomRowsNearTiesAndTies() {
        LlamaConfig c = RandomModels.config(DIM, 1, 4, 4, 96, VOCAB, false, false, null);
        assertThat((long) VOCAB * DIM * 4).isGreaterThanOrEqualTo(LlamaModel.SCREEN_MIN_BYTES);
        try (LlamaModel base = LlamaModel.random(c, CPU, 11, 0.3f)) {
            // near-ties: row 901 = row 900 nudged below bf16's resolution; an exact tie: row 77 = row 900 (77 wins ties)
            Tensor head = base.weights().lmHead();
            float[] w = head.toFloatArray();
            Random r = new Random(5);
            for (int i = 0; i < DIM; i++) {
                w[901 * DIM + i] = w[900 * DIM + i] * (1 + 1e-5f * (float) r.nextGaussian());
                w[77 * DIM + i] = w[900 * DIM + i];
                w[5000 * DIM + i] = w[4999 * DIM + i] + (i == 3 ? Math.ulp(w[4999 * DIM + i]) : 0f);
            }
            head.copyFrom(w);
            try (LlamaModel m = new LlamaModel(c, base.weights(), CPU, Scope.of(CPU, "fixed"), true); Scope s = Scope.of(CPU, "test")) {
                for (int rows : new int[] {1, 2, 8}) { // 8: the bf16 kernel four rows to a pass
                    Tensor hidden = s.allocate(DType.F32, rows, DIM), normed = s.allocate(DType.F32, rows, DIM);
                    Tensor logits = s.allocate(DType.F32, rows, VOCAB), tokens = s.allocate(DType.I32, rows), want = s.allocate(DType.I32, rows);
                    for (int trial = 0; trial < 60; trial++) {
                        float[] h = new float[rows * DIM];
                        for (int i = 0; i < h.length; i++) {
                            int row = i / DIM, col = i % DIM;
                            // a third of the rows point at the near-tied rows, a third at the tie, the rest random
                            int target = trial % 3 == 0 ? 900 : trial % 3 == 1 ? 4999 : -1;
                            h[i] = target < 0 ? (float) r.nextGaussian() : w[target * DIM + col] + 1e-3f * row;
                        }
                        if (trial == 59) h[DIM - 1] = Float.NaN; // a non-finite row takes the full logits
                        hidden.copyFrom(h);
                        m.logits(logits, hidden, normed);
                        CPU.ops().argmax(want, null, logits, 1f);
                        int[] got = m.greedyTokens(tokens, hidden, normed, logits);
                        assertThat(got).as("rows %d, trial %d", rows, trial).containsExactly(want.toIntArray());
                        assertThat(tokens.toIntArray()).containsExactly(got);
                        if (trial % 3 == 0 && trial < 59) assertThat(got[0]).isIn(900, 901, 77);
                    }
                }
                assertThat(m.screenedRows.get()).as("rows the screen decided").isGreaterThan(600);
                assertThat((double) m.exactPanels.get() / m.screenedRows.get()).as("f32 panels read per screened row").isLessThan(4.0);
            }
        }
    }

    @Test
    void aScreenThatKeepsFallingBackIsGivenUp() {
        LlamaConfig c = RandomModels.config(DIM, 1, 4, 4, 96, VOCAB, false, false, null);
        try (LlamaModel base = LlamaModel.random(c, CPU, 12, 0.3f);
             LlamaModel m = new LlamaModel(c, base.weights(), CPU, Scope.of(CPU, "fixed"), true); Scope s = Scope.of(CPU, "test")) {
            Tensor hidden = s.allocate(DType.F32, 1, DIM), normed = s.allocate(DType.F32, 1, DIM);
            Tensor logits = s.allocate(DType.F32, 1, VOCAB), tokens = s.allocate(DType.I32, 1), want = s.allocate(DType.I32, 1);
            Random r = new Random(3);
            for (int trial = 0; trial < 40; trial++) {
                float[] h = new float[DIM]; // zero rows first: every logit 0, every panel a candidate, so the full logits
                if (trial >= 30) for (int i = 0; i < DIM; i++) h[i] = (float) r.nextGaussian();
                hidden.copyFrom(h);
                m.logits(logits, hidden, normed);
                CPU.ops().argmax(want, null, logits, 1f);
                assertThat(m.greedyTokens(tokens, hidden, normed, logits)).as("trial %d", trial).containsExactly(want.toIntArray());
            }
            assertThat(m.unscreenedRows.get()).as("rows left to the full logits before giving up").isEqualTo(LlamaModel.SCREEN_GIVE_UP + 1);
            assertThat(m.screenedRows.get()).as("rows screened after giving up").isZero();
        }
    }
}
