package dev.eetune.infer;

import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitInput;
import dev.eetune.exit.ExitVisitor;
import dev.eetune.exit.Pass;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Lossless self-speculative decoding with an exit head as the drafter (docs/self-speculation.md). Each round, every
 * live sequence drafts up to k tokens through layers 1..E and head E (saving each row's layer-E hidden state), then
 * one verification pass runs layers E+1..N over [x_n, d_1..d_k] from those saved states; the longest prefix agreeing
 * with the full model is accepted plus the full model's next token. Greedy output equals full-model greedy decoding
 * token for token; with sampling, drafts are accepted with probability min(1, p/q) and a rejection draws from the
 * residual, so the output follows the full model's distribution. Sequences in a batch draft and accept independently.
 * Probabilities are computed natively: greedy rounds copy only token ids (and the drafter's max probability) to the
 * host; sampling rounds copy the softmax rows that the accept / residual rule needs.
 *
 * <p>Thread-safety: one thread at a time, checked (a second thread's call throws a
 * {@link java.util.ConcurrentModificationException}); each call holds a lease on the model and heads
 * ({@link EarlyExitModel#use()}).
 */
public final class SelfSpeculativeDecoder implements Decoder {
    private final LlamaModel model;
    private final LlamaConfig config;
    private final EarlyExitModel exits;
    private final ExitHead drafter;
    private final int exit, maxBatch, maxLen, maxDraft, initialDraft;
    private final boolean adaptive;
    private final float confidenceStop;
    private final KvCache cache, headCache;
    private final Workspace ws;
    private final Scope scope;
    private final DecoderCalls calls;
    private final Tensor states; // [maxBatch * (maxDraft + 1), dim]: layer-E hidden state of each drafted row
    private Stats stats = new Stats(0, 0, 0, 0, 0, 0);
    private static final GenerationConfig GREEDY = GenerationConfig.greedy(0, Set.of());

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
        this.exits = exits;
        this.calls = new DecoderCalls(SelfSpeculativeDecoder.class, exits);
        this.model = exits.backbone();
        this.config = model.config();
        this.drafter = exits.head(draftExit);
        if (drafter == null) throw new IllegalArgumentException("no exit head after layer " + draftExit + " to draft with; heads: " + exits.heads());
        if (draftLength < 1) throw new IllegalArgumentException("draft length must be >= 1, got " + draftLength);
        if (maxBatch < 1 || maxLen < 1) throw new IllegalArgumentException("maxBatch " + maxBatch + " and maxLen " + maxLen + " must be >= 1");
        if (maxLen > config.maxSeqLen()) throw new IllegalArgumentException("maxLen " + maxLen + " exceeds the model's context of " + config.maxSeqLen());
        this.maxDraft = adaptive ? 2 * draftLength : draftLength;
        this.exit = draftExit;
        this.maxBatch = maxBatch;
        this.maxLen = maxLen;
        this.adaptive = adaptive;
        this.initialDraft = draftLength;
        this.confidenceStop = confidenceStop;
        // drafts never pass the token budget, so every position stays below maxLen
        this.cache = new KvCache(config, model.backend(), maxBatch, maxLen);
        this.headCache = drafter.hasOwnCache() ? KvCache.scratch(config, model.backend(), maxBatch, maxLen) : null;
        this.ws = model.newWorkspace();
        this.scope = Scope.of(model.backend());
        this.states = scope.allocate(DType.F32, maxBatch * (maxDraft + 1), config.dim());
    }

    @Override
    public LlamaModel model() { return model; }

    public Stats lastStats() { return stats; }

    @Override
    public String toString() {
        return "SelfSpeculativeDecoder[" + model + ", drafting with exit " + exit + ", k " + initialDraft + (adaptive ? " (adaptive)" : "") + ", "
            + maxBatch + " sequences of up to " + maxLen + " tokens, last run: " + (stats.rounds() == 0 ? "none" : stats) + "]";
    }

    @Override
    public List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        return calls.call(() -> decode(prompts, cfg, listener));
    }

    private List<GenerationResult> decode(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        DecodingBatch batch = new DecodingBatch(prompts, cfg, listener, maxBatch, maxLen, config.vocabSize());
        int[] k = new int[batch.size()];
        Arrays.fill(k, initialDraft);
        long t0 = System.nanoTime();
        model.prepareDecode(batch.size()); // the drafting steps' rows; in the time to the first token
        prefill(prompts);
        long t1 = System.nanoTime();
        long rounds = 0, drafted = 0, accepted = 0;
        try (Scope round = scope.child()) {
            while (true) {
                int[] live = batch.live();
                if (live.length == 0) break;
                rounds++;
                int n = live.length;
                // 1. draft: one row per drafting sequence per step, through layers 1..E and the exit head
                int[][] drafts = new int[n][];
                float[][][] q = new float[n][][];
                int[] count = new int[n];
                boolean[] drafting = new boolean[n];
                int budgetMax = 0;
                for (int i = 0; i < n; i++) {
                    int s = live[i];
                    int budget = Math.min(k[s], Math.max(0, batch.budget(s) - 1)); // a round emits up to drafts + 1 tokens
                    drafts[i] = new int[budget];
                    q[i] = new float[budget][];
                    drafting[i] = budget > 0;
                    budgetMax = Math.max(budgetMax, budget);
                }
                for (int j = 0; j < budgetMax; j++) {
                    int[] rowsOf = new int[n];
                    int m = 0;
                    for (int i = 0; i < n; i++) if (drafting[i] && count[i] == j) rowsOf[m++] = i;
                    if (m == 0) break;
                    int[] tok = new int[m], seq = new int[m], pos = new int[m], slot = new int[m];
                    for (int r = 0; r < m; r++) {
                        int i = rowsOf[r], s = live[i];
                        tok[r] = j == 0 ? batch.token(s, batch.length(s) - 1) : drafts[i][j - 1];
                        seq[r] = s;
                        pos[r] = batch.length(s) - 1 + j;
                        slot[r] = s * (maxDraft + 1) + j;
                    }
                    Predictions d = draftStep(round, tok, seq, pos, slot, cfg);
                    for (int r = 0; r < m; r++) {
                        int i = rowsOf[r], s = live[i];
                        int token = cfg.isGreedy() ? d.argmax[r] : SpeculativeSampling.draw(d.dist[r], CounterRng.uniform(cfg.seed(), s, pos[r] + 1, 3));
                        q[i][j] = cfg.isGreedy() ? null : d.dist[r];
                        drafts[i][j] = token;
                        count[i] = j + 1;
                        drafted++;
                        boolean confident = confidenceStop <= 0 || d.maxProb[r] >= confidenceStop;
                        if (count[i] >= drafts[i].length || cfg.stopTokens().contains(token) || !confident) drafting[i] = false;
                    }
                }
                // 2. verify: [x_n, d_1..d_k] through layers E+1..N from the saved layer-E states (d_k first runs 1..E)
                Predictions p = verify(round, live, batch, drafts, count, cfg);
                // 3. accept the longest agreeing prefix, then the full model's token
                for (int i = 0, first = 0; i < n; first += count[i] + 1, i++) { // first: sequence i's first verification row
                    int s = live[i], c = count[i];
                    int acc = 0;
                    for (int j = 0; j <= c && batch.running(s); j++) {
                        int at = first + j, position = batch.length(s);
                        if (j < c) {
                            int d = drafts[i][j];
                            boolean ok = cfg.isGreedy() ? d == p.argmax[at]
                                : SpeculativeSampling.accept(p.dist[at], q[i][j], d, CounterRng.uniform(cfg.seed(), s, position, 1));
                            if (ok) {
                                acc++;
                                batch.emit(s, d);
                                continue;
                            }
                            batch.emit(s, cfg.isGreedy() ? p.argmax[at] : SpeculativeSampling.residual(p.dist[at], q[i][j], CounterRng.uniform(cfg.seed(), s, position, 2)));
                        } else {
                            batch.emit(s, cfg.isGreedy() ? p.argmax[at] : SpeculativeSampling.draw(p.dist[at], CounterRng.uniform(cfg.seed(), s, position, 0)));
                        }
                        break;
                    }
                    accepted += acc;
                    if (adaptive) k[s] = acc == c ? Math.min(maxDraft, k[s] + 2) : Math.max(1, k[s] - 1);
                }
            }
        }
        long t2 = System.nanoTime();
        stats = new Stats(rounds, drafted, accepted, batch.generatedTokens(), (t1 - t0) / 1e9, (t2 - t1) / 1e9);
        return batch.results();
    }

    /** Index of live sequence i's first verification row. */
    private static int rowStart(int[] count, int i) {
        int r = 0;
        for (int j = 0; j < i; j++) r += count[j] + 1;
        return r;
    }

    /**
     * What the host needs from a batch of logits rows: greedy, the argmax ids (and the max probabilities, at the
     * drafter's temperature, for the confidence stop); sampling, the top-p distributions.
     */
    private record Predictions(int[] argmax, float[] maxProb, float[][] dist) {}

    private Predictions predictions(Scope s, Tensor logits, float maxProbTemperature, boolean needMaxProb, GenerationConfig cfg) {
        Ops ops = model.backend().ops();
        int rows = Ops.rows(logits);
        Tensor am = s.allocate(DType.I32, rows), mp = needMaxProb ? s.allocate(DType.F32, rows) : null;
        ops.argmax(am, mp, logits, maxProbTemperature);
        float[][] dist = null;
        if (!cfg.isGreedy()) {
            Tensor probs = s.allocate(DType.F32, rows, config.vocabSize());
            ops.softmax(probs, logits, cfg.temperature());
            float[] flat = probs.toFloatArray();
            int v = config.vocabSize();
            dist = new float[rows][];
            for (int r = 0; r < rows; r++) dist[r] = SpeculativeSampling.nucleus(Arrays.copyOfRange(flat, r * v, r * v + v), cfg.topP());
        }
        return new Predictions(cfg.isGreedy() ? am.toIntArray() : null, mp == null ? null : mp.toFloatArray(), dist);
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
            exits.run(new Pass(x, rows), cache, 0, config.nLayers(), ws, new DrafterVisitor() {
                @Override
                public boolean visits(ExitHead head) { return head == drafter && drafter.hasOwnCache(); }

                @Override
                public Pass atExit(ExitHead head, ExitInput in, Pass pass) {
                    head.decodeInput(s, in, 1); // fills the drafter's own cache; the head's output is not needed
                    return pass;
                }
            });
        }
    }

    /** Rows through layers 1..E; saves each row's layer-E state in {@code slot}; returns the drafter's predictions per row. */
    private Predictions draftStep(Scope round, int[] tok, int[] seq, int[] pos, int[] slot, GenerationConfig cfg) {
        int m = tok.length;
        try (Scope s = round.child()) {
            Workspace.Rows rows = ws.rows(tok, seq, pos);
            Tensor x = s.allocate(DType.F32, m, config.dim());
            model.embed(x, rows);
            Tensor[] logits = new Tensor[1];
            exits.run(new Pass(x, rows), cache, 0, exit, ws, new DrafterVisitor() {
                @Override
                public Pass atExit(ExitHead head, ExitInput in, Pass pass) {
                    scatterStates(in.hidden(), slot);
                    logits[0] = head.decodeLogits(s, in, m);
                    return null; // layer E was the last one to run
                }
            });
            return predictions(s, logits[0], drafter.temperature(), confidenceStop > 0, cfg);
        }
    }

    /** Visits only the drafter, giving it its own cache. */
    private abstract class DrafterVisitor implements ExitVisitor {
        @Override
        public boolean visits(ExitHead head) { return head == drafter; }

        @Override
        public KvCache.Layer ownCache(ExitHead head) { return headCache == null ? null : headCache.layer(0); }
    }

    /** Copies row r of x into state slot {@code slot[r]}. */
    private void scatterStates(Tensor x, int[] slot) {
        for (int r = 0; r < slot.length; r++) states.slice(slot[r], slot[r] + 1).copyFrom(x.slice(r, r + 1));
    }

    /** The verification pass; returns the full model's predictions after each row, sequence by sequence. */
    private Predictions verify(Scope round, int[] live, DecodingBatch batch, int[][] drafts, int[] count, GenerationConfig cfg) {
        int n = live.length;
        try (Scope s = round.child()) {
            // each sequence's last row (d_k, or x_n when it drafted nothing) has not been fed yet: layers 1..E first
            // (a drafter with its own layer needs that row's K/V too, so it goes through a draft step)
            int[] tok = new int[n], seq = new int[n], pos = new int[n], slot = new int[n];
            for (int i = 0; i < n; i++) {
                int sq = live[i];
                tok[i] = count[i] > 0 ? drafts[i][count[i] - 1] : batch.token(sq, batch.length(sq) - 1);
                seq[i] = sq;
                pos[i] = batch.length(sq) - 1 + count[i];
                slot[i] = sq * (maxDraft + 1) + count[i];
            }
            if (drafter.hasOwnCache()) {
                draftStep(s, tok, seq, pos, slot, GREEDY);
            } else {
                Workspace.Rows rows = ws.rows(tok, seq, pos);
                Tensor x = s.allocate(DType.F32, n, config.dim());
                model.embed(x, rows);
                model.layers(x, rows, cache, 0, exit, ws);
                scatterStates(x, slot);
            }
            int total = rowStart(count, n);
            int[] vseq = new int[total], vpos = new int[total], idx = new int[total];
            int r = 0;
            for (int i = 0; i < n; i++) {
                int sq = live[i];
                for (int j = 0; j <= count[i]; j++, r++) {
                    vseq[r] = sq;
                    vpos[r] = batch.length(sq) - 1 + j;
                    idx[r] = sq * (maxDraft + 1) + j;
                }
            }
            Workspace.Rows rows = ws.rows(vseq, vpos);
            Tensor x = s.allocate(DType.F32, total, config.dim());
            model.backend().ops().gatherRows(x, states, s.of(idx, total));
            model.layers(x, rows, cache, exit, config.nLayers(), ws);
            Tensor logits = s.allocate(DType.F32, total, config.vocabSize());
            model.logits(logits, x, s.allocate(DType.F32, total, config.dim()));
            return predictions(s, logits, 1f, false, cfg);
        }
    }

    @Override
    public void close() {
        calls.close(() -> {
            scope.close();
            ws.close();
            cache.close();
            if (headCache != null) headCache.close();
        });
    }
}
