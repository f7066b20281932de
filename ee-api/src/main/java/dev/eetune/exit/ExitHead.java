package dev.eetune.exit;

import dev.eetune.backend.Ops;
import dev.eetune.model.KvCache;
import dev.eetune.model.LayerWeights;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.nn.SwiGluMlp;
import dev.eetune.nn.TransformerBlock;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * An early-exit head after backbone layer L: its own norm / MLP / layer (by architecture) and its own LM head.
 * Forward and backward touch only the head's parameters; the backbone stays frozen.
 */
public final class ExitHead {
    private final ExitSpec spec;
    private final LlamaConfig config;
    private final Tensor ffnNormOfLayer; // frozen backbone weight feeding the MLP branch (MLP architecture only)
    private final Parameter norm, lmHead;
    private final SwiGluMlp mlp;
    private final TransformerBlock block;
    private final float temperature;

    private ExitHead(ExitSpec spec, LlamaConfig config, Tensor ffnNormOfLayer, Parameter norm, Parameter lmHead, SwiGluMlp mlp, TransformerBlock block, float temperature) {
        this.spec = spec;
        this.config = config;
        this.ffnNormOfLayer = ffnNormOfLayer;
        this.norm = norm;
        this.lmHead = lmHead;
        this.mlp = mlp;
        this.block = block;
        this.temperature = temperature;
    }

    /** Parameter-name prefix of the exit after layer L. */
    public static String prefix(int layer) { return "exits." + layer + "."; }

    /** Creates the head's parameters in {@code ps}, initialised from {@code backbone} (copy) or {@code r} (random). */
    public static ExitHead create(ExitSpec spec, LlamaModel backbone, ParameterSet ps, Random r, float temperature) {
        LlamaConfig c = backbone.config();
        if (spec.layer() > c.nLayers()) throw new IllegalArgumentException("exit after layer " + spec.layer() + ", but the model has " + c.nLayers() + " layers");
        if (!(temperature > 0)) throw new IllegalArgumentException("exit temperature must be > 0, got " + temperature);
        String p = prefix(spec.layer());
        boolean copy = spec.init() == ExitInit.COPY;
        ExitArchitecture a = spec.architecture();
        LayerWeights layerL = backbone.weights().layers().get(spec.layer() - 1);
        int d = c.dim(), f = c.hiddenDim();
        Parameter head = copy ? ps.copyOf(p + "lm_head.weight", backbone.weights().lmHead()) : ps.gaussian(p + "lm_head.weight", r, 0.02f, c.vocabSize(), d);
        Parameter nrm = a == ExitArchitecture.EMBEDDING ? null
            : copy ? ps.copyOf(p + "norm.weight", backbone.weights().finalNorm()) : ps.constant(p + "norm.weight", 1f, d);
        SwiGluMlp mlp = null;
        if (a == ExitArchitecture.MLP) {
            mlp = copy ? new SwiGluMlp(ps.copyOf(p + "mlp.gate_proj.weight", layerL.wGate()), ps.copyOf(p + "mlp.up_proj.weight", layerL.wUp()),
                ps.copyOf(p + "mlp.down_proj.weight", layerL.wDown()))
                : new SwiGluMlp(ps.gaussian(p + "mlp.gate_proj.weight", r, 0.02f, f, d), ps.gaussian(p + "mlp.up_proj.weight", r, 0.02f, f, d),
                ps.gaussian(p + "mlp.down_proj.weight", r, 0.02f, d, f));
        }
        TransformerBlock block = null;
        if (a == ExitArchitecture.LAYER) {
            LayerWeights src = copy ? backbone.weights().layers().get(c.nLayers() - 1) : randomLayer(c, ps.scope(), r);
            block = TransformerBlock.copyOf(c, src, ps, p + "layer.", backbone.ropeInverseFrequencies());
        }
        return new ExitHead(spec, c, a == ExitArchitecture.MLP ? layerL.ffnNorm() : null, nrm, head, mlp, block, temperature);
    }

