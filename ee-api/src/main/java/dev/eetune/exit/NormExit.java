package dev.eetune.exit;

import dev.eetune.model.LlamaConfig;
import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.List;

/**
 * A norm exit: z = rmsnorm(h) with the head's own norm weight, then its LM head.
 * Thread-safety: as {@link ExitHead}.
 */
public record NormExit(ExitSpec spec, LlamaConfig config, Parameter norm, Parameter lmHead, float temperature) implements ExitHead {
    @Override
    public List<Parameter> parameters() { return List.of(norm, lmHead); }

    @Override
    public Forward forward(Scope s, ExitInput in) {
        Tensor inv = s.allocate(DType.F32, in.rows().count());
        Tensor z = HeadNorm.forward(s, norm, in.hidden(), inv, config.normEps());
        return new Forward(z, (scope, dz) -> HeadNorm.backward(scope, norm, in.hidden(), inv, dz, false));
    }

    @Override
    public Tensor decodeInput(Scope s, ExitInput in, int firstRows) {
        return HeadNorm.forward(s, norm, in.hidden().slice(0, firstRows), null, config.normEps());
    }

    @Override
    public dev.eetune.backend.Ops.ExitStep decodeStep(ExitGate gate, float tau, float confirm) { return ExitHead.decodeStep(this, norm.value(), null, null, gate, tau, confirm); }

    @Override
    public String toString() { return "NormExit[" + spec + ", T=" + temperature + "]"; }
}
