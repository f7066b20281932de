package dev.eetune.exit;

import dev.eetune.nn.Parameter;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.List;

/**
 * EE-LLM's "embedding" exit: the LM head straight on layer L's output, z = h.
 * Thread-safety: as every head, read-only while decoding (shared by the decoding threads); written only by a tuner.
 */
public record EmbeddingExit(ExitSpec spec, Parameter lmHead, float temperature) implements ExitHead {
    @Override
    public List<Parameter> parameters() { return List.of(lmHead); }

    @Override
    public Forward forward(Scope s, ExitInput in) {
        return new Forward(in.hidden(), null); // nothing below the LM head to train
    }

    @Override
    public Tensor decodeInput(Scope s, ExitInput in, int firstRows) { return in.hidden().slice(0, firstRows); }

    @Override
    public dev.eetune.backend.Ops.ExitStep decodeStep(ExitGate gate, float tau, float confirm) { return ExitHead.decodeStep(this, null, null, null, gate, tau, confirm); }

    @Override
    public String toString() { return "EmbeddingExit[" + spec + ", T=" + temperature + "]"; }
}
