package dev.eetune.model.io;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;
import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Fuzzing of safetensors headers and of sharded checkpoints' index files ({@link Fuzzer}). */
class SafetensorsFuzzTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    @Test
    void headers() throws IOException {
        Path a = dir.resolve("a.safetensors"), b = dir.resolve("b.safetensors");
        new SafetensorsWriter().put("w", new float[] {1, 2, 3, 4, 5, 6}, Shape.of(2, 3), DType.F32).put("h", new float[] {1, 2}, Shape.of(2), DType.BF16)
            .put("f", new float[] {3}, Shape.of(1), DType.F16).put("i", DType.I32, Shape.of(2), ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(7).putInt(9).flip())
            .metadata("format", "pt").write(a);
        new SafetensorsWriter().put("s", new float[] {1}, Shape.of(), DType.F32).put("e", new float[0], Shape.of(0, 4), DType.F32).write(b);
        List<Fuzzer.Mutation> mutations = new ArrayList<>(Fuzzer.bytes(8));
        for (int i = 0; i < 6; i++) mutations.add(Fuzzer.safetensorsHeader(Fuzzer::mutateJson)); // mostly past the length, into the fields
        Path file = dir.resolve("fuzz.safetensors");
        Fuzzer.Report r = Fuzzer.run("safetensors-header", List.of(Files.readAllBytes(a), Files.readAllBytes(b)), mutations, 6_000, file, file, f -> {
            SafetensorsHeader h = SafetensorsHeader.read(f);
            long size = Files.size(f), reached = h.dataOffset();
            for (TensorEntry e : h.tensors()) { // in file order: each inside the data, none sharing bytes with an earlier one
                assertThat(e.byteLength()).isEqualTo(e.shape().size() * e.dtype().bytes());
                assertThat(e.fileOffset()).isGreaterThanOrEqualTo(e.byteLength() == 0 ? h.dataOffset() : reached);
                assertThat(e.fileOffset() + e.byteLength()).isLessThanOrEqualTo(size);
                reached = Math.max(reached, e.fileOffset() + e.byteLength());
            }
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }

    @Test
    void indexes() throws IOException {
        Path model = Files.createDirectories(dir.resolve("model")), outside = Files.createDirectories(dir.resolve("outside"));
        new SafetensorsWriter().put("a", new float[] {1, 2}, Shape.of(2), DType.F32).put("b", new float[] {3}, Shape.of(1), DType.BF16)
            .write(model.resolve("model-00001-of-00002.safetensors"));
        new SafetensorsWriter().put("c", new float[] {4}, Shape.of(1), DType.F32).write(model.resolve("model-00002-of-00002.safetensors"));
        new SafetensorsWriter().put("secret", new float[] {5}, Shape.of(1), DType.F32).write(outside.resolve("secret.safetensors"));
        Files.createSymbolicLink(model.resolve("link.safetensors"), outside.resolve("secret.safetensors"));
        ObjectNode index = JSON.createObjectNode();
        index.putObject("metadata").put("total_size", 16);
        index.putObject("weight_map").put("a", "model-00001-of-00002.safetensors").put("b", "model-00001-of-00002.safetensors").put("c", "model-00002-of-00002.safetensors");
        String[] names = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "link.safetensors", "../outside/secret.safetensors",
            outside.resolve("secret.safetensors").toString(), "./model-00002-of-00002.safetensors", "../model/model-00002-of-00002.safetensors", "model.safetensors.index.json"};
        List<Fuzzer.Mutation> mutations = new ArrayList<>(Fuzzer.bytes(0));
        for (int i = 0; i < 3; i++) mutations.add(Fuzzer.json());
        for (int i = 0; i < 4; i++) { // shard names that lead elsewhere
            mutations.add((bytes, r) -> {
                try {
                    ObjectNode root = (ObjectNode) JSON.readTree(bytes);
                    ((ObjectNode) root.get("weight_map")).put(new String[] {"a", "b", "c", "secret"}[r.nextInt(4)], names[r.nextInt(names.length)]);
                    return JSON.writeValueAsBytes(root);
                } catch (IOException | RuntimeException e) {
                    return bytes; // no longer an index with a weight map
                }
            });
        }
        Path file = model.resolve(SafetensorsIndex.INDEX_FILE);
        Path modelReal = model.toRealPath();
        Fuzzer.Report r = Fuzzer.run("safetensors-index", List.of(JSON.writeValueAsBytes(index)), mutations, 2_500, file, file, f -> {
            SafetensorsIndex idx = SafetensorsIndex.open(model);
            for (TensorEntry e : idx.tensors()) assertThat(e.file().toRealPath().getParent()).as(e.name()).isEqualTo(modelReal);
            assertThat(idx.contains("secret")).isFalse();
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }
}
