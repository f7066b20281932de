package dev.eetune.infer;

import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitCost;
import dev.eetune.exit.ExitGate;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitInput;
import dev.eetune.exit.ExitVisitor;
import dev.eetune.exit.Pass;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.ScoreScreen;
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
import java.util.Optional;

/**
 * KV-cached decoding with confidence-based early exits and exact KV caches, for a batch of prompts of any lengths,
 * each sequence exiting on its own (docs/exact-kv-recomputation.md).
 *
 * <p>Per sequence b: its committed tokens, of which positions {@code < fed[b]} have K/V in every layer. Each pass
 * feeds the rows fed[b] .. len[b]-1 of every live sequence that have not run yet, packed without padding. At each
 * active exit the head judges each sequence's newest row; a confident sequence emits the head's token and leaves the
 * pass (its rows keep their layer-L states and rejoin a later pass at layer L+1), the others continue. Sequences that
 * reach the last layer become complete. The cache therefore always equals the full model's, and with no confident
 * exit this is plain decoding; plain decoding proper (no head evaluated) runs its steps in chunks of one native call
 * each ({@link LlamaModel#prepareDecodeSteps}), with the same tokens and cache, and so does early-exit decoding of one
 * sequence whose exits keep no cache of their own ({@link LlamaModel#prepareExitSteps}: the decisions, heads and pending rows
 * in the library).
 *
 * <p>Thread-safety: one thread at a time (it owns its caches and buffers); a call from a second thread while one runs
 * throws a {@link java.util.ConcurrentModificationException}. Many threads decode with one model and one set of heads,
 * each with its own decoder. Each call holds a lease on the model and heads ({@link EarlyExitModel#use()}).
 */
public final class EarlyExitGenerator implements Decoder {
    private static final Logger log = LoggerFactory.getLogger(EarlyExitGenerator.class);

    private final LlamaModel model;
    private final EarlyExitModel exits; // never null: a model without heads for the full model
    private final boolean ownsExits;
    private final EarlyExitPolicy policy;
    private final boolean[] canExit, evaluates; // by layer: the policy's answers, looked up several times per layer and token
    private final float[] tau;
    private final LlamaConfig config;
    private final int maxBatch, maxLen;
    private final KvCache cache;
    private final Map<Integer, KvCache> headCaches = new HashMap<>(); // own K/V of heads with their own layer, by exit layer
    private final Workspace ws;
    private final Scope scope;
    private final DecoderCalls calls;
    private Tensor xa, xb;
    private Tensor rowIndex; // [capacity] I32: the row indices of a gather (pending rows joining, exiting rows, kept rows), reused every pass
    private Tensor states;     // [maxBatch * maxLen, dim]: the kept layer-L outputs of pending rows (made on the first exit)
    private final int[][] doneLayers; // [sequence][position]: layers a pending row has been through (0: none)
    private Scope buffers;
    private int capacity;
    private final Tensor chosen, maxProb, uniforms;
    private final Tensor normed, logits; // [maxBatch, dim] and [maxBatch, vocab]: the final layer's outputs of a pass
    /**
     * The visited heads' LM matrices packed by {@link Ops#packPanels}, by layer (null: read plain), for passes whose rows
     * the backbone reads packed too ({@link LlamaModel#readsPanels}): batches of 8 and more on AVX-512 CPUs, every batch
     * of models up to 128 wide. Heads are trainable, so the copies are made again at the start of every call with 8 and
     * more sequences ({@link #packHeads}) and used only in that call ({@link #headsPacked}). Why: a 32000 x 288 head
     * through the plain 8-row kernel costs ~2.4x its packed price (one Zen 4 thread, f32 913 against f32p 2,158 tok/s
     * of the 15M GEMVs).
     */
    private final Tensor[] packedHeads;
    private boolean headsPacked, packHeadsEnabled = true;
    /** Rows whose head logits came from {@link #packedHeads} (tests). */
    long packedHeadRows;
    /**
     * Softmax exits' screens, by layer (null: none): each visited head's f32 LM matrix as an 8-bit copy with its
     * scores' bound ({@link ScoreScreen}, a quarter of the matrix's bytes). A row whose bound on the head's largest probability
     * ({@link Ops#maxProbUpper}) stays below the threshold cannot exit, so its exact logits are never computed; only
     * where some row may pass does the head run in full. Made again at the start of every call that uses them
     * ({@link #screenHeads}), heads being trainable, and used only in that call ({@link #headsScreened}). Why: a token
     * that does not exit paid the whole head, two 32000 x 288 f32 matrices at the 15M config against a backbone of
     * 24 MB and an 8-bit classifier screen of 9 MB.
     */
    private final ScoreScreen[] headScreens;
    private boolean headsScreened, screenHeadsEnabled = true;
    /** Rows the head screens decided without the head's logits (each call's share: {@link Stats#screenedHeadRows}), and rows that needed them after a screen (tests). */
    long screenedHeadRows, unscreenedHeadRows;
    /** Tokens decoded in native exit chunks, a step of n sequences counting n ({@link #nativeExitSteps}; tests). */
    long nativeExitStepsRun;

    /**
     * The screen's bound raised by this much before it is compared with the threshold: ee_argmax's own probability
     * (what decides without a screen) rounds too, well within 1% (an f32 sum of exponentials), so a row the screen
     * keeps from exiting could not have passed with the head's exact logits either.
     */
    private static final float SCREEN_MARGIN = 1.01f;
    /**
     * Calls generating fewer new tokens keep the exact heads: making a 32000 x 288 head's copy costs 3.1-3.5 ms on
     * AVX-512 and AVX2 (2-core Zen 4, 2 threads), about what the copy saves over two tokens of one sequence, and 9-11 ms
     * with the portable kernels (aarch64, x86 without AVX2): five tokens' savings. Batches whose heads are read
     * packed ({@link #packedHeads}) keep them too: at 8 rows the f32 pass is bound by its FMAs, not its bytes, and the
     * screen only added its own work (EarlyExitDecodeBenchmark at threshold 1.0, batch 8: 446-467 against 408-411 ms
     * a call).
     */
    static final int SCREEN_MIN_TOKENS = 32;
    private boolean poisonSkippedKv;
    private boolean chunks = CHUNKS;
    /**
     * The last native chunk's time per step, by live sequences (index 0: an early-exit chunk of one), kept across calls
     * so that a call's first chunk is sized too (a short generation would otherwise spend its first chunks finding out).
     */
    private final long[] stepNanos;
    private Stats stats = Stats.EMPTY;
    private int[] complete = new int[0];
    private int[] nextLayer = new int[0]; // per sequence: the layer whose head (or the final layer) chose next[s]
    private int[][] exitLayers = new int[0][];

