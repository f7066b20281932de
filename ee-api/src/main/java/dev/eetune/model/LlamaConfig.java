package dev.eetune.model;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.model.io.JsonFields;
import dev.eetune.model.io.JsonFiles;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * The shape of a Llama-family decoder (Llama 2/3, Mistral, Qwen2, llama2.c). Immutable: thread-safe.
 *
 * @param dim              hidden size (residual stream width)
 * @param hiddenDim        feed-forward inner size
 * @param headDim          size of one attention head (usually dim / nHeads)
 * @param maxSeqLen        longest context the model supports
 * @param ropeScaling      long-context frequency scaling, or null
 * @param tiedEmbeddings   whether the classifier is the token embedding
 * @param qkvBias          whether q, k and v projections have biases (Qwen2)
 * @param ropeInterleaved  true when RoPE rotates pairs (x[2i], x[2i+1]) (llama2.c); false for Hugging Face's
 *                         rotate-half, which pairs x[i] with x[i + headDim/2]
 * @param architecture     where the config came from: a Hugging Face architecture name, or e.g. "llama2.c"
 */
public record LlamaConfig(int dim, int hiddenDim, int nLayers, int nHeads, int nKvHeads, int headDim, int vocabSize, int maxSeqLen,
                          float normEps, float ropeTheta, RopeScaling ropeScaling, boolean tiedEmbeddings, boolean qkvBias,
                          boolean ropeInterleaved, String architecture) {
    public static final String LLAMA = "LlamaForCausalLM";
    public static final String MISTRAL = "MistralForCausalLM";
    public static final String QWEN2 = "Qwen2ForCausalLM";
    private static final Map<String, String> MODEL_TYPES = Map.of(LLAMA, "llama", MISTRAL, "mistral", QWEN2, "qwen2");
    private static final List<String> SUPPORTED = List.of(LLAMA, MISTRAL, QWEN2);
    private static final String[] SIZE_NAMES = {"dim (hidden_size)", "hiddenDim (intermediate_size)", "nLayers (num_hidden_layers)", "nHeads (num_attention_heads)",
        "nKvHeads (num_key_value_heads)", "headDim (head_dim)", "vocabSize (vocab_size)", "maxSeqLen (max_position_embeddings)"};
    /**
     * Upper bounds far above every released model (the largest have dim 16384, hidden 53248, 126 layers, 128 heads,
     * head size 256, vocabularies of 256K and contexts of 10M), so a forged config fails here, not in an allocation
     * or an int overflow of a product of sizes.
     */
    private static final int[] SIZE_LIMITS = {1 << 20, 1 << 20, 1 << 12, 1 << 12, 1 << 12, 1 << 14, 1 << 24, 1 << 24};

    /**
     * A small bias-free Llama to pretrain from scratch ({@link dev.eetune.train.Pretrainer}): MLP width 8/3 dim rounded up
     * to a multiple of 32, as many key/value heads as heads, RoPE theta 10000, norm eps 1e-5, untied LM head.
     */
    public static LlamaConfig llama(int dim, int nLayers, int nHeads, int vocabSize, int maxSeqLen) {
        return llama(dim, (int) (Math.ceil(8.0 * dim / 3 / 32) * 32), nLayers, nHeads, nHeads, vocabSize, maxSeqLen);
    }

    /** As {@link #llama(int, int, int, int, int)} with the MLP width and key/value heads given. */
    public static LlamaConfig llama(int dim, int hiddenDim, int nLayers, int nHeads, int nKvHeads, int vocabSize, int maxSeqLen) {
        if (nHeads < 1 || dim % nHeads != 0) throw new IllegalArgumentException("dim " + dim + " must be a multiple of the " + nHeads + " heads");
        return new LlamaConfig(dim, hiddenDim, nLayers, nHeads, nKvHeads, dim / nHeads, vocabSize, maxSeqLen, 1e-5f, 10000f, null, false, false, false, LLAMA).validate();
    }

    /** Checks the sizes fit together; returns this. */
    public LlamaConfig validate() {
        int[] sizes = {dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, maxSeqLen};
        for (int i = 0; i < sizes.length; i++) {
            if (sizes[i] <= 0 || sizes[i] > SIZE_LIMITS[i]) {
                throw new IllegalArgumentException(this + ": " + SIZE_NAMES[i] + " must be in 1.." + SIZE_LIMITS[i] + ", got " + sizes[i]);
            }
        }
        if (dim % nHeads != 0) throw new IllegalArgumentException(this + ": dim " + dim + " is not divisible by nHeads " + nHeads);
        if (nHeads % nKvHeads != 0) throw new IllegalArgumentException(this + ": nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        if (headDim % 2 != 0) throw new IllegalArgumentException(this + ": headDim " + headDim + " must be even (RoPE rotates pairs)");
        if (!(normEps > 0) || Float.isInfinite(normEps)) throw new IllegalArgumentException(this + ": normEps must be > 0 and finite, got " + normEps);
        if (!(ropeTheta > 0) || Float.isInfinite(ropeTheta)) throw new IllegalArgumentException(this + ": ropeTheta must be > 0 and finite, got " + ropeTheta);
        if (architecture == null || architecture.isBlank()) throw new IllegalArgumentException(this + ": architecture must be named");
        return this;
    }

    /** {@link #validate()}, its errors naming {@code source}, the file this config was read from. */
    public LlamaConfig validate(Path source) {
        try {
            return validate();
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(source + ": " + e.getMessage(), e);
        }
    }

    /**
     * RoPE inverse frequencies {@code 1 / theta^(2i / headDim)} for {@code i < headDim / 2}, with {@link #ropeScaling}
     * applied; computed in double and rounded once.
     */
    public float[] ropeInverseFrequencies() {
        float[] inv = new float[headDim / 2];
        for (int i = 0; i < inv.length; i++) {
            double f = 1.0 / Math.pow(ropeTheta, 2.0 * i / headDim);
            inv[i] = (float) (ropeScaling == null ? f : ropeScaling.apply(f));
        }
        return inv;
    }

    /** Number of weights, counting a tied classifier once. */
    public long parameterCount() {
        long q = (long) nHeads * headDim, kv = (long) nKvHeads * headDim;
        long attention = dim * q + 2 * dim * kv + q * dim + (qkvBias ? q + 2 * kv : 0);
        long ffn = 3L * dim * hiddenDim;
        long perLayer = attention + ffn + 2L * dim;
        long embedding = (long) vocabSize * dim;
        return embedding + nLayers * perLayer + dim + (tiedEmbeddings ? 0 : embedding);
    }

    /**
     * Reads a Hugging Face {@code config.json} of a LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM. Fields
     * the decoder cannot honour (other activations, attention/MLP biases on Llama, other RoPE scalings, Qwen2 sliding
     * window) are errors; Mistral's sliding window caps {@link #maxSeqLen}, within which it equals full attention.
     * Both the classic {@code rope_theta}/{@code rope_scaling} and transformers 5's {@code rope_parameters} are read.
     */
    public static LlamaConfig fromHfConfig(Path configJson) {
        JsonNode c = JsonFiles.readObject(configJson, "model config");
        JsonFields f = new JsonFields(configJson.toString(), c);
        JsonNode archs = c.path("architectures");
        if (!archs.isArray() || archs.isEmpty() || !archs.get(0).isTextual()) {
            throw new IllegalArgumentException(configJson + ": field 'architectures' is missing; expected one of " + SUPPORTED);
        }
        String arch = archs.get(0).asText();
        if (!SUPPORTED.contains(arch)) throw new IllegalArgumentException(configJson + ": architecture '" + arch + "' is not supported (supported: " + String.join(", ", SUPPORTED) + ")");

        String act = c.path("hidden_act").asText("silu");
        if (!act.equals("silu")) throw new IllegalArgumentException(configJson + ": hidden_act '" + act + "' is not supported (only silu)");
        if (f.optionalBoolean("attention_bias", false)) throw new IllegalArgumentException(configJson + ": attention_bias true (biases on q, k, v and o) is not supported");
        if (f.optionalBoolean("mlp_bias", false)) throw new IllegalArgumentException(configJson + ": mlp_bias true is not supported");
        if (arch.equals(QWEN2) && f.optionalBoolean("use_sliding_window", false)) {
            throw new IllegalArgumentException(configJson + ": use_sliding_window true is not supported");
        }

        int dim = f.requiredInt("hidden_size"), hidden = f.requiredInt("intermediate_size"), layers = f.requiredInt("num_hidden_layers");
        int heads = f.requiredInt("num_attention_heads"), kvHeads = f.optionalInt("num_key_value_heads", heads);
        int headDim = f.optionalInt("head_dim", heads > 0 ? dim / heads : 0), vocab = f.requiredInt("vocab_size");
        int maxSeqLen = f.requiredInt("max_position_embeddings");
        if (arch.equals(MISTRAL) && f.optionalInt("sliding_window", 0) > 0) maxSeqLen = Math.min(maxSeqLen, f.requiredInt("sliding_window"));
        float eps = f.optionalFloat("rms_norm_eps", 1e-6f);
        JsonNode ropeParameters = c.path("rope_parameters"); // transformers >= 5
        float ropeTheta;
        RopeScaling scaling;
        if (ropeParameters.isObject()) {
            ropeTheta = new JsonFields(configJson + ": rope_parameters", ropeParameters).optionalFloat("rope_theta", 10000f);
            scaling = ropeScaling(configJson + ": rope_parameters", ropeParameters);
        } else {
            ropeTheta = f.optionalFloat("rope_theta", 10000f);
            scaling = ropeScaling(configJson + ": rope_scaling", c.path("rope_scaling"));
        }
        return new LlamaConfig(dim, hidden, layers, heads, kvHeads, headDim, vocab, maxSeqLen, eps, ropeTheta, scaling,
            f.optionalBoolean("tie_word_embeddings", false), arch.equals(QWEN2), false, arch).validate(configJson);
    }

    private static RopeScaling ropeScaling(String where, JsonNode s) {
        if (s.isMissingNode() || s.isNull()) return null;
        if (!s.isObject()) throw new IllegalArgumentException(where + " must be an object or null, got " + s);
        String type = s.has("rope_type") ? s.path("rope_type").asText() : s.path("type").asText("default");
        JsonFields f = new JsonFields(where, s);
        float factor;
        switch (type) {
            case "default":
                return null;
            case RopeScaling.LINEAR:
                factor = f.requiredFloat("factor");
                try {
                    return RopeScaling.linear(factor);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
                }
            case RopeScaling.LLAMA3:
                factor = f.requiredFloat("factor");
                float low = f.requiredFloat("low_freq_factor"), high = f.requiredFloat("high_freq_factor");
                int original = f.requiredInt("original_max_position_embeddings");
                try {
                    return RopeScaling.llama3(factor, low, high, original);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
                }
            default:
                throw new IllegalArgumentException(where + ": rope type '" + type + "' is not supported (supported: default, linear, llama3)");
        }
    }

    /**
     * This config as a Hugging Face {@code config.json}; {@link #fromHfConfig} reads it back equal. The architecture
     * is Qwen2ForCausalLM when {@link #qkvBias}, MistralForCausalLM if it was one, else LlamaForCausalLM. Hugging Face
     * checkpoints use rotate-half RoPE, so an interleaved config is refused: permute the q and k rows first.
     */
    public String toHfConfigJson() {
        validate();
        if (ropeInterleaved) {
            throw new IllegalStateException(this + ": Hugging Face checkpoints use rotate-half RoPE; permute the q/k projection rows and use ropeInterleaved = false before writing config.json");
        }
        String arch = qkvBias ? QWEN2 : MISTRAL.equals(architecture) ? MISTRAL : LLAMA;
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode c = json.createObjectNode();
        c.putArray("architectures").add(arch);
        c.put("model_type", MODEL_TYPES.get(arch));
        c.put("hidden_size", dim);
        c.put("intermediate_size", hiddenDim);
        c.put("num_hidden_layers", nLayers);
        c.put("num_attention_heads", nHeads);
        c.put("num_key_value_heads", nKvHeads);
        c.put("head_dim", headDim);
        c.put("vocab_size", vocabSize);
        c.put("max_position_embeddings", maxSeqLen);
        c.put("rms_norm_eps", normEps);
        c.put("rope_theta", ropeTheta);
        if (ropeScaling == null) {
            c.putNull("rope_scaling");
        } else {
            ObjectNode s = c.putObject("rope_scaling");
            s.put("rope_type", ropeScaling.type());
            s.put("factor", ropeScaling.factor());
            if (RopeScaling.LLAMA3.equals(ropeScaling.type())) {
                s.put("low_freq_factor", ropeScaling.lowFreqFactor());
                s.put("high_freq_factor", ropeScaling.highFreqFactor());
                s.put("original_max_position_embeddings", ropeScaling.originalMaxPositionEmbeddings());
            }
        }
        c.put("tie_word_embeddings", tiedEmbeddings);
        c.put("hidden_act", "silu");
        try {
            return json.writeValueAsString(c);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise " + this, e);
        }
    }
}
