package dev.eetune.exit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
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
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/** Fuzzing of exit-head files and their metadata ({@link Fuzzer}). */
class HeadFileFuzzTest {
    static final Backend CPU = Backends.cpu();
    static final ObjectMapper JSON = new ObjectMapper();
    static LlamaModel model;

    @TempDir
    Path dir;

    @BeforeAll
    static void setUp() { model = RandomModels.random(RandomModels.config(32, 3, 4, 2, 48, 64, false, false, null), CPU, 7); }

    @AfterAll
    static void tearDown() { model.close(); }

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
        for (int i = 0; i < 8; i++) mutations.add(Fuzzer.safetensorsHeader(HeadFileFuzzTest::edit));
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
}
