package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.progress.ProgressListener;
import dev.eetune.backend.Ops;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A Llama-family decoder (Llama 2/3, TinyLlama, Mistral, Qwen2, llama2.c) on a backend. Every layer runs through
 * the one {@link DecoderLayer} forward, parameterised by the rows it runs (packed with a KV cache, or dense), so
 * prefill, decode, early-exit passes, speculative verification and tuning all share it.
 *
 * <p>Thread-safety: read-only after loading, shared by any number of threads, each with its own decoder, tuner,
 * workspace and cache. Those hold a {@link #use() lease} per call, so {@link #close()} from another thread waits for
 * the calls running on the model to end (later calls fail with an {@link IllegalStateException}); its weights are
 * never unmapped under a running kernel. Code calling {@link #layers}, {@link #embed} or {@link #logits} itself while
 * another thread may close the model takes the lease too.
 */
public final class LlamaModel implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(LlamaModel.class);
    /** {@code -Deetune.panels=false} keeps decode on the plain weights (for A/B measurements; see {@link #readsPanels}). */
    private static final boolean PANELS = !"false".equalsIgnoreCase(System.getProperty("eetune.panels", "true").trim());

    private final LlamaConfig config;
    private final LlamaWeights weights;
    private final Backend backend;
    private final Scope scope;
    private final DecoderLayer layer;
    /** Whether decode may read packed copies of the matrices ({@link #readsPanels}). */
    private final boolean usePanels;
    /** The CPU runs the AVX-512 kernels ({@link #readsPanels}). */
    private final boolean avx512;
    /** The matrices' packed copies would take at most {@link #PANELS_MAX_BYTES} ({@link #readsPanels}). */
    private final boolean copyAffordable;
    /** A BF16 or F16 checkpoint: every matrix in that one dtype ({@link #readsPanels}). */
    private final boolean halfWidth;
    /** The layers' matrices packed by {@link Ops#packPanels}, each made on the first pass that needs it. */
    private final AtomicReferenceArray<LayerWeights> packedLayers;
    private volatile Tensor packedHead;
    /** The classifier's screen for greedy decode ({@link #greedyTokens}), made on first use. */
    private volatile Screen screen;
    /** Rows {@link #greedyTokens} decided by the screen, the f32 panels it read for them, the rows it left to the full logits. */
    final AtomicLong screenedRows = new AtomicLong(), exactPanels = new AtomicLong(), unscreenedRows = new AtomicLong();
    /**
     * Set once more than {@link #SCREEN_GIVE_UP} rows, and over a quarter of all, fell back to the full logits: then
     * the screen only adds its own cost (flat logits, as of an untrained model), so greedy decode stops screening.
     */
    private volatile boolean screenGivenUp;
    static final int SCREEN_GIVE_UP = 16;

    /**
     * Takes ownership of {@code scope}, which holds the weights (and any mapped files). The weights may change later
     * (training updates them in place).
     */
    public LlamaModel(LlamaConfig config, LlamaWeights weights, Backend backend, Scope scope) { this(config, weights, backend, scope, false); }

    /** With {@code fixedWeights}, for loaded checkpoints: the weights never change, so decode may use packed copies. */
    LlamaModel(LlamaConfig config, LlamaWeights weights, Backend backend, Scope scope, boolean fixedWeights) {
        config.validate();
        this.config = config;
        this.weights = weights;
        this.backend = backend;
        this.scope = scope;
        this.layer = new DecoderLayer(config, scope.of(config.ropeInverseFrequencies(), config.headDim() / 2));
        DType wt = weights.lmHead().dtype();
        long matrixBytes = weights.lmHead().byteSize();
        boolean oneDtype = true;
        for (LayerWeights l : weights.layers()) {
            for (Tensor t : new Tensor[] {l.wq(), l.wk(), l.wv(), l.wo(), l.wGate(), l.wUp(), l.wDown()}) {
                oneDtype &= t.dtype() == wt;
                matrixBytes += t.byteSize();
            }
        }
        this.avx512 = backend.features().contains(Backend.Feature.AVX512);
        this.halfWidth = oneDtype && (wt == DType.BF16 || wt == DType.F16);
        boolean packable = oneDtype && wt == DType.F32
            || halfWidth && matrixBytes <= PANELS_MAX_BYTES;
        this.copyAffordable = matrixBytes <= PANELS_MAX_BYTES;
        this.usePanels = fixedWeights && PANELS && packable && backend.device().isHost();
        this.packedLayers = new AtomicReferenceArray<>(weights.layers().size());
    }

    /**
     * Whether a pass over {@code rows} rows reads packed matrices (exit heads of batches follow the same rule for
     * theirs, EarlyExitGenerator): copies of a loaded f32 checkpoint's matrices made by
     * ee_pack_panels (bf16: the last item below), which the small-batch GEMM streams as one sequence per thread instead
     * of a few weight rows side by side (`eecpu_gemmbench 2 gemv15m`, see docs/benchmarks.md). Each layer's copy (and
     * the classifier's) is made on the first pass that runs it, so a pipeline stage touches only its own layers; together they cost the f32
     * matrices' memory once more (60 MB at the 15M config, 436 MB at 110M) until the model is closed. Prefill keeps the
     * plain weights. The packed GEMM sums in another order, so logits differ from the plain ones in the last bits.
     * Which row counts gain depends on the width and the CPU (2 threads, f32p / f32 tok/s of the GEMVs):
     * <ul>
     * <li>models up to {@link #SMALL_DIM} wide: every row count (a plain GEMV row of 64-128 floats is a few FMAs and a
     *     horizontal sum);
     * <li>up to {@link #MID_DIM} wide: 1-2 rows (single-sequence decode; 2-core Zen 2 at 15M: m = 1 1.26-1.36x, m = 2
     *     1.24-1.30x; AVX-512 at 15M: 1.08-1.17x), where the plain kernel's short GEMVs lose to its per-call costs; at
     *     110M (768 wide) on AVX2 both reach the memory bandwidth (m = 1 1.00x on Zen 2), so wider models pack for 1-2
     *     rows only on AVX-512, and only when the copies take at most {@link #PANELS_MAX_BYTES}: on a 2-core Zen 4
     *     (AVX-512, 2026-12-03) the plain kernel's 16 weight rows side by side streamed 21-27 GB/s and the panels 28-32
     *     (`eecpu_gemmbench 2 gemv110m`), and `ee generate` at 110M f32 decoded 50-61 tok/s plain against 72-77 packed
     *     (bf16: 80-89 against 103-115), four and three alternations. The first decode step pays for the copy: in
     *     this VM, whose first touch of fresh memory is slow, 0.5-0.7 s at 110M f32 (0.1 s bf16) before the copy was
     *     vectorised; since, the whole time to the first token after the call 0.23-0.43 s (docs/benchmarks.md, "The copies themselves");
     * <li>on AVX-512, 8-16 rows at every width (m = 8 and 16 1.1-1.5x; fewer rows were not reliably faster: m = 2
     *     0.8-1.3x, m = 4 0.7-1.4x across runs). On AVX2 the packed kernel's passes over a block now prefetch the
     *     next one (Zen 2, 15M, `eecpu_gemmbench 2 gemv15m`: m = 4 0.95 -> 1.16x, m = 8 0.73 -> 1.07x, m = 16 0.76 ->
     *     1.03x), but a batch of 8 decoded no faster with the layers packed (three alternations, within the noise:
     *     the layers' matrices are a few panels per thread, too short for the prefetch), so batches there keep the plain weights.
     * <li>BF16 and F16 checkpoints (ee_pack_panels_bf16, ee_pack_panels_f16): 1-2 rows, and on AVX-512 8-16 rows as
     *     f32 (15M bf16 batch 8, screened, 2-core Zen 4, three alternations, medians of 3 repeats: 3,978 / 4,301 / 4,273 tok/s
     *     plain against 4,330 / 5,044 / 4,996 packed), when the copies take at most {@link #PANELS_MAX_BYTES}. The plain bf16 GEMV streams ~0.7x f32's bytes per second from memory on a 2-core
     *     Zen 2 (8 weight rows side by side) and ~0.8x on a Zen 4 (16 rows), the packed one about as fast as f32's
     *     packed one (docs/benchmarks.md); f16 likewise (Zen 4, `eecpu_gemmbench 2 gemv110m`, m = 1: plain 22-24 GB/s,
     *     packed 43-47 with the AVX-512 kernels and 31-40 with the AVX2 ones; `ee generate` at 110M, 4 alternations:
     *     97 tok/s plain, 142 packed, medians).
     * </ul>
     */
    public boolean readsPanels(int rows) {
        if (!usePanels || rows > Ops.PANELS_MAX_ROWS) return false;
        if (halfWidth) return rows <= 2 || rows >= 8 && avx512;
        return config.dim() <= SMALL_DIM || rows <= 2 && (config.dim() <= MID_DIM || avx512 && copyAffordable) || rows >= 8 && avx512;
    }

    private static final int SMALL_DIM = 128;
    private static final int MID_DIM = 512;
    /** Wide f32, bf16 and f16 checkpoints are packed for 1-2 rows only up to this size: beyond it the copies would double a large checkpoint's memory. */
    public static final long PANELS_MAX_BYTES = 1L << 30;

    /**
     * Makes the packed copies that decode passes of {@code rows} rows read ({@link #readsPanels}: every layer's and the
     * classifier's) now rather than in those passes; does nothing where such passes read the plain weights or the
     * copies exist. Generators (EarlyExitGenerator, SelfSpeculativeDecoder) call it before their prefill, so that
     * the one-time packing (~75 ms at the 110M config in bf16 on a 2-core Zen 2) counts in the time to the first
     * token, as loading does, and not in the decode rate. A pipeline stage does not call it: its passes pack only its
     * own layers.
     */
    public void prepareDecode(int rows) {
        if (!readsPanels(rows)) return;
        for (int l = 0; l < config.nLayers(); l++) packedLayer(l);
        packedHead();
    }

    private LayerWeights packedLayer(int index) {
        LayerWeights p = packedLayers.get(index);
        if (p != null) return p;
        synchronized (packedLayers) {
            p = packedLayers.get(index);
            if (p == null) {
                Ops ops = backend.ops();
                LayerWeights l = weights.layers().get(index);
                p = new LayerWeights(l.attnNorm(), ops.packPanels(l.wq(), scope), ops.packPanels(l.wk(), scope), ops.packPanels(l.wv(), scope),
                    ops.packPanels(l.wo(), scope), l.bq(), l.bk(), l.bv(), l.ffnNorm(), ops.packPanels(l.wGate(), scope), ops.packPanels(l.wUp(), scope),
                    ops.packPanels(l.wDown(), scope));
                packedLayers.set(index, p);
                LOG.debug("packed layer {}'s matrices for decode", index);
            }
            return p;
        }
    }

    private Tensor packedHead() {
        Tensor p = packedHead;
        if (p != null) return p;
        synchronized (packedLayers) {
            if (packedHead == null) {
                packedHead = backend.ops().packPanels(weights.lmHead(), scope);
                LOG.debug("packed the classifier for decode");
            }
            return packedHead;
        }
    }

    /**
     * Loads a checkpoint: a Hugging Face directory (config.json + safetensors) or a llama2.c {@code .bin} file.
     * Weights are memory-mapped, never read through the Java heap.
     */
    public static LlamaModel load(Path path, Backend backend) { return load(path, backend, ProgressListener.NONE); }

    /**
     * {@link #load(Path, Backend)} telling {@code progress} how many bytes of checkpoint files are mapped, of all the
     * files' bytes. A device backend copies each tensor to the device when it is first used (a pipeline stage copies
     * only its own), so there the copying happens in the first passes, not here.
     */
    public static LlamaModel load(Path path, Backend backend, ProgressListener progress) {
        if (Files.isDirectory(path)) return HfCheckpointLoader.load(path, backend, progress);
        if (Files.isRegularFile(path) && path.getFileName().toString().endsWith(".safetensors")) return HfCheckpointLoader.load(path.getParent(), backend, progress);
        if (Files.isRegularFile(path)) return Llama2cLoader.load(path, backend, progress);
        throw new IllegalArgumentException("no model at " + path + " (expected a Hugging Face directory or a llama2.c .bin file)");
    }

    /**
     * A model with freshly initialised F32 weights: matrices N(0, std) (the residual output projections wo and
     * down scaled by 1/sqrt(2 * layers), as in GPT-2), norms 1, biases 0. For pretraining and synthetic benchmarks.
     */
    public static LlamaModel random(LlamaConfig c, Backend backend, long seed, float std) {
        Random r = new Random(seed);
        Scope s = Scope.of(backend, "random model");
        Tensor emb = LayerWeights.gaussian(s, r, std, c.vocabSize(), c.dim());
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < c.nLayers(); l++) layers.add(LayerWeights.random(c, s, r, std, (float) (std / Math.sqrt(2.0 * c.nLayers()))));
        Tensor head = c.tiedEmbeddings() ? emb : LayerWeights.gaussian(s, r, std, c.vocabSize(), c.dim());
        return new LlamaModel(c, new LlamaWeights(emb, layers, LayerWeights.ones(s, c.dim()), head), backend, s);
    }

    public LlamaConfig config() { return config; }

    public LlamaWeights weights() { return weights; }

    public Backend backend() { return backend; }

    public Workspace newWorkspace() { return new Workspace(config, backend); }

    /** x[r] = embedding of rows' tokens. */
    public void embed(Tensor x, Workspace.Rows rows) {
        backend.ops().embedding(x, weights.tokenEmbedding(), rows.tokens());
    }

    /** The decoder layer's forward (shared by every layer: the weights differ). */
    public DecoderLayer decoderLayer() { return layer; }

    /**
     * Runs layers [from, to) (0-based) over rows: the residual stream {@code x} [rows, dim] is updated in place. With
     * a cache, each row's K/V are written at (seq, pos) first, so a row attends to its sequence's cached positions
     * 0..pos; with {@code cache} null the rows must be dense. For passes with exit heads see
     * {@code EarlyExitModel.run}.
     */
    public void layers(Tensor x, Workspace.Rows rows, KvCache cache, int from, int to, Workspace ws) { layers(x, rows, cache, from, to, ws, null); }

    /**
     * {@link #layers(Tensor, Workspace.Rows, KvCache, int, int, Workspace)}, {@code residual} (may be null) receiving
     * the last layer's attention residual x + attn(x). With a cache the layers run in one native call over a table of
     * their weights and caches that the cache keeps ({@link Ops#decoderLayers}: checked once, not per layer and pass;
     * at stories260K's size the per-layer checks and calls cost as much as the layers on a cold JVM); the same bits as
     * one {@link #layer} call after another, which is what passes without a cache (dense rows) run.
     */
    public void layers(Tensor x, Workspace.Rows rows, KvCache cache, int from, int to, Workspace ws, Tensor residual) {
        if (from < 0 || to > config.nLayers() || from > to) throw new IllegalArgumentException("layers [" + from + ", " + to + ") outside 0.." + config.nLayers());
        if (from == to) return;
        if (cache == null) {
            for (int l = from; l < to; l++) layer(l, x, rows, null, ws, l == to - 1 ? residual : null);
            return;
        }
        layer.forward(layerTable(cache, readsPanels(rows.count()), from, to), 0, to - from, x, rows, cache.layer(from), ws.activations(rows.count(), x, residual));
    }

    /** The table of layers [from, to) over {@code cache} (plain or packed matrices), which the cache keeps. */
    private Ops.LayerTable layerTable(KvCache cache, boolean panels, int from, int to) {
        return cache.layerTable(new TableKey(this, panels, from, to), c -> {
            List<Tensor[]> t = new ArrayList<>(to - from);
            for (int l = from; l < to; l++) t.add(DecoderLayer.tableRow(panels ? packedLayer(l) : weights.layers().get(l), c.layer(l)));
            return backend.ops().layerTable(t, panels, config.nHeads(), config.nKvHeads(), config.headDim());
        });
    }

    /**
     * Decode steps of {@code rows} sequences, prepared for runs of a chunk of steps in one native call each
     * ({@link Ops.DecodeStepsCall#run}): step t feeds each sequence's token ({@code firstIds}, then the previous step's)
     * at position {@code rowPos[t]} of sequence {@code rowSeq} through every layer (writing its K/V in {@code cache})
     * and writes the next token to {@code outIds[t]}: greedy where {@code uniforms} is null (the tokens
     * {@link #greedyTokens} gives, where {@link #screens} is false: the classifier is read whole), else sampled from
     * {@link #logits} as {@link Ops#sampleTopP} does with {@code uniforms[t]}. The tokens and cache a {@link #layers}
     * call and the choice per step give. Why: at small sizes a step's Java (its views, checks and a few calls) costs as
     * much as the step, and on a cold JVM much more, since it runs interpreted until compiled; so the checks and host
     * tables are made here once, and the caller writes firstIds, rowSeq, rowPos and the uniforms before each run.
     * {@code x}, {@code normed} and {@code logits} (at least [rows, dim], [rows, dim], [rows, vocab]) are scratch.
     *
     * @param firstIds I32 [rows]; outIds, rowPos: I32 [steps, rows] for the most steps a run takes; rowSeq: I32 [rows]
     * @param uniforms F32 [steps, rows] as outIds, or null for greedy decoding (temperature and topP then unread)
     */
    public Ops.DecodeStepsCall prepareDecodeSteps(Tensor firstIds, Tensor outIds, Tensor rowSeq, Tensor rowPos, Tensor uniforms, float temperature, float topP,
                                                  KvCache cache, Workspace ws, Tensor x, Tensor normed, Tensor logits) {
        int rows = (int) firstIds.size();
        if (uniforms == null && screens(rows)) throw new IllegalStateException("greedy decodeSteps reads the whole classifier: " + rows + " rows of this model are screened (see greedyTokens)");
        boolean panels = readsPanels(rows);
        Tensor xs = x.slice(0, rows);
        return layer.prepareDecodeSteps(layerTable(cache, panels, 0, config.nLayers()), weights.tokenEmbedding(), weights.finalNorm(), panels ? packedHead() : weights.lmHead(),
            panels, firstIds, outIds, xs, rowSeq, rowPos, uniforms, temperature, topP, ws.activations(rows, xs, null), normed.slice(0, rows), logits.slice(0, rows));
    }

    /**
     * Early-exit decode steps of up to firstIds' size sequences together, prepared for runs of a chunk of steps in one
     * native call each ({@link Ops.ExitStepsCall#run}, {@link Ops#prepareExitSteps}): the passes an early-exit decoder
     * makes for sequences whose exits keep no cache of their own, each pass of r rows over the layers {@link #layers}
     * would run for r rows, the final rows' choice as {@link #prepareDecodeSteps} makes it (so greedy only where
     * {@link #screens} is false for every count of final rows up to firstIds' size). x's rows are the most a pass may
     * hold. The layers leave their attention residual in the workspace's own buffer, not in x, for the heads that read
     * it. The checks and host tables are made here once per generation; the caller writes firstIds and the uniforms
     * before each run.
     */
    public Ops.ExitStepsCall prepareExitSteps(Tensor firstIds, Tensor outIds, Tensor rowSeq, Tensor pos, Tensor uniforms, float temperature, float topP, KvCache cache,
                                              Workspace ws, Tensor x, Tensor normed, Tensor logits, Ops.ExitMethod method, List<Ops.ExitStep> exits, Tensor states,
                                              Tensor score, Tensor chosen, Tensor pre, Tensor z) {
        int sequences = (int) firstIds.size();
        for (int r = 1; r <= sequences && uniforms == null; r++) {
            if (screens(r)) throw new IllegalStateException("greedy exitSteps reads the whole classifier: " + r + " rows of this model are screened (see greedyTokens)");
        }
        int capacity = x.dim(0);
        Ops.PassTables[] passes = new Ops.PassTables[capacity + 1];
        for (int r = 1; r <= capacity; r++) { // two tables at most (plain, packed): looked up where the choice changes
            boolean p = readsPanels(r);
            passes[r] = r > 1 && p == passes[r - 1].packedClassifier() ? passes[r - 1]
                : new Ops.PassTables(layerTable(cache, p, 0, config.nLayers()), p ? packedHead() : weights.lmHead(), p);
        }
        return layer.prepareExitSteps(passes, weights.tokenEmbedding(), weights.finalNorm(), firstIds, outIds, x, rowSeq, pos, uniforms, temperature, topP,
            ws.activations(capacity, x, ws.residual(capacity)), normed.slice(0, sequences), logits.slice(0, sequences), method, exits, states, score, chosen, pre, z);
    }

    /**
     * Whether {@link #greedyTokens} screens the classifier for this many rows (see there) instead of reading it whole:
     * every row count the panels serve, and a bf16 or f16 checkpoint's every row count (15M bf16 batch 8, 2-core Zen 4:
     * 2,858-2,875 tok/s reading the classifier whole, 4,119-4,251 screened, two alternations). With the bf16 screen this
     * model had before, AVX-512 CPUs screened only 1-2 rows (the bf16 panels' kernel was AVX2 only then, and from 3 rows
     * f32 panels on AVX-512 were faster); the 8-bit kernel has an AVX-512 form, and batches of 8 on the 15M config
     * decode faster screened (2-core Zen 4, 2026-12-03, 1 thread, six alternations: 1,512-2,083 against 1,505-1,841
     * tok/s, per pair 1.00-1.13x; 2 threads 0.66-1.23x, the last four 0.99-1.23x).
     */
    public boolean screens(int rows) { return usePanels && rows <= Ops.PANELS_MAX_ROWS && !screenGivenUp && screenable(); }

    private boolean screenable() { return SCREEN && (halfWidth || weights.lmHead().dtype() == DType.F32) && weights.lmHead().byteSize() >= SCREEN_MIN_BYTES; }

    /** What a layer table of a cache pairs: this model's plain or packed matrices of layers [from, to). */
    private record TableKey(LlamaModel model, boolean panels, int from, int to) {}

    /**
     * Backbone layer {@code index} (0-based) over rows, x updated in place; {@code residual} (may be null) receives
     * the layer's attention residual x + attn(x).
     */
    public void layer(int index, Tensor x, Workspace.Rows rows, KvCache cache, Workspace ws, Tensor residual) {
        boolean panels = readsPanels(rows.count());
        layer.forward(panels ? packedLayer(index) : weights.layers().get(index), panels, x, x, rows, cache == null ? null : cache.layer(index),
            ws.activations(rows.count(), x, residual));
    }

    /** logits [rows, vocab] = lmHead(finalNorm(hidden)); {@code normed} [rows, dim] is scratch. */
    public void logits(Tensor logits, Tensor hidden, Tensor normed) {
        Ops ops = backend.ops();
        ops.rmsnorm(normed, null, hidden, weights.finalNorm(), config.normEps());
        if (readsPanels(normed.dim(0))) ops.linearPanels(logits, normed, packedHead());
        else ops.linear(logits, normed, weights.lmHead());
    }

    /**
     * Greedy next tokens: {@code tokens[r]} (I32 [rows]) = the index of the largest of the logits {@link #logits}
     * gives for row r of {@code hidden}, the lowest one on ties; {@code normed} [rows, dim] and {@code logits}
     * [rows, vocab] are scratch. Returns the tokens too.
     *
     * <p>Where the classifier is large (8 MiB and more), decode runs on the CPU with fixed weights and the rows are at
     * most {@link Ops#PANELS_MAX_ROWS} (single-sequence decode and its batches; see {@link #screens}), most of the classifier is not read: an 8-bit copy (a quarter
     * of the f32 bytes, {@link Ops#packInt8Panels}) scores every token, a bound on how far each score can lie from its
     * logit leaves a few candidates ({@link Ops#argmaxCandidates}), and only the candidates' 32-row panels are computed
     * exactly, one row at a time, by the kernel {@link #logits} uses for these rows (packed or plain), whose outputs
     * for a row are the same bits whatever rows of the weight and of x share the call (selftest checks the kernels for
     * it), so the token is the same one, ties included.
     * With s_j the 8-bit kernel's score and f_j the exact kernel's logit of token j over k = dim terms, w_j the
     * classifier's row (f32, or bf16 widened) and scale_j q_j its copy with residual norm r_j = ||w_j - scale_j q_j||:
     * |f_j - x.w_j| &le; g ||x|| ||w_j|| (g = (k + 8) 2^-24 / (1 - (k + 8) 2^-24), more than the rounding of a k-term dot
     * product in any order), |x.w_j - x.(scale_j q_j)| &le; ||x|| r_j (Cauchy-Schwarz), and the 8-bit kernel rounds x
     * to x' = scale_x times 8-bit integers, sums exactly in integers and rounds only the blocks' f32 sum and the
     * products by the scales: |s_j - x.(scale_j q_j)| &le; (||x - x'|| + g ||x'||) ||scale_j q_j||, with ||scale_j q_j||
     * &le; ||w_j|| + r_j. With E = max(||x||, ||x - x'|| / c), c = 1/128, rounded up ({@link ScoreScreen#norms}: the
     * rounding error is measured per row, as x' is known), ||x|| &le; E, ||x - x'|| &le; c E and ||x'|| &le; (1 + c) E,
     * so |f_j - s_j| &le; B_j = E R_j, R_j = (r_j + (c + (2g + 2^-21)(1 + c))(||w_j|| + r_j)) (1 + 1e-4)
     * ({@link ScoreScreen}), where 2^-21
     * and the last factor cover the float arithmetic of the bounds themselves (each of s_j + B_j, s_j - B_j and the
     * product rounds by at most 2^-24 (|s_j| + B_j), and |s_j| &le; (1 + 2g) (1 + c) E (||w_j|| + r_j)). A token with s_j +
     * B_j below max_l (s_l - B_l) has f_j below some candidate's f_l, so it cannot be the argmax. Rows with a non-finite
     * value, or with candidates in more than an eighth of the panels, take the full logits; once more than 16 rows, and
     * over a quarter of all, have, the model stops screening (flat logits, as of an untrained model, would only pay for
     * the screen on top).
     * Why: the classifier is 60% of the bytes a token streams at the 15M config (32000 x 288 f32), 22% at 110M
     * (32000 x 768), and more of a bf16 checkpoint's; an 8-bit row's residual is about as small as the worst case of a
     * bf16 copy (which this screen used before; Gaussian rows 0.70% of the norm against 2^-7 = 0.78%), at half its bytes; docs/benchmarks.md has the decode figures.
     * {@code -Deetune.screen=false} turns it off (A/B).
     */
    public int[] greedyTokens(Tensor tokens, Tensor hidden, Tensor normed, Tensor logits) {
        int rows = hidden.dim(0);
        Screen sc = screens(rows) ? screen() : null;
        if (sc == null) {
            logits(logits, hidden, normed);
            backend.ops().argmax(tokens, null, logits, 1f);
            return tokens.toIntArray();
        }
        Ops ops = backend.ops();
        ops.rmsnorm(normed, null, hidden, weights.finalNorm(), config.normEps());
        ops.linearPanels(logits, normed, sc.copy().scores());
        float[] scale = ScoreScreen.norms(normed);
        int[] out = new int[rows], counts, groups;
        try (Scope tmp = scope.child()) {
            Tensor groupsT = tmp.allocate(DType.I32, rows, sc.maxPanels()), countsT = tmp.allocate(DType.I32, rows);
            ops.argmaxCandidates(groupsT, countsT, logits, sc.copy().radius(), tmp.allocate(DType.F32, rows).copyFrom(scale), Ops.PANEL_ROWS);
            counts = countsT.toIntArray();
            groups = groupsT.toIntArray();
        }
        boolean packed = readsPanels(rows); // the classifier logits() reads for these rows
        Tensor head = packed ? packedHead() : weights.lmHead();
        for (int r = 0; r < rows; r++) {
            int best = -1;
            float bestLogit = 0;
            for (int c = 0; c < counts[r] && best != -2; c++) {
                int q = groups[r * sc.maxPanels() + c];
                int j0 = q * Ops.PANEL_ROWS, count = Math.min(Ops.PANEL_ROWS, config.vocabSize() - j0);
                Tensor exactRow = logits.get(0).slice(0, count).reshape(1, count); // the scores are read: logits is scratch
                if (packed) ops.linearPanels(exactRow, normed.slice(r, r + 1), head.slice(j0, j0 + Ops.PANEL_ROWS));
                else ops.linear(exactRow, normed.slice(r, r + 1), head.slice(j0, j0 + count));
                float[] exact = exactRow.toFloatArray();
                for (int j = 0; j < count; j++) {
                    if (!Float.isFinite(exact[j])) { best = -2; break; }
                    if (best < 0 || exact[j] > bestLogit) { best = j0 + j; bestLogit = exact[j]; }
                }
            }
            if (best >= 0) {
                screenedRows.incrementAndGet();
                exactPanels.addAndGet(counts[r]);
            } else { // the full f32 row: the very computation logits() makes
                long fallbacks = unscreenedRows.incrementAndGet();
                if (!screenGivenUp && fallbacks > SCREEN_GIVE_UP && fallbacks > screenedRows.get() / 3) {
                    screenGivenUp = true;
                    LOG.info("greedy decode stops screening the classifier: {} of {} rows needed the full logits", fallbacks, fallbacks + screenedRows.get());
                }
                Tensor row = logits.slice(r, r + 1);
                if (packed) ops.linearPanels(row, normed.slice(r, r + 1), head);
                else ops.linear(row, normed.slice(r, r + 1), head);
                ops.argmax(tokens.slice(r, r + 1), null, row, 1f);
                best = tokens.slice(r, r + 1).toIntArray()[0];
            }
            out[r] = best;
        }
        tokens.copyFrom(out);
        return out;
    }

    /** {@code -Deetune.screen=false}: greedy decode computes every logit in f32 ({@link #greedyTokens}). */
    private static final boolean SCREEN = !"false".equalsIgnoreCase(System.getProperty("eetune.screen", "true").trim());
    /** Classifiers (and exit heads' LM matrices) below this are not screened: they stay in the caches, and the host work would cost more than it saves. */
    public static final long SCREEN_MIN_BYTES = 8L << 20;

    /** The classifier's screen and the most candidate panels a row reads exactly. */
    private record Screen(ScoreScreen copy, int maxPanels) {}

    /** The screen, or null where greedy decode reads every logit (not packed, small, or turned off). */
    private Screen screen() {
        Screen sc = screen;
        if (sc != null || !screenable()) return sc;
        synchronized (packedLayers) {
            if (screen == null) {
                int vocab = weights.lmHead().dim(0);
                screen = new Screen(ScoreScreen.of(backend.ops(), weights.lmHead(), scope), Math.max(1, (vocab + Ops.PANEL_ROWS - 1) / Ops.PANEL_ROWS / 8));
                LOG.debug("made the classifier's 8-bit screen for greedy decode");
            }
            return screen;
        }
    }

    /** Keeps the model open for one call that runs on it, until the lease is closed; see {@link Scope#use()}. */
    public Scope.Lease use() { return scope.use(); }

    /** Unmaps and frees the weights, after the calls that hold a {@link #use() lease} end. */
    @Override
    public void close() { scope.close(); }

    @Override
    public String toString() {
        return "LlamaModel[" + config.architecture() + ", dim " + config.dim() + ", " + config.nLayers() + " layers, " + config.nHeads() + "/" + config.nKvHeads()
            + " heads, vocab " + config.vocabSize() + ", " + weights.tokenEmbedding().dtype() + ", " + backend.name() + "]";
    }
}
