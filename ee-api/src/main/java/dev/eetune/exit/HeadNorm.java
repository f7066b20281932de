package dev.eetune.exit;

import dev.eetune.backend.Ops;
import dev.eetune.model.LlamaModel;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/** The final RMSNorm of the NORM, MLP and LAYER heads: z = rmsnorm(pre, norm), forward and backward. */
final class HeadNorm {
    private HeadNorm() {}

    /** The head's norm weight: a copy of the backbone's final norm, or ones. */
    static Parameter create(String prefix, boolean copy, LlamaModel backbone, ParameterSet ps) {
        return copy ? ps.copyOf(prefix + "norm.weight", backbone.weights().finalNorm()) : ps.constant(prefix + "norm.weight", 1f, backbone.config().dim());
    }

    /** z = rmsnorm(pre); {@code invRms} (may be null) keeps 1/rms per row for the backward. */
    static Tensor forward(Scope s, Parameter norm, Tensor pre, Tensor invRms, float eps) {
        Tensor z = s.allocate(DType.F32, Ops.rows(pre), Ops.cols(pre));
        s.backend().ops().rmsnorm(z, invRms, pre, norm.value(), eps);
        return z;
    }

    /** Accumulates the norm's gradient; returns d pre when {@code needInputGradient}, else null. */
    static Tensor backward(Scope s, Parameter norm, Tensor pre, Tensor invRms, Tensor dz, boolean needInputGradient) {
        Tensor dpre = needInputGradient ? s.allocate(DType.F32, Ops.rows(dz), Ops.cols(dz)) : null;
        s.backend().ops().rmsnormBackward(dpre, norm.grad(), dz, pre, norm.value(), invRms);
        return dpre;
    }
}
