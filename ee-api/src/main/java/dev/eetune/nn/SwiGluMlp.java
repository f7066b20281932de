package dev.eetune.nn;

import dev.eetune.backend.Ops;
import dev.eetune.model.LayerActivations;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/**
 * The Llama MLP's trainable projections, down(silu(gate x) * up x). The forward is the layer's own
 * ({@link dev.eetune.model.DecoderLayer#feedForward}); this is its backward.
 */
public record SwiGluMlp(Parameter gate, Parameter up, Parameter down) {

    /**
     * Accumulates the projections' gradients for upstream {@code dout}, given the forward's activations (x = xn2,
     * gate, up, act); writes dx (the gradient of the MLP's input) when it is not null.
     */
    public void backward(Scope s, LayerActivations a, Tensor dout, Tensor dx) {
        Ops ops = s.backend().ops();
        int rows = Ops.rows(dout), hidden = gate.value().dim(0);
        ops.gemm(true, false, 1f, dout, a.act(), 1f, down.grad());         // dDown += dout^T act
        Tensor da = s.allocate(DType.F32, rows, hidden), du = s.allocate(DType.F32, rows, hidden);
        ops.gemm(false, false, 1f, dout, down.value(), 0f, da);             // da = dout Down
        ops.swigluBackward(da, du, da, a.gate(), a.up());                  // da becomes dgate
        ops.gemm(true, false, 1f, da, a.xn2(), 1f, gate.grad());           // dGate += dg^T x
        ops.gemm(true, false, 1f, du, a.xn2(), 1f, up.grad());             // dUp += du^T x
        if (dx != null) {
            ops.gemm(false, false, 1f, da, gate.value(), 0f, dx);
            ops.gemm(false, false, 1f, du, up.value(), 1f, dx);
        }
    }
}
