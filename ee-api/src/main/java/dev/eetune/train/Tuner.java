package dev.eetune.train;

import dev.eetune.backend.Ops;
import dev.eetune.data.batch.Batch;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.Pass;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.SingleThreadGuard;
import dev.eetune.tensor.Tensor;

import java.nio.file.Path;
import java.util.List;

/**
 * EE-Tuning: tunes only the exit heads of a frozen backbone. Each micro-batch runs the backbone forward without
 * keeping activations, one layer at a time up to the last exit (dense rows: attention reads the layer's own K/V, no
 * cache), and runs each head's forward and backward as soon as its layer's hidden state exists. Loss = Σ_i w_i · masked-mean
 * CE_i, through the fused chunked linear + cross-entropy kernel (logits are never materialised).
 *
 * <p>Thread-safety: one thread at a time, checked (a call from a second thread while one runs throws a
 * {@link java.util.ConcurrentModificationException}); each call holds a lease on the backbone and heads
 * ({@link EarlyExitModel#use()}), so closing them waits for the step to end.
 */
public final class Tuner implements AutoCloseable {
    private final EarlyExitModel model;
    private final LlamaModel backbone;
    private final TunerConfig cfg;
    private final BatchLoader data;
    private final AdamW opt;
    private final List<TuningListener> listeners;
    private final Workspace ws;
    private final Scope scope;
    private final SingleThreadGuard guard = new SingleThreadGuard(Tuner.class);
    private final Tensor targets, gradWeight, loss;
    private final int rows;
    private int step;

    /** {@code data} may be null when batches are fed through {@link #accumulateGradients} by the caller. */
    public Tuner(EarlyExitModel model, TunerConfig cfg, BatchLoader data, AdamW opt, List<TuningListener> listeners) {
        if (model.heads().isEmpty()) throw new IllegalArgumentException("no exit heads to tune");
        if (data != null && data.batchSize() != cfg.batchSize()) throw new IllegalArgumentException("data batch size " + data.batchSize() + " differs from the tuner's " + cfg.batchSize());
        this.model = model;
        this.backbone = model.backbone();
        this.cfg = cfg;
        this.data = data;
        this.opt = opt;
        this.listeners = List.copyOf(listeners);
        this.rows = cfg.batchSize() * cfg.seqLen();
        if (cfg.seqLen() > backbone.config().maxSeqLen()) throw new IllegalArgumentException("seq-len " + cfg.seqLen() + " exceeds the model's context of " + backbone.config().maxSeqLen());
        this.ws = backbone.newWorkspace();
        this.scope = Scope.of(backbone.backend());
        targets = scope.allocate(DType.I32, rows);
        gradWeight = scope.allocate(DType.F32, rows);
        loss = scope.allocate(DType.F32, rows);
    }

    public int step() { return step; }

    public AdamW optimizer() { return opt; }

    public BatchLoader data() { return data; }

    /** Trains until {@code cfg.steps()} (checkpointing as configured). */
    public void run() { runUntil(cfg.steps()); }

    /** Trains until the step counter reaches {@code lastStep}. */
    public void runUntil(int lastStep) {
        try (Scope.Lease call = guard.enter()) {
            trainUntil(lastStep);
        }
    }

    private void trainUntil(int lastStep) {
        while (step < Math.min(lastStep, cfg.steps())) {
            StepReport r = trainStep();
            for (TuningListener l : listeners) l.onStep(r);
            boolean end = step == cfg.steps();
            if (cfg.checkpointDir() != null && (end || (cfg.checkpointEvery() > 0 && step % cfg.checkpointEvery() == 0))) checkpoint(cfg.checkpointDir());
        }
    }

    /** Writes a checkpoint under {@code root}; returns its folder. */
    public Path checkpoint(Path root) {
        try (Scope.Lease call = guard.enter(); Scope.Lease use = model.use()) {
            return writeCheckpoint(root);
        }
    }

    private Path writeCheckpoint(Path root) {
        requireData();
        Path dir = Checkpoint.write(root, model, opt, new Checkpoint.State(step, data.position(), data.seed()));
        for (TuningListener l : listeners) l.onCheckpoint(step, dir);
        return dir;
    }

    /** Continues from a checkpoint folder (or the latest under a root): heads, moments, step and data position. */
    public void resume(Path checkpoint) {
        try (Scope.Lease call = guard.enter(); Scope.Lease use = model.use()) {
            restore(checkpoint);
        }
    }

    private void restore(Path checkpoint) {
        requireData();
        Path dir = Checkpoint.latest(checkpoint);
        if (dir == null) throw new IllegalArgumentException("no checkpoint in " + checkpoint);
        Checkpoint.State s = Checkpoint.restore(dir, model, opt);
        if (s.dataSeed() != data.seed()) throw new IllegalArgumentException(dir + " was written with data seed " + s.dataSeed() + ", this run uses " + data.seed());
        data.seek(s.position());
        step = s.step();
    }

