package dev.eetune.model;

import dev.eetune.model.io.SafetensorsWriter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Writes a model as a Hugging Face checkpoint (config.json + model.safetensors) that {@link LlamaModel#load} and
 * transformers read. A llama2.c model (interleaved RoPE pairs) is converted to rotate-half by permuting the rows of
 * each head of wq and wk, which leaves every q·k product, and so the logits, unchanged.
 * Thread-safety: its static methods may run on any thread while no thread writes the model.
 */
public final class HfCheckpointWriter {
    private HfCheckpointWriter() {}

    /** Writes {@code model} into {@code dir} (created if needed); {@code dtype} null keeps each tensor's own dtype. */
    public static void write(LlamaModel model, Path dir, DType dtype) {
        LlamaConfig c = model.config();
        boolean permute = c.ropeInterleaved();
        LlamaConfig out = new LlamaConfig(c.dim(), c.hiddenDim(), c.nLayers(), c.nHeads(), c.nKvHeads(), c.headDim(), c.vocabSize(), c.maxSeqLen(),
            c.normEps(), c.ropeTheta(), c.ropeScaling(), c.tiedEmbeddings(), c.qkvBias(), false,
            c.architecture().endsWith("ForCausalLM") ? c.architecture() : LlamaConfig.LLAMA);
        LlamaWeights w = model.weights();
        SafetensorsWriter st = new SafetensorsWriter().metadata("format", "pt").metadata("written_by", "eetune");
        put(st, "model.embed_tokens.weight", w.tokenEmbedding(), dtype, 0);
        for (int l = 0; l < c.nLayers(); l++) {
            LayerWeights lw = w.layers().get(l);
            String p = "model.layers." + l + ".";
            put(st, p + "input_layernorm.weight", lw.attnNorm(), dtype, 0);
            put(st, p + "self_attn.q_proj.weight", lw.wq(), dtype, permute ? c.headDim() : 0);
            put(st, p + "self_attn.k_proj.weight", lw.wk(), dtype, permute ? c.headDim() : 0);
            put(st, p + "self_attn.v_proj.weight", lw.wv(), dtype, 0);
            put(st, p + "self_attn.o_proj.weight", lw.wo(), dtype, 0);
            if (c.qkvBias()) {
                put(st, p + "self_attn.q_proj.bias", lw.bq(), dtype, permute ? c.headDim() : 0);
                put(st, p + "self_attn.k_proj.bias", lw.bk(), dtype, permute ? c.headDim() : 0);
                put(st, p + "self_attn.v_proj.bias", lw.bv(), dtype, 0);
            }
            put(st, p + "post_attention_layernorm.weight", lw.ffnNorm(), dtype, 0);
            put(st, p + "mlp.gate_proj.weight", lw.wGate(), dtype, 0);
            put(st, p + "mlp.up_proj.weight", lw.wUp(), dtype, 0);
            put(st, p + "mlp.down_proj.weight", lw.wDown(), dtype, 0);
        }
        put(st, "model.norm.weight", w.finalNorm(), dtype, 0);
        if (!c.tiedEmbeddings()) put(st, "lm_head.weight", w.lmHead(), dtype, 0);
        try {
            Files.createDirectories(dir);
            st.write(dir.resolve("model.safetensors"));
            Path tmp = Files.createTempFile(dir, "config", ".json.part");
            Files.writeString(tmp, out.toHfConfigJson(), StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve("config.json"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write checkpoint to " + dir, e);
        }
    }

    /** Adds a tensor; headDim > 0 reorders each head's rows from interleaved pairs to rotate-half halves. */
    private static void put(SafetensorsWriter st, String name, Tensor t, DType dtype, int headDim) {
        DType target = dtype == null ? t.dtype() : dtype;
        if (headDim == 0 && target == t.dtype() && t.device().isHost()) {
            st.put(name, t.dtype(), t.shape(), t.backend().host().view(t.address(), t.byteSize()));
            return;
        }
        float[] v = t.toFloatArray();
        if (headDim > 0) v = interleavedToRotateHalf(v, Math.toIntExact(t.size() / t.dim(0)), headDim);
        st.put(name, v, t.shape(), target);
    }

    /** Rows are output features; within each head, row 2i goes to i and row 2i+1 to i + headDim/2. */
    static float[] interleavedToRotateHalf(float[] w, int cols, int headDim) {
        float[] out = new float[w.length];
        int rows = w.length / cols, half = headDim / 2;
        for (int r = 0; r < rows; r++) {
            int head = r / headDim, within = r % headDim;
            int dst = head * headDim + (within % 2 == 0 ? within / 2 : half + within / 2);
            System.arraycopy(w, r * cols, out, dst * cols, cols);
        }
        return out;
    }
}
