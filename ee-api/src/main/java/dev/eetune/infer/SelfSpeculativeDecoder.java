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

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Lossless self-speculative decoding with an exit head as the drafter (INFERENCE.md §3). Each round, every live
 * sequence drafts up to k tokens through layers 1..E and head E (saving each row's layer-E hidden state), then one
 * verification pass runs layers E+1..N over [x_n, d_1..d_k] from those saved states; the longest prefix agreeing with
 * the full model is accepted plus the full model's next token. Greedy output equals full-model greedy decoding token
 * for token; with sampling, drafts are accepted with probability min(1, p/q) and a rejection draws from the residual,
 * so the output follows the full model's distribution. Sequences in a batch draft and accept independently.
 */
public final class SelfSpeculativeDecoder implements AutoCloseable {
    private final LlamaModel model;
    private final LlamaConfig config;
    private final ExitHead drafter;
    private final int exit, maxBatch, maxLen, maxDraft, initialDraft;
    private final boolean adaptive;
    private final float confidenceStop;
    private final KvCache cache, headCache;
    private final Workspace ws;
    private final Scope scope;
    private final Tensor states; // [maxBatch * (maxDraft + 1), dim]: layer-E hidden state of each drafted row
    private Stats stats = new Stats(0, 0, 0, 0, 0, 0);

    /** Rounds, drafted and accepted tokens, emitted tokens and timing of the last call. */
    public record Stats(long rounds, long drafted, long accepted, long generated, double prefillSeconds, double decodeSeconds) {
        public double acceptanceRate() { return drafted == 0 ? 0 : (double) accepted / drafted; }

        public double tokensPerRound() { return rounds == 0 ? 0 : (double) generated / rounds; }

        public double decodeTokensPerSecond() { return decodeSeconds > 0 ? generated / decodeSeconds : 0; }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%d rounds, %d drafted, %.1f%% accepted, %.2f tokens/round, decode %.1f tok/s",
                rounds, drafted, 100 * acceptanceRate(), tokensPerRound(), decodeTokensPerSecond());
        }
    }

    /**
     * @param draftExit      the exit layer (1-based) whose head drafts
     * @param draftLength    k: drafts per round (the initial k when adaptive)
     * @param adaptive       adapt k per sequence (transformers' rule: +2 when every draft was accepted, else −1; 1..2k)
     * @param confidenceStop stop drafting when the drafter's max probability falls below this (0 = never)
     */
    public SelfSpeculativeDecoder(EarlyExitModel exits, int draftExit, int draftLength, boolean adaptive, float confidenceStop, int maxBatch, int maxLen) {
        this.model = exits.backbone();
        this.config = model.config();
        this.drafter = exits.head(draftExit);
        if (drafter == null) throw new IllegalArgumentException("no exit head after layer " + draftExit + " to draft with; heads: " + exits.heads());
        if (draftLength < 1) throw new IllegalArgumentException("draft length must be >= 1, got " + draftLength);
        if (maxLen > config.maxSeqLen()) throw new IllegalArgumentException("maxLen " + maxLen + " exceeds the model's context of " + config.maxSeqLen());
        this.exit = draftExit;
        this.maxBatch = maxBatch;
        this.maxLen = maxLen;
        this.adaptive = adaptive;
        this.maxDraft = adaptive ? 2 * draftLength : draftLength;
        this.initialDraft = draftLength;
        this.confidenceStop = confidenceStop;
        this.cache = new KvCache(config, model.backend(), maxBatch, maxLen + maxDraft + 1);
        this.headCache = drafter.architecture() == ExitArchitecture.LAYER ? KvCache.scratch(config, model.backend(), maxBatch, maxLen + maxDraft + 1) : null;
        this.ws = model.newWorkspace();
        this.scope = Scope.of(model.backend());
        this.states = scope.allocate(DType.F32, maxBatch * (maxDraft + 1), config.dim());
    }

    public Stats lastStats() { return stats; }

    public List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        int b = prompts.size();
        if (b == 0 || b > maxBatch) throw new IllegalArgumentException(b + " prompts for a decoder of batch " + maxBatch);
        int[][] seqs = new int[b][];
        int[] len = new int[b], k = new int[b], done = new int[b], promptLen = new int[b];
        for (int s = 0; s < b; s++) {
            int[] p = prompts.get(s);
            if (p.length == 0) throw new IllegalArgumentException("prompt " + s + " is empty (start with BOS)");
            for (int t : p) if (t < 0 || t >= config.vocabSize()) throw new IllegalArgumentException("prompt " + s + " has token " + t + " outside the vocabulary of " + config.vocabSize());
            if (p.length + cfg.maxNewTokens() > maxLen) throw new IllegalArgumentException("prompt " + s + " (" + p.length + " tokens) + " + cfg.maxNewTokens() + " new tokens exceeds maxLen " + maxLen);
            seqs[s] = Arrays.copyOf(p, p.length + cfg.maxNewTokens() + maxDraft + 1);
            len[s] = p.length;
            promptLen[s] = p.length;
            k[s] = initialDraft;
            if (cfg.maxNewTokens() == 0) done[s] = 2;
        }
        long t0 = System.nanoTime();
        prefill(prompts);
        long t1 = System.nanoTime();
        long rounds = 0, drafted = 0, accepted = 0, generated = 0;
        try (Scope round = scope.child()) {
            while (true) {
                List<Integer> live = new ArrayList<>();
                for (int s = 0; s < b; s++) if (done[s] == 0) live.add(s);
                if (live.isEmpty()) break;
                rounds++;
                int n = live.size();
                // 1. draft: one row per drafting sequence per step, through layers 1..E and the exit head
                int[][] drafts = new int[n][];
                float[][][] q = new float[n][][];
                int[] count = new int[n];
                boolean[] drafting = new boolean[n];
                int budgetMax = 0;
                for (int i = 0; i < n; i++) {
                    int s = live.get(i);
                    // a round emits up to drafts + 1 tokens: never draft past the token budget
                    int budget = Math.min(k[s], Math.max(0, cfg.maxNewTokens() - (len[s] - promptLen[s]) - 1));
                    drafts[i] = new int[budget];
                    q[i] = new float[budget][];
                    drafting[i] = budget > 0;
                    budgetMax = Math.max(budgetMax, budget);
                }
                for (int j = 0; j < budgetMax; j++) {
                    List<Integer> rowsOf = new ArrayList<>();
                    for (int i = 0; i < n; i++) if (drafting[i] && count[i] == j && j < drafts[i].length) rowsOf.add(i);
                    if (rowsOf.isEmpty()) break;
                    int m = rowsOf.size();
                    int[] tok = new int[m], seq = new int[m], pos = new int[m], slot = new int[m];
                    for (int r = 0; r < m; r++) {
                        int i = rowsOf.get(r), s = live.get(i);
                        tok[r] = j == 0 ? seqs[s][len[s] - 1] : drafts[i][j - 1];
                        seq[r] = s;
                        pos[r] = len[s] - 1 + j;
                        slot[r] = s * (maxDraft + 1) + j;
                    }
                    float[][] logits = draftStep(round, tok, seq, pos, slot);
                    for (int r = 0; r < m; r++) {
                        int i = rowsOf.get(r), s = live.get(i);
                        float[] dist = cfg.isGreedy() ? null : SpeculativeSampling.process(logits[r], cfg.temperature(), cfg.topP());
                        int d = cfg.isGreedy() ? argmax(logits[r]) : SpeculativeSampling.draw(dist, CounterRng.uniform(cfg.seed(), s, pos[r] + 1, 3));
                        q[i][j] = cfg.isGreedy() ? null : dist;
                        drafts[i][j] = d;
                        count[i] = j + 1;
                        drafted++;
                        boolean confident = confidenceStop <= 0 || maxProb(logits[r], drafter.temperature()) >= confidenceStop;
                        if (count[i] >= drafts[i].length || cfg.stopTokens().contains(d) || !confident) drafting[i] = false;
                    }
                }
                // 2. verify: [x_n, d_1..d_k] through layers E+1..N from the saved layer-E states (d_k first runs 1..E)
                float[][][] p = verify(round, live, seqs, len, drafts, count);
                // 3. accept the longest agreeing prefix, then the full model's token
                for (int i = 0; i < n; i++) {
                    int s = live.get(i), c = count[i];
                    int[] emit = new int[c + 1];
                    int e = 0, acc = 0;
                    for (int j = 0; j <= c; j++) {
                        float[] target = cfg.isGreedy() ? null : SpeculativeSampling.process(p[i][j], cfg.temperature(), cfg.topP());
                        int position = len[s] + j;
                        if (j < c) {
                            int d = drafts[i][j];
                            boolean ok = cfg.isGreedy() ? d == argmax(p[i][j])
                                : SpeculativeSampling.accept(target, q[i][j], d, CounterRng.uniform(cfg.seed(), s, position, 1));
                            if (ok) {
                                emit[e++] = d;
                                acc++;
                                continue;
                            }
                            emit[e++] = cfg.isGreedy() ? argmax(p[i][j]) : SpeculativeSampling.residual(target, q[i][j], CounterRng.uniform(cfg.seed(), s, position, 2));
                        } else {
                            emit[e++] = cfg.isGreedy() ? argmax(p[i][j]) : SpeculativeSampling.draw(target, CounterRng.uniform(cfg.seed(), s, position, 0));
                        }
                        break;
                    }
                    accepted += acc;
                    if (adaptive) k[s] = acc == c ? Math.min(maxDraft, k[s] + 2) : Math.max(1, k[s] - 1);
                    for (int t = 0; t < e && done[s] == 0; t++) {
                        seqs[s][len[s]++] = emit[t];
                        generated++;
                        if (listener != null) listener.onToken(s, emit[t]);
                        if (cfg.stopTokens().contains(emit[t])) done[s] = 1;
                        else if (len[s] - promptLen[s] >= cfg.maxNewTokens()) done[s] = 2;
                    }
                }
            }
        }
        long t2 = System.nanoTime();
        stats = new Stats(rounds, drafted, accepted, generated, (t1 - t0) / 1e9, (t2 - t1) / 1e9);
        List<GenerationResult> out = new ArrayList<>();
        for (int s = 0; s < b; s++) {
            out.add(new GenerationResult(Arrays.copyOf(seqs[s], len[s]), prompts.get(s).length,
                done[s] == 1 ? GenerationResult.StopReason.STOP_TOKEN : GenerationResult.StopReason.MAX_TOKENS));
        }
        return out;
    }

    /** Prompt positions 0..P-2 through every layer (and the drafter's own layer): the newest token is fed by the first draft. */
    private void prefill(List<int[]> prompts) {
        int total = 0;
        for (int[] p : prompts) total += p.length - 1;
        if (total == 0) return;
        int[] tok = new int[total], seq = new int[total], pos = new int[total];
        int r = 0;
        for (int s = 0; s < prompts.size(); s++) {
            for (int i = 0; i < prompts.get(s).length - 1; i++, r++) {
                tok[r] = prompts.get(s)[i];
                seq[r] = s;
                pos[r] = i;
            }
        }
        try (Scope s = scope.child()) {
            Workspace.Rows rows = ws.rows(tok, seq, pos);
            Tensor x = s.allocate(DType.F32, total, config.dim());
            model.embed(x, rows);
            model.layers(x, rows, cache, 0, exit, ws, null);
            if (headCache != null) {
                Tensor h = s.allocate(DType.F32, total, config.dim());
                h.copyFrom(x);
                model.layer(drafter.layerWeights(), headCache.keys(0), headCache.values(0), h, rows, ws);
            }
            model.layers(x, rows, cache, exit, config.nLayers(), ws, null);
        }
    }

    /** Rows through layers 1..E; saves each row's layer-E state in {@code slot}; returns the drafter's logits per row. */
    private float[][] draftStep(Scope round, int[] tok, int[] seq, int[] pos, int[] slot) {
        Ops ops = model.backend().ops();
        int m = tok.length;
        try (Scope s = round.child()) {
            Workspace.Rows rows = ws.rows(tok, seq, pos);
            Tensor x = s.allocate(DType.F32, m, config.dim()), resid = s.allocate(DType.F32, m, config.dim());
            model.embed(x, rows);
            boolean mlp = drafter.architecture() == ExitArchitecture.MLP;
            if (exit > 1) model.layers(x, rows, cache, 0, exit - 1, ws, null);
            model.layers(x, rows, cache, exit - 1, exit, ws, !mlp ? null : new LlamaModel.LayerTap() {
                @Override
                public void afterAttention(int layer, Tensor residual) { resid.copyFrom(residual); }
            });
            scatterStates(x, slot);
            Tensor logits = drafter.decodeLogits(s, model, x, mlp ? resid : null, rows, headCache, ws, m);
            return split(logits.toFloatArray(), m);
        }
    }

    /** Copies row r of x into state slot {@code slot[r]}. */
    private void scatterStates(Tensor x, int[] slot) {
        for (int r = 0; r < slot.length; r++) states.slice(slot[r], slot[r] + 1).copyFrom(x.slice(r, r + 1));
    }

    /** The verification pass; returns per live sequence the full model's logits after each of its rows. */
    private float[][][] verify(Scope round, List<Integer> live, int[][] seqs, int[] len, int[][] drafts, int[] count) {
        Ops ops = model.backend().ops();
        int n = live.size();
        try (Scope s = round.child()) {
            // each sequence's last row (d_k, or x_n when it drafted nothing) has not been fed yet: layers 1..E first
            {
                int[] tok = new int[n], seq = new int[n], pos = new int[n], slot = new int[n];
                for (int i = 0; i < n; i++) {
                    int sq = live.get(i);
                    tok[i] = count[i] > 0 ? drafts[i][count[i] - 1] : seqs[sq][len[sq] - 1];
                    seq[i] = sq;
                    pos[i] = len[sq] - 1 + count[i];
                    slot[i] = sq * (maxDraft + 1) + count[i];
                }
                Workspace.Rows rows = ws.rows(tok, seq, pos);
                Tensor x = s.allocate(DType.F32, n, config.dim());
                model.embed(x, rows);
                model.layers(x, rows, cache, 0, exit, ws, null);
                scatterStates(x, slot);
            }
            int total = 0;
            for (int i = 0; i < n; i++) total += count[i] + 1;
            int[] tok = new int[total], seq = new int[total], pos = new int[total], idx = new int[total];
            int r = 0;
            for (int i = 0; i < n; i++) {
                int sq = live.get(i);
                for (int j = 0; j <= count[i]; j++, r++) {
                    tok[r] = j == 0 ? seqs[sq][len[sq] - 1] : drafts[i][j - 1];
                    seq[r] = sq;
                    pos[r] = len[sq] - 1 + j;
                    idx[r] = sq * (maxDraft + 1) + j;
                }
            }
            Workspace.Rows rows = ws.rows(tok, seq, pos);
            Tensor x = s.allocate(DType.F32, total, config.dim());
            ops.gatherRows(x, states, s.of(idx, total));
            model.layers(x, rows, cache, exit, config.nLayers(), ws, null);
            Tensor logits = s.allocate(DType.F32, total, config.vocabSize());
            model.logits(logits, x, s.allocate(DType.F32, total, config.dim()));
            float[][] all = split(logits.toFloatArray(), total);
            float[][][] out = new float[n][][];
            r = 0;
            for (int i = 0; i < n; i++) {
                out[i] = Arrays.copyOfRange(all, r, r + count[i] + 1);
                r += count[i] + 1;
            }
            return out;
        }
    }

    private float[][] split(float[] flat, int rows) {
        int v = config.vocabSize();
        float[][] out = new float[rows][];
        for (int r = 0; r < rows; r++) out[r] = Arrays.copyOfRange(flat, r * v, r * v + v);
        return out;
    }

    /** Lowest index of the largest value (the kernels' tie rule). */
    static int argmax(float[] a) {
        int best = 0;
        for (int i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
        return best;
    }

    private static float maxProb(float[] logits, float temperature) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (float l : logits) max = Math.max(max, l / (double) temperature);
        for (float l : logits) sum += Math.exp(l / (double) temperature - max);
        return (float) (1 / sum);
    }

    @Override
    public void close() {
        scope.close();
        ws.close();
        cache.close();
        if (headCache != null) headCache.close();
    }
}
