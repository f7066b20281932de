package dev.eetune.model;

import dev.eetune.tensor.Tensor;

/**
 * One transformer layer's weights. Projections are [out, in] (as nn.Linear.weight), in F32, BF16 or F16; norms and
 * biases are F32. Biases are null unless the architecture has them (Qwen2's q/k/v).
 */
public record LayerWeights(Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo,
                           Tensor bq, Tensor bk, Tensor bv,
                           Tensor ffnNorm, Tensor wGate, Tensor wDown, Tensor wUp) {}
