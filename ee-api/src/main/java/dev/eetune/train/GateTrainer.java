package dev.eetune.train;

import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitGate;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.Pass;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * Trains the exits' confidence gates ({@link ExitGate}) in a cheap pass after EE-Tuning (docs/exit-gates.md): one
 * full-model forward over held-out sequences gives, at every position and exit, the gate's input (the unit-rmsnormed
 * hidden state) and its label (the head's top token equals the final layer's); then each gate is fitted by logistic
 * loss with AdamW over shuffled mini-batches. The backbone and heads are not touched.
 * Thread-safety: writes the gates; no other thread may use these heads meanwhile.
 */
public final class GateTrainer {
    private static final Logger log = LoggerFactory.getLogger(GateTrainer.class);

    private GateTrainer() {}

    /**
     * The gates' hidden units (0: linear gates; see {@link ExitGate}), passes over the collected rows, rows per step,
     * AdamW's learning rate and weight decay, the seed of the MLP gates' initial weights and of the shuffling.
     */
    public record Settings(int hiddenUnits, int epochs, int batchRows, float lr, float weightDecay, long seed) {
        /** Hidden units of the default gate: on stories260K an MLP gate of 16 units beat the linear one (docs/exit-gates.md). */
        public static final int DEFAULT_HIDDEN = 16;

        public Settings {
            if (hiddenUnits < 0) throw new IllegalArgumentException("gate hidden units must be >= 0, got " + hiddenUnits);
            if (epochs < 1 || batchRows < 1) throw new IllegalArgumentException("epochs " + epochs + " and batch rows " + batchRows + " must be >= 1");
            if (!(lr > 0) || Float.isInfinite(lr)) throw new IllegalArgumentException("learning rate must be positive and finite, got " + lr);
            if (!(weightDecay >= 0) || Float.isInfinite(weightDecay)) throw new IllegalArgumentException("weight decay must be >= 0 and finite, got " + weightDecay);
        }

        public static Settings defaults() { return new Settings(DEFAULT_HIDDEN, 30, 256, 1e-2f, 0f, 1234); }
    }

    /** Per gate: its exit layer, the share of positions where the head agrees, the final mean logistic loss and accuracy (at 0.5). */
    public record GateMetrics(int layer, double agreementRate, double loss, double accuracy) {}

    public record Report(List<GateMetrics> gates, int rows) {
        public String toTable() {
            StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-6s %10s %9s %9s%n", "exit", "head-agree", "gate loss", "gate acc"));
            for (GateMetrics g : gates) sb.append(String.format(Locale.ROOT, "%-6d %9.2f%% %9.4f %8.2f%%%n", g.layer(), 100 * g.agreementRate(), g.loss(), 100 * g.accuracy()));
            return sb.append(String.format(Locale.ROOT, "(%d training positions per gate)", rows)).toString();
        }
    }

    /** Gives {@code ee}'s heads fresh gates of the settings' kind and trains them on every position of {@code sequences} but the last. */
    public static Report train(EarlyExitModel ee, List<int[]> sequences, Settings st) {
        ee.attachGates(st.hiddenUnits(), st.seed());
        LlamaModel m = ee.backbone();
        LlamaConfig c = m.config();
        Ops ops = m.backend().ops();
        List<ExitHead> heads = ee.heads();
        int h = heads.size(), dim = c.dim();
        int total = sequences.stream().mapToInt(s -> Math.max(0, s.length - 1)).sum();
        if (total == 0) throw new IllegalArgumentException("no positions to train gates on (empty data)");
        float[][] features = new float[h][total * dim];
        boolean[][] labels = new boolean[h][total];
        int offset = 0;
        try (Scope.Lease use = ee.use(); Scope scope = Scope.of(m.backend()); Workspace ws = m.newWorkspace()) {
            for (int[] seq : sequences) {
                int n = seq.length - 1;
                if (n <= 0) continue;
                int at = offset;
                int[][] argmax = new int[h][];
                try (Scope s = scope.child()) {
                    Workspace.Rows rows = ws.denseRows(Arrays.copyOf(seq, n), 1, n);
                    Tensor x = ws.x(n);
                    m.embed(x, rows);
                    ee.run(new Pass(x, rows), null, 0, c.nLayers(), ws, (head, in, pass) -> {
                        int hi = heads.indexOf(head);
                        Tensor logits = head.decodeLogits(s, in, n), am = s.allocate(DType.I32, n), f = s.allocate(DType.F32, n, dim);
                        ops.argmax(am, null, logits, head.temperature());
                        argmax[hi] = am.toIntArray();
                        ee.gate(head.layer()).features(ops, f, in.hidden());
                        System.arraycopy(f.toFloatArray(), 0, features[hi], at * dim, n * dim);
                        return pass;
                    });
                    Tensor normed = s.allocate(DType.F32, n, dim), logits = s.allocate(DType.F32, n, c.vocabSize()), am = s.allocate(DType.I32, n);
                    m.logits(logits, x, normed);
                    ops.argmax(am, null, logits, 1f);
                    int[] fin = am.toIntArray();
                    for (int hi = 0; hi < h; hi++) for (int r = 0; r < n; r++) labels[hi][at + r] = argmax[hi][r] == fin[r];
                }
                offset += n;
            }
            List<GateMetrics> out = new ArrayList<>();
            for (int hi = 0; hi < h; hi++) out.add(fit(ee.gate(heads.get(hi).layer()), features[hi], labels[hi], dim, st, scope));
            return new Report(out, total);
        }
    }

