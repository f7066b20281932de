package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Hugging Face checkpoints: written, loaded, and run against the double-precision reference forward. */
class HfCheckpointTest {
    static final Backend CPU = Backends.cpu();

    @TempDir
    Path tmp;

    static final LlamaConfig[] CONFIGS = {
        RandomModels.config(48, 3, 6, 2, 80, 97, false, false, null),                    // Llama 2 style, GQA, untied
        RandomModels.config(32, 2, 4, 4, 64, 61, true, true, null),                      // Qwen2 style: q/k/v bias, tied
        RandomModels.config(64, 2, 4, 1, 96, 131, false, false, RopeScaling.llama3(8f, 1f, 4f, 64)), // Llama 3 rope scaling, MQA
    };

    @Test
    void logitsOfRandomCheckpointsMatchTheReferenceForwardInF32Bf16AndF16() throws IOException {
        Random r = new Random(7);
        for (LlamaConfig c : CONFIGS) {
            for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                Path dir = Files.createTempDirectory(tmp, "ckpt");
                try (LlamaModel written = RandomModels.random(c, CPU, r.nextLong())) {
                    HfCheckpointWriter.write(written, dir, dtype);
                }
                try (LlamaModel m = LlamaModel.load(dir, CPU)) {
                    assertThat(m.weights().layers().get(0).wq().dtype()).isEqualTo(dtype);
                    int[] tokens = new int[23];
                    for (int i = 0; i < tokens.length; i++) tokens[i] = r.nextInt(c.vocabSize());
                    double[][] ref = new ReferenceLlama(m).logits(tokens);
                    float[] got = prefillLogits(m, tokens);
                    assertThat(relError(got, ref)).as("%s %s", c.architecture(), dtype).isLessThan(1e-4);
                    assertThat(relError(incrementalLogits(m, tokens, 9), ref)).as("prefill 9 then one token at a time").isLessThan(1e-4);
                }
            }
        }
    }

    @Test
    void llama2cInterleavedRopeAndItsHfExportGiveTheSameLogits() {
        int[] tokens = {1, 403, 407, 261, 378, 300, 290, 420};
        Path dir = tmp.resolve("stories260K-hf");
        float[] a, b;
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU)) {
            a = prefillLogits(m, tokens);
            HfCheckpointWriter.write(m, dir, null);
        }
        try (LlamaModel m = LlamaModel.load(dir, CPU)) {
            assertThat(m.config().ropeInterleaved()).isFalse();
            b = prefillLogits(m, tokens);
        }
        double max = 0, scale = 0;
        for (int i = 0; i < a.length; i++) {
            max = Math.max(max, Math.abs(a[i] - b[i]));
            scale = Math.max(scale, Math.abs(a[i]));
        }
        assertThat(max / scale).isLessThan(1e-5);
    }

    @Test
    void loadingReportsTheCheckpointFilesBytes() throws IOException {
        Path dir = tmp.resolve("progress");
        try (LlamaModel m = RandomModels.random(CONFIGS[0], CPU, 3)) {
            HfCheckpointWriter.write(m, dir, null);
        }
        long shards;
        try (var files = Files.list(dir)) {
            shards = files.filter(f -> f.toString().endsWith(".safetensors")).mapToLong(f -> f.toFile().length()).sum();
        }
        java.util.List<long[]> updates = new java.util.ArrayList<>();
        try (LlamaModel m = LlamaModel.load(dir, CPU, (done, total, detail) -> updates.add(new long[] {done, total}))) {
            assertThat(updates).isNotEmpty();
            assertThat(updates.get(updates.size() - 1)).containsExactly(shards, shards);
        }
        updates.clear();
        long bin = TestData.stories260K().toFile().length();
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU, (done, total, detail) -> updates.add(new long[] {done, total}))) {
            assertThat(updates).containsExactly(new long[] {bin, bin});
        }
    }

    @Test
    void missingTensorsAndBadShapesNameTheFileAndTensor() throws IOException {
        Path dir = tmp.resolve("broken");
        try (LlamaModel m = RandomModels.random(CONFIGS[0], CPU, 1)) {
            HfCheckpointWriter.write(m, dir, null);
        }
        String cfg = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), cfg.replace("\"num_hidden_layers\" : 3", "\"num_hidden_layers\" : 4"));
        assertThatThrownBy(() -> LlamaModel.load(dir, CPU)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("model.layers.3.input_layernorm.weight").hasMessageContaining("missing");
        Files.writeString(dir.resolve("config.json"), cfg.replace("\"intermediate_size\" : 80", "\"intermediate_size\" : 81"));
        assertThatThrownBy(() -> LlamaModel.load(dir, CPU)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("model.safetensors").hasMessageContaining("mlp.gate_proj.weight").hasMessageContaining("[80, 48]");
        Files.writeString(dir.resolve("config.json"), cfg.replace("LlamaForCausalLM", "GPT2LMHeadModel"));
        assertThatThrownBy(() -> LlamaModel.load(dir, CPU)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("GPT2LMHeadModel");
    }

    /** Logits of every position from one packed prefill pass. */
    static float[] prefillLogits(LlamaModel m, int[] tokens) {
        int n = tokens.length;
        try (Scope s = Scope.of(m.backend()); Workspace ws = m.newWorkspace(); KvCache cache = new KvCache(m.config(), m.backend(), 1, n)) {
            int[] pos = new int[n];
            for (int i = 0; i < n; i++) pos[i] = i;
            Workspace.Rows rows = ws.rows(tokens, new int[n], pos);
            Tensor x = ws.x(n);
            m.embed(x, rows);
            m.layers(x, rows, cache, 0, m.config().nLayers(), ws);
            Tensor logits = s.allocate(DType.F32, n, m.config().vocabSize());
            m.logits(logits, x, s.allocate(DType.F32, n, m.config().dim()));
            return logits.toFloatArray();
        }
    }

    /** Logits of every position from a prefill of the first {@code first} tokens, then one row per pass. */
    static float[] incrementalLogits(LlamaModel m, int[] tokens, int first) {
        int n = tokens.length, v = m.config().vocabSize();
        float[] out = new float[n * v];
        try (Scope s = Scope.of(m.backend()); Workspace ws = m.newWorkspace(); KvCache cache = new KvCache(m.config(), m.backend(), 2, n)) {
            Tensor logits = s.allocate(DType.F32, n, v), normed = s.allocate(DType.F32, n, m.config().dim());
            for (int start = 0; start < n; ) {
                int count = start == 0 ? first : 1;
                int[] tok = new int[count], seq = new int[count], pos = new int[count];
                for (int i = 0; i < count; i++) {
                    tok[i] = tokens[start + i];
                    seq[i] = 1; // a non-zero sequence slot, to exercise the cache layout
                    pos[i] = start + i;
                }
                Workspace.Rows rows = ws.rows(tok, seq, pos);
                Tensor x = ws.x(count);
                m.embed(x, rows);
                m.layers(x, rows, cache, 0, m.config().nLayers(), ws);
                m.logits(logits.slice(0, count), x, normed.slice(0, count));
                System.arraycopy(logits.slice(0, count).toFloatArray(), 0, out, start * v, count * v);
                start += count;
            }
        }
        return out;
    }

    static double relError(float[] got, double[][] ref) {
        double max = 0, scale = 0;
        int v = ref[0].length;
        for (int i = 0; i < ref.length; i++) {
            for (int j = 0; j < v; j++) {
                max = Math.max(max, Math.abs(got[i * v + j] - ref[i][j]));
                scale = Math.max(scale, Math.abs(ref[i][j]));
            }
        }
        return max / scale;
    }
}
