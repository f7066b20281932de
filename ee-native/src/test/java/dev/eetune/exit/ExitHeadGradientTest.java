package dev.eetune.exit;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.Batch;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.model.ReferenceLlama;
import dev.eetune.nn.Parameter;
import dev.eetune.train.AdamW;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Every head architecture's gradients, as the Tuner computes them (fused CE + head backward), against central
 * finite differences of a double-precision reference of backbone + head.
 */
class ExitHeadGradientTest {
    static final Backend CPU = Backends.cpu();
    static final int B = 2, T = 5, EXIT = 2;

    @ParameterizedTest
    @EnumSource(ExitArchitecture.class)
    void gradientsMatchFiniteDifferences(ExitArchitecture arch) {
        long seed = System.nanoTime();
        System.out.println(arch + " seed " + seed);
        Random r = new Random(seed);
        LlamaConfig c = RandomModels.config(16, 3, 4, 2, 24, 19, false, false, null);
        try (LlamaModel m = RandomModels.random(c, CPU, r.nextLong());
             EarlyExitModel ee = EarlyExitModel.attach(m, List.of(new ExitSpec(EXIT, arch, ExitInit.COPY)), 1, 0.8f);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            perturb(ee, r); // copy init from a random model is already non-trivial; make the head differ from it too
            int[] inputs = new int[B * T], targets = new int[B * T];
            for (int i = 0; i < inputs.length; i++) {
                inputs[i] = r.nextInt(c.vocabSize());
                targets[i] = r.nextInt(c.vocabSize());
            }
            targets[3] = -1; // a masked position
            TunerConfig cfg = TunerConfig.defaults(1, B, T, 1e-3f);
            try (Tuner tuner = new Tuner(ee, cfg, null, opt, List.of())) {
                ee.parameterSet().zeroGrad();
                tuner.accumulateGradients(new Batch(inputs, targets, B, T), new double[1], new long[1]);
            }
            ReferenceHead ref = new ReferenceHead(new ReferenceLlama(m), c, arch, ee, inputs, targets);
            for (Parameter p : ee.parameters()) {
                float[] value = ref.params.get(p.name()), grad = p.grad().toFloatArray();
                double maxFd = 0, maxErr = 0;
                int samples = Math.min(value.length, 12);
                for (int s = 0; s < samples; s++) {
                    int j = value.length <= 12 ? s : r.nextInt(value.length);
                    float orig = value[j];
                    value[j] = orig + 1e-3f;
                    float up = value[j];
                    double lp = ref.loss();
                    value[j] = orig - 1e-3f;
                    float dn = value[j];
                    double lm = ref.loss();
                    value[j] = orig;
                    double fd = (lp - lm) / ((double) up - dn);
                    maxFd = Math.max(maxFd, Math.abs(fd));
                    maxErr = Math.max(maxErr, Math.abs(fd - grad[j]));
                }
                assertThat(maxErr).as("%s %s: max |native - finite difference| (max |fd| %.3g)", arch, p.name(), maxFd).isLessThanOrEqualTo(2e-3 * maxFd + 1e-6);
            }
        }
    }

    private static void perturb(EarlyExitModel ee, Random r) {
        for (Parameter p : ee.parameters()) {
            float[] v = p.value().toFloatArray();
            for (int i = 0; i < v.length; i++) v[i] += (float) (0.05 * r.nextGaussian());
            p.value().copyFrom(v);
        }
    }

    /** The tuner's objective in double: mean CE over unmasked tokens of one exit, as a function of the head's parameters. */
    static final class ReferenceHead {
        final Map<String, float[]> params = new HashMap<>();
        private final ReferenceLlama ref;
        private final LlamaConfig c;
        private final ExitArchitecture arch;
        private final float[] ffnNormOfLayer;
        private final float temperature;
        private final String p = ExitHead.prefix(EXIT);
        private final int[] targets;
        private final double[][][] hidden = new double[B][][], resid = new double[B][][];

        ReferenceHead(ReferenceLlama ref, LlamaConfig c, ExitArchitecture arch, EarlyExitModel ee, int[] inputs, int[] targets) {
            this.ref = ref;
            this.c = c;
            this.arch = arch;
            this.targets = targets;
            ExitHead h = ee.head(EXIT);
            this.temperature = h.temperature();
            this.ffnNormOfLayer = ee.backbone().weights().layers().get(EXIT - 1).ffnNorm().toFloatArray();
            for (Parameter q : ee.parameters()) params.put(q.name(), q.value().toFloatArray());
            for (int b = 0; b < B; b++) { // the frozen backbone part, computed once
                int[] tok = java.util.Arrays.copyOfRange(inputs, b * T, b * T + T);
                resid[b] = new double[T][];
                hidden[b] = ref.layer(ref.layerWeights(EXIT - 1), ref.hidden(tok, EXIT - 1), resid[b]);
            }
        }

        double loss() {
            double sum = 0;
            int valid = 0;
            for (int b = 0; b < B; b++) {
                double[][] pre = hidden[b];
                if (arch == ExitArchitecture.LAYER) pre = ref.layer(layer(), hidden[b], null);
                for (int t = 0; t < T; t++) {
                    int target = targets[b * T + t];
                    if (target < 0) continue;
                    double[] z;
                    switch (arch) {
                        case EMBEDDING: z = pre[t]; break;
                        case MLP: {
                            double[] m = ref.mlp(params.get(p + "mlp.gate_proj.weight"), params.get(p + "mlp.up_proj.weight"), params.get(p + "mlp.down_proj.weight"),
                                ref.rmsnorm(resid[b][t], ffnNormOfLayer));
                            double[] y = resid[b][t].clone();
                            for (int j = 0; j < y.length; j++) y[j] += m[j];
                            z = ref.rmsnorm(y, params.get(p + "norm.weight"));
                            break;
                        }
                        default: z = ref.rmsnorm(pre[t], params.get(p + "norm.weight"));
                    }
                    double[] logits = ReferenceLlama.matvec(params.get(p + "lm_head.weight"), z, c.vocabSize());
                    double max = Double.NEGATIVE_INFINITY;
                    for (int v = 0; v < logits.length; v++) max = Math.max(max, logits[v] /= temperature);
                    double se = 0;
                    for (double l : logits) se += Math.exp(l - max);
                    sum += max + Math.log(se) - logits[target];
                    valid++;
                }
            }
            return sum / valid;
        }

        private ReferenceLlama.Layer layer() {
            String q = p + "layer.";
            return new ReferenceLlama.Layer(params.get(q + "input_layernorm.weight"), params.get(q + "self_attn.q_proj.weight"), params.get(q + "self_attn.k_proj.weight"),
                params.get(q + "self_attn.v_proj.weight"), params.get(q + "self_attn.o_proj.weight"), null, null, null,
                params.get(q + "post_attention_layernorm.weight"), params.get(q + "mlp.gate_proj.weight"), params.get(q + "mlp.down_proj.weight"),
                params.get(q + "mlp.up_proj.weight"));
        }
    }
}
