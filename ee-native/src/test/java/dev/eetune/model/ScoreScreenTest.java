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
 * {@link ScoreScreen}'s radius against the kernels it bounds: every 8-bit score lies within ||x|| radius_j of the f32
 * logit ({@code ops.linear}), for rows of x that are Gaussian, dominated by one outlier, or the kernel's worst case
 * for its 8-bit rounding of x (one value at the top, every other one half a step, signed as weight row 0, whose
 * values the 8-bit copy holds exactly), at dims of one and of three blocks of integer sums; the worst case uses
 * most of its radius (the rest is the f32 rounding terms' share), so leaving out the rounding of x fails.
 */
class ScoreScreenTest {
    static final Backend CPU = Backends.cpu();

    @ParameterizedTest(name = "dim {0}")
    @CsvSource({"64", "288", "1100"})
    void everyScoreLiesWithinItsRadiusOfTheLogit(int dim) {
        int vocab = 2048, rows = 12;
        Random r = new Random(dim);
        float[] w = new float[vocab * dim], x = new float[rows * dim];
        for (int i = 0; i < w.length; i++) w[i] = i < dim ? (r.nextBoolean() ? 1f : -1f) : (float) r.nextGaussian() * (i % 97 == 0 ? 8 : 1); // some outliers: coarse rows
        for (int i = 0; i < x.length; i++) {
            int row = i / dim, col = i % dim;
            // row 2: 127 (the 8-bit step is then 1) and +-0.5 with w[0]'s signs, which the kernel rounds to 0 (ties to even)
            x[i] = row == 2 ? (col == 0 ? 127f : 0.5f * w[col]) : row % 2 == 0 ? (float) r.nextGaussian() : col == 5 ? 300f : (float) r.nextGaussian() * 0.01f;
        }
        try (Scope s = Scope.of(CPU, "score-screen")) {
            Tensor wt = s.allocate(DType.F32, vocab, dim).copyFrom(w), xt = s.allocate(DType.F32, rows, dim).copyFrom(x);
            ScoreScreen screen = ScoreScreen.of(CPU.ops(), wt, s);
            Tensor exact = s.allocate(DType.F32, rows, vocab), scores = s.allocate(DType.F32, rows, vocab);
            CPU.ops().linear(exact, xt, wt);
            CPU.ops().linearPanels(scores, xt, screen.scores());
            float[] f = exact.toFloatArray(), sc = scores.toFloatArray(), radius = screen.radius().toFloatArray(), norms = ScoreScreen.norms(xt);
            double worst = 0, adversarial = 0;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < vocab; j++) {
                    double used = Math.abs(f[i * vocab + j] - sc[i * vocab + j]) / (norms[i] * (double) radius[j]);
                    assertThat(used).as("row %d, token %d: |logit - score| over ||x|| radius", i, j).isLessThanOrEqualTo(1.0);
                    worst = Math.max(worst, used);
                    if (i == 2 && j == 0) adversarial = used;
                }
            assertThat(adversarial).as("the share of row 0's radius the worst case for x's rounding uses").isGreaterThan(0.7);
        }
    }

    /** A row the 8-bit kernels cannot scale (max |x| below 127 / Float.MAX_VALUE) or with a value that is not finite gets no finite bound scale: its exact logits decide. */
    @Test
    void rowsThatCannotBeScaledGetNoFiniteScale() {
        int dim = 8;
        float[] x = new float[3 * dim];
        for (int c = 0; c < dim; c++) {
            x[c] = c % 2 == 0 ? 1e-38f : -3e-38f;
            x[dim + c] = c == 3 ? Float.NaN : 1f;
            x[2 * dim + c] = c;
        }
        try (Scope s = Scope.of(CPU, "score-screen-scale")) {
            float[] e = ScoreScreen.norms(s.allocate(DType.F32, 3, dim).copyFrom(x));
            assertThat(e[0]).as("a tiny row").isNaN();
            assertThat(e[1]).as("a row with a NaN").isNaN();
            assertThat(e[2]).as("an ordinary row: at least its norm").isFinite().isGreaterThanOrEqualTo((float) Math.sqrt(140));
        }
    }
}