    /**
     * Fits {@code gate} to {@code labels} on {@code features} [rows, dim] by logistic loss. The gate's
     * {@link ExitGate#backendPart} and the weight gradients dW = gᵀX run on the backend (gemm); what is k numbers per
     * row (the MLP gate's ReLU, its second layer and the per-row gradients, and the biases' sums) on the host, as
     * {@link ExitGate#logits} does when scoring. A linear gate's weights start at zero and an MLP gate's at its random
     * init; the output bias starts at the log-odds of the agreement rate, so training starts near the best constant gate.
     */
    static GateMetrics fit(ExitGate gate, float[] features, boolean[] labels, int dim, Settings st, Scope parent) {
        Ops ops = parent.backend().ops();
        int n = labels.length, agree = 0;
        for (boolean y : labels) if (y) agree++;
        double rate = (double) agree / n;
        double clamped = Math.min(Math.max(rate, 1e-4), 1 - 1e-4);
        gate.bias().value().copyFrom(new float[] {(float) Math.log(clamped / (1 - clamped))});
        if (gate.hidden() == null) ops.zero(gate.weight().value());
        int[] order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Random r = new Random(st.seed());
        int b = Math.min(st.batchRows(), n);
        double lastLoss = Double.NaN, lastAcc = Double.NaN;
        List<Parameter> params = gate.parameters();
        try (AdamW opt = new AdamW(params, 0.9f, 0.999f, 1e-8f, st.weightDecay()); Scope s = parent.child()) {
            Tensor x = s.allocate(DType.F32, b, dim);
            float[] xb = new float[b * dim];
            boolean[] yb = new boolean[b];
            for (int epoch = 0; epoch < st.epochs(); epoch++) {
                for (int i = n - 1; i > 0; i--) {
                    int j = r.nextInt(i + 1), t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
                double loss = 0, correct = 0;
                for (int from = 0; from + b <= n; from += b) { // a ragged tail is left for the next epoch's shuffle
                    for (int q = 0; q < b; q++) System.arraycopy(features, order[from + q] * dim, xb, q * dim, dim);
                    x.copyFrom(xb);
                    for (int q = 0; q < b; q++) yb[q] = labels[order[from + q]];
                    double[] lc = gradients(gate, x, yb, s);
                    loss += lc[0];
                    correct += lc[1];
                    opt.step(st.lr(), 1f);
                }
                int used = n / b * b;
                lastLoss = loss / used;
                lastAcc = correct / used;
            }
        }
        log.info("gate after layer {}: agreement rate {}, loss {}, accuracy {}", gate.layer(), rate, lastLoss, lastAcc);
        return new GateMetrics(gate.layer(), rate, lastLoss, lastAcc);
    }

    /**
     * Sets the gradients of the mean logistic loss of {@code gate} over the rows of features {@code x} [B, dim] with
     * labels {@code y} into its parameters' grads; returns {summed loss, rows classified right at 0.5}.
     */
    static double[] gradients(ExitGate gate, Tensor x, boolean[] y, Scope parent) {
        Ops ops = parent.backend().ops();
        int b = y.length, k = Math.max(1, gate.hiddenUnits());
        try (Scope s = parent.child()) {
            float[] part = gate.backendPart(s, x).toFloatArray(), zs = gate.logits(part, b);
            float[] w = gate.hidden() == null ? null : gate.weight().value().toFloatArray();
            float[] gw = new float[k], gb1 = new float[k], gb = new float[b * k];
            double gBias = 0, loss = 0, correct = 0;
            for (int q = 0; q < b; q++) {
                double p = ExitGate.sigmoid(zs[q]);
                loss += y[q] ? -logSigmoid(zs[q]) : -logSigmoid(-zs[q]);
                if ((p >= 0.5) == y[q]) correct++;
                float gz = (float) ((p - (y[q] ? 1 : 0)) / b);
                gBias += gz;
                if (w == null) {
                    gb[q] = gz;
                    continue;
                }
                for (int j = 0; j < k; j++) { // through relu(a) to the pre-activation a
                    float a = part[q * k + j];
                    gw[j] += gz * Math.max(0f, a);
                    gb[q * k + j] = a > 0 ? gz * w[j] : 0f;
                    gb1[j] += gb[q * k + j];
                }
            }
            Tensor g = s.of(gb, b, k);
            ops.gemm(true, false, 1f, g, x, 0f, (w == null ? gate.weight() : gate.hidden()).grad());
            if (w != null) {
                gate.hiddenBias().grad().copyFrom(gb1);
                gate.weight().grad().copyFrom(gw);
            }
            gate.bias().grad().copyFrom(new float[] {(float) gBias});
            return new double[] {loss, correct};
        }
    }

    /** log σ(z), stable for large |z|. */
    private static double logSigmoid(double z) { return z >= 0 ? -Math.log1p(Math.exp(-z)) : z - Math.log1p(Math.exp(z)); }
}
