package dev.eetune.train;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.Batch;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.eval.ExitEvaluator;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitInput;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.model.Workspace;
import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.withinPercentage;

/** EE-Tuning on the real stories260K model and TinyStories text. */
class TuningTest {
    static final Backend CPU = Backends.cpu();
    static final int SEQ = 64, BATCH = 2;

    @TempDir
    static Path tmp;
    static PackedSequences.Split windows;

    @BeforeAll
    static void data() { windows = windows(TestData.tinyStoriesValid(), tmp.resolve("valid.tokens"), SEQ); }

    /** The windows of {@code corpus} tokenized with stories260K's tokenizer (cached in {@code tokens}), 10% held out. */
    static PackedSequences.Split windows(Path corpus, Path tokens, int seqLen) {
        TokenFile file = TokenFile.openOrBuild(Corpus.open(corpus, null), Tokenizer.load(TestData.stories260KTokenizer()), tokens);
        return PackedSequences.of(file, seqLen, true).split(0.1);
    }

    static List<ExitSpec> specs(ExitArchitecture a, int... layers) {
        List<ExitSpec> out = new ArrayList<>();
        for (int l : layers) out.add(new ExitSpec(l, a, ExitInit.COPY));
        return out;
    }

    @Test
    void normExitAfterTheLastLayerWithCopyInitReproducesTheModelsLogits() {
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU);
             EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.NORM, 5), 0);
             Scope s = Scope.of(CPU); Workspace ws = m.newWorkspace(); KvCache kv = new KvCache(m.config(), CPU, 1, 16)) {
            int[] tokens = {1, 403, 407, 261, 378, 290, 300}, pos = {0, 1, 2, 3, 4, 5, 6};
            int n = tokens.length, v = m.config().vocabSize();
            Workspace.Rows rows = ws.rows(tokens, new int[n], pos);
            Tensor x = ws.x(n), exitLogits = s.allocate(DType.F32, n, v), modelLogits = s.allocate(DType.F32, n, v);
            m.embed(x, rows);
            m.layers(x, rows, kv, 0, 5, ws);
            ExitHead h = ee.head(5);
            ExitHead.Forward f = h.forward(s, new ExitInput(x, null, rows, null, ws));
            CPU.ops().linear(exitLogits, f.z(), h.lmHead().value());
            m.logits(modelLogits, x, s.allocate(DType.F32, n, m.config().dim()));
            // equal up to the summation order: a model this narrow reads its classifier packed in panels (LlamaModel.SMALL_DIM)
            float[] e = exitLogits.toFloatArray(), want = modelLogits.toFloatArray();
            for (int i = 0; i < e.length; i++) assertThat(e[i]).as("logit %d", i).isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-5f * Math.max(1, Math.abs(want[i]))));
        }
    }

    @Test
    void savedHeadsReattachExactlyAndRefuseAnotherBackbone() {
        Path file = tmp.resolve("heads.safetensors");
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU)) {
            float[][] before;
            try (EarlyExitModel ee = EarlyExitModel.attach(m, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.RANDOM), new ExitSpec(4, ExitArchitecture.LAYER, ExitInit.COPY)), 3)) {
                ee.save(file, DType.F32);
                before = ee.parameters().stream().map(p -> p.value().toFloatArray()).toArray(float[][]::new);
            }
            try (EarlyExitModel back = EarlyExitModel.load(m, file)) {
                assertThat(back.heads()).extracting(h -> h.spec().toString()).containsExactly("mlp@2(random)", "layer@4(copy)");
                List<Parameter> ps = back.parameters();
                for (int i = 0; i < ps.size(); i++) assertThat(ps.get(i).value().toFloatArray()).as(ps.get(i).name()).containsExactly(before[i]);
            }
        }
        LlamaConfig other = RandomModels.config(32, 5, 4, 2, 48, 512, true, false, null);
        try (LlamaModel o = RandomModels.random(other, CPU, 1)) {
            assertThatThrownBy(() -> EarlyExitModel.load(o, file)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(file.toString()).hasMessageContaining("dim = 64");
        }
    }

    /** N steps straight == k steps, checkpoint, new objects, resume, N - k steps: bit-identical heads. */
    @Test
    void resumeIsExact() {
        int n = 6, k = 3;
        float[][] straight = train(n, 0, null);
        Path ckpt = tmp.resolve("ckpt");
        train(k, 0, ckpt);
        float[][] resumed = train(n, k, ckpt);
        for (int i = 0; i < straight.length; i++) assertThat(resumed[i]).containsExactly(straight[i]);
    }

    /** Trains exits 2 (mlp) and 4 (layer) until step {@code until}; from a checkpoint when {@code from} > 0. */
    private static float[][] train(int until, int from, Path ckpt) {
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU);
             EarlyExitModel ee = EarlyExitModel.attach(m, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(4, ExitArchitecture.LAYER, ExitInit.COPY)), 5);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0.01f)) {
            TunerConfig cfg = TunerConfig.defaults(6, BATCH, SEQ, 2e-3f);
            try (Tuner t = new Tuner(ee, cfg, new BatchLoader(windows.train(), BATCH, 42), opt, List.of())) {
                if (from > 0) {
                    t.resume(ckpt);
                    assertThat(t.step()).isEqualTo(from);
                }
                t.runUntil(until);
                if (ckpt != null && from == 0) t.checkpoint(ckpt);
            }
            return ee.parameters().stream().map(p -> p.value().toFloatArray()).toArray(float[][]::new);
        }
    }

    @Test
    void peakMemoryOfAStepDoesNotGrowWithLayersAfterTheLastExit() {
        long[] peaks = new long[2];
        int[] depths = {3, 9};
        for (int i = 0; i < 2; i++) {
            LlamaConfig c = RandomModels.config(32, depths[i], 4, 2, 48, 97, false, false, null);
            try (LlamaModel m = RandomModels.random(c, CPU, 7)) {
                long base = CPU.liveBytes();
                CPU.resetPeak();
                try (EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.MLP, 2), 1);
                     AdamW opt = AdamW.withDefaults(ee.parameters(), 0f);
                     Tuner t = new Tuner(ee, TunerConfig.defaults(1, 2, 32, 1e-3f), null, opt, List.of())) {
                    int[] in = new int[64], tg = new int[64];
                    for (int j = 0; j < 64; j++) { in[j] = j % 97; tg[j] = (j * 7) % 97; }
                    t.accumulateGradients(new Batch(in, tg, 2, 32), new double[1], new long[1]);
                    peaks[i] = CPU.peakBytes() - base;
                }
            }
        }
        assertThat(peaks[0]).isPositive();
        assertThat(peaks[1]).as("peak bytes with %d layers vs %d", depths[1], depths[0]).isEqualTo(peaks[0]);
    }

    @Test
    void microBatchesWeightWarmupAndConfidenceWeightingTrainAndANonFiniteStepIsSkipped() {
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU);
             EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.NORM, 2, 4), 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0.01f)) {
            TunerConfig cfg = new TunerConfig(8, 2, SEQ, 2, LrSchedule.cosine(2e-3f, 2, 8, 2e-4f), 0.01f, 1f, new double[] {0.5, 1.0}, 4, true, true, false,
                0, null, 1, TunerConfig.DEFAULT_MAX_NON_FINITE_STEPS, 0);
            List<StepReport> reports = new ArrayList<>();
            try (Tuner t = new Tuner(ee, cfg, new BatchLoader(windows.train(), 2, 3), opt, List.of(TuningListener.onEachStep(reports::add)))) {
                t.runUntil(6);
                assertThat(reports).hasSize(6).allSatisfy(r -> {
                    assertThat(r.skipped()).isFalse();
                    assertThat(r.tokens()).isEqualTo(2L * 2 * SEQ); // two micro-batches of 2 x SEQ
                    for (double l : r.exitLosses()) assertThat(l).isFinite();
                });
                assertThat(cfg.exitWeight(0, 0)).isLessThan(cfg.exitWeight(0, 3)); // warm-up ramps the weights
                assertThat(reports.get(5).exitLosses()[0]).isLessThan(reports.get(0).exitLosses()[0]);
                // poison one head parameter: the step must be reported as skipped and change nothing
                Parameter p = ee.parameters().get(0);
                float[] v = p.value().toFloatArray();
                v[0] = Float.NaN;
                p.value().copyFrom(v);
                float[][] before = ee.parameters().stream().map(q -> q.value().toFloatArray()).toArray(float[][]::new);
                StepReport r = t.trainStep();
                assertThat(r.skipped()).isTrue();
                for (int i = 0; i < before.length; i++) {
                    float[] after = ee.parameters().get(i).value().toFloatArray();
                    assertThat(after).as(ee.parameters().get(i).name()).usingElementComparator((a, b) -> Float.compare(a, b)).containsExactly(before[i]);
                }
            }
        }
    }

    @Test
    void tuningLowersTheValidationLossOfEveryExit() {
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU);
             EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.MLP, 1, 2, 3, 4), 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            BatchLoader val = new BatchLoader(windows.validation(), 4, 1);
            ExitEvaluator.Report before = ExitEvaluator.evaluate(ee, val.evaluationBatches(4));
            try (Tuner t = new Tuner(ee, TunerConfig.defaults(25, 4, SEQ, 2e-3f), new BatchLoader(windows.train(), 4, 9), opt, List.of())) {
                t.run();
            }
            ExitEvaluator.Report after = ExitEvaluator.evaluate(ee, val.evaluationBatches(4));
            for (int i = 0; i < 4; i++) {
                assertThat(after.exits().get(i).loss()).as("exit %d: %s -> %s", i + 1, before.exits().get(i).loss(), after.exits().get(i).loss())
                    .isLessThan(before.exits().get(i).loss());
            }
            assertThat(after.finalLayer().loss()).isEqualTo(before.finalLayer().loss()); // the backbone is frozen
        }
    }
    /**
     * With distillation the targets are the full model's top tokens: a copy-initialised norm exit after the last layer
     * is the model itself, so its first loss is the mean of -log max softmax of the model's own logits (not the CE
     * against the data, which is larger).
     */
    @Test
    void distillationTrainsEachExitOnTheFullModelsTopToken() {
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU);
             EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.NORM, 5), 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f);
             Scope s = Scope.of(CPU); Workspace ws = m.newWorkspace()) {
            Batch b = new BatchLoader(windows.train(), BATCH, 5).next();
            int rows = BATCH * SEQ, v = m.config().vocabSize();
            Workspace.Rows dense = ws.denseRows(b.inputs(), BATCH, SEQ);
            Tensor x = ws.x(rows), logits = s.allocate(DType.F32, rows, v);
            m.embed(x, dense);
            for (int layer = 0; layer < m.config().nLayers(); layer++) m.layer(layer, x, dense, null, ws, null);
            m.logits(logits, x, s.allocate(DType.F32, rows, m.config().dim()));
            float[] l = logits.toFloatArray();
            int[] t = b.targets();
            double selfLoss = 0, dataLoss = 0;
            int valid = 0;
            for (int r = 0; r < rows; r++) {
                if (t[r] < 0) continue;
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int j = 0; j < v; j++) max = Math.max(max, l[r * v + j]);
                for (int j = 0; j < v; j++) sum += Math.exp(l[r * v + j] - max);
                selfLoss += Math.log(sum);
                dataLoss += Math.log(sum) - (l[r * v + t[r]] - max);
                valid++;
            }
            TunerConfig cfg = new TunerConfig(1, BATCH, SEQ, 1, new LrSchedule(1e-3f, 0, 1, LrSchedule.Decay.CONSTANT, 1e-3f), 0f, 1f, null, 0, false, false, true,
                0, null, 1, TunerConfig.DEFAULT_MAX_NON_FINITE_STEPS, 0);
            try (Tuner tuner = new Tuner(ee, cfg, new BatchLoader(windows.train(), BATCH, 5), opt, List.of())) {
                double loss = tuner.trainStep().exitLosses()[0];
                assertThat(loss).isCloseTo(selfLoss / valid, withinPercentage(0.01));
                assertThat(loss).isLessThan(dataLoss / valid - 0.5);
            }
        }
    }
}
