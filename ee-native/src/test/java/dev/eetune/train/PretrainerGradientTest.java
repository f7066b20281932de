package dev.eetune.train;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.Batch;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.RandomModels;
import dev.eetune.model.ReferenceLlama;
import dev.eetune.nn.Parameter;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Whole-model gradients of full-parameter training (with a norm exit) against finite differences in double. */
class PretrainerGradientTest {
    static final Backend CPU = Backends.cpu();

    @Test
    void aBadExitWeightIsRefused() {
        LlamaConfig c = RandomModels.config(16, 3, 4, 2, 24, 19, false, false, null);
        for (double w : new double[] {Double.NaN, -0.5, Double.POSITIVE_INFINITY}) {
            assertThatThrownBy(() -> new Pretrainer(c, CPU, 1, 0.3f, new int[] {1}, w)).as("exit weight %s", w).hasMessageContaining("exit loss weight");
        }
    }

    @Test
    void everyParameterGradientMatchesFiniteDifferences() {
        long seed = System.nanoTime();
        System.out.println("pretrain gradient seed " + seed);
        Random r = new Random(seed);
        LlamaConfig c = RandomModels.config(16, 3, 4, 2, 24, 19, false, false, null);
        int b = 2, t = 5, exit = 1;
        double exitWeight = 0.5;
        try (Pretrainer p = new Pretrainer(c, CPU, r.nextLong(), 0.3f, new int[] {exit}, exitWeight)) {
            for (Parameter q : p.parameters()) { // norms away from 1, so their gradients are tested in general position
                if (q.value().rank() == 1) {
                    float[] v = q.value().toFloatArray();
                    for (int i = 0; i < v.length; i++) v[i] += (float) (0.2 * r.nextGaussian());
                    q.value().copyFrom(v);
                }
            }
            int[] in = new int[b * t], tg = new int[b * t];
            for (int i = 0; i < in.length; i++) {
                in[i] = r.nextInt(c.vocabSize());
                tg[i] = r.nextInt(c.vocabSize());
            }
            tg[6] = -1;
            p.zeroGrad();
            p.accumulateGradients(new Batch(in, tg, b, t), 1.0);
            for (Parameter q : p.parameters()) {
                float[] grad = q.grad().toFloatArray(), value = q.value().toFloatArray();
                double maxFd = 0, maxErr = 0;
                for (int s = 0; s < Math.min(8, value.length); s++) {
                    int j = value.length <= 8 ? s : r.nextInt(value.length);
                    float orig = value[j];
                    float up = orig + 1e-3f, dn = orig - 1e-3f;
                    double lp = loss(p, q, j, up, c, in, tg, b, t, exit, exitWeight), lm = loss(p, q, j, dn, c, in, tg, b, t, exit, exitWeight);
                    q.value().copyFrom(value); // restore
                    double fd = (lp - lm) / ((double) up - dn);
                    maxFd = Math.max(maxFd, Math.abs(fd));
                    maxErr = Math.max(maxErr, Math.abs(fd - grad[j]));
                }
                assertThat(maxErr).as("%s (max |fd| %.3g)", q.name(), maxFd).isLessThanOrEqualTo(3e-3 * maxFd + 1e-6);
            }
        }
    }

    /** The training objective in double with one parameter entry replaced. */
    private static double loss(Pretrainer p, Parameter q, int j, float v, LlamaConfig c, int[] in, int[] tg, int b, int t, int exit, double exitWeight) {
        float[] a = q.value().toFloatArray();
        a[j] = v;
        q.value().copyFrom(a);
        ReferenceLlama ref = new ReferenceLlama(p.model());
        float[] exitNorm = null, exitHead = null;
        for (Parameter e : p.parameters()) {
            if (e.name().equals("exits." + exit + ".norm.weight")) exitNorm = e.value().toFloatArray();
            if (e.name().equals("exits." + exit + ".lm_head.weight")) exitHead = e.value().toFloatArray();
        }
        double main = 0, side = 0;
        int valid = 0;
        for (int s = 0; s < b; s++) {
            int[] tok = Arrays.copyOfRange(in, s * t, s * t + t);
            double[][] logits = ref.logits(tok), h = ref.hidden(tok, exit);
            for (int i = 0; i < t; i++) {
                int target = tg[s * t + i];
                if (target < 0) continue;
                valid++;
                main += ce(logits[i], target);
                side += ce(ReferenceLlama.matvec(exitHead, ref.rmsnorm(h[i], exitNorm), c.vocabSize()), target);
            }
        }
        return (main + exitWeight * side) / valid;
    }

    private static double ce(double[] logits, int target) {
        double max = Double.NEGATIVE_INFINITY, se = 0;
        for (double l : logits) max = Math.max(max, l);
        for (double l : logits) se += Math.exp(l - max);
        return max + Math.log(se) - logits[target];
    }
}
