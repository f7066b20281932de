package dev.eetune.backend;

import dev.eetune.tensor.Tensor;

/**
 * An 8-bit copy of a weight [out, in] in ee_pack_panels_i8's layout, made by {@link Ops#packInt8Panels}: row j is
 * scale_j q_j with q_j in [-127, 127], so {@link Ops#linearPanels(Tensor, Tensor, Int8Panels)} gives scores within
 * ||x|| (resid_j + a rounding term) of the f32 products, at a quarter of the f32 bytes. Greedy decode screens its
 * classifier with one ({@code LlamaModel.greedyTokens}).
 *
 * @param bytes the panels' bytes (an I32 tensor only as their storage: the scales are f32, the values int8)
 * @param out the weight's rows
 * @param in its columns
 */
public record Int8Panels(Tensor bytes, int out, int in) {
    @Override
    public String toString() { return "Int8Panels[" + out + " x " + in + ", " + bytes.byteSize() + " bytes]"; }
}
