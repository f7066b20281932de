package dev.eetune.model;

import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Fuzzing of Hugging Face config.json files ({@link Fuzzer}). */
class LlamaConfigFuzzTest {
    @TempDir
    Path dir;

    @Test
    void configs() {
        List<byte[]> seeds = new ArrayList<>();
        seeds.add(new LlamaConfig(64, 172, 2, 8, 4, 8, 512, 256, 1e-5f, 10000f, RopeScaling.linear(2f), false, false, false, LlamaConfig.LLAMA).toHfConfigJson().getBytes(StandardCharsets.UTF_8));
        seeds.add(new LlamaConfig(64, 172, 2, 8, 2, 8, 512, 4096, 1e-6f, 500000f, RopeScaling.llama3(8f, 1f, 4f, 1024), true, false, false, LlamaConfig.LLAMA)
            .toHfConfigJson().getBytes(StandardCharsets.UTF_8));
        seeds.add(new LlamaConfig(32, 64, 1, 4, 2, 8, 100, 128, 1e-6f, 1e6f, null, true, true, false, LlamaConfig.QWEN2).toHfConfigJson().getBytes(StandardCharsets.UTF_8));
        seeds.add("""
            {"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8,
             "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 32768, "sliding_window": 4096,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "attention_bias": false, "mlp_bias": false}""".getBytes(StandardCharsets.UTF_8));
        List<Fuzzer.Mutation> mutations = new ArrayList<>(Fuzzer.bytes(0));
        for (int i = 0; i < 8; i++) mutations.add(Fuzzer.json());
        Path file = dir.resolve("config.json");
        Fuzzer.Report r = Fuzzer.run("config.json", seeds, mutations, 4_000, file, file, f -> {
            LlamaConfig c = LlamaConfig.fromHfConfig(f);
            assertThat(c.validate()).isEqualTo(c);
            assertThat(c.parameterCount()).isPositive(); // no overflow in the sizes' products
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }
}
