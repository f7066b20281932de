package dev.eetune.eval;

import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitCost;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitVisitor;
import dev.eetune.exit.ExitInput;
import dev.eetune.exit.Pass;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.ExitScores;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Teacher-forced exit scores: one full-model pass over given sequences records, for each head and each traced
 * position, its score under every confidence method (softmax max-probability, the gate's P(agreement) when the exits
 * have gates, saturation) and whether its top token equals the final layer's. Every policy's teacher-forced
 * decisions then follow without running the model again ({@link #decide}). Immutable once made: thread-safe.
 *
 * @param layers  the heads' layers, in order
 * @param softmax [head][position] max softmax probability
 * @param gate    [head][position] gate score, or null when the exits have no gates
 * @param saturation [head][position] cosine of the hidden state before and after the layer
 * @param agrees  [head][position] the head's top token equals the final layer's
 * @param gateHidden the gates' hidden units (0: linear gates, or none), for their cost
 * @param windows the positions traced in each window (sequence), in order: they sum to the positions. A window is the
 *                sampling unit of the agreement's confidence bound ({@link Decisions#effectivePositions}): neighbouring
 *                tokens of one text agree or disagree together.
 */
public record ExitTrace(int[] layers, float[][] softmax, float[][] gate, float[][] saturation, boolean[][] agrees, int gateHidden, int[] windows) {
    public ExitTrace {
        long sum = 0;
        for (int w : windows) {
            if (w < 1) throw new IllegalArgumentException("every window traces at least one position, got " + Arrays.toString(windows));
            sum += w;
        }
        int n = agrees.length == 0 ? 0 : agrees[0].length;
        if (sum != n) throw new IllegalArgumentException("the windows hold " + sum + " positions, the trace " + n);
    }

    /** A trace of independent positions (each its own window). */
    public ExitTrace(int[] layers, float[][] softmax, float[][] gate, float[][] saturation, boolean[][] agrees, int gateHidden) {
        this(layers, softmax, gate, saturation, agrees, gateHidden, ones(agrees.length == 0 ? 0 : agrees[0].length));
    }

    private static int[] ones(int n) {
        int[] w = new int[n];
        Arrays.fill(w, 1);
        return w;
    }

    public int positions() { return agrees.length == 0 ? 0 : agrees[0].length; }

    public float[][] scores(ConfidenceMethod m) {
        switch (m) {
            case SOFTMAX: return softmax;
            case GATE:
            case CASCADE:
                if (gate == null) throw new IllegalArgumentException(m.label() + " confidence, but these exits have no gates: train them with `ee gates` first");
                return gate;
            default: return saturation;
        }
    }

    /**
     * Traces positions {@code from[i]} .. length-2 of each sequence (the position predicting the next token), with
     * the prefix before them as context.
     */
    public static ExitTrace of(EarlyExitModel ee, List<int[]> sequences, int[] from) {
        LlamaModel m = ee.backbone();
        LlamaConfig c = m.config();
        Ops ops = m.backend().ops();
        List<ExitHead> heads = ee.heads();
        int total = 0, traced = 0;
        for (int i = 0; i < sequences.size(); i++) {
            int count = Math.max(0, sequences.get(i).length - 1 - from[i]);
            total += count;
            if (count > 0) traced++;
        }
        int[] windows = new int[traced];
        int h = heads.size();
        float[][] sm = new float[h][total], gt = ee.hasGates() ? new float[h][total] : null, sat = new float[h][total];
        boolean[][] agrees = new boolean[h][total];
        int[][] argmax = new int[h][];
        int offset = 0, window = 0;
        for (int si = 0; si < sequences.size(); si++) {
            int[] seq = sequences.get(si);
            int n = seq.length - 1, p0 = from[si], count = n - p0;
            if (count <= 0) continue;
            windows[window++] = count;
            int at = offset;
            try (Scope.Lease use = ee.use(); Scope s = Scope.of(m.backend()); Workspace ws = m.newWorkspace()) {
                Workspace.Rows rows = ws.denseRows(Arrays.copyOf(seq, n), 1, n);
                Tensor x = ws.x(n);
                m.embed(x, rows);
                float[][] before = new float[1][];
                ee.run(new Pass(x, rows), null, 0, c.nLayers(), ws, new ExitVisitor() {
                    @Override
                    public Pass beforeLayer(int layer, Pass pass) {
                        if (ee.head(layer) != null) before[0] = pass.x().toFloatArray();
                        return pass;
                    }

                    @Override
                    public Pass atExit(ExitHead head, ExitInput in, Pass pass) {
                        int hi = heads.indexOf(head);
                        Tensor logits = head.decodeLogits(s, in, n);
                        Tensor am = s.allocate(DType.I32, n), mp = s.allocate(DType.F32, n);
                        ops.argmax(am, mp, logits, head.temperature());
                        argmax[hi] = am.toIntArray();
                        float[] p = mp.toFloatArray();
                        float[] cos = ExitScores.cheap(ConfidenceMethod.SATURATION, null, head, mp, in, before[0], n);
                        float[] g = gt == null ? null : ExitScores.cheap(ConfidenceMethod.GATE, ee.gate(head.layer()), head, mp, in, null, n);
                        for (int r = 0; r < count; r++) {
                            sm[hi][at + r] = p[p0 + r];
                            sat[hi][at + r] = cos[p0 + r];
                            if (g != null) gt[hi][at + r] = g[p0 + r];
                        }
                        return pass;
                    }
                });
                Tensor normed = s.allocate(DType.F32, n, c.dim()), logits = s.allocate(DType.F32, n, c.vocabSize()), am = s.allocate(DType.I32, n);
                m.logits(logits, x, normed);
                ops.argmax(am, null, logits, 1f);
                int[] fin = am.toIntArray();
                for (int hi = 0; hi < h; hi++) for (int r = 0; r < count; r++) agrees[hi][at + r] = argmax[hi][p0 + r] == fin[p0 + r];
            }
            offset += count;
        }
        return new ExitTrace(heads.stream().mapToInt(ExitHead::layer).toArray(), sm, gt, sat, agrees, gt == null ? 0 : ee.gate(heads.get(0).layer()).hiddenUnits(), windows);
    }

    /**
     * The teacher-forced outcome of a policy: agreement with the final layer, the share of positions per exit (the
     * last entry: the final layer), and the cost per token in layers, heads and scores included
     * ({@link ExitCost}): backbone layers up to the exit, plus at every active exit reached either the head (softmax)
     * or the score, and the head where the score passes (a {@code layer} head's own layer: its K/V for every row), plus the backbone's LM
     * head for a token that reaches the last layer; {@code fullCost}: the full model's, N layers and its LM head;
     * {@code effectivePositions}: how many independent positions the agreement is worth ({@link #effectivePositions(long[], int[])}).
     */
    public record Decisions(double agreement, double[] exitShare, double layersPerToken, double fullCost, double effectivePositions) {
        /** The cost-model speed-up over the full model: its cost per token / this policy's. */
        public double projectedSpeedup() { return fullCost / layersPerToken; }

        /**
         * A one-sided lower confidence bound of the agreement on text like the traced windows: the Wilson score bound
         * over the effective positions ({@code z} = 0: the rate itself).
         */
        public double agreementBound(double z) { return ThresholdCalibration.lowerBound(agreement, effectivePositions, z); }
    }

    /**
     * How many independent positions a rate over windows is worth, from the windows' own rates: the positions over the
     * design effect, the variance of the rate between windows (a ratio estimator over clusters) against a binomial
     * one. Neighbouring tokens of a text agree or disagree together, and texts differ: on stories260K's held-out
     * TinyStories, 1,408 windows of 256 tokens at the calibrated thresholds, the rate varied between windows 12.6 times
     * as much as independent positions would make it, and blocks of 128 windows ranged 92.0-95.2%
     * (docs/exit-gates.md). All the positions where that cannot be told (fewer than two windows, a rate of 0 or 1),
     * and never more than them.
     */
    static double effectivePositions(long[] agreeing, int[] windows) {
        long ok = 0, n = 0;
        for (int w = 0; w < windows.length; w++) {
            ok += agreeing[w];
            n += windows[w];
        }
        if (windows.length < 2 || ok == 0 || ok == n) return n;
        double p = (double) ok / n, squares = 0;
        for (int w = 0; w < windows.length; w++) squares += (agreeing[w] - p * windows[w]) * (agreeing[w] - p * windows[w]);
        double variance = windows.length / (windows.length - 1.0) * squares / ((double) n * n);
        return variance > 0 ? Math.min(n, p * (1 - p) / variance) : n;
    }

    /** The teacher-forced agreement of a policy with the final layer (no costs needed). */
    public double agreement(EarlyExitPolicy policy) {
        double[] none = new double[layers.length];
        return decide(policy, new Costs(0, layers, none, none, 0)).agreement();
    }

    /**
     * What an exit costs and saves, in layers: {@code nLayers} of the model, per exit the layer it follows, the cost
     * of a visit (its score, and a {@code layer} head's own layer, or only its K/V with a cheap score) and of its head
     * per row it runs for (with a cheap score, a {@code layer} head's own layer too);
     * {@code finalHead}: the backbone's LM head, paid by a token that reaches the last layer (and saved by one that exits).
     */
    public record Costs(int nLayers, int[] layers, double[] visit, double[] head, double finalHead) {
        /** The full model's cost per token: every layer and the LM head. */
        public double fullCost() { return nLayers + finalHead; }

        public Costs {
            if (layers.length != visit.length || layers.length != head.length) throw new IllegalArgumentException("one cost per exit");
        }

        /** The costs of {@code ee}'s exits under {@code method} ({@link dev.eetune.exit.ExitCost}). */
        public static Costs of(EarlyExitModel ee, ConfidenceMethod method) {
            List<ExitHead> heads = ee.heads();
            return of(ee.backbone().config(), heads.stream().map(ExitHead::architecture).toArray(ExitArchitecture[]::new),
                heads.stream().mapToInt(ExitHead::layer).toArray(), method, ee.hasGates() ? ee.gate(heads.get(0).layer()).hiddenUnits() : 0);
        }

        /** The costs of exits of {@code archs} after {@code layers} of a model of shape {@code c}, gates of {@code gateHidden} units. */
        public static Costs of(LlamaConfig c, ExitArchitecture[] archs, int[] layers, ConfidenceMethod method, int gateHidden) {
            double[] visit = new double[layers.length], head = new double[layers.length];
            double score = ExitScores.scoreLayers(method, c, gateHidden), layer = ExitCost.layerMacs(c);
            boolean cheap = method.isCheap();
            for (int i = 0; i < layers.length; i++) {
                // a layer head's own layer: every row writes its K/V there; with a cheap score only the rows the head
                // runs for pay the rest of it (softmax runs the head, so the whole layer, for every row)
                boolean own = archs[i] == ExitArchitecture.LAYER;
                visit[i] = score + (own ? (cheap ? ExitCost.kvLayers(c) : 1) : 0);
                head[i] = ExitCost.headMacs(archs[i], c) / layer + (own && cheap ? 1 : 0);
            }
            return new Costs(c.nLayers(), layers.clone(), visit, head, ExitCost.finalHeadMacs(c) / layer);
        }
    }

    public Decisions decide(EarlyExitPolicy policy, EarlyExitModel ee) { return decide(policy, Costs.of(ee, policy.confidence())); }

    /**
     * As {@link #decide(EarlyExitPolicy, EarlyExitModel)}, with the costs of another shape, whose exits sit after
     * {@code costs.layers()} (one per traced head): the cost projection.
     */
    public Decisions decide(EarlyExitPolicy policy, Costs costs) {
        float[][] score = scores(policy.confidence());
        int n = positions(), h = layers.length;
        long ok = 0;
        long[] exits = new long[h + 1], agreeing = new long[windows.length];
        double cost = 0;
        for (int p = 0, w = 0, end = windows.length == 0 ? 0 : windows[0]; p < n; p++) {
            if (p == end) end += windows[++w];
            int exit = h;
            double tokenCost = 0;
            for (int i = 0; i < h; i++) {
                if (!policy.canExit(layers[i])) continue;
                boolean go = policy.exits(layers[i], score[i][p], softmax[i][p]);
                tokenCost += costs.visit()[i] + (headRuns(policy, layers[i], score[i][p], go) ? costs.head()[i] : 0);
                if (go) {
                    exit = i;
                    break;
                }
            }
            exits[exit]++;
            if (exit == h || agrees[exit][p]) {
                ok++;
                agreeing[w]++;
            }
            cost += tokenCost + (exit == h ? costs.fullCost() : costs.layers()[exit]);
        }
        double[] share = new double[h + 1];
        for (int i = 0; i <= h; i++) share[i] = n == 0 ? 0 : (double) exits[i] / n;
        return new Decisions(n == 0 ? 1 : (double) ok / n, share, n == 0 ? costs.fullCost() : cost / n, costs.fullCost(), effectivePositions(agreeing, windows));
    }

    /**
     * Whether the head runs for a row at an enabled exit: always with softmax; with gate or saturation when the row
     * exits; with cascade when the gate passes (the softmax then confirms or not).
     */
    static boolean headRuns(EarlyExitPolicy policy, int layer, double score, boolean exits) {
        switch (policy.confidence()) {
            case SOFTMAX: return true;
            case CASCADE: return EarlyExitPolicy.confident(score, policy.threshold(layer));
            default: return exits;
        }
    }
}
