package dev.eetune.exit;

import dev.eetune.model.DecoderLayer;
import dev.eetune.model.LayerActivations;
import dev.eetune.model.LayerWeights;
import dev.eetune.model.LlamaModel;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.nn.SwiGluMlp;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.List;
import java.util.Random;

/**
 * An MLP exit: the head's own MLP replaces layer L's, z = rmsnorm(r + mlp(ffnNorm_L(r))) with r = layer L's attention
 * residual and ffnNorm_L the backbone's frozen post-attention norm; then the head's LM head.
 * Thread-safety: as {@link ExitHead}.
 */
public record MlpExit(ExitSpec spec, DecoderLayer decoderLayer, Tensor ffnNormOfLayer, SwiGluMlp mlp, Parameter norm, Parameter lmHead, float temperature)
    implements ExitHead {

    static MlpExit create(ExitSpec spec, LlamaModel backbone, ParameterSet ps, Random r, Parameter norm, Parameter lmHead, float temperature) {
        String p = ExitHead.prefix(spec.layer());
        LayerWeights l = backbone.weights().layers().get(spec.layer() - 1);
        int d = backbone.config().dim(), f = backbone.config().hiddenDim();
        SwiGluMlp mlp = spec.init() == ExitInit.COPY
            ? new SwiGluMlp(ps.copyOf(p + "mlp.gate_proj.weight", l.wGate()), ps.copyOf(p + "mlp.up_proj.weight", l.wUp()), ps.copyOf(p + "mlp.down_proj.weight", l.wDown()))
            : new SwiGluMlp(ps.gaussian(p + "mlp.gate_proj.weight", r, 0.02f, f, d), ps.gaussian(p + "mlp.up_proj.weight", r, 0.02f, f, d),
            ps.gaussian(p + "mlp.down_proj.weight", r, 0.02f, d, f));
        return new MlpExit(spec, backbone.decoderLayer(), l.ffnNorm(), mlp, norm, lmHead, temperature);
    }

    @Override
    public List<Parameter> parameters() { return List.of(norm, lmHead, mlp.gate(), mlp.up(), mlp.down()); }

    @Override
    public boolean readsAttentionResidual() { return true; }

    @Override
    public Forward forward(Scope s, ExitInput in) {
        int rows = in.rows().count();
        LayerActivations a = LayerActivations.allocateFeedForward(s, decoderLayer.config(), rows);
        Tensor pre = s.allocate(DType.F32, rows, decoderLayer.config().dim()), inv = s.allocate(DType.F32, rows);
        feedForward(in.attnResidual(), pre, a);
        Tensor z = HeadNorm.forward(s, norm, pre, inv, decoderLayer.config().normEps());
        return new Forward(z, (scope, dz) -> mlp.backward(scope, a, HeadNorm.backward(scope, norm, pre, inv, dz, true), null));
    }

    @Override
    public Tensor decodeInput(Scope s, ExitInput in, int firstRows) {
        Tensor pre = s.allocate(DType.F32, firstRows, decoderLayer.config().dim());
        feedForward(in.attnResidual().slice(0, firstRows), pre, in.workspace().activations(firstRows, pre, null));
        return HeadNorm.forward(s, norm, pre, null, decoderLayer.config().normEps());
    }

    @Override
    public dev.eetune.backend.Ops.ExitStep decodeStep(ExitGate gate, float tau, float confirm) { return ExitHead.decodeStep(this, norm.value(), ffnNormOfLayer, mlp, gate, tau, confirm); }

    private void feedForward(Tensor residual, Tensor pre, LayerActivations a) {
        decoderLayer.feedForward(ffnNormOfLayer, mlp.gate().value(), mlp.up().value(), mlp.down().value(), residual, pre, a);
    }

    @Override
    public String toString() { return "MlpExit[" + spec + ", T=" + temperature + "]"; }
}
