package dev.eetune.exit;

import dev.eetune.backend.Ops;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.List;
import java.util.Random;

/**
 * An early-exit head after backbone layer L: one type per architecture ({@link EmbeddingExit}, {@link NormExit},
 * {@link MlpExit}, {@link LayerExit}), each holding only its own parameters plus an LM head, with its forward,
 * backward and decode side by side. Forward and backward touch only the head's parameters; the backbone stays frozen.
 * Callers ask a head what it reads ({@link #readsAttentionResidual()}, {@link #hasOwnCache()}) instead of switching
 * on the architecture.
 * Thread-safety: read-only while decoding, shared by any number of decoding threads (each call writes only buffers of
 * the caller's scope and workspace); only a tuner writes a head's parameters, and then no other thread uses it.
 */
public sealed interface ExitHead permits EmbeddingExit, NormExit, MlpExit, LayerExit {
    ExitSpec spec();

    /** Softmax temperature of the head's logits. */
    float temperature();

    Parameter lmHead();

    /** The head's parameters. */
    List<Parameter> parameters();

    /** 1-based backbone layer this head sits after. */
    default int layer() { return spec().layer(); }

    default ExitArchitecture architecture() { return spec().architecture(); }

    /** Whether the head reads its layer's attention residual h + attn(h) (an MLP head replaces the layer's MLP). */
    default boolean readsAttentionResidual() { return false; }

    /** Whether the head runs a layer of its own, whose K/V a decoder must keep ({@link ExitVisitor#ownCache}). */
    default boolean hasOwnCache() { return false; }

    /** Training: the LM head's input z [rows, dim] for every row of a dense pass, and the way back; saved in {@code s}. */
    Forward forward(Scope s, ExitInput in);

    /**
     * A forward's LM-head input and its backward, which accumulates the head's gradients below the LM head given dz;
     * null when the head has no parameters there (no need to compute dz).
     */
    record Forward(Tensor z, Backward backward) {}

    /** The backward of one {@link Forward}. */
    @FunctionalInterface
    interface Backward {
        void accumulate(Scope s, Tensor dz);
    }

    /**
     * Decoding: the LM head's input z for rows 0..firstRows-1 of the pass. A head with its own layer first runs it
     * over every row of the pass, writing their K/V into {@code in.ownCache()} so that cache stays exact. Scratch
     * comes from the workspace, temporaries live in {@code s}.
     */
    Tensor decodeInput(Scope s, ExitInput in, int firstRows);

    /**
     * Decoding with a cheap decision, for a head with its own layer: writes the K/V of every row of the pass into
     * {@code in.ownCache()} without running the head, so that a row that does not take the head pays only its K/V;
     * the rows that take it then run {@link #decodeInput} over themselves alone. Nothing for other heads.
     */
    default void writeOwnCache(Scope s, ExitInput in) {}

    /** Decoding: the head's logits [firstRows, vocab] (see {@link #decodeInput}). */
    default Tensor decodeLogits(Scope s, ExitInput in, int firstRows) {
        Tensor z = decodeInput(s, in, firstRows);
        Tensor logits = s.allocate(DType.F32, firstRows, lmHead().value().dim(0));
        s.backend().ops().linear(logits, z, lmHead().value());
        return logits;
    }

    /**
     * The head as one exit of a native decode chunk ({@link Ops#prepareExitSteps}) deciding with {@code gate} (null for softmax
     * decisions) at threshold {@code tau} (and the cascade's softmax confirmation {@code confirm}); null for a head with
     * its own layer, whose cache the Java decoder keeps.
     */
    Ops.ExitStep decodeStep(ExitGate gate, float tau, float confirm);

    /** {@link #decodeStep} of a head whose LM-head input is {@code headNorm}'s norm (null: none) of h, or of the MLP's output (mlp null: none). */
    static Ops.ExitStep decodeStep(ExitHead h, Tensor headNorm, Tensor ffnNorm, dev.eetune.nn.SwiGluMlp mlp, ExitGate gate, float tau, float confirm) {
        return new Ops.ExitStep(h.layer(), headNorm, ffnNorm, mlp == null ? null : mlp.gate().value(), mlp == null ? null : mlp.up().value(), mlp == null ? null : mlp.down().value(),
            h.lmHead().value(), h.temperature(), gate == null || gate.hidden() == null ? null : gate.hidden().value(), gate == null || gate.hiddenBias() == null ? null : gate.hiddenBias().value(),
            gate == null ? null : gate.weight().value(), gate == null ? null : gate.bias().value(), gate == null ? 0 : gate.eps(), tau, confirm, null, null, 0f, null);
    }

    /** Parameter-name prefix of the exit after layer L. */
    static String prefix(int layer) { return "exits." + layer + "."; }

    /** Creates the head's parameters in {@code ps}, initialised from {@code backbone} (copy) or {@code r} (random). */
    static ExitHead create(ExitSpec spec, LlamaModel backbone, ParameterSet ps, Random r, float temperature) {
        LlamaConfig c = backbone.config();
        if (spec.layer() > c.nLayers()) throw new IllegalArgumentException("exit after layer " + spec.layer() + ", but the model has " + c.nLayers() + " layers");
        if (!(temperature > 0) || Float.isInfinite(temperature)) throw new IllegalArgumentException("exit temperature must be positive and finite, got " + temperature);
        String p = prefix(spec.layer());
        boolean copy = spec.init() == ExitInit.COPY;
        Parameter head = copy ? ps.copyOf(p + "lm_head.weight", backbone.weights().lmHead()) : ps.gaussian(p + "lm_head.weight", r, 0.02f, c.vocabSize(), c.dim());
        switch (spec.architecture()) {
            case EMBEDDING: return new EmbeddingExit(spec, head, temperature);
            case NORM: return new NormExit(spec, c, HeadNorm.create(p, copy, backbone, ps), head, temperature);
            case MLP: return MlpExit.create(spec, backbone, ps, r, HeadNorm.create(p, copy, backbone, ps), head, temperature);
            case LAYER: return LayerExit.create(spec, backbone, ps, r, HeadNorm.create(p, copy, backbone, ps), head, temperature);
            default: throw new IllegalStateException(spec.architecture().toString());
        }
    }
}
