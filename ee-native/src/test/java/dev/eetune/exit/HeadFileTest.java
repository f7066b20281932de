package dev.eetune.exit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.eval.ExitTrace;
import dev.eetune.eval.ThresholdCalibration;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Consumer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Head files are checked in full before use (fuzzed too: {@link Fuzzer}), and a broken head (NaN weights) never exits. */
class HeadFileTest {
    static final Backend CPU = Backends.cpu();
    static final ObjectMapper JSON = new ObjectMapper();
    static LlamaModel model;

    @TempDir
    Path dir;

    @BeforeAll
    static void setUp() {
        model = RandomModels.headBackbone(CPU);
    }

    @AfterAll
    static void tearDown() { model.close(); }

    /** Heads after layers 1 (mlp) and 2 (norm), saved with {@code edit} applied to their metadata and tensors. */
    private Path heads(String name, Consumer<ObjectNode> editMetadata, Consumer<Map<String, float[]>> editTensors) throws IOException {
        Path file = dir.resolve(name + ".safetensors");
        try (EarlyExitModel ee = EarlyExitModel.attach(model, List.of(new ExitSpec(1, ExitArchitecture.MLP, ExitInit.RANDOM), new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY)), 3)) {
            ee.save(file, DType.F32);
        }
        return HeadFiles.rewrite(file, editMetadata, editTensors);
    }

    private void refused(Path file, String... parts) {
        var t = assertThatThrownBy(() -> EarlyExitModel.load(model, file)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(file.toString());
        for (String p : parts) t.hasMessageContaining(p);
    }

    /**
     * The thresholds `ee calibrate` saves beside the heads hold only for those heads: once the heads file is written
     * again (tuned again, new gates) they are refused, naming both files, as are thresholds for a layer without an exit;
     * a thresholds file from before the heads were recorded still loads.
     */
    @Test
    void savedThresholdsAreRefusedOnceTheHeadsChange() throws IOException {
        Path file = dir.resolve("heads.safetensors");
        ThresholdCalibration.Settings st = new ThresholdCalibration.Settings(0.95, 1.645, 20);
        ExitTrace.Decisions d = new ExitTrace.Decisions(0.96, new double[3], 2.5, 3, 5000);
        EarlyExitPolicy policy = new EarlyExitPolicy(Map.of(1, 0.7f, 2, 1f), false, ConfidenceMethod.GATE, Map.of());
        try (EarlyExitModel ee = EarlyExitModel.attach(model, List.of(new ExitSpec(1, ExitArchitecture.MLP, ExitInit.RANDOM), new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY)), 3)) {
            ee.attachGates(4, 5);
            ee.save(file, DType.F32);
            assertThat(ThresholdCalibration.saved(ee, file)).as("nothing calibrated yet").isEmpty();
            Path saved = ThresholdCalibration.save(file, new ThresholdCalibration.Result(st, policy, d, d, 5000, 5000));
            assertThat(saved).isEqualTo(ThresholdCalibration.fileFor(file));
            assertThat(ThresholdCalibration.saved(ee, file)).contains(policy);

            ee.attachGates(4, 6); // gates trained again: the same shapes, other values
            ee.save(file, DType.F32);
            assertThatThrownBy(() -> ThresholdCalibration.saved(ee, file)).hasMessageContaining(saved.toString()).hasMessageContaining(file.toString())
                .hasMessageContaining("CRC-32C").hasMessageContaining("ee calibrate");
            assertThat(ThresholdCalibration.load(saved)).as("the policy alone still reads").isEqualTo(policy);

            ThresholdCalibration.save(file, new ThresholdCalibration.Result(st, new EarlyExitPolicy(Map.of(1, 0.7f, 3, 0.9f), false, ConfidenceMethod.GATE, Map.of()), d, d, 5000, 5000));
            assertThatThrownBy(() -> ThresholdCalibration.saved(ee, file)).hasMessageContaining("layer 3").hasMessageContaining("[1, 2]");

            ThresholdCalibration.save(file, new ThresholdCalibration.Result(st, policy, d, d, 5000, 5000));
            ObjectNode old = (ObjectNode) JSON.readTree(saved.toFile());
            old.remove("heads");
            Files.writeString(saved, old.toString());
            assertThat(ThresholdCalibration.saved(ee, file)).as("written before the heads were recorded").contains(policy);
        }
    }

    @Test
    void theMetadataIsCheckedFieldByField() throws IOException {
        try (EarlyExitModel ok = EarlyExitModel.load(model, heads("ok", m -> {}, t -> {}))) {
            assertThat(ok.heads()).extracting(h -> h.spec().toString()).containsExactly("mlp@1(random)", "norm@2(copy)");
        }
        refused(heads("format", m -> m.put("format", "other"), t -> {}), "format 'other'");
        refused(heads("version", m -> m.put("version", 2), t -> {}), "version 2");
        refused(heads("versionText", m -> m.put("version", "1"), t -> {}), "'version' must be an integer", "\"1\"");
        refused(heads("dtype", m -> m.put("dtype", "I32"), t -> {}), "dtype 'I32'");
        refused(heads("noBackbone", m -> m.remove("backbone"), t -> {}), "'backbone' is missing");
        refused(heads("dim", m -> ((ObjectNode) m.get("backbone")).put("dim", 64), t -> {}), "dim = 64", "has 32");
        refused(heads("noExits", m -> m.putArray("exits"), t -> {}), "lists no exits");
        refused(heads("exitsNotArray", m -> m.put("exits", "1,2"), t -> {}), "'exits' must be an array");
        refused(heads("layer0", m -> exit(m, 0).put("layer", 0), t -> {}), "exits[0]", "layer 0");
        refused(heads("layerBeyond", m -> exit(m, 1).put("layer", 4), t -> {}), "exits[1]", "layer 4", "1..3");
        refused(heads("layerTwice", m -> exit(m, 1).put("layer", 1), t -> {}), "exits[1]", "second exit after layer 1");
        refused(heads("noLayer", m -> exit(m, 0).remove("layer"), t -> {}), "exits[0]", "'layer' is missing");
        refused(heads("arch", m -> exit(m, 0).put("architecture", "attention"), t -> {}), "exits[0]", "'attention'");
        refused(heads("init", m -> exit(m, 0).put("init", "zeros"), t -> {}), "exits[0]", "'zeros'");
        refused(heads("tNaN", m -> exit(m, 0).put("temperature", "NaN"), t -> {}), "exits[0]", "'temperature' must be a number");
        refused(heads("tZero", m -> exit(m, 0).put("temperature", 0.0), t -> {}), "exits[0]", "temperature must be positive and finite, got 0.0");
        refused(heads("tHuge", m -> exit(m, 0).put("temperature", 1e300), t -> {}), "exits[0]", "got Infinity");
        refused(heads("tMixed", m -> exit(m, 1).put("temperature", 2.0), t -> {}), "exits[1]", "differs");
    }

    @Test
    void theTensorsMustBeExactlyThoseOfTheListedExits() throws IOException {
        // an mlp head has more tensors than a norm head: calling exit 1 a norm head leaves its MLP tensors over
        refused(heads("archVsTensors", m -> exit(m, 0).put("architecture", "norm"), t -> {}), "belong to no exit", "exits.1.mlp");
        refused(heads("missing", m -> {}, t -> t.remove("exits.2.lm_head.weight")), "lacks", "exits.2.lm_head.weight");
        refused(heads("extra", m -> {}, t -> t.put("exits.9.bias", new float[] {1})), "belong to no exit", "exits.9.bias");
        refused(heads("bf16", m -> m.put("dtype", "BF16"), t -> {}), "is stored as F32, but the metadata says BF16");
    }

    @Test
    void nonFiniteValuesAreRefusedNamingTheTensor() throws IOException {
        refused(heads("nan", m -> {}, t -> t.get("exits.2.norm.weight")[5] = Float.NaN), "'exits.2.norm.weight'", "NaN at element 5");
        refused(heads("inf", m -> {}, t -> t.get("exits.1.lm_head.weight")[0] = Float.NEGATIVE_INFINITY), "'exits.1.lm_head.weight'", "-Infinity at element 0");
    }

    @Test
    void aHeadWithNanWeightsNeverExitsAtAnyThreshold() {
        GenerationConfig greedy = GenerationConfig.greedy(12, Set.of());
        List<int[]> prompts = List.of(new int[] {1, 5, 9}, new int[] {1, 7});
        List<int[]> full;
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, null, EarlyExitPolicy.none(), 2, 32)) {
            full = g.generate(prompts, greedy, null).stream().map(GenerationResult::tokens).toList();
        }
        for (ExitArchitecture arch : new ExitArchitecture[] {ExitArchitecture.NORM, ExitArchitecture.MLP}) {
            try (EarlyExitModel ee = EarlyExitModel.attach(model, List.of(new ExitSpec(1, arch, ExitInit.COPY)), 0)) {
                for (Parameter p : ee.parameters()) {
                    float[] nan = new float[Math.toIntExact(p.value().size())];
                    Arrays.fill(nan, Float.NaN);
                    p.value().copyFrom(nan);
                }
                for (float tau : new float[] {0f, 0.5f}) {
                    try (EarlyExitGenerator g = new EarlyExitGenerator(model, ee, EarlyExitPolicy.global(tau, 1), 2, 32)) {
                        List<int[]> out = g.generate(prompts, greedy, null).stream().map(GenerationResult::tokens).toList();
                        assertThat(g.lastStats().exitCounts()[1]).as(arch + " at tau " + tau).isZero();
                        for (int i = 0; i < out.size(); i++) assertThat(out.get(i)).as(arch + " at tau " + tau).containsExactly(full.get(i));
                    }
                }
            }
        }
    }

    /** Mutates the eetune metadata inside the header (a JSON string within the JSON), else the header itself. */
    private static JsonNode edit(JsonNode header, Random r) {
        JsonNode meta = header.path("__metadata__").path(EarlyExitModel.METADATA_KEY);
        if (!meta.isTextual() || r.nextInt(3) == 0) return Fuzzer.mutateJson(header, r);
        try {
            ObjectNode copy = header.deepCopy();
            ((ObjectNode) copy.get("__metadata__")).put(EarlyExitModel.METADATA_KEY, Fuzzer.mutateJson(JSON.readTree(meta.asText()), r).toString());
            return copy;
        } catch (IOException e) {
            return header; // the metadata no longer parses: stacked mutations broke it already
        }
    }

    @Test
    void headFiles() throws IOException {
        List<byte[]> seeds = new ArrayList<>();
        String[] names = {"mlp-norm", "layer-embedding"};
        List<List<ExitSpec>> sets = List.of(List.of(new ExitSpec(1, ExitArchitecture.MLP, ExitInit.RANDOM), new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY)),
            List.of(new ExitSpec(1, ExitArchitecture.LAYER, ExitInit.COPY), new ExitSpec(3, ExitArchitecture.EMBEDDING, ExitInit.COPY)));
        for (int i = 0; i < sets.size(); i++) {
            Path seed = dir.resolve(names[i] + ".safetensors");
            try (EarlyExitModel ee = EarlyExitModel.attach(model, sets.get(i), i, 0.5f)) {
                ee.save(seed, i == 0 ? DType.F32 : DType.BF16);
            }
            seeds.add(Files.readAllBytes(seed));
        }
        List<Fuzzer.Mutation> mutations = new ArrayList<>(Fuzzer.bytes(8));
        for (int i = 0; i < 8; i++) mutations.add(Fuzzer.safetensorsHeader(HeadFileTest::edit));
        Path file = dir.resolve("heads.safetensors");
        Fuzzer.Report r = Fuzzer.run("head-file", seeds, mutations, 2_500, file, file, f -> {
            try (EarlyExitModel ee = EarlyExitModel.load(model, f)) {
                assertThat(ee.heads()).isNotEmpty();
                for (Parameter p : ee.parameters()) assertThat(CPU.ops().sumSquares(p.value())).as(p.name()).isFinite();
            }
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }

    private static ObjectNode exit(ObjectNode metadata, int i) { return (ObjectNode) ((ArrayNode) metadata.get("exits")).get(i); }
}
