package dev.eetune.train;

import dev.eetune.backend.Ops;
import dev.eetune.data.batch.Batch;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.dist.Parallelism;
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
 * CE_i, through the fused chunked linear + cross-entropy kernel (logits are never materialised). With
 * {@link TunerConfig#distill()} the targets are the full model's top tokens, from a forward of the whole backbone first.
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
    /** Skipped steps in a row. */
    private int nonFiniteSteps;
    private Path resumedFrom, lastCheckpoint;
    private Checkpoint.Data dataStamp;
    private Parallelism parallel = Parallelism.LOCAL;

    /** {@code data} may be null when batches are fed through {@link #accumulateGradients} by the caller. */
    public Tuner(EarlyExitModel model, TunerConfig cfg, BatchLoader data, AdamW opt, List<TuningListener> listeners) {
        if (model.heads().isEmpty()) throw new IllegalArgumentException("no exit heads to tune");
        if (cfg.exitWeights() != null && cfg.exitWeights().length != model.heads().size()) {
            throw new IllegalArgumentException(cfg.exitWeights().length + " exit weights for " + model.heads().size() + " exits: give one per exit");
        }
        if (data != null && data.batchSize() != cfg.batchSize()) throw new IllegalArgumentException("data batch size " + data.batchSize() + " differs from the tuner's " + cfg.batchSize());
        this.model = model;
        this.backbone = model.backbone();
        this.cfg = cfg;
        this.data = data;
        this.opt = opt;
        this.listeners = List.copyOf(listeners);
        this.rows = cfg.batchSize() * cfg.seqLen();
        cfg.requireFits(backbone.config());
        this.ws = backbone.newWorkspace();
        this.scope = Scope.of(backbone.backend());
        targets = scope.allocate(DType.I32, rows);
        gradWeight = scope.allocate(DType.F32, rows);
        loss = scope.allocate(DType.F32, rows);
    }

    public int step() { return step; }

    @Override
    public String toString() {
        return "Tuner[step " + step + " of " + cfg.steps() + ", batch " + cfg.batchSize() + " x " + cfg.seqLen() + " tokens, " + model + ", " + opt + "]";
    }

    public AdamW optimizer() { return opt; }

    public BatchLoader data() { return data; }

    /** Shares every step among the ranks of a distributed run (default: this process computes all of it). */
    public void distribute(Parallelism parallel) {
        parallel.requireFits(cfg.microBatches(), model.lastExitLayer());
        if (cfg.distill() && parallel.stages() > 1) {
            throw new IllegalArgumentException("distillation needs the whole backbone in every rank: it cannot run with " + parallel.stages() + " pipeline stages");
        }
        this.parallel = parallel;
    }

    /** Trains until {@code cfg.steps()} (checkpointing as configured); see {@link #runUntil}. */
    public void run() { runUntil(cfg.steps()); }

    /**
     * Trains until the step counter reaches {@code lastStep}. Checkpoints are written as configured, but not right
     * after a skipped step nor while a head or moment is non-finite: while a run may be diverging, the latest stays
     * the one after the last good step (the final checkpoint is always attempted; {@link Checkpoint#write} refuses a
     * non-finite state).
     *
     * @throws IllegalStateException after {@code cfg.maxNonFiniteSteps()} consecutive non-finite steps (see {@link #trainStep})
     */
    public void runUntil(int lastStep) {
        try (Scope.Lease call = guard.enter()) {
            trainUntil(lastStep);
        }
    }

    private void trainUntil(int lastStep) {
        while (step < Math.min(lastStep, cfg.steps())) {
            StepReport r = trainStep();
            for (TuningListener l : listeners) l.onStep(r);
            boolean end = step == cfg.steps(), due = cfg.checkpointEvery() > 0 && step % cfg.checkpointEvery() == 0;
            if (cfg.checkpointDir() != null && parallel.leads() && (end || (due && !r.skipped() && Checkpoint.firstBadValue(model, opt) == null))) checkpoint(cfg.checkpointDir());
        }
    }

    /** Writes a checkpoint under {@code root} (keeping {@code cfg.keepLast()} and the one resumed from); returns its folder. */
    public Path checkpoint(Path root) {
        try (Scope.Lease call = guard.enter(); Scope.Lease use = model.use()) {
            return writeCheckpoint(root);
        }
    }

    private Path writeCheckpoint(Path root) {
        requireData();
        Checkpoint.State state = new Checkpoint.State(step, opt.steps(), data.position(), dataStamp(), Checkpoint.exits(model));
        Path dir = Checkpoint.write(root, model, opt, state, cfg.keepLast(), resumedFrom);
        lastCheckpoint = dir;
        for (TuningListener l : listeners) l.onCheckpoint(step, dir);
        return dir;
    }

    /**
     * Continues from a checkpoint folder (or the latest under a root): heads, moments, step and data position. Deletes
     * what interrupted writes left in the checkpoint's root, then checks the checkpoint against this run (exits, data,
     * a step within {@code cfg.steps()}) before loading anything; errors say which file and field differ and how.
     */
    public void resume(Path checkpoint) {
        try (Scope.Lease call = guard.enter(); Scope.Lease use = model.use()) {
            restore(checkpoint);
        }
    }

    private void restore(Path checkpoint) {
        requireData();
        Path dir = Checkpoint.latest(checkpoint);
        if (dir == null) throw new IllegalArgumentException("no checkpoint in " + checkpoint);
        Path root = Checkpoint.rootOf(dir);
        if (root != null) Checkpoint.deleteStale(root);
        Checkpoint.State s = Checkpoint.readState(dir);
        Path file = dir.resolve("state.json");
        if (s.step() > cfg.steps()) throw new IllegalArgumentException(file + ": field 'step' is " + s.step() + ", beyond this run's " + cfg.steps() + " steps");
        String differs = s.data().difference(file, dataStamp());
        if (differs != null) throw new IllegalArgumentException(differs);
        Checkpoint.restore(dir, s, model, opt);
        data.seek(s.position());
        step = s.step();
        nonFiniteSteps = 0;
        resumedFrom = dir;
        lastCheckpoint = dir;
    }

    /**
     * One optimizer step over {@code microBatches} micro-batches. A step whose loss or gradient is not finite for some
     * exit is skipped (reported, nothing updated).
     *
     * @throws IllegalStateException when this makes {@code cfg.maxNonFiniteSteps()} skipped steps in a row: the run has
     *     diverged; the message names the step, the exits and their losses and gradient norms, and the latest checkpoint
     */
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
        for (int m = 0; m < cfg.microBatches(); m++) {
            Batch b = data.next(); // every rank reads every micro-batch: the data position stays that of one process
            if (parallel.computes(m, cfg.microBatches())) accumulate(b, lossSum, counted);
        }
        parallel.combine(model.parameterSet().parameters(), lossSum, counted);
        double[] losses = new double[heads.size()];
        double sumSquares = 0;
        StringBuilder nonFinite = new StringBuilder();
        for (int i = 0; i < losses.length; i++) {
            losses[i] = counted[i] == 0 ? Double.NaN : lossSum[i] / counted[i];
            double g = AdamW.gradSumSquares(heads.get(i).parameters());
            sumSquares += g;
            if (!Double.isFinite(losses[i]) || !Double.isFinite(g)) {
                nonFinite.append(nonFinite.length() == 0 ? "" : "; ").append("exit ").append(heads.get(i).layer()).append(": loss ").append(losses[i])
                    .append(", gradient norm ").append(Math.sqrt(g));
            }
        }
        double norm = Math.sqrt(sumSquares);
        float lr = cfg.lr().at(step);
        boolean skipped = nonFinite.length() > 0;
        if (!skipped) opt.step(lr, AdamW.clipScale(norm, cfg.clipNorm()));
        step++;
        nonFiniteSteps = skipped ? nonFiniteSteps + 1 : 0;
        if (nonFiniteSteps >= cfg.maxNonFiniteSteps()) {
            throw new IllegalStateException("tuning diverged: " + nonFiniteSteps + " steps in a row (" + (step - nonFiniteSteps + 1) + " to " + step
                + ", the limit) had a non-finite loss or gradient; at step " + step + ": " + nonFinite + "; "
                + (lastCheckpoint == null ? "no checkpoint was written" : "the latest checkpoint is " + lastCheckpoint) + " (lower the learning rate?)");
        }
        return new StepReport(step, losses, lr, norm, (long) rows * cfg.microBatches(), (System.nanoTime() - t0) / 1e9, skipped);
    }

    /** The fingerprint of the training data, computed once (it hashes every token). */
    private Checkpoint.Data dataStamp() {
        if (dataStamp == null) dataStamp = Checkpoint.Data.of(data);
        return dataStamp;
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
        int[] data = b.targets();
        int valid = 0;
        for (int t : data) if (t >= 0) valid++;
        if (valid == 0) return;
        Ops ops = backbone.backend().ops();
        Workspace.Rows r = ws.denseRows(b.inputs(), cfg.batchSize(), cfg.seqLen());
        targets.copyFrom(data);
        int[] tg = cfg.distill() ? teacherTargets(r, data) : data;
        Tensor x = ws.x(rows);
        int from = parallel.firstLayer(model.lastExitLayer());
        if (from == 0) backbone.embed(x, r);
        else parallel.receive(x); // a later pipeline stage: the hidden states after layer `from`
        List<ExitHead> heads = model.heads();
        float[] gw = new float[rows];
        int finalValid = valid;
        model.run(new Pass(x, r), null, from, parallel.lastLayer(model.lastExitLayer()), ws, (h, in, pass) -> {
            int i = heads.indexOf(h);
            try (Scope s = scope.child()) {
                ExitHead.Forward f = h.forward(s, in);
                double w = cfg.exitWeight(i, step) / finalValid / cfg.microBatches();
                float[] conf = null;
                if (cfg.confidenceWeighting()) { // EE-LLM's dynamic weighting: CE x detached max-prob of the exit
                    Tensor mp = s.allocate(DType.F32, rows);
                    ops.linearCrossEntropy(loss, null, null, null, mp, f.z(), h.lmHead().value(), targets, null, h.temperature());
                    conf = mp.toFloatArray();
                }
                for (int k = 0; k < rows; k++) gw[k] = tg[k] < 0 ? 0f : (float) (w * (conf == null ? 1.0 : conf[k]));
                gradWeight.copyFrom(gw);
                Tensor dz = f.backward() == null ? null : s.allocate(DType.F32, rows, backbone.config().dim());
                ops.linearCrossEntropy(loss, dz, h.lmHead().grad(), null, null, f.z(), h.lmHead().value(), targets, gradWeight, h.temperature());
                if (dz != null) f.backward().accumulate(s, dz);
                float[] l = loss.toFloatArray();
                for (int k = 0; k < rows; k++) if (tg[k] >= 0) lossSum[i] += l[k];
                counted[i] += finalValid;
            }
            return pass;
        });
        parallel.sendOn(x);
    }

    /**
     * Self-distillation targets: the full model's top token at every position {@code tg} does not mask (masked ones stay
     * masked), from a forward of the whole backbone on the batch; also loaded into {@link #targets}.
     */
    private int[] teacherTargets(Workspace.Rows r, int[] tg) {
        Ops ops = backbone.backend().ops();
        Tensor x = ws.x(rows);
        backbone.embed(x, r);
        for (int layer = 0; layer < backbone.config().nLayers(); layer++) backbone.layer(layer, x, r, null, ws, null);
        try (Scope s = scope.child()) {
            Tensor normed = s.allocate(DType.F32, rows, backbone.config().dim()), top = s.allocate(DType.I32, rows);
            ops.rmsnorm(normed, null, x, backbone.weights().finalNorm(), backbone.config().normEps());
            ops.linearCrossEntropy(loss, null, null, top, null, normed, backbone.weights().lmHead(), targets, null, 1f);
            int[] teacher = top.toIntArray();
            for (int k = 0; k < rows; k++) if (tg[k] < 0) teacher[k] = tg[k];
            targets.copyFrom(teacher);
            return teacher;
        }
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
        backbone.backend().releaseCachedMemory(); // the steps' activations, kept by the backend for the next step
    }
}
