package dev.eetune.nn;

import dev.eetune.backend.Ops;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/** The Llama MLP, down(silu(gate x) * up x), trainable: forward keeps what backward needs. */
public final class SwiGluMlp {
    private final Parameter gate, up, down;

    /** gate, up: [hidden, dim]; down: [dim, hidden]. */
    public SwiGluMlp(Parameter gate, Parameter up, Parameter down) {
        this.gate = gate;
        this.up = up;
        this.down = down;
    }

    public Parameter gate() { return gate; }

    public Parameter up() { return up; }

    public Parameter down() { return down; }

    /** Activations saved by {@link #forward} for {@link #backward}. */
    public record Saved(Tensor x, Tensor g, Tensor u, Tensor a) {}

    /** out [rows, dim] = mlp(x); saved tensors live in {@code s}. */
    public Saved forward(Scope s, Tensor x, Tensor out) {
        Ops ops = s.backend().ops();
        int rows = Ops.rows(x), hidden = gate.value().dim(0);
        Tensor g = s.allocate(DType.F32, rows, hidden), u = s.allocate(DType.F32, rows, hidden), a = s.allocate(DType.F32, rows, hidden);
        ops.linear(g, x, gate.value());
        ops.linear(u, x, up.value());
        ops.swiglu(a, g, u);
        ops.linear(out, a, down.value());
        return new Saved(x, g, u, a);
    }

    /** Accumulates parameter gradients for upstream {@code dout}; writes dx when it is not null. */
    public void backward(Scope s, Saved sv, Tensor dout, Tensor dx) {
        Ops ops = s.backend().ops();
        int rows = Ops.rows(dout), hidden = gate.value().dim(0);
        ops.gemm(true, false, 1f, dout, sv.a(), 1f, down.grad());          // dDown += dout^T a
        Tensor da = s.allocate(DType.F32, rows, hidden), du = s.allocate(DType.F32, rows, hidden);
        ops.gemm(false, false, 1f, dout, down.value(), 0f, da);             // da = dout Down
        ops.swigluBackward(da, du, da, sv.g(), sv.u());                    // da becomes dgate
        ops.gemm(true, false, 1f, da, sv.x(), 1f, gate.grad());            // dGate += dg^T x
        ops.gemm(true, false, 1f, du, sv.x(), 1f, up.grad());              // dUp += du^T x
        if (dx != null) {
            ops.gemm(false, false, 1f, da, gate.value(), 0f, dx);
            ops.gemm(false, false, 1f, du, up.value(), 1f, dx);
        }
    }
}
