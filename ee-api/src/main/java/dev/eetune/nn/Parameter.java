package dev.eetune.nn;

import dev.eetune.tensor.Tensor;

/**
 * A trainable F32 tensor with its gradient (same shape, accumulated by backward passes). {@code decay} says whether
 * AdamW's weight decay applies (matrices yes; norms and biases no).
 */
public record Parameter(String name, Tensor value, Tensor grad, boolean decay) {
    @Override
    public String toString() { return "Parameter[" + name + " " + value.dtype() + value.shape() + (decay ? ", decay" : "") + "]"; }
}
