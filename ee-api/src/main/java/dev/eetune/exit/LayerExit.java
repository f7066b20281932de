package dev.eetune.exit;

import dev.eetune.model.DecoderLayer;
import dev.eetune.model.LlamaModel;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.nn.TransformerBlock;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * A layer exit: a whole transformer layer of the head's own (a copy of the backbone's last layer, or random) on layer
 * L's output, then norm and LM head. Its attention needs the K/V of earlier positions at its own layer, so decoders
 * keep a cache for it ({@link #hasOwnCache()}).
 * Thread-safety: as {@link ExitHead}.
 */
public record LayerExit(ExitSpec spec, DecoderLayer decoderLayer, TransformerBlock block, Parameter norm, Parameter lmHead, float temperature) implements ExitHead {

    static LayerExit create(ExitSpec spec, LlamaModel backbone, ParameterSet ps, Random r, Parameter norm, Parameter lmHead, float temperature) {
        String p = ExitHead.prefix(spec.layer()) + "layer.";
        DecoderLayer layer = backbone.decoderLayer();
        TransformerBlock block = spec.init() == ExitInit.COPY
            ? TransformerBlock.copyOf(layer, backbone.weights().layers().get(backbone.config().nLayers() - 1), ps, p)
            : TransformerBlock.random(layer, ps, p, r, 0.02f, 0.02f);
        return new LayerExit(spec, layer, block, norm, lmHead, temperature);
    }

    @Override
    public List<Parameter> parameters() {
        List<Parameter> out = new ArrayList<>(List.of(norm, lmHead));
        out.addAll(block.parameters());
        return out;
    }

    @Override
    public boolean hasOwnCache() { return true; }

    @Override
    public Forward forward(Scope s, ExitInput in) {
        int rows = in.rows().count();
        Tensor pre = s.allocate(DType.F32, rows, decoderLayer.config().dim()), inv = s.allocate(DType.F32, rows);
        TransformerBlock.Saved saved = block.forward(s, in.hidden(), pre, in.rows());
        Tensor z = HeadNorm.forward(s, norm, pre, inv, decoderLayer.config().normEps());
        return new Forward(z, (scope, dz) -> block.backward(scope, saved, HeadNorm.backward(scope, norm, pre, inv, dz, true), null));
    }

    /** None: its own layer's cache is the Java decoder's to keep. */
    @Override
    public dev.eetune.backend.Ops.ExitStep decodeStep(ExitGate gate, float tau, float confirm) { return null; }

    @Override
    public Tensor decodeInput(Scope s, ExitInput in, int firstRows) {
        int rows = in.rows().count();
        Tensor h = s.allocate(DType.F32, rows, decoderLayer.config().dim()).copyFrom(in.hidden());
        decoderLayer.forward(block.weights(), h, h, in.rows(), in.ownCache(), in.workspace().activations(rows, h, null));
        return HeadNorm.forward(s, norm, h.slice(0, firstRows), null, decoderLayer.config().normEps());
    }

    @Override
    public void writeOwnCache(Scope s, ExitInput in) {
        decoderLayer.writeKv(block.weights(), in.hidden(), in.rows(), in.ownCache(), in.workspace().activations(in.rows().count(), in.hidden(), null));
    }

    @Override
    public String toString() { return "LayerExit[" + spec + ", T=" + temperature + "]"; }
}
