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
    private Scope buffers;
    private int capacity;
    private final Tensor lastIdx, chosen, maxProb, uniforms;
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
        if (exits != null) {
            for (ExitHead h : exits.heads()) {
                if (h.architecture() == ExitArchitecture.LAYER && policy.evaluates(h.layer())) {
                    headCaches.put(h.layer(), KvCache.scratch(config, model.backend(), maxBatch, maxLen)); // one layer's worth
                }
            }
        }
        this.ws = model.newWorkspace();
        this.scope = Scope.of(model.backend());
        lastIdx = scope.allocate(DType.I32, maxBatch);
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

    /** One pass over the pending + newest rows of every live sequence; returns each sequence's next token. */
    private Map<Integer, Integer> pass(List<Integer> live, int[][] seqs, int[] len, int[] fed, GenerationConfig cfg, Counters counters) {
        Ops ops = model.backend().ops();
        List<Integer> active = new ArrayList<>(live);
        int rowsTotal = 0;
        for (int s : active) rowsTotal += len[s] - fed[s];
        ensure(rowsTotal);
        Tensor x = xa, spare = xb;
        Workspace.Rows rows = loadRows(active, seqs, len, fed);
        model.embed(x.slice(0, rows.count()), rows);
        Map<Integer, Integer> out = new HashMap<>();
        int from = 0;
        List<ExitHead> heads = exits == null ? List.of() : exits.heads();
        try (Scope step = scope.child()) {
            for (ExitHead h : heads) {
                int layer = h.layer();
                if (!policy.evaluates(layer)) continue;
                int n = rows.count();
                Tensor xs = x.slice(0, n);
                boolean needResidual = h.architecture() == ExitArchitecture.MLP;
                if (layer - 1 > from) model.layers(xs, rows, cache, from, layer - 1, ws, null);
                model.layers(xs, rows, cache, layer - 1, layer, ws, !needResidual ? null : new LlamaModel.LayerTap() {
                    @Override
                    public void afterAttention(int l, Tensor residual) { resid.slice(0, n).copyFrom(residual); }
                });
                counters.rowLayers += (long) n * (layer - from);
                from = layer;
                // the head judges each active sequence's newest row
                int[] last = lastRows(active, len, fed);
                Tensor idx = lastIdx.slice(0, last.length).copyFrom(last);
                Tensor hidden = xs;
                if (h.architecture() == ExitArchitecture.LAYER) { // its own layer runs on every row, keeping its cache exact
                    hidden = step.allocate(DType.F32, n, config.dim());
                    hidden.copyFrom(xs);
                    KvCache hc = headCaches.get(layer);
                    model.layer(h.layerWeights(), hc.keys(0), hc.values(0), hidden, rows, ws);
                    counters.rowLayers += n;
                }
                Tensor lastHidden = step.allocate(DType.F32, last.length, config.dim());
                ops.gatherRows(lastHidden, hidden, idx);
                Tensor lastResid = null;
                if (needResidual) {
                    lastResid = step.allocate(DType.F32, last.length, config.dim());
                    ops.gatherRows(lastResid, resid.slice(0, n), idx);
                }
                Tensor z = h.inferenceInput(step, lastHidden, lastResid);
                Tensor logits = step.allocate(DType.F32, last.length, config.vocabSize());
                ops.linear(logits, z, h.lmHead().value());
                counters.headEvals += last.length;
                if (!policy.canExit(layer)) continue;
                Tensor mp = maxProb.slice(0, last.length), am = chosen.slice(0, last.length);
                ops.argmax(am, mp, logits, h.temperature());
                float[] p = mp.toFloatArray();
                float tau = policy.threshold(layer);
                List<Integer> fired = new ArrayList<>();
                for (int i = 0; i < p.length; i++) if (p[i] >= tau) fired.add(i);
                if (fired.isEmpty()) continue;
                int[] tokens = choose(logits, active, len, cfg);
                List<Integer> keep = new ArrayList<>();
                for (int i = 0; i < active.size(); i++) {
                    int s = active.get(i);
                    if (fired.contains(i)) {
                        out.put(s, tokens[i]);
                        counters.exits[layer]++;
                        if (poisonSkippedKv) poison(s, fed[s], len[s], layer);
                    } else {
                        keep.add(s);
                    }
                }
                if (keep.isEmpty()) return out;
                // compact: keep only the rows of sequences still in the pass
                int[] keepRows = rowsOf(keep, active, len, fed);
                ops.gatherRows(spare.slice(0, keepRows.length), xs, step.of(keepRows, keepRows.length));
                Tensor t = x;
                x = spare;
                spare = t;
                active = keep;
                rows = loadRows(active, seqs, len, fed);
            }
            int n = rows.count();
            Tensor xs = x.slice(0, n);
            model.layers(xs, rows, cache, from, config.nLayers(), ws, null);
            counters.rowLayers += (long) n * (config.nLayers() - from);
            int[] last = lastRows(active, len, fed);
            Tensor idx = lastIdx.slice(0, last.length).copyFrom(last);
            Tensor lastHidden = step.allocate(DType.F32, last.length, config.dim()), normed = step.allocate(DType.F32, last.length, config.dim());
            Tensor logits = step.allocate(DType.F32, last.length, config.vocabSize());
            ops.gatherRows(lastHidden, xs, idx);
            model.logits(logits, lastHidden, normed);
            int[] tokens = choose(logits, active, len, cfg);
            for (int i = 0; i < active.size(); i++) {
                int s = active.get(i);
                out.put(s, tokens[i]);
                counters.exits[config.nLayers()]++;
                fed[s] = len[s]; // every fed row now has K/V in every layer
            }
        }
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

    private Workspace.Rows loadRows(List<Integer> active, int[][] seqs, int[] len, int[] fed) {
        int n = 0;
        for (int s : active) n += len[s] - fed[s];
        int[] tok = new int[n], seq = new int[n], pos = new int[n];
        int r = 0;
        for (int s : active) {
            for (int p = fed[s]; p < len[s]; p++, r++) {
                tok[r] = seqs[s][p];
                seq[r] = s;
                pos[r] = p;
            }
        }
        return ws.rows(tok, seq, pos);
    }

    /** Index of each active sequence's newest row in the packed rows. */
    private static int[] lastRows(List<Integer> active, int[] len, int[] fed) {
        int[] last = new int[active.size()];
        int r = 0;
        for (int i = 0; i < active.size(); i++) {
            int s = active.get(i);
            r += len[s] - fed[s];
            last[i] = r - 1;
        }
        return last;
    }

    /** Packed-row indices (in {@code active}'s layout) of the sequences in {@code keep}. */
    private static int[] rowsOf(List<Integer> keep, List<Integer> active, int[] len, int[] fed) {
        List<Integer> idx = new ArrayList<>();
        int r = 0;
        for (int s : active) {
            int n = len[s] - fed[s];
            if (keep.contains(s)) for (int k = 0; k < n; k++) idx.add(r + k);
            r += n;
        }
        return idx.stream().mapToInt(Integer::intValue).toArray();
    }

    private void poison(int s, int from, int to, int exitLayer) {
        int n = to - from, kvDim = config.nKvHeads() * config.headDim();
        try (Scope p = scope.child()) {
            float[] nan = new float[n * kvDim];
            Arrays.fill(nan, Float.NaN);
            int[] seq = new int[n], pos = new int[n];
            for (int i = 0; i < n; i++) {
                seq[i] = s;
                pos[i] = from + i;
            }
            Tensor src = p.of(nan, n, kvDim), seqT = p.of(seq, n), posT = p.of(pos, n);
            for (int l = exitLayer; l < config.nLayers(); l++) {
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
