package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@link LlamaModel#greedyTokens}: the 8-bit screen of a large classifier picks the very token that the logits'
 * argmax picks, with the candidates computed by the packed f32 kernel (dim 64), the plain one (dim 576, past the
 * widths decoded from packed panels) or the bf16 or f16 one (a bf16 or f16 checkpoint: packed panels at 1-2 rows, and
 * at 8-16 on AVX-512; plain at the others), on random rows, on near-ties closer
 * than 8 bits can tell apart, on exact ties (lowest index) and on non-finite rows; and it does screen (few exact
 * panels read per row).
 */
class GreedyScreenTest {
    static final Backend CPU = Backends.cpu();
    static final int DIM = 64, VOCAB = 32768; // the give-up test's model: 8 MiB of f32 classifier

    @ParameterizedTest(name = "dim {0}, vocab {1}, {4}")
    @CsvSource({"64, 32768, 1500, 4, F32", "576, 4096, 1500, 8, F32", "128, 32768, 1500, 4, BF16", "128, 32768, 1500, 4, F16"}) // SCREEN_MIN_BYTES and more
    void theScreenPicksTheArgmaxOnRandomRowsNearTiesAndTies(int dim, int vocab, int minScreened, double maxPanelsPerRow, DType matrices) {
        boolean halfWidth = matrices != DType.F32;
        LlamaConfig c = RandomModels.config(dim, 1, 4, 4, 96, vocab, false, false, null);
        assertThat((long) vocab * dim * (halfWidth ? 2 : 4)).isGreaterThanOrEqualTo(LlamaModel.SCREEN_MIN_BYTES);
        try (LlamaModel base = LlamaModel.random(c, CPU, 11, 0.3f)) {
            // near-ties: rows 901 and 2000 = row 900 nudged below bf16's resolution; an exact tie: row 77 = row 900 (77 wins ties)
            Tensor head = base.weights().lmHead();
            float[] w = head.toFloatArray();
            Random r = new Random(5);
            for (int i = 0; i < dim; i++) {
                w[901 * dim + i] = w[900 * dim + i] * (1 + 1e-5f * (float) r.nextGaussian());
                w[2000 * dim + i] = w[900 * dim + i] * (1 + 1e-5f * (float) r.nextGaussian()); // in another panel
                w[77 * dim + i] = w[900 * dim + i];
                w[3001 * dim + i] = w[3000 * dim + i] + (i == 3 ? Math.ulp(w[3000 * dim + i]) : 0f);
            }
            head.copyFrom(w);
            Scope fixed = Scope.of(CPU, "fixed");
            LlamaWeights weights = halfWidth ? RandomModels.castMatrices(base.weights(), matrices, fixed) : base.weights();
            int a = 3, b = -1; // 16-bit: row 3001 = row 3000 with one unit in the last place more at a and less at b
            if (halfWidth) {
                w = weights.lmHead().toFloatArray(); // the rows the exact logits use
                // the nudge above vanished in the cast; here rows whose dot products with h are equal in exact
                // arithmetic (h[b] = h[a], the same exponent at a and b) and differ only in how a kernel rounds, so
                // the screen's candidates must come from the very kernel (and bits) the full logits use
                for (int i = a + 1; i < dim && b < 0; i++) if (Math.getExponent(w[3000 * dim + i]) == Math.getExponent(w[3000 * dim + a])) b = i;
                float unit = Math.ulp(w[3000 * dim + a]) * (matrices == DType.BF16 ? 1 << 16 : 1 << 13);
                System.arraycopy(w, 3000 * dim, w, 3001 * dim, dim);
                w[3001 * dim + a] += unit;
                w[3001 * dim + b] -= unit;
                weights.lmHead().copyFrom(w);
                assertThat(weights.lmHead().toFloatArray()).as("the nudged row is exact in %s", matrices).isEqualTo(w);
            }
            try (LlamaModel m = new LlamaModel(c, weights, CPU, fixed, true); Scope s = Scope.of(CPU, "test")) {
                assertThat(m.screens(1)).as("screens one row").isTrue();
                for (int rows : new int[] {1, 2, 5, 8, 16}) { // 5: AVX2 takes rows by two, the last alone; 16: the most screened
                    Tensor hidden = s.allocate(DType.F32, rows, dim), normed = s.allocate(DType.F32, rows, dim);
                    Tensor logits = s.allocate(DType.F32, rows, vocab), tokens = s.allocate(DType.I32, rows), want = s.allocate(DType.I32, rows);
                    for (int trial = 0; trial < 60; trial++) {
                        float[] h = new float[rows * dim];
                        for (int i = 0; i < h.length; i++) {
                            int row = i / dim, col = i % dim;
                            // a third of the rows point at the near-tied rows, a third at the tie, the rest random
                            int target = trial % 3 == 0 ? 900 : trial % 3 == 1 ? 3000 : -1;
                            h[i] = target < 0 ? (float) r.nextGaussian() : w[target * dim + col] + 1e-3f * row;
                        }
                        if (halfWidth && trial % 3 == 1) for (int row = 0; row < rows; row++) h[row * dim + b] = h[row * dim + a];
                        if (trial == 59) h[dim - 1] = Float.NaN; // a non-finite row takes the full logits
                        hidden.copyFrom(h);
                        m.logits(logits, hidden, normed);
                        CPU.ops().argmax(want, null, logits, 1f);
                        int[] got = m.greedyTokens(tokens, hidden, normed, logits);
                        assertThat(got).as("rows %d, trial %d", rows, trial).containsExactly(want.toIntArray());
                        assertThat(tokens.toIntArray()).containsExactly(got);
                        if (trial % 3 == 0 && trial < 59) assertThat(got[0]).isIn(900, 901, 2000, 77);
                    }
                }
                assertThat(m.screenedRows.get()).as("rows the screen decided").isGreaterThan(minScreened);
                assertThat((double) m.exactPanels.get() / m.screenedRows.get()).as("exact panels read per screened row").isLessThan(maxPanelsPerRow);
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