    /**
     * What the last {@link #generate} call did: tokens emitted per exit layer (index = layer, the last index = the
     * final layer), rows x layers computed by the decode passes (after the prefill; recomputation included), head
     * evaluations (rows a head's LM head ran for), the heads' and confidence scores' cost in layers
     * ({@link dev.eetune.exit.ExitCost}), and timing.
     */
    public record Stats(int sequences, int promptTokens, int generatedTokens, long[] exitCounts, long rowLayers, long headEvaluations,
                        long screenedHeadRows, double headLayers, double prefillSeconds, double decodeSeconds) {
        static final Stats EMPTY = new Stats(0, 0, 0, new long[1], 0, 0, 0, 0, 0, 0);

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

        /**
         * Layers run per token decoded after the first (recomputed rows and heads' own layers included; prefill not),
         * the heads and confidence scores counted as the fraction of a layer they cost.
         */
        public double layersPerToken() { return generatedTokens <= sequences ? 0 : (rowLayers + headLayers) / (generatedTokens - sequences); }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%d sequences, %d prompt tokens, %d generated; prefill %.1f ms (time to first token), decode %.1f tok/s, mean exit layer %.2f, %.2f layers/token",
                sequences, promptTokens, generatedTokens, prefillSeconds * 1e3, decodeTokensPerSecond(), meanExitLayer(), layersPerToken())
                + (screenedHeadRows > 0 ? String.format(Locale.ROOT, ", %d of %d head evaluations decided by the heads' 8-bit screens", screenedHeadRows, headEvaluations) : "");
        }
    }

    /** Early-exit decoding with {@code exits}' heads under {@code policy}; {@code exits} null means the full model. */
    public EarlyExitGenerator(LlamaModel model, EarlyExitModel exits, EarlyExitPolicy policy, int maxBatch, int maxLen) {
        this(model, exits, policy, maxBatch, maxLen, EarlyExitGenerator.class);
    }

    /** {@code type}: the decoder the user holds (this one, or a {@link Generator} around it), named when misused. */
    EarlyExitGenerator(LlamaModel model, EarlyExitModel exits, EarlyExitPolicy policy, int maxBatch, int maxLen, Class<? extends Decoder> type) {
        this.model = model;
        this.config = model.config();
        if (exits != null && exits.backbone() != model) throw new IllegalArgumentException("the exit heads belong to another backbone");
        for (int layer : policy.thresholds().keySet()) {
            if (exits == null || exits.head(layer) == null) throw new IllegalArgumentException("the policy has an exit after layer " + layer + ", but no head is attached there");
            if (policy.confidence().needsGates() && exits.gate(layer) == null) {
                throw new IllegalArgumentException(policy.confidence().label() + " confidence at the exit after layer " + layer + ", but it has no gate: train gates with `ee gates` first");
            }
        }
        if (maxLen > config.maxSeqLen()) throw new IllegalArgumentException("maxLen " + maxLen + " exceeds the model's context of " + config.maxSeqLen());
        if (maxBatch < 1 || maxLen < 1) throw new IllegalArgumentException("maxBatch " + maxBatch + " and maxLen " + maxLen + " must be >= 1");
        this.ownsExits = exits == null;
        this.exits = exits == null ? EarlyExitModel.withoutExits(model) : exits;
        this.calls = new DecoderCalls(type, this.exits);
        this.policy = policy;
        this.canExit = new boolean[config.nLayers() + 1];
        this.evaluates = new boolean[config.nLayers() + 1];
        this.tau = new float[config.nLayers() + 1];
        for (int l = 1; l <= config.nLayers(); l++) {
            tau[l] = policy.threshold(l);
            canExit[l] = policy.canExit(l);
            evaluates[l] = policy.evaluates(l);
        }
        this.maxBatch = maxBatch;
        this.maxLen = maxLen;
        this.cache = new KvCache(config, model.backend(), maxBatch, maxLen);
        this.doneLayers = new int[maxBatch][maxLen];
        this.stepNanos = new long[maxBatch + 1];
        for (ExitHead h : this.exits.heads()) {
            if (h.hasOwnCache() && policy.evaluates(h.layer())) {
                headCaches.put(h.layer(), KvCache.scratch(config, model.backend(), maxBatch, maxLen)); // one layer's worth
            }
        }
        this.ws = model.newWorkspace();
        this.scope = Scope.of(model.backend());
        chosen = scope.allocate(DType.I32, maxBatch);
        maxProb = scope.allocate(DType.F32, maxBatch);
        uniforms = scope.allocate(DType.F32, maxBatch);
        // at most one row per sequence reaches the LM head in a pass: allocated once, not per token
        normed = scope.allocate(DType.F32, maxBatch, config.dim());
        logits = scope.allocate(DType.F32, maxBatch, config.vocabSize());
        packedHeads = new Tensor[config.nLayers() + 1];
        headScreens = new ScoreScreen[config.nLayers() + 1];
    }

    /** Test hook: whether softmax exits may screen their heads ({@link #headScreens}; default on). */
    void screenHeads(boolean on) { this.screenHeadsEnabled = on; }

    /**
     * Makes the visited heads' screens for this call ({@link #headScreens}) where softmax exits decide, the call's
     * {@code rows} sequences are at most {@link Ops#PANELS_MAX_ROWS}, the model runs on the CPU and every visited head's
     * LM matrix is F32 and at least {@link LlamaModel#SCREEN_MIN_BYTES} (smaller ones stay in the caches); returns
     * whether they are current for this call.
     */
    private boolean screenHeads(int rows) {
        if (!screenHeadsEnabled || policy.confidence() != ConfidenceMethod.SOFTMAX || rows > Ops.PANELS_MAX_ROWS || !model.backend().device().isHost()) return false;
        List<ExitHead> visited = exits.heads().stream().filter(h -> policy.evaluates(h.layer())).toList();
        if (visited.isEmpty()) return false;
        for (ExitHead h : visited) {
            Tensor w = h.lmHead().value();
            if (w.dtype() != DType.F32 || w.byteSize() < LlamaModel.SCREEN_MIN_BYTES) return false;
        }
        Ops ops = model.backend().ops();
        for (ExitHead h : visited) {
            Tensor w = h.lmHead().value();
            if (headScreens[h.layer()] == null) headScreens[h.layer()] = ScoreScreen.of(ops, w, scope);
            else headScreens[h.layer()].repack(ops, w);
        }
        return true;
    }

    /** Whether any row of {@link #mayPass}'s answer may pass. */
    private static boolean any(boolean[] b) {
        for (boolean v : b) if (v) return true;
        return false;
    }

    /**
     * Which of rows 0..m-1 of z (the head's last input) may reach {@code tau}: all where the head has no screen for this
     * call, else those whose screened bound ({@link #headScreens}) does.
     */
    private boolean[] mayPass(ExitHead h, Tensor z, int m, float tau, Scope step) {
        boolean[] may = new boolean[m];
        ScoreScreen sc = headsScreened ? headScreens[h.layer()] : null;
        if (sc == null) {
            Arrays.fill(may, true);
            return may;
        }
        Ops ops = model.backend().ops();
        Tensor scores = step.allocate(DType.F32, m, sc.scores().out()), upper = step.allocate(DType.F32, m);
        ops.linearPanels(scores, z, sc.scores());
        ops.maxProbUpper(upper, scores, sc.radius(), step.allocate(DType.F32, m).copyFrom(ScoreScreen.norms(z)), h.temperature());
        float[] up = upper.toFloatArray();
        for (int r = 0; r < m; r++) {
            may[r] = !(up[r] * SCREEN_MARGIN < tau); // NaN or +inf: the exact logits decide
            if (may[r]) unscreenedHeadRows++;
            else screenedHeadRows++;
        }
        return may;
    }

    /** Test hook: whether batches may read the heads packed ({@link #packedHeads}; default on). */
    void packHeads(boolean on) { this.packHeadsEnabled = on; }

    /**
     * Packs the visited heads' f32 LM matrices for this call's passes (see {@link #packedHeads}) when its {@code rows}
     * sequences are a batch the backbone reads packed, the heads together take at most {@link LlamaModel#PANELS_MAX_BYTES}
     * and the heads' matrices are F32; returns whether the copies are current for this call.
     */
    private boolean packHeads(int rows) {
        if (!packHeadsEnabled || rows < 8 || !model.readsPanels(rows)) return false;
        List<ExitHead> visited = exits.heads().stream().filter(h -> policy.evaluates(h.layer())).toList();
        long bytes = 0;
        for (ExitHead h : visited) {
            if (h.lmHead().value().dtype() != DType.F32) return false;
            bytes += h.lmHead().value().byteSize();
        }
        if (bytes == 0 || bytes > LlamaModel.PANELS_MAX_BYTES) return false;
        Ops ops = model.backend().ops();
        for (ExitHead h : visited) {
            Tensor w = h.lmHead().value();
            if (packedHeads[h.layer()] == null) packedHeads[h.layer()] = ops.packPanels(w, scope);
            else ops.repackPanels(packedHeads[h.layer()], w);
        }
        return true;
    }

    /** out [rows, vocab] = the head's logits of z [rows, dim]: packed where this call made the copies and the row count reads them. */
    private Tensor headLogits(Tensor out, Tensor z, ExitHead h) {
        int rows = z.dim(0);
        Tensor packed = packedHeads[h.layer()];
        if (headsPacked && packed != null && rows <= Ops.PANELS_MAX_ROWS && model.readsPanels(rows)) {
            model.backend().ops().linearPanels(out, z, packed);
            packedHeadRows += rows;
        } else {
            model.backend().ops().linear(out, z, h.lmHead().value());
        }
        return out;
    }

    @Override
    public LlamaModel model() { return model; }

    public EarlyExitPolicy policy() { return policy; }

    public Stats lastStats() { return stats; }

    /** What it decodes with and how much it holds, for {@link #toString} here and in {@link Generator}. */
    String capacity() { return maxBatch + " sequences of up to " + maxLen + " tokens, last run: " + (stats == Stats.EMPTY ? "none" : stats); }

    @Override
    public String toString() {
        return "EarlyExitGenerator[" + model + ", " + (exits.heads().isEmpty() ? "no exits" : "exits " + exits.heads().stream().map(h -> h.layer()).toList() + ", thresholds " + policy.thresholds())
            + ", " + capacity() + "]";
    }

    /** Per sequence of the last call: the layer each generated token was emitted at (the model's layer count: the final layer). */
    public int[][] lastExitLayers() {
        int[][] out = new int[exitLayers.length][];
        for (int i = 0; i < out.length; i++) out[i] = exitLayers[i].clone();
        return out;
    }

    /** The backbone's K/V cache (for exactness checks). */
    public KvCache cache() { return cache; }

    /** Per sequence of the last call: positions below this have K/V in every layer. */
    public int[] completeLengths() { return complete.clone(); }

    /** Test hook: per position of sequence {@code seq}, the layers its row has run while pending (0: none, or complete). */
    int[] doneLayers(int seq) { return doneLayers[seq].clone(); }

    /** Test hook: whether decoding may go in native chunks (default: unless {@code -Deetune.chunks=false}); off, every pass is a Java one. */
    void nativeChunks(boolean on) { this.chunks = on && CHUNKS; }

    /** Test hook: after each exit, fill the skipped layers' cache slots of the exited rows with NaN (P4 in docs/exact-kv-recomputation.md §6). */
    public void poisonSkippedKv(boolean on) { this.poisonSkippedKv = on; }

    @Override
    public List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        return calls.call(() -> decode(prompts, cfg, listener));
    }

    private List<GenerationResult> decode(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        DecodingBatch batch = new DecodingBatch(prompts, cfg, listener, maxBatch, maxLen, config.vocabSize());
        int[] fed = new int[batch.size()];
        for (int[] d : doneLayers) Arrays.fill(d, 0);
        Counters counters = new Counters(config.nLayers());
        long t0 = System.nanoTime(), tFirst = 0, screened0 = screenedHeadRows;
        model.prepareDecode(batch.size()); // in the time to the first token
        decodeCall = null;
        exitCall = null;
        boolean plain = chunks && !poisonSkippedKv && noExits();
        if (plain && inNativeChunks(cfg, batch.size())) prepareNativeSteps(batch.size(), cfg);
        List<Ops.ExitStep> exitSteps = chunks && !poisonSkippedKv && !plain && inNativeChunks(cfg, 1) ? exitSteps() : null;
        // a batch's passes go in native chunks too where every count of final rows is chosen there, reading the heads as the passes do
        int exitChunkSequences = exitSteps == null ? 0 : Math.min(nativeFinalRows(cfg, batch.size()), exitChunkRows(batch.size()));
        headsPacked = packHeads(batch.size());
        headsScreened = !headsPacked && cfg.maxNewTokens() >= SCREEN_MIN_TOKENS && screenHeads(batch.size());
        if (exitSteps != null && headsPacked) exitSteps = packed(exitSteps);
        if (exitSteps != null && headsScreened) {
            exitSteps = screened(exitSteps);
            exitChunkSequences = 1; // a screen decides for one row
        }
        if (exitSteps != null) nativeExitSteps(batch.live(), exitChunkSequences, exitSteps, batch, cfg, fed, counters, 0, null, null, 0); // the call's one-time costs before the first token
        int[] next = new int[batch.size()];
        nextLayer = new int[batch.size()];
        int[][] layersOut = new int[batch.size()][Math.min(cfg.maxNewTokens(), maxLen)];
        int[] emitted = new int[batch.size()];
        while (true) {
            int[] live = batch.live();
            if (live.length == 0) break;
            if (plain && tFirst != 0 && inNativeChunks(cfg, live.length)) { // after the prefill: every live sequence has one row to feed
                stepNanos[live.length] = nativeSteps(live, batch, cfg, fed, counters, stepNanos[live.length], emitted, layersOut);
                continue;
            }
            if (exitSteps != null && tFirst != 0 && live.length <= exitChunkSequences) { // the passes in native chunks
                long nanos = nativeExitSteps(live, exitChunkSequences, exitSteps, batch, cfg, fed, counters, stepNanos[live.length], emitted, layersOut, Integer.MAX_VALUE);
                if (nanos > 0) {
                    stepNanos[live.length] = nanos;
                    continue;
                } // else the pending rows need a wider pass than a chunk holds: this one step by step
            }
            long before = counters.rowLayers;
            double headsBefore = counters.headLayers;
            pass(live, batch, fed, cfg, counters, next);
            if (tFirst == 0) { // the prefill pass is not decoding work
                counters.rowLayers = before;
                counters.headLayers = headsBefore;
            }
            for (int s : live) {
                if (emitted[s] < layersOut[s].length) layersOut[s][emitted[s]++] = nextLayer[s];
                batch.emit(s, next[s]);
            }
            if (tFirst == 0) tFirst = System.nanoTime();
        }
        long t1 = System.nanoTime();
        long first = tFirst == 0 ? t1 : tFirst;
        stats = new Stats(batch.size(), batch.promptTokens(), batch.generatedTokens(), counters.exits, counters.rowLayers, counters.headEvals,
            screenedHeadRows - screened0, counters.headLayers, (first - t0) / 1e9, (t1 - first) / 1e9);
        complete = fed;
        exitLayers = new int[batch.size()][];
        for (int s = 0; s < exitLayers.length; s++) exitLayers[s] = Arrays.copyOf(layersOut[s], emitted[s]);
        log.debug("generate: {}", stats);
        return batch.results();
    }

    /** Whether no layer's head is evaluated or may exit: plain decoding. */
    private boolean noExits() {
        for (int l = 1; l <= config.nLayers(); l++) if (evaluates[l] || canExit[l]) return false;
        return true;
    }

    /** {@code -Deetune.chunks=false}: plain decoding goes step by step too (A/B, and the GPU check's reference). */
    private static final boolean CHUNKS = !"false".equalsIgnoreCase(System.getProperty("eetune.chunks", "true").trim());
    /** What a chunk of native steps should take at most: a streaming listener hears of tokens at least this often. */
    private static final long CHUNK_NANOS = 10_000_000L;
    private static final int CHUNK_MAX_STEPS = 64;
    private Tensor stepIds, stepSeq, stepPos, stepOut, stepUniforms; // the native chunks' buffers, made on first use

    /** Whether plain decoding of {@code rows} rows goes in native chunks: sampled, or greedy where the classifier is read whole. */
    private boolean inNativeChunks(GenerationConfig cfg, int rows) { return !cfg.isGreedy() || !model.screens(rows); }

    /**
     * The native steps' buffers and their prepared call over {@code rows} rows, run for no steps, so that the call's
     * one-time costs (binding the native function: 2-5 ms on a cold JVM; the checks and tables) go to the time to the
     * first token, as the packing of {@link LlamaModel#prepareDecode} does, not to the decode rate.
     */
    private void prepareNativeSteps(int rows, GenerationConfig cfg) {
        decodeCall(rows, cfg).run(0);
    }

    /** The chunks' prepared call over {@code rows} rows for this generation, made where the rows changed or a wider pass regrew the scratch. */
    private Ops.DecodeStepsCall decodeCall(int rows, GenerationConfig cfg) {
        if (decodeCall == null || decodeCall.rows() != rows || !decodeCall.isOpen()) {
            allocateStepBuffers();
            ensure(rows);
            int room = CHUNK_MAX_STEPS * rows;
            decodeCall = model.prepareDecodeSteps(stepIds.slice(0, rows), stepOut.slice(0, room), stepSeq.slice(0, rows), stepPos.slice(0, room),
                cfg.isGreedy() ? null : stepUniforms.slice(0, room), cfg.temperature(), cfg.topP(), cache, ws, xa, normed, logits);
        }
        return decodeCall;
    }

    private void allocateStepBuffers() {
        if (stepIds != null) return;
        stepIds = scope.allocate(DType.I32, maxBatch);
        stepSeq = scope.allocate(DType.I32, maxBatch);
        stepPos = scope.allocate(DType.I32, CHUNK_MAX_STEPS * maxBatch);
        stepOut = scope.allocate(DType.I32, CHUNK_MAX_STEPS * maxBatch);
        stepUniforms = scope.allocate(DType.F32, CHUNK_MAX_STEPS * maxBatch);
    }

    /**
     * Plain decoding of the live sequences, each with only its newest token to feed, for a chunk of steps in one native
     * call ({@link LlamaModel#prepareDecodeSteps}; sampling with the uniforms {@link #choose} would draw): the tokens and cache
     * pass() gives step by step, without a step's Java (on a cold JVM that Java, interpreted, cost several times the
     * step at stories260K's size). The chunk stops at the smallest budget left and at about {@link #CHUNK_NANOS}; a
     * sequence that meets a stop token inside it keeps nothing of the later steps (its rows ran on: positions past its
     * end, which nothing reads). Returns the chunk's time per step, which sizes the next one.
     */
    private long nativeSteps(int[] live, DecodingBatch batch, GenerationConfig cfg, int[] fed, Counters counters, long stepNanos, int[] emitted, int[][] layersOut) {
        int m = live.length, layers = config.nLayers();
        int steps = chunkSteps(stepNanos);
        for (int s : live) steps = Math.min(steps, batch.budget(s));
        allocateStepBuffers();
        int[] ids = new int[m], pos = new int[steps * m];
        float[] u = cfg.isGreedy() ? null : new float[steps * m];
        for (int i = 0; i < m; i++) {
            int s = live[i], p = batch.length(s) - 1;
            ids[i] = batch.token(s, p);
            for (int t = 0; t < steps; t++) {
                pos[t * m + i] = p + t;
                if (u != null) u[t * m + i] = nextTokenUniform(cfg, s, p + t + 1); // the sequence's length when step t chooses
            }
        }
        Ops.DecodeStepsCall call = decodeCall(m, cfg);
        stepIds.slice(0, m).copyFrom(ids);
        stepSeq.slice(0, m).copyFrom(live);
        stepPos.slice(0, steps * m).copyFrom(pos);
        if (u != null) stepUniforms.slice(0, steps * m).copyFrom(u);
        long t0 = System.nanoTime();
        call.run(steps);
        long nanos = (System.nanoTime() - t0) / steps;
        Tensor out = stepOut.slice(0, steps * m);
        int[] tokens = out.toIntArray();
        counters.rowLayers += (long) steps * m * layers;
        for (int t = 0; t < steps; t++) {
            for (int i = 0; i < m; i++) {
                int s = live[i];
                if (!batch.running(s)) continue;
                fed[s] = batch.length(s);
                emitChunkToken(s, tokens[t * m + i], layers, batch, counters, emitted, layersOut);
            }
        }
        return nanos;
    }

    /**
     * The most rows a pass of a native early-exit chunk of one sequence holds (the newest row and the pending ones: a
     * prompt the prefill left pending, too); of more sequences, {@link #EXIT_CHUNK_ROWS_PER_SEQUENCE} each, up to the
     * library's bound. A step whose rows would not fit goes through {@link #pass}.
     */
    private static final int EXIT_CHUNK_ROWS = 64, EXIT_CHUNK_ROWS_PER_SEQUENCE = 32;

    /** The rows a native early-exit chunk's passes hold for {@code sequences} sequences. */
    private int exitChunkRows(int sequences) {
        return Math.min(Ops.EXIT_MAX_ROWS, Math.min(maxBatch * maxLen, Math.max(EXIT_CHUNK_ROWS, EXIT_CHUNK_ROWS_PER_SEQUENCE * sequences)));
    }

    /** The most sequences whose final rows a native chunk chooses as a pass would: sampled, or greedy where no count of rows up to them is screened. */
    private int nativeFinalRows(GenerationConfig cfg, int sequences) {
        if (!cfg.isGreedy()) return sequences;
        for (int r = 1; r <= sequences; r++) if (model.screens(r)) return r - 1;
        return sequences;
    }
    private Optional<List<Ops.ExitStep>> exitStepList; // made on first use: the policy and heads are the generator's for life
    /** The native chunks' prepared calls of this generation (plain: its rows and sampling; early exit: its exits, sampling and most sequences). */
    private Ops.DecodeStepsCall decodeCall;
    private Ops.ExitStepsCall exitCall;
    private double[] exitHeadLayers, exitScoreLayers; // per exit of the plan: a head evaluation's and a score's cost in layers (the Stats' head layers)
    private Tensor exitSeq, exitPos, exitScore, exitChosen, exitPre, exitZ; // the native early-exit chunks' buffers, made on first use (in exitBuffers)
    private Scope exitBuffers;
    private int[] exitState = new int[0]; // steps run, sequences, -, then per sequence: slot, complete length, length, layers done per position
    private int[] exitRecord = new int[0];

    /**
     * The policy's exits as {@link Ops#prepareExitSteps} takes them, or null where its passes stay in Java: softmax, gate or
     * cascade decisions, every visited head one that may exit and keeps no cache of its own (both libraries run the
     * same loop, layers.h; on the GPU each decision reads one value back to the host).
     */
    private List<Ops.ExitStep> exitSteps() {
        if (exitStepList == null) exitStepList = Optional.ofNullable(makeExitSteps());
        return exitStepList.orElse(null);
    }

    private List<Ops.ExitStep> makeExitSteps() {
        ConfidenceMethod method = policy.confidence();
        if (method != ConfidenceMethod.SOFTMAX && method != ConfidenceMethod.GATE && method != ConfidenceMethod.CASCADE) return null;
        List<Ops.ExitStep> out = new ArrayList<>();
        for (int l = 1; l < config.nLayers(); l++) {
            if (evaluates[l] != canExit[l]) return null; // a head evaluated for its overhead only
            if (!canExit[l]) continue;
            ExitHead h = exits.head(l);
            Ops.ExitStep step = h.decodeStep(method == ConfidenceMethod.SOFTMAX ? null : exits.gate(l), tau[l],
                method == ConfidenceMethod.CASCADE ? policy.confirmThreshold(l) : 0f);
            if (step == null) return null;
            out.add(step);
        }
        if (canExit[config.nLayers()] || evaluates[config.nLayers()] || out.isEmpty() || out.size() > 30) return null;
        exitHeadLayers = new double[out.size()];
        exitScoreLayers = new double[out.size()];
        for (int e = 0; e < out.size(); e++) {
            int l = out.get(e).layer();
            ExitGate g = exits.gate(l);
            exitHeadLayers[e] = ExitScores.headLayers(exits.head(l), config);
            exitScoreLayers[e] = ExitScores.scoreLayers(method, config, g == null ? 0 : g.hiddenUnits());
        }
        return out;
    }

    /** {@link #exitSteps} with this call's head screens ({@link #headScreens}), which the native steps use as {@link #mayPass} does. */
    private List<Ops.ExitStep> screened(List<Ops.ExitStep> steps) {
        List<Ops.ExitStep> out = new ArrayList<>(steps.size());
        for (Ops.ExitStep e : steps) {
            ScoreScreen sc = headScreens[e.layer()];
            out.add(sc == null ? e : e.screened(sc.scores(), sc.radius(), SCREEN_MARGIN));
        }
        return out;
    }

    /** {@link #exitSteps} reading this call's packed heads ({@link #packedHeads}) where the rows read panels, as {@link #headLogits} does. */
    private List<Ops.ExitStep> packed(List<Ops.ExitStep> steps) {
        List<Ops.ExitStep> out = new ArrayList<>(steps.size());
        for (Ops.ExitStep e : steps) out.add(e.packed(packedHeads[e.layer()]));
        return out;
    }

    /** The method of {@link #exitSteps} in the native call's terms. */
    private Ops.ExitMethod exitMethod() {
        switch (policy.confidence()) {
            case SOFTMAX: return Ops.ExitMethod.SOFTMAX;
            case GATE: return Ops.ExitMethod.GATE;
            default: return Ops.ExitMethod.CASCADE;
        }
    }

    /**
     * Early-exit decoding of the live sequences for a chunk of steps in one native call ({@link LlamaModel#prepareExitSteps},
     * prepared for up to {@code most} sequences once per generation): the tokens, exits, pending rows and cache that
     * {@link #pass} gives step by step, without a step's Java. The chunk ends early where the pending rows would not
     * fit a pass of its rows ({@link #exitChunkRows}); then this returns 0 and the step goes through {@link #pass}.
     * Otherwise returns the chunk's time per step. As in {@link #nativeSteps}, a stop token inside the chunk ends the
     * sequence there. {@code mostSteps} = 0 makes a call of no steps before the prefill, so that the call's one-time
     * costs (binding the native function, the layer tables, the buffers, the prepared call the chunks reuse) go to the
     * time to the first token.
     */
    private long nativeExitSteps(int[] live, int most, List<Ops.ExitStep> exitPlan, DecodingBatch batch, GenerationConfig cfg, int[] fed, Counters counters, long stepNanos,
                                 int[] emitted, int[][] layersOut, int mostSteps) {
        if (live.length == 0) return 0;
        int n = mostSteps == 0 ? 1 : live.length, cap = exitChunkRows(most);
        int pending = 0;
        for (int i = 0; i < n; i++) pending += batch.length(live[i]) - fed[live[i]];
        if (mostSteps > 0 && pending > cap) return 0;
        int steps = Math.min(chunkSteps(stepNanos), mostSteps);
        for (int i = 0; i < n; i++) steps = Math.min(steps, batch.budget(live[i]));
        allocateStepBuffers();
        ensure(cap);
        ensureStates();
        if (exitCall == null || !exitCall.isOpen()) { // once per generation (and after a wider Java pass regrew the scratch)
            if (exitPos == null || exitPos.size() < cap) {
                if (exitBuffers != null) exitBuffers.close();
                exitBuffers = scope.child();
                int rows = Math.max(cap, maxBatch);
                exitSeq = exitBuffers.allocate(DType.I32, rows);
                exitPos = exitBuffers.allocate(DType.I32, rows);
                exitScore = exitBuffers.allocate(DType.F32, maxBatch + 1);
                exitChosen = exitBuffers.allocate(DType.I32, maxBatch);
                exitPre = exitBuffers.allocate(DType.F32, maxBatch, config.dim());
                exitZ = exitBuffers.allocate(DType.F32, maxBatch, config.dim());
            }
            exitCall = model.prepareExitSteps(stepIds.slice(0, most), stepOut.slice(0, CHUNK_MAX_STEPS * most), exitSeq.slice(0, cap), exitPos.slice(0, cap),
                cfg.isGreedy() ? null : stepUniforms.slice(0, CHUNK_MAX_STEPS * most), cfg.temperature(), cfg.topP(), cache, ws, xa.slice(0, cap), normed, logits,
                exitMethod(), exitPlan, states, exitScore, exitChosen, exitPre, exitZ);
            if (exitState.length != exitCall.stateSize()) exitState = new int[exitCall.stateSize()];
        }
        int[] ids = new int[n];
        float[] u = cfg.isGreedy() ? null : new float[steps * n];
        exitState[1] = n;
        for (int i = 0; i < n; i++) {
            int s = live[i], len = batch.length(s), at = 3 + i * (3 + maxLen);
            ids[i] = batch.token(s, len - 1);
            exitState[at] = s;
            exitState[at + 1] = fed[s];
            exitState[at + 2] = len;
            System.arraycopy(doneLayers[s], 0, exitState, at + 3, maxLen);
            if (u != null) for (int t = 0; t < steps; t++) u[t * n + i] = nextTokenUniform(cfg, s, len + t); // the sequence's length when step t chooses
        }
        if (u != null) stepUniforms.slice(0, steps * n).copyFrom(u);
        int stride = exitCall.recordStride();
        if (exitRecord.length < steps * stride) exitRecord = new int[CHUNK_MAX_STEPS * stride];
        long t0 = System.nanoTime();
        stepIds.slice(0, n).copyFrom(ids);
        exitCall.run(steps, exitState, exitRecord);
        int ran = exitState[0];
        nativeExitStepsRun += (long) ran * n;
        if (ran == 0 || mostSteps == 0) return 0;
        long nanos = Math.max(1, (System.nanoTime() - t0) / ran);
        for (int i = 0; i < n; i++) System.arraycopy(exitState, 3 + i * (3 + maxLen) + 3, doneLayers[live[i]], 0, maxLen);
        int[] tokens = stepOut.slice(0, ran * n).toIntArray();
        for (int t = 0; t < ran; t++) {
            for (int i = 0; i < n; i++) {
                int s = live[i], base = t * stride + i * Ops.EXIT_RECORD;
                if (!batch.running(s)) continue; // stopped inside the chunk: what its rows ran after does not count
                fed[s] = exitRecord[base + 1];
                counters.rowLayers += exitRecord[base + 2];
                for (int e = 0; e < exitPlan.size(); e++) {
                    if ((exitRecord[base + 3] & (1 << e)) != 0) {
                        counters.headEvals++;
                        counters.headLayers += exitHeadLayers[e];
                    }
                    if ((exitRecord[base + 4] & (1 << e)) != 0) counters.headLayers += exitScoreLayers[e];
                    if (exitPlan.get(e).screen() != null && (exitRecord[base + 3] & (1 << e)) != 0) {
                        if ((exitRecord[base + 5] & (1 << e)) != 0) screenedHeadRows++;
                        else unscreenedHeadRows++;
                    }
                }
                emitChunkToken(s, tokens[t * n + i], exitRecord[base], batch, counters, emitted, layersOut);
            }
        }
        return nanos;
    }

    /** Steps of the next native chunk: one to measure, then about {@link #CHUNK_NANOS} at the last chunk's time per step. */
    private static int chunkSteps(long stepNanos) { return stepNanos <= 0 ? 1 : (int) Math.max(1, Math.min(CHUNK_MAX_STEPS, CHUNK_NANOS / stepNanos)); }

    /** A token a native chunk chose for sequence s at {@code layer}: counted, recorded and emitted as a pass's is. */
    private void emitChunkToken(int s, int token, int layer, DecodingBatch batch, Counters counters, int[] emitted, int[][] layersOut) {
        nextLayer[s] = layer;
        counters.exits[layer]++;
        if (emitted[s] < layersOut[s].length) layersOut[s][emitted[s]++] = layer;
        batch.emit(s, token);
    }

    private static final class Counters {
        final long[] exits;
        long rowLayers, headEvals;
        double headLayers;

        Counters(int layers) { exits = new long[layers + 1]; }
    }

    /** A row in flight: sequence {@code seq} at position {@code pos}. */
    private record Row(int seq, int pos) {}

    /**
     * One pass; sets {@code next[s]} for each live sequence. Rows join the pass at the layer where they stopped: the
     * newest token at layer 1, a pending row that exited after layer L (whose K/V are exact in layers 1..L and whose
     * layer-L output is kept, LayerSkip's "exit query cache") at layer L+1. So every row goes through every layer
     * exactly once over its lifetime, and a row at layer l always finds K/V of all earlier positions at layer l:
     * complete ones in the cache, pending ones because they joined this pass at or before l.
     */
    private void pass(int[] live, DecodingBatch batch, int[] fed, GenerationConfig cfg, Counters counters, int[] next) {
        int maxRows = 0;
        for (int s : live) maxRows += batch.length(s) - fed[s];
        ensure(maxRows);
        // the newest rows first (in live order), then rows that start at layer 1 too (prompt rows: pending, but never through any layer)
        List<Row> rows = new ArrayList<>();
        for (int s : live) rows.add(new Row(s, batch.length(s) - 1));
        for (int s : live) for (int p = fed[s]; p < batch.length(s) - 1; p++) if (doneLayers[s][p] == 0) rows.add(new Row(s, p));
        int[] tokens = new int[rows.size()];
        for (int r = 0; r < tokens.length; r++) tokens[r] = batch.token(rows.get(r).seq(), rows.get(r).pos());
        Tensor x = xa.slice(0, rows.size());
        Workspace.Rows loaded = ws.rows(tokens, seqs(rows), positions(rows));
        model.embed(x, loaded);
        try (Scope step = scope.child()) {
            PassVisitor v = new PassVisitor(step, live, rows, fed, batch, cfg, counters, next);
            exits.run(new Pass(x, loaded), cache, 0, config.nLayers(), ws, v);
            if (v.active.length == 0) return;
            // whoever reached the last layer: every one of its rows is now complete
            int m = v.active.length;
            Tensor lg = logits.slice(0, m);
            int[] chosenTokens;
            if (cfg.isGreedy()) {
                chosenTokens = model.greedyTokens(chosen.slice(0, m), v.x.slice(0, m), normed.slice(0, m), lg);
            } else {
                model.logits(lg, v.x.slice(0, m), normed.slice(0, m));
                chosenTokens = choose(lg, v.active, batch, cfg);
            }
            for (int i = 0; i < m; i++) {
                int s = v.active[i];
                next[s] = chosenTokens[i];
                nextLayer[s] = config.nLayers();
                counters.exits[config.nLayers()]++;
                fed[s] = batch.length(s);
            }
        }
    }

    /** The early-exit decisions of one pass, inside the layer loop. */
    private final class PassVisitor implements ExitVisitor {
        final Scope step;
        final int[] fed, next;
        final DecodingBatch batch;
        final GenerationConfig cfg;
        final Counters counters;
        int[] active;
        List<Row> rows;
        Tensor x, spare;
        float[] before; // saturation: the newest rows' hidden state before the exit's layer

        PassVisitor(Scope step, int[] live, List<Row> rows, int[] fed, DecodingBatch batch, GenerationConfig cfg, Counters counters, int[] next) {
            this.step = step;
            this.active = live.clone(); // narrowed as sequences exit
            this.rows = rows;
            this.fed = fed;
            this.batch = batch;
            this.cfg = cfg;
            this.counters = counters;
            this.next = next;
            this.x = xa;
            this.spare = xb;
        }

        /** Rows that stopped after the previous layer join; the rows about to run the layer are counted. */
        @Override
        public Pass beforeLayer(int layer, Pass pass) {
            Pass joined = joinPending(layer, pass);
            counters.rowLayers += joined.rowCount();
            if (copiesInput(layer)) {
                before = joined.x().slice(0, active.length).toFloatArray(); // the newest rows lead the pass
            }
            return joined;
        }

        /** Rows join only after an exit (they stopped there), and saturation copies the input of an exit's layer. */
        @Override
        public boolean passesThrough(int layer) {
            return exits.head(layer - 1) == null && !copiesInput(layer);
        }

        /** Saturation compares an exit's output with its layer's input, which {@link #beforeLayer} copies. */
        private boolean copiesInput(int layer) {
            return policy.confidence() == ConfidenceMethod.SATURATION && canExit[layer] && exits.head(layer) != null;
        }

        /** Adds the pending rows that stopped after layer - 1 to the pass (nothing can be pending before any exit). */
        private Pass joinPending(int layer, Pass pass) {
            if (layer == 1 || states == null) return pass;
            int[] slots = new int[capacity];
            int k = 0;
            for (int s : active) {
                for (int p = fed[s]; p < batch.length(s) - 1; p++) {
                    if (doneLayers[s][p] == layer - 1) {
                        rows.add(new Row(s, p));
                        slots[k++] = slot(s, p);
                    }
                }
            }
            if (k == 0) return pass;
            int n = rows.size();
            model.backend().ops().gatherRows(x.slice(n - k, n), states, indices(slots, k));
            return new Pass(x.slice(0, n), ws.rows(seqs(rows), positions(rows)));
        }

        @Override
        public boolean visits(ExitHead head) { return evaluates[head.layer()]; }

        @Override
        public KvCache.Layer ownCache(ExitHead head) {
            KvCache c = headCaches.get(head.layer());
            return c == null ? null : c.layer(0);
        }

        /**
         * Each active sequence's newest row (rows 0..active-1, in order) is judged; confident ones leave with the
         * head's token. With softmax confidence the head runs for every such row; with a cheap method only for the
         * rows whose score passes (a head with its own layer writes every row's K/V there, for its cache, and runs the
         * rest of that layer for the passing rows only); with cascade confidence those rows then exit only if the
         * head's max softmax probability also reaches the exit's confirmation threshold.
         */
        @Override
        public Pass atExit(ExitHead h, ExitInput in, Pass pass) {
            int layer = h.layer(), m = active.length, n = pass.rowCount();
            double headCost = ExitScores.headLayers(h, config);
            boolean cheap = policy.confidence() != ConfidenceMethod.SOFTMAX && canExit[layer];
            if (h.hasOwnCache() && !cheap) counters.rowLayers += n; // its own layer, over every row
            if (!canExit[layer]) { // a disabled head evaluated for its overhead: what an enabled one pays when no row passes
                Tensor z = h.decodeInput(step, in, m);
                if (any(mayPass(h, z, m, Float.POSITIVE_INFINITY, step))) headLogits(step.allocate(DType.F32, m, h.lmHead().value().dim(0)), z, h);
                counters.headEvals += m;
                counters.headLayers += m * headCost;
                return pass;
            }
            float tau = EarlyExitGenerator.this.tau[layer];
            int[] exiting, tokens; // indices into 0..m-1, and their tokens
            if (policy.confidence() == ConfidenceMethod.SOFTMAX) {
                Tensor z = h.decodeInput(step, in, m);
                counters.headEvals += m;
                counters.headLayers += m * headCost;
                if (!any(mayPass(h, z, m, tau, step))) return pass; // the screen: no row can reach tau
                Tensor logits = headLogits(step.allocate(DType.F32, m, h.lmHead().value().dim(0)), z, h);
                Tensor mp = maxProb.slice(0, m), am = chosen.slice(0, m);
                model.backend().ops().argmax(am, mp, logits, h.temperature());
                exiting = passing(mp.toFloatArray(), tau);
                if (exiting.length == 0) return pass;
                int[] all = choose(logits, active, batch, cfg);
                tokens = new int[exiting.length];
                for (int i = 0; i < exiting.length; i++) tokens[i] = all[exiting[i]];
            } else {
                float[] score = ExitScores.cheap(policy.confidence(), exits.gate(layer), h, maxProb, in, before, m); // maxProb: free until the cascade's confirmation
                counters.headLayers += m * ExitScores.scoreLayers(policy.confidence(), config, exits.gate(layer) == null ? 0 : exits.gate(layer).hiddenUnits());
                exiting = passing(score, tau);
                h.writeOwnCache(step, in); // a head with its own layer: every row's K/V; the layer itself below, for the passing rows
                int k = exiting.length;
                if (h.hasOwnCache()) {
                    counters.rowLayers += k;
                    counters.headLayers += n * ExitCost.kvLayers(config);
                }
                if (k == 0) return pass;
                boolean leading = exiting[k - 1] == k - 1; // the passing rows are rows 0..k-1 (always at batch 1): no gather
                Tensor z;
                if (leading) {
                    z = h.decodeInput(step, in.firstRows(k), k);
                } else { // the head runs on the passing rows only
                    Tensor idx = indices(exiting, k);
                    Tensor hid = step.allocate(DType.F32, k, config.dim());
                    model.backend().ops().gatherRows(hid, in.hidden(), idx);
                    Tensor res = null;
                    if (in.attnResidual() != null) model.backend().ops().gatherRows(res = step.allocate(DType.F32, k, config.dim()), in.attnResidual(), idx);
                    List<Row> taking = new ArrayList<>();
                    for (int i : exiting) taking.add(rows.get(i));
                    Workspace.Rows all = in.rows();
                    Workspace.Rows sub = new Workspace.Rows(k, null, step.allocate(DType.I32, k).copyFrom(seqs(taking)), step.allocate(DType.I32, k).copyFrom(positions(taking)),
                        0, 0, all.sequenceBound(), all.positionBound());
                    z = h.decodeInput(step, new ExitInput(hid, res, sub, in.ownCache(), in.workspace()), k);
                }
                // the final layer's logits buffer: free until this pass's last layer, and k <= maxBatch rows
                Tensor logits = EarlyExitGenerator.this.logits.slice(0, k);
                headLogits(logits, z, h);
                counters.headEvals += k;
                counters.headLayers += k * headCost;
                int[] seqs = new int[k];
                for (int i = 0; i < k; i++) seqs[i] = active[exiting[i]];
                tokens = choose(logits, seqs, batch, cfg);
                if (policy.confidence() == ConfidenceMethod.CASCADE) { // the softmax confirms: only rows passing both leave
                    Tensor mp = maxProb.slice(0, k);
                    model.backend().ops().argmax(chosen.slice(0, k), mp, logits, h.temperature());
                    int[] confirmed = passing(mp.toFloatArray(), policy.confirmThreshold(layer));
                    if (confirmed.length == 0) return pass;
                    int[] e = new int[confirmed.length], t = new int[confirmed.length];
                    for (int i = 0; i < confirmed.length; i++) {
                        e[i] = exiting[confirmed[i]];
                        t[i] = tokens[confirmed[i]];
                    }
                    exiting = e;
                    tokens = t;
                }
            }
            boolean[] leaves = new boolean[batch.size()];
            for (int i = 0; i < exiting.length; i++) {
                int s = active[exiting[i]];
                next[s] = tokens[i];
                nextLayer[s] = layer;
                counters.exits[layer]++;
                leaves[s] = true;
            }
            int kept = 0;
            for (int i = 0; i < m; i++) if (!leaves[active[i]]) active[kept++] = active[i];
            active = Arrays.copyOf(active, kept);
            // exited sequences' rows keep their layer-L states and wait for a deeper pass
            ensureStates();
            List<Row> keptRows = new ArrayList<>();
            int[] keptIdx = new int[n];
            int k = 0;
            for (int r = 0; r < n; r++) {
                Row row = rows.get(r);
                if (!leaves[row.seq()]) {
                    keptRows.add(row);
                    keptIdx[k++] = r;
                    continue;
                }
                int slot = slot(row.seq(), row.pos());
                states.slice(slot, slot + 1).copyFrom(pass.x().slice(r, r + 1));
                doneLayers[row.seq()][row.pos()] = layer;
                if (poisonSkippedKv) poison(row.seq(), row.pos(), layer);
            }
            if (keptRows.isEmpty()) return null;
            model.backend().ops().gatherRows(spare.slice(0, k), pass.x(), indices(keptIdx, k));
            Tensor t = x;
            x = spare;
            spare = t;
            rows = keptRows;
            return new Pass(x.slice(0, k), ws.rows(seqs(rows), positions(rows)));
        }
    }

    /** Indices of the scores that reach {@code tau}. */
    private static int[] passing(float[] score, float tau) {
        int[] out = new int[score.length];
        int k = 0;
        for (int i = 0; i < score.length; i++) if (EarlyExitPolicy.confident(score[i], tau)) out[k++] = i;
        return Arrays.copyOf(out, k);
    }

    /** The first {@code k} of {@code rows} in the reused index buffer (k <= capacity). */
    private Tensor indices(int[] rows, int k) { return rowIndex.slice(0, k).copyFrom(k == rows.length ? rows : Arrays.copyOf(rows, k)); }

    private void ensureStates() {
        if (states == null) states = scope.allocate(DType.F32, maxBatch * maxLen, config.dim());
    }

    private int slot(int s, int p) { return s * maxLen + p; }

    // plain loops, not streams: these run once per pass, mostly before the JIT has compiled them
    private static int[] seqs(List<Row> rows) {
        int[] out = new int[rows.size()];
        for (int r = 0; r < out.length; r++) out[r] = rows.get(r).seq();
        return out;
    }

    private static int[] positions(List<Row> rows) {
        int[] out = new int[rows.size()];
        for (int r = 0; r < out.length; r++) out[r] = rows.get(r).pos();
        return out;
    }

    /** Greedy argmax, or temperature + top-p sampling with the counter-based RNG (keyed by sequence and position). */
    private int[] choose(Tensor logits, int[] active, DecodingBatch batch, GenerationConfig cfg) {
        Ops ops = model.backend().ops();
        int n = active.length;
        Tensor out = chosen.slice(0, n);
        if (cfg.isGreedy()) {
            ops.argmax(out, null, logits, 1f);
        } else {
            float[] u = new float[n];
            for (int i = 0; i < n; i++) u[i] = nextTokenUniform(cfg, active[i], batch.length(active[i]));
            ops.sampleTopP(out, logits, uniforms.slice(0, n).copyFrom(u), cfg.temperature(), cfg.topP());
        }
        return out.toIntArray();
    }

    /** The uniform that samples sequence {@code seq}'s next token when it is {@code length} tokens long (both decode paths). */
    private static float nextTokenUniform(GenerationConfig cfg, int seq, int length) { return CounterRng.uniform(cfg.seed(), seq, length, 0); }

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
        rowIndex = buffers.allocate(DType.I32, cap);
        capacity = cap;
    }

    @Override
    public void close() {
        calls.close(() -> {
            scope.close();
            ws.close();
            cache.close();
            headCaches.values().forEach(KvCache::close);
            if (ownsExits) exits.close();
        });
    }
}
