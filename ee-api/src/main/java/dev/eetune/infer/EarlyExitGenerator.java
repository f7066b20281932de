package dev.eetune.infer;

import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitHead;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * KV-cached decoding with confidence-based early exits and exact KV caches (EE-LLM's KV recomputation), for a
 * batch of prompts of any lengths, each sequence exiting on its own (see shared design INFERENCE.md §1-2).
 *
 * <p>Per sequence b: {@code len[b]} committed tokens, of which positions {@code < fed[b]} have K/V in every layer.
 * Each pass feeds rows fed[b] .. len[b]-1 of every live sequence, packed without padding, from layer 1. At each
 * active exit the head judges each sequence's newest row; a confident sequence emits the head's token and leaves the
 * pass (its rows stay pending and are recomputed, in one batched pass, together with its next token), the others
 * continue. Sequences that reach the last layer become complete. The cache therefore always equals the full
 * model's, and with no confident exit this is plain decoding.
 */
public final class EarlyExitGenerator implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(EarlyExitGenerator.class);

    private final LlamaModel model;
    private final EarlyExitModel exits; // may be null: the full model
    private final EarlyExitPolicy policy;
    private final LlamaConfig config;
    private final int maxBatch, maxLen;
    private final KvCache cache;
    private final Map<Integer, KvCache> headCaches = new HashMap<>(); // LAYER heads' own K/V, by exit layer
    private final Workspace ws;
    private final Scope scope;
    private Tensor xa, xb, resid;
    private Tensor states;     // [maxBatch * maxLen, dim]: the kept layer-L outputs of pending rows (made on the first exit)
    private final int[][] doneLayers; // [sequence][position]: layers a pending row has been through (0: none)
    private Scope buffers;
    private int capacity;
    private final Tensor chosen, maxProb, uniforms;
    private boolean poisonSkippedKv;
    private Stats stats = Stats.EMPTY;
    private int[] complete = new int[0];

    /**
     * What the last {@link #generate} call did: tokens emitted per exit layer (index = layer, the last index = the
     * final layer), rows x layers computed by the decode passes (after the prefill; recomputation included), head
     * evaluations, and timing.
     */
    public record Stats(int sequences, int promptTokens, int generatedTokens, long[] exitCounts, long rowLayers, long headEvaluations,
                        double prefillSeconds, double decodeSeconds) {
        static final Stats EMPTY = new Stats(0, 0, 0, new long[1], 0, 0, 0, 0);

        public double decodeTokensPerSecond() { return decodeSeconds > 0 ? (generatedTokens - sequences) / decodeSeconds : 0; }

        /** Mean layer at which tokens were emitted (the last layer when no head fired). */
        public double meanExitLayer() {
            double s = 0;
            long n = 0;
            for (int l = 0; l < exitCounts.length; l++) {
                s += (double) l * exitCounts[l];
                n += exitCounts[l];
            }
            return n == 0 ? 0 : s / n;
        }

        /** Layers run per token decoded after the first (recomputed rows and heads' own layers included; prefill not). */
        public double layersPerToken() { return generatedTokens <= sequences ? 0 : (double) rowLayers / (generatedTokens - sequences); }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%d sequences, %d prompt tokens, %d generated; prefill %.1f ms (time to first token), decode %.1f tok/s, mean exit layer %.2f, %.2f layers/token",
                sequences, promptTokens, generatedTokens, prefillSeconds * 1e3, decodeTokensPerSecond(), meanExitLayer(), layersPerToken());
        }
    }

    /** Early-exit decoding with {@code exits}' heads under {@code policy}; {@code exits} null means the full model. */
    public EarlyExitGenerator(LlamaModel model, EarlyExitModel exits, EarlyExitPolicy policy, int maxBatch, int maxLen) {
        this.model = model;
        this.exits = exits;
        this.policy = policy;
        this.config = model.config();
        if (exits != null && exits.backbone() != model) throw new IllegalArgumentException("the exit heads belong to another backbone");
        for (int layer : policy.thresholds().keySet()) {
            if (exits == null || exits.head(layer) == null) throw new IllegalArgumentException("the policy has an exit after layer " + layer + ", but no head is attached there");
        }
        if (maxLen > config.maxSeqLen()) throw new IllegalArgumentException("maxLen " + maxLen + " exceeds the model's context of " + config.maxSeqLen());
        if (maxBatch < 1 || maxLen < 1) throw new IllegalArgumentException("maxBatch " + maxBatch + " and maxLen " + maxLen + " must be >= 1");
        this.maxBatch = maxBatch;
        this.maxLen = maxLen;
        this.cache = new KvCache(config, model.backend(), maxBatch, maxLen);
        this.doneLayers = new int[maxBatch][maxLen];
        if (exits != null) {
            for (ExitHead h : exits.heads()) {
                if (h.architecture() == ExitArchitecture.LAYER && policy.evaluates(h.layer())) {
                    headCaches.put(h.layer(), KvCache.scratch(config, model.backend(), maxBatch, maxLen)); // one layer's worth
                }
            }
        }
        this.ws = model.newWorkspace();
        this.scope = Scope.of(model.backend());
        chosen = scope.allocate(DType.I32, maxBatch);
        maxProb = scope.allocate(DType.F32, maxBatch);
        uniforms = scope.allocate(DType.F32, maxBatch);
    }

    public LlamaModel model() { return model; }

    public EarlyExitPolicy policy() { return policy; }

    public Stats lastStats() { return stats; }

    /** The backbone's K/V cache (for exactness checks). */
    public KvCache cache() { return cache; }

    /** Per sequence of the last call: positions below this have K/V in every layer. */
    public int[] completeLengths() { return complete.clone(); }

    /** Test hook: after each exit, fill the skipped layers' cache slots of the exited rows with NaN (INFERENCE.md P4). */
    public void poisonSkippedKv(boolean on) { this.poisonSkippedKv = on; }

    /** Generates for each prompt (non-empty token ids); results in prompt order. */
    public List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        int b = prompts.size();
        if (b == 0 || b > maxBatch) throw new IllegalArgumentException(b + " prompts for a generator of batch " + maxBatch);
        int[][] seqs = new int[b][];
        int[] len = new int[b], fed = new int[b], done = new int[b]; // done: 0 running, 1 stop token, 2 max tokens
        int promptTokens = 0;
        for (int s = 0; s < b; s++) {
            int[] p = prompts.get(s);
            if (p.length == 0) throw new IllegalArgumentException("prompt " + s + " is empty (start with BOS)");
            for (int t : p) if (t < 0 || t >= config.vocabSize()) throw new IllegalArgumentException("prompt " + s + " has token " + t + " outside the vocabulary of " + config.vocabSize());
            if (p.length + cfg.maxNewTokens() > maxLen) throw new IllegalArgumentException("prompt " + s + " (" + p.length + " tokens) + " + cfg.maxNewTokens() + " new tokens exceeds maxLen " + maxLen);
            seqs[s] = Arrays.copyOf(p, p.length + cfg.maxNewTokens());
            len[s] = p.length;
            promptTokens += p.length;
            if (cfg.maxNewTokens() == 0) done[s] = 2;
        }
        for (int[] d : doneLayers) Arrays.fill(d, 0);
        Counters counters = new Counters(config.nLayers());
        long t0 = System.nanoTime(), tFirst = 0;
        int generated = 0;
        while (true) {
            List<Integer> live = new ArrayList<>();
            for (int s = 0; s < b; s++) if (done[s] == 0) live.add(s);
            if (live.isEmpty()) break;
            long before = counters.rowLayers;
            Map<Integer, Integer> emitted = pass(live, seqs, len, fed, cfg, counters);
            if (tFirst == 0) counters.rowLayers = before; // the prefill pass is not decoding work
            for (int s : live) {
                int tok = emitted.get(s);
                seqs[s][len[s]++] = tok;
                generated++;
                if (listener != null) listener.onToken(s, tok);
                if (cfg.stopTokens().contains(tok)) done[s] = 1;
                else if (len[s] - prompts.get(s).length >= cfg.maxNewTokens()) done[s] = 2;
            }
            if (tFirst == 0) tFirst = System.nanoTime();
        }
        long t1 = System.nanoTime();
        long first = tFirst == 0 ? t1 : tFirst;
        stats = new Stats(b, promptTokens, generated, counters.exits, counters.rowLayers, counters.headEvals, (first - t0) / 1e9, (t1 - first) / 1e9);
        complete = Arrays.copyOf(fed, b);
        log.debug("generate: {}", stats);
        List<GenerationResult> out = new ArrayList<>();
        for (int s = 0; s < b; s++) {
            out.add(new GenerationResult(Arrays.copyOf(seqs[s], len[s]), prompts.get(s).length,
                done[s] == 1 ? GenerationResult.StopReason.STOP_TOKEN : GenerationResult.StopReason.MAX_TOKENS));
        }
        return out;
    }

    private static final class Counters {
        final long[] exits;
        long rowLayers, headEvals;

        Counters(int layers) { exits = new long[layers + 1]; }
    }

    /**
     * One pass; returns each live sequence's next token. Rows join the pass at the layer where they stopped: the
     * newest token at layer 1, a pending row that exited after layer L (whose K/V are exact in layers 1..L and whose
     * layer-L output is kept, LayerSkip's "exit query cache") at layer L+1. So every row goes through every layer
     * exactly once over its lifetime, and a row at layer l always finds K/V of all earlier positions at layer l:
     * complete ones in the cache, pending ones because they joined this pass at or before l.
     */
    private Map<Integer, Integer> pass(List<Integer> live, int[][] seqs, int[] len, int[] fed, GenerationConfig cfg, Counters counters) {
        Ops ops = model.backend().ops();
        List<Integer> active = new ArrayList<>(live);
        int maxRows = 0;
        for (int s : active) maxRows += len[s] - fed[s];
        ensure(maxRows);
        Map<Integer, Integer> out = new HashMap<>();
        // rows in flight: x[0..n) with their sequence and position: the newest rows first (in active order), then
        // rows that start at layer 1 too (prompt rows: pending, but never through any layer)
        List<int[]> rows = new ArrayList<>(); // {seq, pos}
        for (int s : active) rows.add(new int[] {s, len[s] - 1});
        for (int s : active) for (int p = fed[s]; p < len[s] - 1; p++) if (doneLayers[s][p] == 0) rows.add(new int[] {s, p});
        int[] tokens0 = new int[rows.size()];
        for (int r = 0; r < tokens0.length; r++) tokens0[r] = seqs[rows.get(r)[0]][rows.get(r)[1]];
        Tensor x = xa, spare = xb;
        model.embed(x.slice(0, rows.size()), ws.rows(tokens0, column(rows, 0), column(rows, 1)));
        try (Scope step = scope.child()) {
            for (int l = 0; l < config.nLayers(); l++) {
                join(rows, x, active, fed, len, l);
                int n = rows.size();
                Tensor xs = x.slice(0, n);
                Workspace.Rows wr = ws.rows(new int[n], column(rows, 0), column(rows, 1));
                ExitHead h = exits == null ? null : exits.head(l + 1);
                boolean evaluate = h != null && policy.evaluates(l + 1);
                boolean needResidual = evaluate && h.architecture() == ExitArchitecture.MLP;
                model.layers(xs, wr, cache, l, l + 1, ws, !needResidual ? null : new LlamaModel.LayerTap() {
                    @Override
                    public void afterAttention(int layer, Tensor residual) { resid.slice(0, n).copyFrom(residual); }
                });
                counters.rowLayers += n;
                if (!evaluate) continue;
                // the head judges each active sequence's newest row (rows 0..active-1 are the newest, in order)
                int m = active.size();
                if (h.architecture() == ExitArchitecture.LAYER) counters.rowLayers += n; // its own layer, over every row
                Tensor logits = h.decodeLogits(step, model, xs, needResidual ? resid.slice(0, n) : null, wr, headCaches.get(l + 1), ws, m);
                counters.headEvals += m;
                if (!policy.canExit(l + 1)) continue;
                Tensor mp = maxProb.slice(0, m), am = chosen.slice(0, m);
                ops.argmax(am, mp, logits, h.temperature());
                float[] p = mp.toFloatArray();
                float tau = policy.threshold(l + 1);
                boolean any = false;
                for (float v : p) any |= v >= tau;
                if (!any) continue;
                int[] tokens = choose(logits, active, len, cfg);
                List<Integer> keep = new ArrayList<>();
                for (int i = 0; i < m; i++) {
                    int s = active.get(i);
                    if (p[i] >= tau) {
                        out.put(s, tokens[i]);
                        counters.exits[l + 1]++;
                    } else {
                        keep.add(s);
                    }
                }
                // exited sequences leave: their rows keep their layer-(l+1) states and wait for a deeper pass
                ensureStates();
                List<int[]> kept = new ArrayList<>();
                List<Integer> keptIdx = new ArrayList<>(), storedIdx = new ArrayList<>(), storedSlot = new ArrayList<>();
                for (int r = 0; r < n; r++) {
                    int[] row = rows.get(r);
                    if (keep.contains(row[0])) {
                        kept.add(row);
                        keptIdx.add(r);
                    } else {
                        storedIdx.add(r);
                        storedSlot.add(slot(row[0], row[1]));
                        doneLayers[row[0]][row[1]] = l + 1;
                    }
                }
                storeStates(step, xs, storedIdx, storedSlot);
                if (poisonSkippedKv) for (int r : storedIdx) poison(rows.get(r)[0], rows.get(r)[1], l + 1);
                if (kept.isEmpty()) return out;
                ops.gatherRows(spare.slice(0, kept.size()), xs, step.of(keptIdx.stream().mapToInt(Integer::intValue).toArray(), kept.size()));
                Tensor t = x;
                x = spare;
                spare = t;
                rows = kept;
                active = keep;
            }
            // whoever reached the last layer: every one of its rows is now complete
            int m = active.size();
            Tensor normed = step.allocate(DType.F32, m, config.dim()), logits = step.allocate(DType.F32, m, config.vocabSize());
            model.logits(logits, x.slice(0, m), normed);
            int[] tokens = choose(logits, active, len, cfg);
            for (int i = 0; i < m; i++) {
                int s = active.get(i);
                out.put(s, tokens[i]);
                counters.exits[config.nLayers()]++;
                fed[s] = len[s];
            }
        }
        return out;
    }

    /** Adds to the rows in flight the pending rows (of active sequences) that stopped after layer {@code layer}. */
    private void join(List<int[]> rows, Tensor x, List<Integer> active, int[] fed, int[] len, int layer) {
        if (layer == 0 || states == null) return; // layer 0: rows come from embeddings
        List<Integer> slots = new ArrayList<>();
        for (int s : active) {
            for (int p = fed[s]; p < len[s] - 1; p++) {
                if (doneLayers[s][p] == layer) {
                    rows.add(new int[] {s, p});
                    slots.add(slot(s, p));
                }
            }
        }
        if (slots.isEmpty()) return;
        int n = rows.size(), k = slots.size();
        try (Scope s = scope.child()) {
            model.backend().ops().gatherRows(x.slice(n - k, n), states, s.of(slots.stream().mapToInt(Integer::intValue).toArray(), k));
        }
    }

    private void ensureStates() {
        if (states == null) states = scope.allocate(DType.F32, maxBatch * maxLen, config.dim());
    }

    /** Saves rows {@code idx} of x into state slots. */
    private void storeStates(Scope step, Tensor x, List<Integer> idx, List<Integer> slots) {
        for (int i = 0; i < idx.size(); i++) states.slice(slots.get(i), slots.get(i) + 1).copyFrom(x.slice(idx.get(i), idx.get(i) + 1));
    }

    private int slot(int s, int p) { return s * maxLen + p; }

    private static int[] column(List<int[]> rows, int c) {
        int[] out = new int[rows.size()];
        for (int i = 0; i < out.length; i++) out[i] = rows.get(i)[c];
        return out;
    }

    /** Greedy argmax, or temperature + top-p sampling with the counter-based RNG (keyed by sequence and position). */
    private int[] choose(Tensor logits, List<Integer> active, int[] len, GenerationConfig cfg) {
        Ops ops = model.backend().ops();
        int n = active.size();
        Tensor out = chosen.slice(0, n);
        if (cfg.isGreedy()) {
            ops.argmax(out, null, logits, 1f);
        } else {
            float[] u = new float[n];
            for (int i = 0; i < n; i++) u[i] = CounterRng.uniform(cfg.seed(), active.get(i), len[active.get(i)], 0);
            ops.sampleTopP(out, logits, uniforms.slice(0, n).copyFrom(u), cfg.temperature(), cfg.topP());
        }
        return out.toIntArray();
    }

    /** Test hook: NaN into the cache slots of (s, p) in the layers it has not reached (from {@code fromLayer}). */
    private void poison(int s, int p, int fromLayer) {
        int kvDim = config.nKvHeads() * config.headDim();
        try (Scope sc = scope.child()) {
            float[] nan = new float[kvDim];
            Arrays.fill(nan, Float.NaN);
            Tensor src = sc.of(nan, 1, kvDim), seqT = sc.of(new int[] {s}, 1), posT = sc.of(new int[] {p}, 1);
            for (int l = fromLayer; l < config.nLayers(); l++) {
                model.backend().ops().kvWrite(cache.keys(l), src, seqT, posT);
                model.backend().ops().kvWrite(cache.values(l), src, seqT, posT);
            }
        }
    }

    private void ensure(int rows) {
        if (rows <= capacity) return;
        int cap = Math.max(rows, 2 * capacity);
        if (buffers != null) buffers.close();
        buffers = scope.child();
        xa = buffers.allocate(DType.F32, cap, config.dim());
        xb = buffers.allocate(DType.F32, cap, config.dim());
        resid = buffers.allocate(DType.F32, cap, config.dim());
        capacity = cap;
    }

    @Override
    public void close() {
        scope.close();
        ws.close();
        cache.close();
        headCaches.values().forEach(KvCache::close);
    }
}
