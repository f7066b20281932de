package dev.eetune.model;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class LlamaConfigTest {
    @TempDir
    Path dir;

    /** Llama 3.2 1B's config.json (abridged to the fields that matter). */
    private static final String LLAMA_32_1B = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
         "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
         "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
         "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "tie_word_embeddings": true, "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001}""";

    /** Qwen2-0.5B's config.json (abridged). */
    private static final String QWEN2_05B = """
        {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864,
         "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 131072,
         "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "use_sliding_window": false, "max_window_layers": 24,
         "tie_word_embeddings": true, "torch_dtype": "bfloat16"}""";

    /** Mistral 7B v0.1's config.json (abridged): sliding window 4096. */
    private static final String MISTRAL_7B = """
        {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
         "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 32768,
         "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}""";

    @Test
    void readsALlama3ConfigWithLlama3RopeScaling() throws IOException {
        LlamaConfig c = LlamaConfig.fromHfConfig(write(LLAMA_32_1B));
        assertThat(c).isEqualTo(new LlamaConfig(2048, 8192, 16, 32, 8, 64, 128256, 131072, 1e-5f, 500000f,
            RopeScaling.llama3(32f, 1f, 4f, 8192), true, false, false, "LlamaForCausalLM"));
        assertThat(c.parameterCount()).isEqualTo(1_235_814_400L); // Llama 3.2 1B's published count

        float[] inv = c.ropeInverseFrequencies();
        assertThat(inv).hasSize(32);
        double lowWavelen = 8192 / 1.0, highWavelen = 8192 / 4.0;
        int scaled = 0, kept = 0, smoothed = 0;
        for (int i = 0; i < 32; i++) {
            double base = Math.pow(500000.0, -(2.0 * i) / 64);
            double wavelen = 2 * Math.PI / base;
            double expected;
            if (wavelen < highWavelen) {
                expected = base;
                kept++;
            } else if (wavelen > lowWavelen) {
                expected = base / 32;
                scaled++;
            } else {
                double s = (8192 / wavelen - 1.0) / (4.0 - 1.0);
                expected = (1 - s) * base / 32 + s * base;
                smoothed++;
            }
            assertThat((double) inv[i]).as("inv_freq[%d]", i).isCloseTo(expected, within(expected * 1e-6));
        }
        assertThat(kept).isPositive();
        assertThat(scaled).isPositive();
        assertThat(smoothed).isPositive();
        assertThat(inv[0]).isEqualTo(1f);
    }

    @Test
    void readsQwen2WithBiasesAndDefaultHeadDim() throws IOException {
        LlamaConfig c = LlamaConfig.fromHfConfig(write(QWEN2_05B));
        assertThat(c.qkvBias()).isTrue();
        assertThat(c.tiedEmbeddings()).isTrue();
        assertThat(c.headDim()).isEqualTo(64);
        assertThat(c.nKvHeads()).isEqualTo(2);
        assertThat(c.ropeTheta()).isEqualTo(1e6f);
        assertThat(c.ropeScaling()).isNull();
        assertThat(c.normEps()).isEqualTo(1e-6f);
        assertThat(c.architecture()).isEqualTo("Qwen2ForCausalLM");
        assertThat(c.parameterCount()).isEqualTo(494_032_768L); // Qwen2-0.5B's published count
        assertThat(c.ropeInverseFrequencies()[1]).isEqualTo((float) Math.pow(1e6, -2.0 / 64));
    }

    @Test
    void readsMistralCappingTheContextAtTheSlidingWindow() throws IOException {
        LlamaConfig c = LlamaConfig.fromHfConfig(write(MISTRAL_7B));
        assertThat(c.architecture()).isEqualTo("MistralForCausalLM");
        assertThat(c.maxSeqLen()).isEqualTo(4096);
        assertThat(c.qkvBias()).isFalse();
        assertThat(c.tiedEmbeddings()).isFalse();
        assertThat(c.headDim()).isEqualTo(128);
        LlamaConfig noWindow = LlamaConfig.fromHfConfig(write(MISTRAL_7B.replace("\"sliding_window\": 4096", "\"sliding_window\": null, \"head_dim\": null")));
        assertThat(noWindow.maxSeqLen()).isEqualTo(32768);
        assertThat(noWindow.headDim()).isEqualTo(128);
    }

    @Test
    void defaultsApplyWhenOptionalFieldsAreAbsent() throws IOException {
        LlamaConfig c = LlamaConfig.fromHfConfig(write("""
            {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
             "num_attention_heads": 8, "vocab_size": 512, "max_position_embeddings": 512}"""));
        assertThat(c.nKvHeads()).isEqualTo(8);
        assertThat(c.headDim()).isEqualTo(8);
        assertThat(c.ropeTheta()).isEqualTo(10000f);
        assertThat(c.normEps()).isEqualTo(1e-6f);
        assertThat(c.tiedEmbeddings()).isFalse();
        assertThat(c.ropeScaling()).isNull();
        assertThat(c.ropeInterleaved()).isFalse();
    }

    @Test
    void linearScalingLegacyTypeKeyAndTransformers5RopeParameters() throws IOException {
        String base = LLAMA_32_1B.substring(0, LLAMA_32_1B.indexOf("\"rope_theta\""));
        LlamaConfig linear = LlamaConfig.fromHfConfig(write(base + "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}}"));
        assertThat(linear.ropeScaling()).isEqualTo(RopeScaling.linear(4f));
        assertThat(linear.ropeInverseFrequencies()[1]).isEqualTo((float) (Math.pow(10000, -2.0 / 64) / 4));

        LlamaConfig legacy = LlamaConfig.fromHfConfig(write(LLAMA_32_1B.replace("\"rope_type\": \"llama3\"", "\"type\": \"llama3\"")));
        assertThat(legacy.ropeScaling()).isEqualTo(RopeScaling.llama3(32f, 1f, 4f, 8192));

        LlamaConfig v5 = LlamaConfig.fromHfConfig(write(base + """
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"""));
        LlamaConfig classic = LlamaConfig.fromHfConfig(write(LLAMA_32_1B));
        assertThat(v5.ropeTheta()).isEqualTo(classic.ropeTheta());
        assertThat(v5.ropeScaling()).isEqualTo(classic.ropeScaling());
        LlamaConfig v5Default = LlamaConfig.fromHfConfig(write(base + "\"rope_parameters\": {\"rope_theta\": 1000.0, \"rope_type\": \"default\"}}"));
        assertThat(v5Default.ropeTheta()).isEqualTo(1000f);
        assertThat(v5Default.ropeScaling()).isNull();
    }

    @Test
    void unsupportedValuesAreErrorsNamingFileFieldAndValue() throws IOException {
        Path gpt2 = write(LLAMA_32_1B.replace("LlamaForCausalLM", "GPT2LMHeadModel"));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(gpt2)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(gpt2.toString()).hasMessageContaining("GPT2LMHeadModel")
            .hasMessageContaining("LlamaForCausalLM").hasMessageContaining("MistralForCausalLM").hasMessageContaining("Qwen2ForCausalLM");

        Path yarn = write(LLAMA_32_1B.replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(yarn)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(yarn.toString()).hasMessageContaining("rope_scaling").hasMessageContaining("yarn");

        Path noFactor = write(LLAMA_32_1B.replace("\"low_freq_factor\": 1.0, ", ""));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(noFactor)).hasMessageContaining("rope_scaling").hasMessageContaining("low_freq_factor");

        Path missing = write(LLAMA_32_1B.replace("\"hidden_size\": 2048, ", ""));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(missing)).hasMessageContaining(missing.toString()).hasMessageContaining("hidden_size");

        Path gelu = write(LLAMA_32_1B.replace("\"silu\"", "\"gelu\""));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(gelu)).hasMessageContaining("hidden_act").hasMessageContaining("gelu");

        Path bias = write(LLAMA_32_1B.replace("\"attention_bias\": false", "\"attention_bias\": true"));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(bias)).hasMessageContaining("attention_bias");

        Path badKv = write(LLAMA_32_1B.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5"));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(badKv)).hasMessageContaining(badKv.toString()).hasMessageContaining("nKvHeads 5");

        // absurd sizes fail here, not when a cache or buffer is sized from them
        Path huge = write(LLAMA_32_1B.replace("\"max_position_embeddings\": 131072", "\"max_position_embeddings\": 2147483647"));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(huge)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(huge.toString())
            .hasMessageContaining("max_position_embeddings").hasMessageContaining("2147483647");
        Path layers = write(LLAMA_32_1B.replace("\"num_hidden_layers\": 16", "\"num_hidden_layers\": 1000000"));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(layers)).hasMessageContaining("num_hidden_layers").hasMessageContaining("1000000");
        Path tied = write(LLAMA_32_1B.replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": \"yes\""));
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(tied)).hasMessageContaining("tie_word_embeddings").hasMessageContaining("\"yes\"");

        Path notJson = Files.writeString(dir.resolve("broken.json"), "{");
        assertThatThrownBy(() -> LlamaConfig.fromHfConfig(notJson)).hasMessageContaining(notJson.toString());
    }

    @Test
    void hfConfigJsonRoundTripsLosslessly() throws IOException {
        for (String json : new String[] {LLAMA_32_1B, QWEN2_05B, MISTRAL_7B}) {
            LlamaConfig c = LlamaConfig.fromHfConfig(write(json));
            assertThat(LlamaConfig.fromHfConfig(write(c.toHfConfigJson()))).isEqualTo(c);
        }
        LlamaConfig linear = new LlamaConfig(64, 172, 2, 8, 4, 8, 512, 256, 1e-5f, 10000f, RopeScaling.linear(2f), false, false, false, "LlamaForCausalLM");
        assertThat(LlamaConfig.fromHfConfig(write(linear.toHfConfigJson()))).isEqualTo(linear);
        assertThat(linear.toHfConfigJson()).contains("\"model_type\" : \"llama\"");
    }

    @Test
    void interleavedRopeConfigsCannotBeWrittenAsHuggingFace() {
        LlamaConfig llama2c = stories260K();
        assertThatThrownBy(llama2c::toHfConfigJson).isInstanceOf(IllegalStateException.class).hasMessageContaining("rotate-half");
    }

    @Test
    void validateNamesTheBrokenSize() {
        assertThat(stories260K().validate()).isEqualTo(stories260K());
        assertThat(stories260K().parameterCount()).isEqualTo(260_032L); // stories260K.bin holds exactly these floats (+ unused freq_cis)
        assertThatThrownBy(() -> new LlamaConfig(65, 172, 5, 8, 4, 8, 512, 512, 1e-5f, 10000f, null, true, false, true, "llama2.c").validate())
            .hasMessageContaining("dim 65").hasMessageContaining("nHeads 8");
        assertThatThrownBy(() -> new LlamaConfig(64, 172, 5, 8, 3, 8, 512, 512, 1e-5f, 10000f, null, true, false, true, "llama2.c").validate())
            .hasMessageContaining("nKvHeads 3");
        assertThatThrownBy(() -> new LlamaConfig(63, 172, 5, 9, 3, 7, 512, 512, 1e-5f, 10000f, null, true, false, true, "llama2.c").validate())
            .hasMessageContaining("headDim 7");
        assertThatThrownBy(() -> new LlamaConfig(64, 172, 0, 8, 4, 8, 512, 512, 1e-5f, 10000f, null, true, false, true, "llama2.c").validate())
            .hasMessageContaining("nLayers");
        assertThatThrownBy(() -> RopeScaling.llama3(8f, 4f, 1f, 8192)).hasMessageContaining("low_freq_factor");
    }

    private static LlamaConfig stories260K() {
        return new LlamaConfig(64, 172, 5, 8, 4, 8, 512, 512, 1e-5f, 10000f, null, true, false, true, "llama2.c");
    }

    private Path write(String json) throws IOException {
        return Files.writeString(Files.createTempFile(dir, "config", ".json"), json);
    }
}