    /** Random layer weights (N(0, 0.02), norms 1) in {@code s}, to be copied into the block's parameters. */
    private static LayerWeights randomLayer(LlamaConfig c, Scope s, Random r) {
        int d = c.dim(), qd = c.nHeads() * c.headDim(), kd = c.nKvHeads() * c.headDim(), f = c.hiddenDim();
        java.util.function.BiFunction<Integer, Integer, Tensor> g = (rows, cols) -> {
            float[] v = new float[rows * cols];
            for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * 0.02);
            return s.of(v, rows, cols);
        };
        float[] ones = new float[d];
        java.util.Arrays.fill(ones, 1f);
        return new LayerWeights(s.of(ones, d), g.apply(qd, d), g.apply(kd, d), g.apply(kd, d), g.apply(d, qd),
            c.qkvBias() ? s.zeros(DType.F32, qd) : null, c.qkvBias() ? s.zeros(DType.F32, kd) : null, c.qkvBias() ? s.zeros(DType.F32, kd) : null,
            s.of(ones, d), g.apply(f, d), g.apply(d, f), g.apply(f, d));
    }

    public ExitSpec spec() { return spec; }

    /** 1-based backbone layer this head sits after. */
    public int layer() { return spec.layer(); }

    public ExitArchitecture architecture() { return spec.architecture(); }

    public float temperature() { return temperature; }

    public Parameter lmHead() { return lmHead; }

    /** The head's parameters. */
    public List<Parameter> parameters() {
        List<Parameter> out = new ArrayList<>();
        if (norm != null) out.add(norm);
        out.add(lmHead);
        if (mlp != null) { out.add(mlp.gate()); out.add(mlp.up()); out.add(mlp.down()); }
        if (block != null) out.addAll(block.parameters());
        return out;
    }

    /** What the head reads from the backbone: layer L's output, and (MLP) its attention residual. Dense rows. */
    public record Input(Tensor hidden, Tensor attnResidual, Tensor seq, Tensor pos, int batch, int seqLen) {}

    /**
     * The input of the head's LM head, z [rows, dim]: norm(hidden), norm(r + mlp(ffnNorm_L(r))), norm(layer(hidden)),
     * or hidden itself. Saved activations (for {@link #backward}) live in {@code s}.
     */
    public Forward forward(Scope s, Input in) {
        Ops ops = s.backend().ops();
        int rows = Ops.rows(in.hidden()), d = config.dim();
        switch (spec.architecture()) {
            case EMBEDDING:
                return new Forward(in.hidden(), null, null, null, null);
            case NORM: {
                Tensor z = s.allocate(DType.F32, rows, d), inv = s.allocate(DType.F32, rows);
                ops.rmsnorm(z, inv, in.hidden(), norm.value(), config.normEps());
                return new Forward(z, in.hidden(), inv, null, null);
            }
            case MLP: {
                Tensor xn = s.allocate(DType.F32, rows, d), pre = s.allocate(DType.F32, rows, d);
                ops.rmsnorm(xn, null, in.attnResidual(), ffnNormOfLayer, config.normEps());
                SwiGluMlp.Saved ms = mlp.forward(s, xn, pre);
                ops.add(pre, pre, in.attnResidual());
                Tensor z = s.allocate(DType.F32, rows, d), inv = s.allocate(DType.F32, rows);
                ops.rmsnorm(z, inv, pre, norm.value(), config.normEps());
                return new Forward(z, pre, inv, ms, null);
            }
            case LAYER: {
                Tensor pre = s.allocate(DType.F32, rows, d);
                TransformerBlock.Saved bs = block.forward(s, in.hidden(), pre, in.seq(), in.pos(), in.batch(), in.seqLen());
                Tensor z = s.allocate(DType.F32, rows, d), inv = s.allocate(DType.F32, rows);
                ops.rmsnorm(z, inv, pre, norm.value(), config.normEps());
                return new Forward(z, pre, inv, null, bs);
            }
            default:
                throw new IllegalStateException(spec.architecture().toString());
        }
    }

    /** Activations of one forward: z feeds the LM head; the rest is what backward needs. */
    public record Forward(Tensor z, Tensor preNorm, Tensor invRms, SwiGluMlp.Saved mlp, TransformerBlock.Saved block) {}

    /** Accumulates the head's gradients below the LM head, given dz (the gradient of z). */
    public void backward(Scope s, Forward f, Tensor dz) {
        if (spec.architecture() == ExitArchitecture.EMBEDDING) return;
        Ops ops = s.backend().ops();
        boolean deeper = spec.architecture() != ExitArchitecture.NORM;
        Tensor dpre = deeper ? s.allocate(DType.F32, Ops.rows(dz), config.dim()) : null;
        ops.rmsnormBackward(dpre, norm.grad(), dz, f.preNorm(), norm.value(), f.invRms());
        if (spec.architecture() == ExitArchitecture.MLP) mlp.backward(s, f.mlp(), dpre, null);
        else if (spec.architecture() == ExitArchitecture.LAYER) block.backward(s, f.block(), dpre, null);
    }

    /**
     * Decoding: the LM head's input for some rows. {@code hidden} is layer L's output (for LAYER, the output of the
     * head's own layer, see {@link #decodeLogits}); {@code residual} is layer L's attention residual (MLP only).
     */
    private Tensor inferenceInput(Scope s, Tensor hidden, Tensor residual) {
        Ops ops = s.backend().ops();
        int rows = Ops.rows(hidden), d = config.dim();
        switch (spec.architecture()) {
            case EMBEDDING:
                return hidden;
            case MLP: {
                Tensor xn = s.allocate(DType.F32, rows, d), pre = s.allocate(DType.F32, rows, d), z = s.allocate(DType.F32, rows, d);
                ops.rmsnorm(xn, null, residual, ffnNormOfLayer, config.normEps());
                mlp.forward(s, xn, pre);
                ops.add(pre, pre, residual);
                ops.rmsnorm(z, null, pre, norm.value(), config.normEps());
                return z;
            }
            default: {
                Tensor z = s.allocate(DType.F32, rows, d);
                ops.rmsnorm(z, null, hidden, norm.value(), config.normEps());
                return z;
            }
        }
    }

    /**
     * Decoding: the head's logits [firstRows, vocab] for rows 0..firstRows-1 of a pass. {@code hidden} [rows, dim] is
     * layer L's output for every row of the pass, {@code residual} its attention residual (MLP only, else null). A
     * LAYER head first runs its own layer over every row, writing their K/V into {@code ownCache} so that cache stays
     * exact. Temporaries live in {@code s}.
     */
    public Tensor decodeLogits(Scope s, LlamaModel model, Tensor hidden, Tensor residual, Workspace.Rows rows, KvCache ownCache, Workspace ws, int firstRows) {
        Tensor src = hidden;
        if (spec.architecture() == ExitArchitecture.LAYER) {
            src = s.allocate(DType.F32, Ops.rows(hidden), config.dim());
            src.copyFrom(hidden);
            model.layer(block.weights(), ownCache.keys(0), ownCache.values(0), src, rows, ws);
        }
        Tensor z = inferenceInput(s, src.slice(0, firstRows), residual == null ? null : residual.slice(0, firstRows));
        Tensor logits = s.allocate(DType.F32, firstRows, config.vocabSize());
        s.backend().ops().linear(logits, z, lmHead.value());
        return logits;
    }

    /** The exit's layer weights for inference (LAYER architecture), else null. */
    public LayerWeights layerWeights() { return block == null ? null : block.weights(); }

    /** The MLP branch (MLP architecture), else null. */
    public SwiGluMlp mlp() { return mlp; }

    /** The backbone's frozen post-attention norm of layer L (MLP architecture), else null. */
    public Tensor ffnNormOfLayer() { return ffnNormOfLayer; }

    /** The exit norm (null for EMBEDDING). */
    public Parameter norm() { return norm; }

    @Override
    public String toString() { return "ExitHead[" + spec + ", T=" + temperature + "]"; }
}