    /** One optimizer step over {@code microBatches} micro-batches. */
    public StepReport trainStep() {
        try (Scope.Lease call = guard.enter(); Scope.Lease use = model.use()) {
            return runStep();
        }
    }

    private StepReport runStep() {
        long t0 = System.nanoTime();
        List<ExitHead> heads = model.heads();
        double[] lossSum = new double[heads.size()];
        long[] counted = new long[heads.size()];
        model.parameterSet().zeroGrad();
        requireData();
        for (int m = 0; m < cfg.microBatches(); m++) accumulate(data.next(), lossSum, counted);
        double[] losses = new double[heads.size()];
        boolean finite = true;
        for (int i = 0; i < losses.length; i++) {
            losses[i] = counted[i] == 0 ? Double.NaN : lossSum[i] / counted[i];
            finite &= Double.isFinite(losses[i]);
        }
        double norm = opt.gradNorm();
        finite &= Double.isFinite(norm);
        float lr = cfg.lr().at(step);
        if (finite) opt.step(lr, norm > cfg.clipNorm() ? (float) (cfg.clipNorm() / norm) : 1f);
        step++;
        return new StepReport(step, losses, lr, norm, (long) rows * cfg.microBatches(), (System.nanoTime() - t0) / 1e9, !finite);
    }

    /**
     * One micro-batch: forward the backbone layer by layer; each head does its forward and backward as soon as its
     * layer is done. Adds to the heads' gradients (scaled for a mean over unmasked tokens and micro-batches) and to
     * the per-exit loss sums and token counts.
     */
    public void accumulateGradients(Batch b, double[] lossSum, long[] counted) {
        try (Scope.Lease call = guard.enter(); Scope.Lease use = model.use()) {
            accumulate(b, lossSum, counted);
        }
    }

    private void accumulate(Batch b, double[] lossSum, long[] counted) {
        if (b.batchSize() != cfg.batchSize() || b.seqLen() != cfg.seqLen()) {
            throw new IllegalArgumentException("batch " + b.batchSize() + " x " + b.seqLen() + " does not match the tuner's " + cfg.batchSize() + " x " + cfg.seqLen());
        }
        int[] tg = b.targets();
        int valid = 0;
        for (int t : tg) if (t >= 0) valid++;
        if (valid == 0) return;
        Ops ops = backbone.backend().ops();
        Workspace.Rows r = ws.denseRows(b.inputs(), cfg.batchSize(), cfg.seqLen());
        targets.copyFrom(tg);
        Tensor x = ws.x(rows);
        backbone.embed(x, r);
        List<ExitHead> heads = model.heads();
        float[] gw = new float[rows];
        int finalValid = valid;
        model.run(new Pass(x, r), null, 0, model.lastExitLayer(), ws, (h, in, pass) -> {
            int i = heads.indexOf(h);
            try (Scope s = scope.child()) {
                ExitHead.Forward f = h.forward(s, in);
                double w = cfg.exitWeight(i, step) / finalValid / cfg.microBatches();
                float[] conf = null;
                if (cfg.confidenceWeighting()) { // EE-LLM's dynamic weighting: CE x detached max-prob of the exit
                    Tensor mp = s.allocate(DType.F32, rows);
                    ops.linearCrossEntropy(loss, null, null, null, mp, f.z(), h.lmHead().value(), targets, null, cfg.vocabChunk(), h.temperature());
                    conf = mp.toFloatArray();
                }
                for (int k = 0; k < rows; k++) gw[k] = tg[k] < 0 ? 0f : (float) (w * (conf == null ? 1.0 : conf[k]));
                gradWeight.copyFrom(gw);
                Tensor dz = f.backward() == null ? null : s.allocate(DType.F32, rows, backbone.config().dim());
                ops.linearCrossEntropy(loss, dz, h.lmHead().grad(), null, null, f.z(), h.lmHead().value(), targets, gradWeight, cfg.vocabChunk(), h.temperature());
                if (dz != null) f.backward().accumulate(s, dz);
                float[] l = loss.toFloatArray();
                for (int k = 0; k < rows; k++) if (tg[k] >= 0) lossSum[i] += l[k];
                counted[i] += finalValid;
            }
            return pass;
        });
    }

    private void requireData() {
        if (data == null) throw new IllegalStateException("this tuner has no data loader (feed batches with accumulateGradients)");
    }

    @Override
    public void close() {
        try (Scope.Lease call = guard.enter()) {
            scope.close();
            ws.close();
        }
    }
}
