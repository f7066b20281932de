package dev.eetune.train;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.data.batch.Batch;
import dev.eetune.model.DecoderLayer;
import dev.eetune.model.LayerWeights;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.LlamaWeights;
import dev.eetune.model.Workspace;
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
 * Full-parameter training of a Llama-architecture model from scratch (EE-LLM also pretrains early-exit models):
 * embedding, every layer (activations kept for the backward), final norm and an untied LM head, optionally with
 * norm exits whose losses train the backbone too. {@link #model()} views the same tensors as a {@link LlamaModel}
 * for generation, evaluation and {@link dev.eetune.model.HfCheckpointWriter}.
 */
public final class Pretrainer implements AutoCloseable {
    private final LlamaConfig c;
    private final Backend backend;
    private final ParameterSet ps;
    private final Parameter embedding, finalNorm, lmHead;
    private final List<TransformerBlock> blocks = new ArrayList<>();
    private final int[] exitLayers;
    private final Parameter[] exitNorms, exitHeads;
    private final double exitWeight;
    private final LlamaModel view;
    private final Workspace ws;

    /**
     * A fresh model: matrices N(0, std) (residual projections scaled by 1/sqrt(2 layers)), norms 1. Exits (1-based
     * layers, may be empty) are norm heads with their own LM head, weighted {@code exitWeight} in the loss.
     */
    public Pretrainer(LlamaConfig config, Backend backend, long seed, float std, int[] exitLayers, double exitWeight) {
        this.c = config.validate();
        if (c.qkvBias()) throw new IllegalArgumentException("pretraining supports bias-free Llama layers only");
        if (!(exitWeight >= 0) || Double.isInfinite(exitWeight)) throw new IllegalArgumentException("exit loss weight must be >= 0 and finite, got " + exitWeight);
        this.backend = backend;
        this.ps = new ParameterSet(backend);
        Random r = new Random(seed);
        int d = c.dim();
        float resid = (float) (std / Math.sqrt(2.0 * c.nLayers()));
        embedding = ps.gaussian("model.embed_tokens.weight", r, std, c.vocabSize(), d);
        DecoderLayer layer = new DecoderLayer(c, ps.scope().of(c.ropeInverseFrequencies(), c.headDim() / 2));
        for (int l = 0; l < c.nLayers(); l++) blocks.add(TransformerBlock.random(layer, ps, "model.layers." + l + ".", r, std, resid));
        finalNorm = ps.constant("model.norm.weight", 1f, d);
        lmHead = ps.gaussian("lm_head.weight", r, std, c.vocabSize(), d);
        this.exitLayers = exitLayers.clone();
        this.exitWeight = exitWeight;
        exitNorms = new Parameter[exitLayers.length];
        exitHeads = new Parameter[exitLayers.length];
        for (int i = 0; i < exitLayers.length; i++) {
            if (exitLayers[i] < 1 || exitLayers[i] >= c.nLayers()) throw new IllegalArgumentException("exit layer " + exitLayers[i] + " must be in 1.." + (c.nLayers() - 1));
            exitNorms[i] = ps.constant("exits." + exitLayers[i] + ".norm.weight", 1f, d);
            exitHeads[i] = ps.gaussian("exits." + exitLayers[i] + ".lm_head.weight", r, std, c.vocabSize(), d);
        }
        LlamaConfig untied = new LlamaConfig(c.dim(), c.hiddenDim(), c.nLayers(), c.nHeads(), c.nKvHeads(), c.headDim(), c.vocabSize(), c.maxSeqLen(),
            c.normEps(), c.ropeTheta(), c.ropeScaling(), false, false, c.ropeInterleaved(), c.architecture());
        List<LayerWeights> lw = blocks.stream().map(TransformerBlock::weights).toList();
        view = new LlamaModel(untied, new LlamaWeights(embedding.value(), lw, finalNorm.value(), lmHead.value()), backend, Scope.of(backend));
        ws = view.newWorkspace();
    }

    /** The model being trained, as an inference model over the same tensors (without the exit heads). */
    public LlamaModel model() { return view; }

    public List<Parameter> parameters() { return ps.parameters(); }

    public long parameterCount() { return ps.count(); }

    @Override
    public String toString() {
        return String.format(java.util.Locale.ROOT, "Pretrainer[%s, %,d parameters, exits %s]", c, parameterCount(), java.util.Arrays.toString(exitLayers));
    }

    /**
     * Adds the gradients of one batch to the parameters' gradients; the loss is the mean CE over unmasked targets
     * (plus exitWeight times each exit's), scaled by {@code scale} (1 / micro-batches). Returns the final layer's
     * mean CE, then each exit's.
     */
    public double[] accumulateGradients(Batch b, double scale) {
        Ops ops = backend.ops();
        int rows = b.batchSize() * b.seqLen(), d = c.dim();
        int valid = 0;
        for (int t : b.targets()) if (t >= 0) valid++;
        double[] out = new double[1 + exitLayers.length];
        if (valid == 0) return out;
        Workspace.Rows rr = ws.denseRows(b.inputs(), b.batchSize(), b.seqLen());
        try (Scope s = Scope.of(backend)) {
            Tensor targets = s.of(b.targets(), rows);
            float[] gw = new float[rows];
            for (int r = 0; r < rows; r++) gw[r] = b.targets()[r] < 0 ? 0f : (float) (scale / valid);
            Tensor gradWeight = s.of(gw, rows), exitGradWeight = s.of(scaled(gw, exitWeight), rows), loss = s.allocate(DType.F32, rows);
            Tensor[] xs = new Tensor[c.nLayers() + 1];
            Tensor[] exitDx = new Tensor[c.nLayers() + 1];
            TransformerBlock.Saved[] saved = new TransformerBlock.Saved[c.nLayers()];
            xs[0] = s.allocate(DType.F32, rows, d);
            ops.embedding(xs[0], embedding.value(), rr.tokens());
            for (int l = 0; l < c.nLayers(); l++) {
                xs[l + 1] = s.allocate(DType.F32, rows, d);
                saved[l] = blocks.get(l).forward(s, xs[l], xs[l + 1], rr);
                for (int i = 0; i < exitLayers.length; i++) {
                    if (exitLayers[i] != l + 1) continue; // an exit's loss gradient w.r.t. its layer's output, computed now
                    exitDx[l + 1] = s.allocate(DType.F32, rows, d);
                    out[1 + i] = normHeadLoss(s, xs[l + 1], exitNorms[i], exitHeads[i], targets, exitGradWeight, loss, exitDx[l + 1], valid);
                }
            }
            Tensor dx = s.allocate(DType.F32, rows, d);
            out[0] = normHeadLoss(s, xs[c.nLayers()], finalNorm, lmHead, targets, gradWeight, loss, dx, valid);
            for (int l = c.nLayers() - 1; l >= 0; l--) {
                if (exitDx[l + 1] != null) ops.add(dx, dx, exitDx[l + 1]);
                Tensor dprev = s.allocate(DType.F32, rows, d);
                blocks.get(l).backward(s, saved[l], dx, dprev);
                dx = dprev;
            }
            ops.embeddingBackward(embedding.grad(), dx, rr.tokens());
        }
        return out;
    }

    private static float[] scaled(float[] a, double k) {
        float[] out = a.clone();
        for (int i = 0; i < out.length; i++) out[i] *= (float) k;
        return out;
    }

    /** norm + LM head + CE forward and backward; writes dx (the gradient of the norm's input); returns the mean CE. */
    private double normHeadLoss(Scope s, Tensor x, Parameter norm, Parameter head, Tensor targets, Tensor gradWeight, Tensor loss, Tensor dx, int valid) {
        Ops ops = backend.ops();
        int rows = Ops.rows(x);
        Tensor z = s.allocate(DType.F32, rows, c.dim()), inv = s.allocate(DType.F32, rows), dz = s.allocate(DType.F32, rows, c.dim());
        ops.rmsnorm(z, inv, x, norm.value(), c.normEps());
        ops.linearCrossEntropy(loss, dz, head.grad(), null, null, z, head.value(), targets, gradWeight, 1f);
        ops.rmsnormBackward(dx, norm.grad(), dz, x, norm.value(), inv);
        double sum = 0;
        for (float v : loss.toFloatArray()) sum += v;
        return sum / valid;
    }

    public void zeroGrad() { ps.zeroGrad(); }

    /**
     * One optimizer step over {@code microBatches} batches with global-norm clipping to {@code clip} (0: none); a non-finite loss or gradient
     * skips the update. Losses in the report: the final layer's, then each exit's.
     */
    public StepReport trainStep(dev.eetune.data.batch.BatchLoader data, AdamW opt, int step, float lr, float clip, int microBatches) {
        long t0 = System.nanoTime();
        zeroGrad();
        double[] losses = new double[1 + exitLayers.length];
        long tokens = 0;
        for (int m = 0; m < microBatches; m++) {
            Batch b = data.next();
            double[] l = accumulateGradients(b, 1.0 / microBatches);
            for (int i = 0; i < l.length; i++) losses[i] += l[i] / microBatches;
            tokens += (long) b.batchSize() * b.seqLen();
        }
        double norm = opt.gradNorm();
        boolean finite = Double.isFinite(norm);
        for (double l : losses) finite &= Double.isFinite(l);
        if (finite) opt.step(lr, AdamW.clipScale(norm, clip));
        return new StepReport(step + 1, losses, lr, norm, tokens, (System.nanoTime() - t0) / 1e9, !finite);
    }

    @Override
    public void close() {
        ws.close();
        view.close();
        ps.close();
        backend.releaseCachedMemory(); // the steps' activations, kept by the backend for the next step
    }
}
