package dev.eetune.eval;

import dev.eetune.backend.Ops;
import dev.eetune.data.batch.Batch;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.Pass;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.progress.ProgressListener;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Per-exit validation metrics: mean cross-entropy, perplexity, top-1 accuracy against the targets and top-1
 * agreement with the full model's (final layer's) prediction, over unmasked tokens. Thread-safe: each call has its
 * own workspace and holds a lease on the model ({@link EarlyExitModel#use()}).
 */
public final class ExitEvaluator {
    private ExitEvaluator() {}

    public record ExitMetrics(int layer, String architecture, double loss, double accuracy, double agreement) {
        public double perplexity() { return Math.exp(loss); }
    }

    /** Metrics of every exit plus the final layer (listed last, agreement 1). */
    public record Report(List<ExitMetrics> exits, long tokens) {
        public ExitMetrics finalLayer() { return exits.get(exits.size() - 1); }

        public String toTable() {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-6s %-10s %9s %10s %9s %10s%n", "exit", "arch", "val loss", "perplexity", "accuracy", "agreement"));
            for (ExitMetrics m : exits) {
                sb.append(String.format(Locale.ROOT, "%-6d %-10s %9.4f %10.2f %8.2f%% %9.2f%%%n", m.layer(), m.architecture(), m.loss(), m.perplexity(),
                    100 * m.accuracy(), 100 * m.agreement()));
            }
            return sb.append(String.format(Locale.ROOT, "(%d tokens)", tokens)).toString();
        }
    }

    public static Report evaluate(EarlyExitModel model, Iterable<Batch> batches) { return evaluate(model, batches, ProgressListener.NONE); }

    /** As {@link #evaluate(EarlyExitModel, Iterable)}, telling {@code progress} the batches done (total 0: the iterable's size is not known here). */
    public static Report evaluate(EarlyExitModel model, Iterable<Batch> batches, ProgressListener progress) {
        LlamaModel bb = model.backbone();
        Ops ops = bb.backend().ops();
        List<ExitHead> heads = model.heads();
        int n = heads.size();
        double[] lossSum = new double[n + 1];
        long[] correct = new long[n + 1], agree = new long[n + 1];
        long tokens = 0, done = 0;
        try (Scope.Lease use = model.use(); Scope scope = Scope.of(bb.backend()); Workspace ws = bb.newWorkspace()) {
            for (Batch b : batches) {
                int rows = b.batchSize() * b.seqLen();
                try (Scope s = scope.child()) {
                    Workspace.Rows rr = ws.denseRows(b.inputs(), b.batchSize(), b.seqLen());
                    Tensor targets = s.of(b.targets(), rows), loss = s.allocate(DType.F32, rows);
                    int[][] argmax = new int[n + 1][];
                    float[][] losses = new float[n + 1][];
                    Tensor x = ws.x(rows);
                    bb.embed(x, rr);
                    model.run(new Pass(x, rr), null, 0, bb.config().nLayers(), ws, (h, in, pass) -> {
                        int i = heads.indexOf(h);
                        try (Scope hs = s.child()) {
                            Tensor am = hs.allocate(DType.I32, rows);
                            ops.linearCrossEntropy(loss, null, null, am, null, h.forward(hs, in).z(), h.lmHead().value(), targets, null, h.temperature());
                            argmax[i] = am.toIntArray();
                            losses[i] = loss.toFloatArray();
                        }
                        return pass;
                    });
                    Tensor normed = s.allocate(DType.F32, rows, bb.config().dim()), am = s.allocate(DType.I32, rows);
                    ops.rmsnorm(normed, null, x, bb.weights().finalNorm(), bb.config().normEps());
                    ops.linearCrossEntropy(loss, null, null, am, null, normed, bb.weights().lmHead(), targets, null, 1f);
                    argmax[n] = am.toIntArray();
                    losses[n] = loss.toFloatArray();
                    int[] t = b.targets();
                    for (int r = 0; r < rows; r++) {
                        if (t[r] < 0) continue;
                        tokens++;
                        for (int i = 0; i <= n; i++) {
                            lossSum[i] += losses[i][r];
                            if (argmax[i][r] == t[r]) correct[i]++;
                            if (argmax[i][r] == argmax[n][r]) agree[i]++;
                        }
                    }
                }
                progress.update(++done, 0, "");
            }
        }
        if (tokens == 0) throw new IllegalArgumentException("no evaluation tokens (empty or fully masked data)");
        List<ExitMetrics> out = new ArrayList<>();
        for (int i = 0; i <= n; i++) {
            out.add(new ExitMetrics(i < n ? heads.get(i).layer() : bb.config().nLayers(), i < n ? heads.get(i).architecture().label() : "final",
                lossSum[i] / tokens, (double) correct[i] / tokens, (double) agree[i] / tokens));
        }
        return new Report(out, tokens);
    }
}
