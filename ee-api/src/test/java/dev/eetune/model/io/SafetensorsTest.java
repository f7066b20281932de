package dev.eetune.model.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SafetensorsTest {
    @TempDir
    Path dir;

    @Test
    void writerAndReaderRoundTripEveryDtypeAndTheMetadata() throws IOException {
        float[] values = {0f, 1f, -2.5f, 3.14159265f, 65504f, 1e-7f, -0f, 1234.5678f, 0.1f, -7.75f, 100000f, 3e-5f};
        ByteBuffer ints = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putInt(7).putInt(-1).putInt(1 << 30).flip();
        Path file = dir.resolve("t.safetensors");
        new SafetensorsWriter()
            .put("z.f32", values, Shape.of(3, 4), DType.F32)
            .put("a.bf16", values, Shape.of(12), DType.BF16)
            .put("m.f16", values, Shape.of(2, 2, 3), DType.F16)
            .put("i.i32", DType.I32, Shape.of(3), ints)
            .put("scalar", new float[] {42f}, Shape.of(), DType.F32)
            .metadata("format", "pt")
            .metadata("eetune.exits", "4,8")
            .write(file);

        SafetensorsHeader h = SafetensorsHeader.read(file);
        assertThat(h.metadata()).isEqualTo(Map.of("format", "pt", "eetune.exits", "4,8"));
        assertThat(h.dataOffset() % 8).isZero();
        // data is laid out in name order
        assertThat(h.tensors()).extracting(TensorEntry::name).containsExactly("a.bf16", "i.i32", "m.f16", "scalar", "z.f32");
        assertThat(h.tensors().get(0).fileOffset()).isEqualTo(h.dataOffset());
        assertThat(Files.size(file)).isEqualTo(h.dataOffset() + 24 + 12 + 24 + 4 + 48);

        TensorEntry f32 = h.tensor("z.f32");
        assertThat(f32.dtype()).isEqualTo(DType.F32);
        assertThat(f32.shape()).isEqualTo(Shape.of(3, 4));
        assertThat(f32.byteLength()).isEqualTo(48);
        assertThat(f32.file()).isEqualTo(file);
        ByteBuffer b = bytes(f32);
        for (float v : values) assertThat(b.getFloat()).isEqualTo(v);

        ByteBuffer bf = bytes(h.tensor("a.bf16"));
        for (float v : values) assertThat(bf.getShort()).isEqualTo(DType.floatToBf16(v));
        ByteBuffer hf = bytes(h.tensor("m.f16"));
        for (float v : values) assertThat(hf.getShort()).isEqualTo(DType.floatToF16(v));
        assertThat(h.tensor("m.f16").shape()).isEqualTo(Shape.of(2, 2, 3));
        ByteBuffer ib = bytes(h.tensor("i.i32"));
        assertThat(new int[] {ib.getInt(), ib.getInt(), ib.getInt()}).containsExactly(7, -1, 1 << 30);
        assertThat(bytes(h.tensor("scalar")).getFloat()).isEqualTo(42f);
        assertThat(h.tensor("scalar").shape().rank()).isZero();
        assertThat(ints.remaining()).isEqualTo(12); // the caller's buffer is untouched
    }

    @Test
    void headerIsSpacePaddedJsonInTheStandardLayout() throws IOException {
        Path file = dir.resolve("t.safetensors");
        new SafetensorsWriter().put("w", new float[] {1, 2, 3}, Shape.of(3), DType.F32).write(file);
        ByteBuffer raw = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        long n = raw.getLong();
        assertThat(n % 8).isZero();
        String header = new String(Files.readAllBytes(file), 8, (int) n, StandardCharsets.UTF_8);
        assertThat(header).endsWith(" ").doesNotContain("__metadata__");
        JsonNode json = new ObjectMapper().readTree(header);
        assertThat(json.path("w").path("dtype").asText()).isEqualTo("F32");
        assertThat(json.path("w").path("shape").toString()).isEqualTo("[3]");
        assertThat(json.path("w").path("data_offsets").toString()).isEqualTo("[0,12]");
    }

    @Test
    void largeTensorsAreStreamedInChunksAndReplaceAnExistingFile() throws IOException {
        float[] big = new float[300_001];
        Random rnd = new Random(1);
        for (int i = 0; i < big.length; i++) big[i] = (float) rnd.nextGaussian();
        Path file = dir.resolve("big.safetensors");
        Files.writeString(file, "old content");
        new SafetensorsWriter().put("big", big, Shape.of(big.length), DType.BF16).write(file);
        ByteBuffer b = bytes(SafetensorsHeader.read(file).tensor("big"));
        for (float v : big) assertThat(b.getShort()).isEqualTo(DType.floatToBf16(v));
        try (Stream<Path> files = Files.list(dir)) {
            assertThat(files).containsExactly(file); // no temporary files left
        }
    }

    @Test
    void aFailedWriteLeavesNothingBehind() throws IOException {
        Path target = Files.createDirectories(dir.resolve("occupied.safetensors"));
        Files.writeString(target.resolve("x"), "a non-empty directory cannot be replaced");
        assertThatThrownBy(() -> new SafetensorsWriter().put("w", new float[] {1}, Shape.of(1), DType.F32).write(target))
            .isInstanceOf(java.io.UncheckedIOException.class).hasMessageContaining(target.toString());
        try (Stream<Path> files = Files.list(dir)) {
            assertThat(files).containsExactly(target);
        }
    }

    @Test
    void writerRejectsInconsistentInput() {
        SafetensorsWriter w = new SafetensorsWriter().put("w", new float[] {1, 2}, Shape.of(2), DType.F32);
        assertThatThrownBy(() -> w.put("w", new float[] {1, 2}, Shape.of(2), DType.F32)).hasMessageContaining("'w'").hasMessageContaining("already");
        assertThatThrownBy(() -> w.put("x", new float[] {1, 2, 3}, Shape.of(2), DType.F32)).hasMessageContaining("'x'").hasMessageContaining("3 values");
        assertThatThrownBy(() -> w.put("x", DType.F16, Shape.of(2, 2), ByteBuffer.allocate(6))).hasMessageContaining("'x'").hasMessageContaining("8 bytes");
        assertThatThrownBy(() -> w.put("x", new float[] {1}, Shape.of(1), DType.I32)).hasMessageContaining("I32");
        assertThatThrownBy(() -> w.put("__metadata__", new float[] {1}, Shape.of(1), DType.F32)).hasMessageContaining("reserved");
    }

    @Test
    void corruptHeadersAreClearErrors() throws IOException {
        Path tiny = Files.write(dir.resolve("tiny.safetensors"), new byte[] {1, 2, 3});
        assertThatThrownBy(() -> SafetensorsHeader.read(tiny)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(tiny.toString()).hasMessageContaining("too short");

        Path huge = Files.write(dir.resolve("huge.safetensors"), ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1L << 40).array());
        assertThatThrownBy(() -> SafetensorsHeader.read(huge)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(huge.toString()).hasMessageContaining("header length");

        refused("notjson", "{\"w\": [1, 2", 0, "JSON");

        refused("dup", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w");

        refused("meta", "{\"__metadata__\":{\"n\":3}}", 0, "__metadata__", "'n'");
    }

    @Test
    void entriesAreValidatedAgainstDtypeShapeAndFileSize() throws IOException {
        refused("i64", "{\"position_ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "'position_ids'", "'I64'", "not supported");

        refused("outside", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'w'", "[0, 16]", "outside");

        refused("reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "'w'", "not a range");

        refused("size", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16, "'w'", "16 bytes", "needs 12");

        refused("neg", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape");

        Path ok = raw("ok", "{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8);
        SafetensorsHeader h = SafetensorsHeader.read(ok);
        assertThat(h.tensors()).extracting(TensorEntry::name).containsExactly("a", "b");
        assertThat(h.tensor("b").fileOffset()).isEqualTo(h.dataOffset() + 4);
        assertThatThrownBy(() -> h.tensor("c")).hasMessageContaining(ok.toString()).hasMessageContaining("'c'");
    }

    @Test
    void shardedCheckpointsAreReadThroughTheIndex() throws IOException {
        Path ckpt = Files.createDirectories(dir.resolve("ckpt"));
        new SafetensorsWriter().put("model.embed_tokens.weight", new float[6], Shape.of(3, 2), DType.BF16)
            .put("model.layers.0.mlp.up_proj.weight", new float[4], Shape.of(2, 2), DType.BF16).write(ckpt.resolve("model-00001-of-00002.safetensors"));
        new SafetensorsWriter().put("model.norm.weight", new float[] {1, 1}, Shape.of(2), DType.F32).write(ckpt.resolve("model-00002-of-00002.safetensors"));
        Files.writeString(ckpt.resolve(SafetensorsIndex.INDEX_FILE), """
            {"metadata": {"total_size": 28}, "weight_map": {
              "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
              "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
              "model.norm.weight": "model-00002-of-00002.safetensors"}}""");
        SafetensorsIndex index = SafetensorsIndex.open(ckpt);
        assertThat(index.tensors()).extracting(TensorEntry::name)
            .containsExactly("model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.norm.weight");
        assertThat(index.tensor("model.norm.weight").file()).isEqualTo(ckpt.resolve("model-00002-of-00002.safetensors"));
        assertThat(index.tensor("model.norm.weight").dtype()).isEqualTo(DType.F32);
        assertThat(index.shards()).hasSize(2);
        assertThat(index.contains("lm_head.weight")).isFalse();
        assertThatThrownBy(() -> index.tensor("lm_head.weight")).hasMessageContaining(SafetensorsIndex.INDEX_FILE).hasMessageContaining("lm_head.weight");

        Files.writeString(ckpt.resolve(SafetensorsIndex.INDEX_FILE), """
            {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors", "lm_head.weight": "model-00003-of-00003.safetensors"}}""");
        assertThatThrownBy(() -> SafetensorsIndex.open(ckpt)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(SafetensorsIndex.INDEX_FILE).hasMessageContaining("model-00003-of-00003.safetensors").hasMessageContaining("missing");

        Files.writeString(ckpt.resolve(SafetensorsIndex.INDEX_FILE), """
            {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}""");
        assertThatThrownBy(() -> SafetensorsIndex.open(ckpt)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("'lm_head.weight'").hasMessageContaining("does not hold it");

        new SafetensorsWriter().put("model.norm.weight", new float[] {1, 1}, Shape.of(2), DType.F32).write(ckpt.resolve("model-00001-of-00002.safetensors"));
        Files.writeString(ckpt.resolve(SafetensorsIndex.INDEX_FILE), """
            {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors", "x": "model-00001-of-00002.safetensors"}}""");
        assertThatThrownBy(() -> SafetensorsIndex.open(ckpt)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("'model.norm.weight'").hasMessageContaining("both");
    }

    @Test
    void singleFileCheckpointsAndMissingOnes() throws IOException {
        Path ckpt = Files.createDirectories(dir.resolve("single"));
        new SafetensorsWriter().put("w", new float[] {1}, Shape.of(1), DType.F32).write(ckpt.resolve(SafetensorsIndex.SINGLE_FILE));
        assertThat(SafetensorsIndex.open(ckpt).tensors()).extracting(TensorEntry::name).containsExactly("w");
        assertThat(SafetensorsIndex.open(ckpt.resolve(SafetensorsIndex.SINGLE_FILE)).shards()).hasSize(1);
        Path empty = Files.createDirectories(dir.resolve("empty"));
        assertThatThrownBy(() -> SafetensorsIndex.open(empty)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(empty.toString()).hasMessageContaining(SafetensorsIndex.SINGLE_FILE);
    }

    @Test
    void overlappingTensorsAreRefusedNamingBoth() throws IOException {
        refused("overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'b'", "[4, 12]", "overlaps tensor 'a'");
        // the same bytes under two names, and a small tensor inside a big one that does not start first
        refused("alias", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "overlaps");
        refused("inside", "{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            + "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 16, "overlaps");
        // empty tensors take no bytes, so they overlap nothing
        Path empty = raw("empty", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]}}", 8);
        assertThat(SafetensorsHeader.read(empty).tensors()).hasSize(2);
    }

    @Test
    void forgedShapesAreRefused() throws IOException {
        refused("overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[0,4]}}", 4, "'w'", "too many elements");
        // elements x 4 bytes overflows a long although the element count does not
        refused("bytes", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2],\"data_offsets\":[0,4]}}", 4, "too many elements");
        refused("rank", "{\"w\":{\"dtype\":\"F32\",\"shape\":[" + "1,".repeat(40) + "1],\"data_offsets\":[0,4]}}", 4, "rank 41");
    }

    /** The message without the test's temporary folder, whose random name may contain any digits (the size among them). */
    private String withoutTempDir(Throwable e) { return e.getMessage().replace(dir.toString(), "DIR"); }

    @Test
    void shardNamesMustStayInTheModelFolder() throws IOException {
        Path outside = Files.createDirectories(dir.resolve("x"));
        new SafetensorsWriter().put("w", new float[1000], Shape.of(1000), DType.F32).write(outside.resolve("shard.safetensors"));
        String outsideSize = Long.toString(Files.size(outside.resolve("shard.safetensors")));
        Path ckpt = Files.createDirectories(dir.resolve("model"));
        for (String name : new String[] {"../x/shard.safetensors", outside.resolve("shard.safetensors").toString(), "..", "sub/../../x/shard.safetensors", ""}) {
            Files.writeString(ckpt.resolve(SafetensorsIndex.INDEX_FILE), "{\"weight_map\": {\"w\": " + new ObjectMapper().writeValueAsString(name) + "}}");
            assertThatThrownBy(() -> SafetensorsIndex.open(ckpt)).as(name).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(SafetensorsIndex.INDEX_FILE).hasMessageContaining("not a file name in the model folder")
                .satisfies(e -> assertThat(withoutTempDir(e)).doesNotContain(outsideSize));
        }
        // a link in the folder that leads out, whether its target exists or not: refused, saying nothing about the target
        Files.createSymbolicLink(ckpt.resolve("evil.safetensors"), outside.resolve("shard.safetensors"));
        Files.createSymbolicLink(ckpt.resolve("dangling.safetensors"), outside.resolve("none.safetensors"));
        for (String name : new String[] {"evil.safetensors", "dangling.safetensors"}) {
            Files.writeString(ckpt.resolve(SafetensorsIndex.INDEX_FILE), "{\"weight_map\": {\"w\": \"" + name + "\"}}");
            assertThatThrownBy(() -> SafetensorsIndex.open(ckpt)).as(name).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(name).hasMessageContaining("leads outside the model folder")
                .hasMessageNotContaining(outside.toString()).satisfies(e -> assertThat(withoutTempDir(e)).doesNotContain(outsideSize));
        }
    }

    @Test
    void theHubCacheLayoutOfLinksIntoBlobsIsAccepted() throws IOException {
        // models--org--name/snapshots/<rev>/{index, shard} -> ../../blobs/<hash>
        Path blobs = Files.createDirectories(dir.resolve("hub/blobs")), snapshot = Files.createDirectories(dir.resolve("hub/snapshots/rev"));
        new SafetensorsWriter().put("w", new float[] {1, 2}, Shape.of(2), DType.F32).write(blobs.resolve("b1"));
        Files.writeString(blobs.resolve("b2"), "{\"weight_map\": {\"w\": \"model-00001-of-00001.safetensors\"}}");
        Files.createSymbolicLink(snapshot.resolve("model-00001-of-00001.safetensors"), Path.of("../../blobs/b1"));
        Files.createSymbolicLink(snapshot.resolve(SafetensorsIndex.INDEX_FILE), Path.of("../../blobs/b2"));
        assertThat(SafetensorsIndex.open(snapshot).tensor("w").shape()).isEqualTo(Shape.of(2));
    }

    /** The file {@link #raw} writes is refused with a message naming it and containing {@code parts}. */
    private void refused(String name, String headerJson, int dataBytes, String... parts) throws IOException {
        Path file = raw(name, headerJson, dataBytes);
        var thrown = assertThatThrownBy(() -> SafetensorsHeader.read(file)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(file.toString());
        for (String p : parts) thrown.hasMessageContaining(p);
    }

    /** A file with the given header JSON and {@code dataBytes} zero bytes of data. */
    private Path raw(String name, String headerJson, int dataBytes) throws IOException {
        byte[] h = headerJson.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        return Files.write(dir.resolve(name + ".safetensors"), b.array());
    }

    private static ByteBuffer bytes(TensorEntry e) throws IOException {
        try (FileChannel ch = FileChannel.open(e.file())) {
            ByteBuffer b = ByteBuffer.allocate((int) e.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
            ch.read(b, e.fileOffset());
            return b.flip();
        }
    }

}
