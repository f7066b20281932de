package dev.eetune.train;

import dev.eetune.backend.Backend;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.nn.TensorFiles;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;

import static dev.eetune.train.TuningTest.specs;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Diverging runs, checks on resume, checkpoint retention (issue 9), on the real stories260K model and TinyStories text. */
class TuningReliabilityTest {
    static final Backend CPU = TuningTest.CPU;
    static final int SEQ = 32, BATCH = 2;

    @TempDir
    static Path tmp;
    static PackedSequences.Split windows;

    @BeforeAll
    static void data() { windows = TuningTest.windows(TestData.tinyStoriesTrain(), tmp.resolve("train.tokens"), SEQ); }

    /** {@code steps} steps at a constant {@code lr}, checkpointing every step under {@code dir}. */
    static TunerConfig everyStep(int steps, float lr, Path dir, int maxNonFinite, int keepLast) {
        return new TunerConfig(steps, BATCH, SEQ, 1, new LrSchedule(lr, 0, steps, LrSchedule.Decay.CONSTANT, lr), 0f, 1f, null, 0, false, false, false,
            1, dir, 10, maxNonFinite, keepLast);
    }

    /** Loads the checkpoint in {@code dir} into new mlp@2/mlp@4 heads (every check of resume applies); returns its step. */
    static int load(LlamaModel m, Path dir) {
        try (EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.MLP, 2, 4), 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            Checkpoint.State s = Checkpoint.readState(dir);
            Checkpoint.restore(dir, s, ee, opt);
            return s.step();
        }
    }

    @Test
    void aDivergingRunStopsNamingTheStepAndExitsAndItsLatestCheckpointIsTheLastGoodOne() throws Exception {
        Path root = tmp.resolve("diverge");
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU)) {
            withTuner(m, specs(ExitArchitecture.MLP, 2, 4), everyStep(50, 1e30f, root, 3, 0), new BatchLoader(windows.train(), BATCH, 1), t -> {
                assertThatThrownBy(t::run).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("tuning diverged: 3 steps in a row").hasMessageContaining("at step " + t.step() + ": exit 2: loss NaN")
                    .hasMessageContaining("the latest checkpoint is " + root.resolve(String.format("step-%07d", t.step() - 3)));
                assertThat(t.step()).isLessThan(50);
            });
            int latest = load(m, Checkpoint.latest(root));
            try (var dirs = Files.list(root)) {
                for (Path d : dirs.filter(d -> d.getFileName().toString().matches("step-\\d{7}")).toList()) {
                    assertThat(load(m, d)).as("%s loads (finite heads and moments)", d).isLessThanOrEqualTo(latest);
                }
            }
        }
    }

    @Test
    void checkpointsKeepTheNewestAndTheOneResumedFromAndStaleTemporaryFoldersGo() throws Exception {
        Path root = tmp.resolve("keep");
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU)) {
            Files.createDirectories(root.resolve("step-0000001.tmp-123"));
            withTuner(m, specs(ExitArchitecture.MLP, 2, 4), everyStep(5, 1e-3f, root, 3, 2), new BatchLoader(windows.train(), BATCH, 1), Tuner::run);
            assertThat(names(root)).containsExactly("latest", "step-0000004", "step-0000005");
            Files.createDirectories(root.resolve("step-0000006.tmp-456"));
            withTuner(m, specs(ExitArchitecture.MLP, 2, 4), everyStep(8, 1e-3f, root, 3, 1), new BatchLoader(windows.train(), BATCH, 1), t -> {
                t.resume(root.resolve("step-0000004"));
                assertThat(names(root)).doesNotContain("step-0000006.tmp-456");
                t.run();
            });
            assertThat(names(root)).containsExactly("latest", "step-0000004", "step-0000008");
        }
    }

    @Test
    void resumeChecksTheCheckpointAgainstItselfAndTheRunAndSaysWhatDiffers() throws IOException {
        Path good = tmp.resolve("checked/step-0000002");
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU)) {
            withTuner(m, specs(ExitArchitecture.MLP, 2, 4), everyStep(2, 1e-3f, good.getParent(), 3, 0), new BatchLoader(windows.train(), BATCH, 1), Tuner::run);
            List<ExitSpec> mlp = specs(ExitArchitecture.MLP, 2, 4);
            BatchLoader data = new BatchLoader(windows.train(), BATCH, 1);
            assertResumeFails(m, editState(good, "negative", j -> j.replace("\"step\" : 2", "\"step\" : -1")), mlp, 6, data, "state.json: field 'step' is -1, must be in [0, ");
            assertResumeFails(m, editState(good, "renamed", j -> j.replace("\"step\" : 2", "\"step\" : 1")), mlp, 6, data, "field 'step' is 1, but the folder is step-0000002");
            assertResumeFails(m, good, mlp, 1, data, "state.json: field 'step' is 2, beyond this run's 1 steps");
            assertResumeFails(m, editState(good, "ahead", j -> j.replace("\"optimizer_steps\" : 2", "\"optimizer_steps\" : 3")), mlp, 6, data,
                "field 'optimizer_steps' is 3, must be in [0, 2]");
            assertResumeFails(m, editState(good, "disagree", j -> j.replace("\"optimizer_steps\" : 2", "\"optimizer_steps\" : 1")), mlp, 6, data,
                "optimizer.safetensors: metadata 'adamw_steps' is 2, but", "has optimizer_steps 1");
            Path zero = editState(good, "zero", j -> j.replace("\"optimizer_steps\" : 2", "\"optimizer_steps\" : 0"));
            editMoments(m, zero, "0", null);
            assertResumeFails(m, zero, mlp, 6, data, "optimizer.safetensors: moments are non-zero, but", "has optimizer_steps 0");
            editMoments(m, editState(good, "negative-v", j -> j), "2", new float[] {-1f});
            assertResumeFails(m, tmp.resolve("negative-v/step-0000002"), mlp, 6, data, "optimizer.safetensors: tensor 'v.exits.2.", "holds -1.0 at element 0 (a second moment");
            editMoments(m, editState(good, "nan-v", j -> j), "2", new float[] {Float.NaN});
            assertResumeFails(m, tmp.resolve("nan-v/step-0000002"), mlp, 6, data, "optimizer.safetensors: tensor 'v.exits.2.", "holds a non-finite value (NaN at element 0)");
            assertResumeFails(m, good, specs(ExitArchitecture.NORM, 2, 4), 6, data,
                "state.json: written for exits [mlp@2(copy) T=1.0, mlp@4(copy) T=1.0], this run has exits [norm@2(copy) T=1.0, norm@4(copy) T=1.0]");
            assertResumeFails(m, good, specs(ExitArchitecture.MLP, 2), 6, data, "this run has exits [mlp@2(copy) T=1.0]");
            assertResumeFails(m, good, mlp, 6, new BatchLoader(windows.train(), BATCH, 2), "state.json: data.seed is 1, this run's data seed is 2");
            assertResumeFails(m, good, mlp, 6, new BatchLoader(windows.validation(), BATCH, 1), "state.json: written for other training data: data.windows "
                + windows.train().size() + ", data.sha256 " + windows.train().sha256() + "; this run's data has " + windows.validation().size() + " windows");
        }
    }

    /** A copy of the checkpoint {@code dir} (under {@code name}/) with an edited state.json. */
    static Path editState(Path dir, String name, UnaryOperator<String> edit) throws IOException {
        Path copy = Files.createDirectories(tmp.resolve(name).resolve(dir.getFileName()));
        try (var files = Files.list(dir)) {
            for (Path f : files.toList()) Files.copy(f, copy.resolve(f.getFileName()));
        }
        Files.writeString(copy.resolve("state.json"), edit.apply(Files.readString(copy.resolve("state.json"))));
        return copy;
    }

    /** Rewrites the optimizer file of checkpoint {@code dir} with {@code adamwSteps} and (if given) the first values of the first second moment replaced. */
    static void editMoments(LlamaModel m, Path dir, String adamwSteps, float[] firstValues) {
        try (EarlyExitModel ee = EarlyExitModel.attach(m, specs(ExitArchitecture.MLP, 2, 4), 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            Map<String, Tensor> moments = Checkpoint.moments(opt);
            TensorFiles.readInto(dir.resolve("optimizer.safetensors"), moments);
            if (firstValues != null) {
                Tensor v = opt.state().values().iterator().next()[1];
                float[] values = v.toFloatArray();
                System.arraycopy(firstValues, 0, values, 0, firstValues.length);
                v.copyFrom(values);
            }
            TensorFiles.write(dir.resolve("optimizer.safetensors"), moments, DType.F32, Map.of("adamw_steps", adamwSteps));
        }
    }

    static void assertResumeFails(LlamaModel m, Path dir, List<ExitSpec> exits, int steps, BatchLoader data, String... expected) {
        withTuner(m, exits, everyStep(steps, 1e-3f, null, 3, 0), data, t -> {
            var thrown = assertThatThrownBy(() -> t.resume(dir)).isInstanceOf(IllegalArgumentException.class);
            for (String e : expected) thrown.hasMessageContaining(e);
        });
    }

    /** Runs {@code body} with a new tuner of new heads {@code exits} on {@code m}. */
    static void withTuner(LlamaModel m, List<ExitSpec> exits, TunerConfig cfg, BatchLoader data, Consumer<Tuner> body) {
        try (EarlyExitModel ee = EarlyExitModel.attach(m, exits, 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f);
             Tuner t = new Tuner(ee, cfg, data, opt, List.of())) {
            body.accept(t);
        }
    }

    /** The names in {@code dir}, sorted. */
    static List<String> names(Path dir) {
        try (var list = Files.list(dir)) {
            return list.map(p -> p.getFileName().toString()).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
