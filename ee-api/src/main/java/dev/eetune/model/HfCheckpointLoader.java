package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.MappedFile;
import dev.eetune.model.io.SafetensorsHeader;
import dev.eetune.model.io.SafetensorsIndex;
import dev.eetune.model.io.TensorEntry;
import dev.eetune.progress.ProgressListener;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Shape;
import dev.eetune.tensor.Tensor;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Hugging Face checkpoints: config.json + model.safetensors or shards with model.safetensors.index.json. Each shard
 * is mapped once; matrices stay in their stored dtype (F32/BF16/F16) as views into the mapping, and the small
 * vectors (norms, biases) are converted to F32.
 */
final class HfCheckpointLoader {
    private HfCheckpointLoader() {}

    static LlamaModel load(Path dir, Backend backend, ProgressListener progress) {
        Path configFile = dir.resolve("config.json");
        if (!Files.isRegularFile(configFile)) throw new IllegalArgumentException("no config.json in " + dir + " (a Hugging Face checkpoint directory needs one)");
        LlamaConfig c = LlamaConfig.fromHfConfig(configFile).validate();
        SafetensorsIndex index = SafetensorsIndex.open(dir);
        Scope scope = Scope.of(backend, "model " + dir);
        try {
            Map<Path, MappedFile> maps = new HashMap<>();
            long total = 0, mapped = 0;
            for (SafetensorsHeader shard : index.shards()) total += shard.fileSize();
            for (SafetensorsHeader shard : index.shards()) {
                maps.put(shard.file(), scope.track(backend.map(shard.file())));
                progress.update(mapped += shard.fileSize(), total, shard.file().getFileName().toString());
            }
            Weights w = new Weights(index, maps, backend, scope);
            int kvDim = c.nKvHeads() * c.headDim(), qDim = c.nHeads() * c.headDim();
            Tensor emb = w.matrix("model.embed_tokens.weight", c.vocabSize(), c.dim());
            List<LayerWeights> layers = new ArrayList<>();
            for (int l = 0; l < c.nLayers(); l++) {
                String p = "model.layers." + l + ".";
                layers.add(new LayerWeights(
                    w.vector(p + "input_layernorm.weight", c.dim()),
                    w.matrix(p + "self_attn.q_proj.weight", qDim, c.dim()),
                    w.matrix(p + "self_attn.k_proj.weight", kvDim, c.dim()),
                    w.matrix(p + "self_attn.v_proj.weight", kvDim, c.dim()),
                    w.matrix(p + "self_attn.o_proj.weight", c.dim(), qDim),
                    c.qkvBias() ? w.vector(p + "self_attn.q_proj.bias", qDim) : null,
                    c.qkvBias() ? w.vector(p + "self_attn.k_proj.bias", kvDim) : null,
                    c.qkvBias() ? w.vector(p + "self_attn.v_proj.bias", kvDim) : null,
                    w.vector(p + "post_attention_layernorm.weight", c.dim()),
                    w.matrix(p + "mlp.gate_proj.weight", c.hiddenDim(), c.dim()),
                    w.matrix(p + "mlp.up_proj.weight", c.hiddenDim(), c.dim()),
                    w.matrix(p + "mlp.down_proj.weight", c.dim(), c.hiddenDim())));
            }
            Tensor norm = w.vector("model.norm.weight", c.dim());
            Tensor head;
            if (c.tiedEmbeddings()) head = emb;
            else if (index.contains("lm_head.weight")) head = w.matrix("lm_head.weight", c.vocabSize(), c.dim());
            else throw new IllegalArgumentException(dir + ": config.json says tie_word_embeddings = false, but no checkpoint file has lm_head.weight");
            return new LlamaModel(c, new LlamaWeights(emb, layers, norm, head), backend, scope, true);
        } catch (RuntimeException e) {
            scope.close();
            throw e;
        }
    }

    /** Looks tensors up by name and checks their shapes against the config. */
    private record Weights(SafetensorsIndex index, Map<Path, MappedFile> maps, Backend backend, Scope scope) {
        TensorEntry entry(String name, int... dims) {
            if (!index.contains(name)) throw new IllegalArgumentException(index.source() + ": tensor '" + name + "' is missing");
            TensorEntry e = index.tensor(name);
            if (!e.shape().equals(Shape.of(dims))) {
                throw new IllegalArgumentException(e.file() + ": tensor '" + name + "' has shape " + e.shape() + ", config.json implies " + Shape.of(dims));
            }
            if (!e.dtype().isFloat()) throw new IllegalArgumentException(e.file() + ": tensor '" + name + "' has dtype " + e.dtype() + "; expected F32, BF16 or F16");
            return e;
        }

        Tensor view(TensorEntry e) {
            return scope.wrap(maps.get(e.file()), e.fileOffset(), e.dtype(), e.shape());
        }

        Tensor matrix(String name, int rows, int cols) { return view(entry(name, rows, cols)); }

        Tensor vector(String name, int n) {
            Tensor stored = view(entry(name, n));
            if (stored.dtype() == DType.F32) return stored;
            Tensor f = scope.allocate(DType.F32, n);
            backend.ops().cast(f, stored);
            return f;
        }
    }
}
