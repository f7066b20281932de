package dev.eetune.model;

import dev.eetune.tensor.Tensor;

import java.util.List;

/**
 * A Llama-family model's weights; {@code lmHead} is {@code tokenEmbedding} itself when the embeddings are tied.
 * Thread-safety: read-only weights, shared like their model.
 */
public record LlamaWeights(Tensor tokenEmbedding, List<LayerWeights> layers, Tensor finalNorm, Tensor lmHead) {
    public LlamaWeights {
        layers = List.copyOf(layers);
    }
}
