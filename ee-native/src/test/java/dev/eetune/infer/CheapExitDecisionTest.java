package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.eval.ExitTrace;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitGate;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitInput;
import dev.eetune.exit.ExitSpec;
import dev.eetune.exit.ExitVisitor;
import dev.eetune.exit.Pass;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.GateTrainer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Gate and saturation exit decisions on stories260K with copy-initialised heads of every kind that decodes cheaply
 * differently (mlp: reads the attention residual; layer: its own cache; norm): τ = 1 is the full model, the K/V cache
 * stays exact, batches equal sequences alone, the stream equals a stateless oracle, the head runs only for passing
 * rows, and gates train, save and load with the heads.
 */
class CheapExitDecisionTest {
    static final Backend CPU = Backends.cpu();
    static final int[] LAYERS = {2, 3, 4};
    static LlamaModel model;
    static EarlyExitModel heads;
    static List<int[]> prompts = new ArrayList<>();
    static GateTrainer.Report gateReport;
    static int[] storyTokens;

    @BeforeAll
    static void setUp() throws Exception {
        model = LlamaModel.load(TestData.stories260K(), CPU);
        Tokenizer tok = Tokenizer.load(TestData.stories260KTokenizer());
        heads = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY),
            new ExitSpec(4, ExitArchitecture.NORM, ExitInit.COPY)), 0);
        for (String p : EarlyExitGeneratorTest.PROMPTS) prompts.add(tok.encode(p));
        // gates trained on a little real held-out text: 8 windows of 65 tokens
        int[] all = tok.encode(Files.readString(TestData.tinyStoriesValid()).substring(0, 4000));
        storyTokens = Arrays.copyOfRange(all, 8 * 65, all.length); // text the gates did not train on
        List<int[]> windows = new ArrayList<>();
        for (int i = 0; i < 8; i++) windows.add(Arrays.copyOfRange(all, i * 65, (i + 1) * 65));
        gateReport = GateTrainer.train(heads, windows, new GateTrainer.Settings(GateTrainer.Settings.DEFAULT_HIDDEN, 5, 64, 1e-2f, 0f, 1));
    }

    @AfterAll
    static void tearDown() {
        heads.close();
        model.close();
    }

    /** A threshold at which about half of the prompts' positions pass {@code method}'s score at the first exit. */
    static float medianScore(ConfidenceMethod method) { return scoreQuantile(method, 0.5); }

    /** The {@code q}-quantile of {@code method}'s score at the first exit over the prompts' positions. */
    static float scoreQuantile(ConfidenceMethod method, double q) {
        ExitTrace t = ExitTrace.of(heads, prompts, new int[prompts.size()]);
        float[] s = t.scores(method)[0].clone();
        Arrays.sort(s);
        return s[(int) (q * (s.length - 1))];
    }

    /**
     * Cascade at {@code layers}: gate threshold at the {@code gateQ}-quantile of the gate, softmax at the
     * {@code softmaxQ}-quantile of the softmax (0: threshold 0, which every row passes).
     */
    static EarlyExitPolicy cascade(double gateQ, double softmaxQ, int... layers) {
        float g = scoreQuantile(ConfidenceMethod.GATE, gateQ), sm = softmaxQ == 0 ? 0f : scoreQuantile(ConfidenceMethod.SOFTMAX, softmaxQ);
        java.util.Map<Integer, Float> t = new java.util.TreeMap<>(), c = new java.util.TreeMap<>();
        for (int l : layers) {
            t.put(l, g);
            c.put(l, sm);
        }
        return new EarlyExitPolicy(t, false, ConfidenceMethod.CASCADE, c);
    }

    static List<int[]> generate(EarlyExitPolicy policy, List<int[]> ps, int n, EarlyExitGenerator.Stats[] stats) {
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, ps.size(), 128)) {
            List<int[]> out = g.generate(ps, GenerationConfig.greedy(n, Set.of()), null).stream().map(GenerationResult::tokens).toList();
            if (stats != null) stats[0] = g.lastStats();
            return out;
        }
    }

    @Test
    void gatesTrainAndTheirLossBeatsTheConstantGate() {
        assertThat(gateReport.gates()).hasSize(3);
        for (GateTrainer.GateMetrics g : gateReport.gates()) {
            double p = Math.min(Math.max(g.agreementRate(), 1e-4), 1 - 1e-4), constant = -(p * Math.log(p) + (1 - p) * Math.log(1 - p));
            assertThat(g.loss()).as("exit %d: the gate starts as the constant gate and improves on it", g.layer()).isLessThanOrEqualTo(constant + 1e-6);
            assertThat(g.loss()).isFinite();
        }
    }

    @Test
    void thresholdOneIsTheFullModelAndRunsNoHead() {
        List<int[]> full;
        try (Generator g = new Generator(model, 8, 128)) {
            full = g.generate(prompts, GenerationConfig.greedy(30, Set.of()), null).stream().map(GenerationResult::tokens).toList();
        }
        for (ConfidenceMethod m : new ConfidenceMethod[] {ConfidenceMethod.GATE, ConfidenceMethod.SATURATION, ConfidenceMethod.CASCADE}) {
            EarlyExitGenerator.Stats[] st = new EarlyExitGenerator.Stats[1];
            List<int[]> out = generate(EarlyExitPolicy.global(1f, LAYERS).withConfidence(m), prompts, 30, st);
            for (int i = 0; i < full.size(); i++) assertThat(out.get(i)).as("%s prompt %d", m, i).containsExactly(full.get(i));
            assertThat(st[0].headEvaluations()).as(m.label()).isZero();
        }
    }

    @Test
    void theHeadRunsOnlyForRowsWhoseScorePasses() {
        for (ConfidenceMethod m : new ConfidenceMethod[] {ConfidenceMethod.GATE, ConfidenceMethod.SATURATION}) {
            EarlyExitGenerator.Stats[] st = new EarlyExitGenerator.Stats[1];
            generate(EarlyExitPolicy.global(medianScore(m), LAYERS).withConfidence(m), prompts, 30, st);
            long exits = st[0].generatedTokens() - st[0].exitCounts()[model.config().nLayers()];
            assertThat(exits).as("%s: exits fired", m).isPositive();
            assertThat(st[0].headEvaluations()).as("%s: one head evaluation per exit", m).isEqualTo(exits);
        }
    }

    /**
     * With a cheap decision a layer head writes the K/V of every row into its own cache and runs the rest of its layer
     * only for the rows that take the head ({@code ExitHead.writeOwnCache}): the K/V it writes alone are the bits its
     * whole layer writes, for rows of two sequences at several positions.
     */
    @Test
    void aLayerHeadsKvAloneAreTheBitsItsWholeLayerWrites() {
        ExitHead layerHead = heads.heads().stream().filter(ExitHead::hasOwnCache).findFirst().orElseThrow();
        int dim = model.config().dim(), rows = 6;
        float[] hidden = new float[rows * dim];
        java.util.Random r = new java.util.Random(3);
        for (int i = 0; i < hidden.length; i++) hidden[i] = (float) r.nextGaussian();
        int[] seqs = {0, 0, 1, 1, 1, 0}, positions = {0, 1, 0, 1, 2, 2};
        try (Scope s = Scope.of(CPU); Workspace ws = model.newWorkspace(); KvCache whole = new KvCache(model.config(), CPU, 2, 8);
             KvCache kvOnly = new KvCache(model.config(), CPU, 2, 8)) {
            for (KvCache c : List.of(whole, kvOnly)) for (Tensor t : List.of(c.layer(0).keys(), c.layer(0).values())) t.copyFrom(new float[Math.toIntExact(t.size())]);
            Tensor h = s.allocate(DType.F32, rows, dim).copyFrom(hidden);
            Workspace.Rows rs = ws.rows(seqs, positions);
            layerHead.decodeInput(s, new ExitInput(h, null, rs, whole.layer(0), ws), rows);
            layerHead.writeOwnCache(s, new ExitInput(h, null, rs, kvOnly.layer(0), ws));
            assertThat(h.toFloatArray()).as("the pass's hidden states are left alone").containsExactly(hidden);
            for (boolean keys : new boolean[] {true, false}) {
                float[] want = (keys ? whole.layer(0).keys() : whole.layer(0).values()).toFloatArray(), have = (keys ? kvOnly.layer(0).keys() : kvOnly.layer(0).values()).toFloatArray();
                int[] wantBits = new int[want.length], haveBits = new int[have.length];
                int written = 0;
                for (int i = 0; i < want.length; i++) {
                    wantBits[i] = Float.floatToRawIntBits(want[i]);
                    haveBits[i] = Float.floatToRawIntBits(have[i]);
                    if (want[i] != 0) written++;
                }
                assertThat(haveBits).as(keys ? "keys" : "values").containsExactly(wantBits);
                assertThat(written).as("values written").isEqualTo(rows * model.config().nKvHeads() * model.config().headDim());
            }
        }
    }

    @Test
    void kvCacheStaysExactAndBatchesEqualSequencesAlone() {
        for (ConfidenceMethod m : new ConfidenceMethod[] {ConfidenceMethod.GATE, ConfidenceMethod.SATURATION, ConfidenceMethod.CASCADE}) {
            // the first exit only, at a threshold few positions pass, so that many complete (have K/V in every layer)
            EarlyExitPolicy policy = m == ConfidenceMethod.CASCADE ? cascade(0.7, 0.5, LAYERS[0]) : EarlyExitPolicy.global(scoreQuantile(m, 0.9), LAYERS[0]).withConfidence(m);
            List<int[]> batch;
            int compared = 0;
            try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, prompts.size(), 128)) {
                List<GenerationResult> res = g.generate(prompts, GenerationConfig.greedy(30, Set.of()), null);
                batch = res.stream().map(GenerationResult::tokens).toList();
                int[] complete = g.completeLengths();
                for (int s = 0; s < prompts.size(); s++) {
                    if (complete[s] == 0) continue;
                    compared += complete[s];
                    EarlyExitGeneratorTest.assertCacheMatchesFreshPrefill(model, g.cache(), s, Arrays.copyOf(res.get(s).tokens(), complete[s]), m + " seq " + s);
                }
            }
            assertThat(compared).as("%s: complete positions compared", m).isGreaterThan(20);
            for (int i = 0; i < prompts.size(); i++) {
                assertThat(generate(policy, List.of(prompts.get(i)), 30, null).get(0)).as("%s prompt %d alone", m, i).containsExactly(batch.get(i));
            }
        }
    }

    /**
     * Early-exit decoding of one sequence goes in native chunks (ee_exit_steps) where its exits keep no cache of their
     * own: the same tokens, exit layers, counts, complete lengths and cache as the Java passes step by step, for softmax,
     * gate and cascade decisions, embedding, norm and mlp heads, greedy and sampled, a stop token inside a chunk, and a
     * batch decoded together in chunks, two of whose sequences stop inside one (their rows run on there, uncounted).
     */
    @Test
    void nativeChunksEqualTheStepByStepPasses() {
        try (EarlyExitModel softmaxHeads = softmaxHeads()) {
            for (Object[] c : chunkCases(softmaxHeads)) {
                EarlyExitModel h = (EarlyExitModel) c[0];
                EarlyExitPolicy policy = (EarlyExitPolicy) c[1];
                for (boolean greedy : new boolean[] {true, false}) {
                    GenerationConfig free = greedy ? GenerationConfig.greedy(70, Set.of()) : new GenerationConfig(70, 0.9f, 0.95f, 11L, Set.of());
                    for (int batch : new int[] {1, 3}) {
                        String what = policy + (greedy ? " greedy" : " sampled") + ", batch " + batch;
                        List<int[]> ps = prompts.subList(0, batch);
                        GenerationConfig cfg = free;
                        List<GenerationResult> run = decode(h, policy, ps, free, false, null);
                        // batch 1: a stop token inside the run, after some chunks; batch 3: sequences 0 and 1 stop early, so the last goes on alone
                        int late = firstNewTokenAfter(run.get(0), ps.get(0).length, 30);
                        Set<Integer> stop = batch == 1 ? (late < 0 ? Set.of() : Set.of(late))
                            : Set.of(earlyTokenNotIn(run.get(0), ps.get(0).length, run.get(2)), earlyTokenNotIn(run.get(1), ps.get(1).length, run.get(2)));
                        cfg = new GenerationConfig(70, free.temperature(), free.topP(), free.seed(), stop);
                        Object[] stepwise = new Object[8], chunked = new Object[8];
                        List<GenerationResult> want = decode(h, policy, ps, cfg, false, stepwise), got = decode(h, policy, ps, cfg, true, chunked);
                        for (int s = 0; s < batch; s++) {
                            assertThat(got.get(s).tokens()).as("%s seq %d", what, s).containsExactly(want.get(s).tokens());
                            assertThat(got.get(s).stopReason()).as("%s seq %d", what, s).isEqualTo(want.get(s).stopReason());
                        }
                        assertSameDecodingWithExits(what, stepwise, chunked);
                    }
                }
            }
        }
    }

    /**
     * One sequence's native chunks run as a two-thread pipeline when two threads are set (cpu/exit_pipeline.c: the
     * deeper layers of each row on the second thread while the exits are decided): the same tokens, exit layers,
     * counts and heads as the serial chunks on one thread, the K/V of every complete position equal to a fresh
     * prefill's and, bit for bit, to the serial chunks', and the same row-layers once those the pending rows still owe
     * are added (the pipeline completes its rows within each call, the serial loop leaves exited rows pending), for the
     * cases of {@link #nativeChunksEqualTheStepByStepPasses}, greedy and sampled. A run the machine's load kept off the pipeline (other processes
     * busy: the serial loop) is repeated. Needs AVX2 (on the portable kernels ee_exit_steps runs serially).
     */
    @Test
    void exitPipelineGivesTheSerialChunksDecoding() {
        org.junit.jupiter.api.Assumptions.assumeTrue(CPU.features().contains(dev.eetune.backend.Backend.Feature.AVX2),
            "the pipeline needs the keys-in-lanes attention (AVX2 or AVX-512); this CPU (or EETUNE_NO_AVX2) runs the portable kernels");
        try (EarlyExitModel softmaxHeads = softmaxHeads()) {
            for (Object[] c : chunkCases(softmaxHeads)) {
                EarlyExitModel h = (EarlyExitModel) c[0];
                EarlyExitPolicy policy = (EarlyExitPolicy) c[1];
                for (GenerationConfig cfg : List.of(GenerationConfig.greedy(90, Set.of()), new GenerationConfig(90, 0.9f, 0.95f, 13L, Set.of()))) {
                    String what = policy + (cfg.isGreedy() ? " greedy" : " sampled");
                    Object[] serial = new Object[8], piped = new Object[8];
                    List<GenerationResult> want, got = null;
                    try {
                        assertThat(CPU.setThreads(1)).isEqualTo(1);
                        want = decode(h, policy, prompts.subList(0, 1), cfg, true, serial);
                        assertThat(CPU.setThreads(2)).isEqualTo(2);
                        for (int attempt = 0; attempt < 40 && (got == null || (long) piped[5] == 0); attempt++) {
                            if (attempt > 0) sleep(50); // the pool counts the machine as busy for 20 ms after the last preemptions
                            got = decode(h, policy, prompts.subList(0, 1), cfg, true, piped);
                        }
                    } finally {
                        CPU.setThreads(0);
                    }
                    assertThat((long) serial[5]).as("%s: one thread runs no pipeline", what).isZero();
                    assertThat((long) piped[5]).as("%s: steps run as a pipeline", what).isPositive();
                    assertThat(got.get(0).tokens()).as(what).containsExactly(want.get(0).tokens());
                    assertThat((int[][]) piped[0]).as("%s: exit layers", what).isDeepEqualTo((int[][]) serial[0]);
                    EarlyExitGenerator.Stats a = (EarlyExitGenerator.Stats) serial[2], b = (EarlyExitGenerator.Stats) piped[2];
                    assertThat(b.exitCounts()).as(what).containsExactly(a.exitCounts());
                    assertThat(b.headEvaluations()).as(what).isEqualTo(a.headEvaluations());
                    assertThat(b.headLayers()).as(what).isCloseTo(a.headLayers(), org.assertj.core.data.Offset.offset(1e-9));
                    assertThat(b.generatedTokens() - b.exitCounts()[model.config().nLayers()]).as("%s: exits fired", what).isPositive();
                    assertThat(b.rowLayers() + (long) piped[6]).as("%s: row-layers run and owed", what).isEqualTo(a.rowLayers() + (long) serial[6]);
                    assertThat(((int[]) piped[1])[0]).as("%s: complete length", what).isGreaterThanOrEqualTo(((int[]) serial[1])[0]);
                    @SuppressWarnings("unchecked") List<float[]> wantKv = (List<float[]>) serial[7], haveKv = (List<float[]>) piped[7];
                    for (int i = 0; i < wantKv.size(); i++) // the same bits: each layer runs a row alike whatever rows share the call
                        assertThat(Arrays.copyOf(haveKv.get(i), wantKv.get(i).length)).as("%s: layer %d %s", what, i / 2, i % 2 == 0 ? "keys" : "values").isEqualTo(wantKv.get(i));
                }
            }
        }
    }

    /** Heads for softmax decisions at exits 1, 2 and 4 (embedding, mlp, norm), beside the gated ones. */
    private static EarlyExitModel softmaxHeads() {
        return EarlyExitModel.attach(model, List.of(new ExitSpec(1, ExitArchitecture.EMBEDDING, ExitInit.COPY), new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY),
            new ExitSpec(4, ExitArchitecture.NORM, ExitInit.COPY)), 0);
    }

    /** Heads and policies the native chunks are checked with: gate, cascade and softmax decisions; embedding, norm and mlp heads. */
    private static List<Object[]> chunkCases(EarlyExitModel softmaxHeads) {
        float sm = scoreQuantile(ConfidenceMethod.SOFTMAX, 0.5);
        return List.of(new Object[] {heads, EarlyExitPolicy.global(medianScore(ConfidenceMethod.GATE), 2, 4).withConfidence(ConfidenceMethod.GATE)},
            new Object[] {heads, cascade(0.3, 0.4, 2, 4)},
            new Object[] {heads, EarlyExitPolicy.global(sm, 2, 4)},
            new Object[] {softmaxHeads, EarlyExitPolicy.global(sm, 1, 2, 4)});
    }

    /**
     * A batch's passes go in native chunks together (one ee_exit_steps run takes every live sequence): with no stop
     * token the three sequences decode most of their tokens there, and give the tokens, exit layers, complete lengths,
     * counts and cache of the Java passes step by step, for gate, cascade and softmax decisions, greedy and sampled.
     */
    @Test
    void batchesDecodeTogetherInNativeChunks() {
        List<int[]> ps = prompts.subList(0, 3);
        // thresholds most positions miss, so that rows complete and the pending ones fit a chunk's passes
        for (EarlyExitPolicy policy : List.of(EarlyExitPolicy.global(scoreQuantile(ConfidenceMethod.GATE, 0.8), 2, 4).withConfidence(ConfidenceMethod.GATE),
            cascade(0.7, 0.5, 2, 4), EarlyExitPolicy.global(scoreQuantile(ConfidenceMethod.SOFTMAX, 0.8), 2, 4))) {
            for (GenerationConfig cfg : List.of(GenerationConfig.greedy(50, Set.of()), new GenerationConfig(50, 0.9f, 0.95f, 5L, Set.of()))) {
                String what = policy + (cfg.isGreedy() ? " greedy" : " sampled");
                Object[] stepwise = new Object[8], chunked = new Object[8];
                List<GenerationResult> want = decode(heads, policy, ps, cfg, false, stepwise), got = decode(heads, policy, ps, cfg, true, chunked);
                for (int s = 0; s < ps.size(); s++) assertThat(got.get(s).tokens()).as("%s seq %d", what, s).containsExactly(want.get(s).tokens());
                assertSameDecodingWithExits(what, stepwise, chunked);
                // 3 x 49 tokens after the prefill's: one sequence alone could take at most 49 of them
                assertThat((long) chunked[4]).as("%s: tokens decoded in native chunks", what).isGreaterThan(2 * 49);
            }
        }
    }

    /**
     * Native chunks against the Java passes on random decodes (seeded): 32 draws of batch size (1-8), prompts, exits
     * (after layers 2 and/or 4), decision method and per-exit thresholds, greedy or sampled, token budgets and a stop
     * token taken from the step-by-step run; tokens, stop reasons, exit layers, complete lengths, counts and cache agree.
     */
    @Test
    void chunksEqualTheStepsOnRandomDecodes() {
        java.util.Random r = new java.util.Random(40);
        ConfidenceMethod[] methods = {ConfidenceMethod.GATE, ConfidenceMethod.CASCADE, ConfidenceMethod.SOFTMAX};
        int inChunks = 0;
        for (int trial = 0; trial < 32; trial++) {
            ConfidenceMethod method = methods[r.nextInt(methods.length)];
            int[] layers = switch (r.nextInt(4)) { case 0 -> new int[] {2}; case 1 -> new int[] {4}; default -> new int[] {2, 4}; };
            java.util.Map<Integer, Float> tau = new java.util.TreeMap<>(), confirm = new java.util.TreeMap<>();
            for (int l : layers) {
                tau.put(l, scoreQuantile(method == ConfidenceMethod.SOFTMAX ? ConfidenceMethod.SOFTMAX : ConfidenceMethod.GATE, 0.4 + 0.55 * r.nextDouble()));
                if (method == ConfidenceMethod.CASCADE) confirm.put(l, scoreQuantile(ConfidenceMethod.SOFTMAX, 0.6 * r.nextDouble()));
            }
            EarlyExitPolicy policy = new EarlyExitPolicy(tau, false, method, confirm);
            List<int[]> ps = new ArrayList<>(prompts);
            java.util.Collections.shuffle(ps, r);
            ps = ps.subList(0, 1 + r.nextInt(8)); // 8: the heads packed (EarlyExitGenerator.packHeads)
            int budget = 10 + r.nextInt(50);
            GenerationConfig free = r.nextBoolean() ? GenerationConfig.greedy(budget, Set.of()) : new GenerationConfig(budget, 0.7f + 0.5f * r.nextFloat(), 0.9f, r.nextLong(), Set.of());
            List<GenerationResult> run = decode(heads, policy, ps, free, false, null);
            GenerationResult some = run.get(r.nextInt(run.size()));
            int from = ps.get(run.indexOf(some)).length, generated = some.tokens().length - from;
            Set<Integer> stop = r.nextBoolean() && generated > 1 ? Set.of(some.tokens()[from + r.nextInt(generated)]) : Set.of();
            GenerationConfig cfg = new GenerationConfig(budget, free.temperature(), free.topP(), free.seed(), stop);
            String what = "trial " + trial + ": " + policy + ", batch " + ps.size() + ", " + cfg;
            Object[] stepwise = new Object[8], chunked = new Object[8];
            List<GenerationResult> want = decode(heads, policy, ps, cfg, false, stepwise), got = decode(heads, policy, ps, cfg, true, chunked);
            for (int q = 0; q < ps.size(); q++) {
                assertThat(got.get(q).tokens()).as("%s seq %d", what, q).containsExactly(want.get(q).tokens());
                assertThat(got.get(q).stopReason()).as("%s seq %d", what, q).isEqualTo(want.get(q).stopReason());
            }
            assertSameDecoding(what, stepwise, chunked);
            if ((long) chunked[4] > 0) inChunks++;
        }
        assertThat(inChunks).as("draws that decoded tokens in native chunks").isGreaterThanOrEqualTo(20);
    }

    /**
     * A generator prepares its native chunks' calls once per generation (Ops.prepareDecodeSteps / prepareExitSteps)
     * and reuses them: one generator driven through calls that change what a prepared call holds (greedy and sampled,
     * the batch size, plain and early exit) gives what a fresh generator gives for each; and a prompt longer than a
     * chunk's rows, whose prefill regrows the scratch the prepared calls point into, decodes in chunks with new ones as
     * the passes step by step do.
     */
    @Test
    void preparedChunkCallsAreRemadeWhereTheirArgumentsChange() {
        EarlyExitPolicy gate = EarlyExitPolicy.global(medianScore(ConfidenceMethod.GATE), 2, 4).withConfidence(ConfidenceMethod.GATE);
        GenerationConfig greedy = GenerationConfig.greedy(40, Set.of()), sampled = new GenerationConfig(40, 0.9f, 0.95f, 7L, Set.of());
        record Call(EarlyExitPolicy policy, List<int[]> prompts, GenerationConfig cfg) {}
        for (EarlyExitPolicy policy : List.of(gate, EarlyExitPolicy.none())) {
            List<Call> calls = List.of(new Call(policy, prompts.subList(0, 1), greedy), new Call(policy, prompts.subList(0, 3), sampled),
                new Call(policy, prompts.subList(1, 2), sampled), new Call(policy, prompts.subList(0, 2), greedy));
            try (EarlyExitGenerator reused = new EarlyExitGenerator(model, heads, policy, 3, 128)) {
                for (Call c : calls) {
                    List<GenerationResult> got = reused.generate(c.prompts(), c.cfg(), null), want = decode(heads, policy, c.prompts(), c.cfg(), true, null);
                    for (int i = 0; i < want.size(); i++) assertThat(got.get(i).tokens()).as("%s, call %s, seq %d", policy, c, i).containsExactly(want.get(i).tokens());
                }
            }
        }
        // a prompt longer than a chunk's rows: its prefill, after the calls were prepared, regrows the scratch they point into
        int[] longPrompt = Arrays.copyOf(storyTokens, 70);
        EarlyExitPolicy oneExit = EarlyExitPolicy.global(medianScore(ConfidenceMethod.GATE), 2).withConfidence(ConfidenceMethod.GATE); // rows complete often enough for chunks to follow
        for (EarlyExitPolicy policy : List.of(oneExit, EarlyExitPolicy.none())) {
            Object[] stepwise = new Object[8], chunked = new Object[8];
            List<GenerationResult> want = decode(heads, policy, List.of(longPrompt), greedy, false, stepwise), got = decode(heads, policy, List.of(longPrompt), greedy, true, chunked);
            assertThat(got.get(0).tokens()).as("%s, a 70-token prompt", policy).containsExactly(want.get(0).tokens());
            assertSameDecoding(policy + ", a 70-token prompt", stepwise, chunked);
            if (policy == oneExit) assertThat((long) chunked[3]).as("ee_exit_steps calls: the one before the prefill and chunks after it").isGreaterThan(1);
        }
    }

    /**
     * A prepared ee_exit_steps call: runs of 2 + 2 steps give what one run of 4 gives (the same tokens; on one thread the
     * same state too, while on two the pipeline, which may stand aside for a busy machine in one run and not the other,
     * completes every row), more steps than it holds are refused, and once a tensor it points into is closed it says so
     * (isOpen) and refuses to run instead of reading freed memory; the same for ee_decode_steps.
     */
    @Test
    void preparedCallsRunInPiecesAndRefuseClosedTensors() {
        int dim = model.config().dim(), vocab = model.config().vocabSize(), maxLen = 32, cap = 8;
        try (Scope s = Scope.of(CPU); Workspace ws = model.newWorkspace(); KvCache cache = new KvCache(model.config(), CPU, 1, maxLen)) {
            List<dev.eetune.backend.Ops.ExitStep> exits = List.of(heads.head(2).decodeStep(heads.gate(2), 0.5f, 0f), heads.head(4).decodeStep(heads.gate(4), 0.5f, 0f));
            Tensor x = s.allocate(DType.F32, cap, dim), normed = s.allocate(DType.F32, 1, dim), logits = s.allocate(DType.F32, 1, vocab);
            Tensor ids = s.allocate(DType.I32, 1), out = s.allocate(DType.I32, 4), seq = s.of(new int[cap], cap), pos = s.allocate(DType.I32, cap);
            Tensor score = s.allocate(DType.F32, 2), chosen = s.allocate(DType.I32, 1), pre = s.allocate(DType.F32, 1, dim), z = s.allocate(DType.F32, 1, dim);
            Scope statesScope = s.child();
            Tensor states = statesScope.allocate(DType.F32, maxLen, dim);
            dev.eetune.backend.Ops.ExitStepsCall call = model.prepareExitSteps(ids, out, seq, pos, null, 1f, 1f, cache, ws, x, normed, logits,
                dev.eetune.backend.Ops.ExitMethod.GATE, exits, states, score, chosen, pre, z);
            int[] record = new int[4 * call.recordStride()];
            for (int threads : new int[] {1, 2}) {
                int[] whole = exitState(maxLen, 1, 0), pieces = exitState(maxLen, 1, 0);
                int[] tokens4, first, second;
                try {
                    CPU.setThreads(threads);
                    ids.copyFrom(new int[] {5});
                    call.run(4, whole, record);
                    tokens4 = out.toIntArray();
                    ids.copyFrom(new int[] {5});
                    call.run(2, pieces, record);
                    first = Arrays.copyOf(out.toIntArray(), 2);
                    ids.copyFrom(new int[] {first[1]});
                    call.run(2, pieces, record);
                    second = Arrays.copyOf(out.toIntArray(), 2);
                } finally {
                    CPU.setThreads(0);
                }
                assertThat(whole[0]).as("%d thread(s): steps run", threads).isEqualTo(4);
                assertThat(new int[] {first[0], first[1], second[0], second[1]}).as("%d thread(s): 2 + 2 steps against 4", threads).containsExactly(tokens4);
                if (threads == 1) {
                    assertThat(Arrays.copyOfRange(pieces, 6, 6 + maxLen)).as("layers done per position").containsExactly(Arrays.copyOfRange(whole, 6, 6 + maxLen));
                    assertThat(pieces[4]).as("complete length").isEqualTo(whole[4]);
                }
            }
            assertThatThrownBy(() -> call.run(5, exitState(maxLen, 1, 0), new int[5 * call.recordStride()])).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("5 steps, this call holds 0..4");
            assertThat(call.isOpen()).isTrue();
            statesScope.close();
            assertThat(call.isOpen()).isFalse();
            assertThatThrownBy(() -> call.run(1, exitState(maxLen, 1, 0), record)).isInstanceOf(IllegalStateException.class).hasMessageContaining("used after it was closed");

            Scope outScope = s.child();
            Tensor outs = outScope.allocate(DType.I32, 3), rowPos = outScope.allocate(DType.I32, 3);
            dev.eetune.backend.Ops.DecodeStepsCall plain = model.prepareDecodeSteps(ids, outs, s.of(new int[1], 1), rowPos, null, 1f, 1f, cache, ws, x, normed, logits);
            assertThat(plain.maxSteps()).isEqualTo(3);
            rowPos.copyFrom(new int[] {0, 1, 2});
            plain.run(3);
            assertThatThrownBy(() -> plain.run(4)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("4 steps, this call holds 0..3");
            outScope.close();
            assertThat(plain.isOpen()).isFalse();
            assertThatThrownBy(() -> plain.run(1)).isInstanceOf(IllegalStateException.class).hasMessageContaining("used after it was closed");
        }
    }

    /** ee_exit_steps' plans are checked: in Java before the call (shapes, order, gates), in the library (the pending rows' state). */
    @Test
    void exitStepsRefusesBadPlansWithClearErrors() {
        int dim = model.config().dim(), vocab = model.config().vocabSize(), maxLen = 32, cap = 4;
        try (Scope s = Scope.of(CPU); Workspace ws = model.newWorkspace(); KvCache cache = new KvCache(model.config(), CPU, 1, maxLen)) {
            ExitHead mlp = heads.head(2), norm = heads.head(4);
            List<dev.eetune.backend.Ops.ExitStep> good = List.of(mlp.decodeStep(heads.gate(2), 0.5f, 0f), norm.decodeStep(heads.gate(4), 0.5f, 0f));
            Tensor x = s.allocate(DType.F32, cap, dim), normed = s.allocate(DType.F32, 1, dim), logits = s.allocate(DType.F32, 1, vocab);
            Tensor ids = s.of(new int[] {5}, 1), out = s.allocate(DType.I32, 4), seq = s.of(new int[cap], cap), pos = s.allocate(DType.I32, cap);
            Tensor states = s.allocate(DType.F32, maxLen, dim), score = s.allocate(DType.F32, 2), chosen = s.allocate(DType.I32, 1);
            Tensor pre = s.allocate(DType.F32, 1, dim), z = s.allocate(DType.F32, 1, dim);
            java.util.function.BiConsumer<List<dev.eetune.backend.Ops.ExitStep>, int[]> run = (exits, state) -> model.prepareExitSteps(ids, out, seq, pos, null, 1f, 1f, cache, ws, x,
                normed, logits, dev.eetune.backend.Ops.ExitMethod.GATE, exits, states, score, chosen, pre, z).run(4, state, new int[4 * dev.eetune.backend.Ops.EXIT_RECORD]);
            int[] state = exitState(maxLen, 1, 0);
            run.accept(good, state); // a valid plan runs
            assertThat(state[0]).as("steps run").isPositive();
            assertThatThrownBy(() -> run.accept(List.of(good.get(1), good.get(0)), exitState(maxLen, 1, 0))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("exitSteps: exit after layer 2: exits must be in increasing layer order");
            assertThatThrownBy(() -> run.accept(List.of(mlp.decodeStep(null, 0.5f, 0f)), exitState(maxLen, 1, 0))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("GATE decisions need a gate");
            assertThatThrownBy(() -> run.accept(good, new int[maxLen])).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("state must hold 3 + 1 x (3 + max_len) = 38 values");
            int[] two = exitState(maxLen, 1, 0);
            two[1] = 2;
            assertThatThrownBy(() -> run.accept(good, two)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("2 sequences, this call holds 1..1");
            assertThatThrownBy(() -> run.accept(good, exitState(maxLen, 1, 3))).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cache slot 3, the cache has 1");
            dev.eetune.model.ScoreScreen screen = dev.eetune.model.ScoreScreen.of(CPU.ops(), norm.lmHead().value(), s);
            assertThatThrownBy(() -> run.accept(List.of(good.get(0), good.get(1).screened(screen.scores(), screen.radius(), 1.01f)), exitState(maxLen, 1, 0)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("exit after layer 4): a head's screen serves softmax decisions only, not GATE");
            for (int threads : new int[] {1, 2}) { // serially and as a pipeline: the same clear error at the cache's end
                try {
                    CPU.setThreads(threads);
                    int[] nearEnd = exitState(maxLen, maxLen - 1, 0);
                    nearEnd[4] = maxLen - 2; // complete up to the newest position
                    assertThatThrownBy(() -> run.accept(good, nearEnd)).as("%d thread(s)", threads).hasMessageContaining("ee_exit_steps: step 2, sequence 0")
                        .hasMessageContaining("length 33, max_len 32");
                    int[] overrun = exitState(maxLen, 3, 0); // position 1 pending after every layer: not a pending row
                    overrun[4] = 1;
                    overrun[6 + 1] = model.config().nLayers();
                    assertThatThrownBy(() -> run.accept(good, overrun)).as("%d thread(s)", threads)
                        .hasMessageContaining("ee_exit_steps: step 0, sequence 0: pending position 1 has run " + model.config().nLayers() + " layers");
                } finally {
                    CPU.setThreads(0);
                }
            }
            int[] broken = exitState(maxLen, 3, 0); // positions 0 and 1 pending, but never through a layer
            assertThatThrownBy(() -> run.accept(good, broken)).hasMessageContaining("ee_exit_steps").hasMessageContaining("sequence 0: pending position 0 has run 0 layers");
            // two sequences in one call must be two cache slots
            try (KvCache pair = new KvCache(model.config(), CPU, 2, maxLen)) {
                Tensor ids2 = s.of(new int[] {5, 6}, 2), out2 = s.allocate(DType.I32, 8), states2 = s.allocate(DType.F32, 2 * maxLen, dim);
                dev.eetune.backend.Ops.ExitStepsCall call = model.prepareExitSteps(ids2, out2, seq, pos, null, 1f, 1f, pair, ws, x, s.allocate(DType.F32, 2, dim),
                    s.allocate(DType.F32, 2, vocab), dev.eetune.backend.Ops.ExitMethod.GATE, good, states2, s.allocate(DType.F32, 3), s.allocate(DType.I32, 2),
                    s.allocate(DType.F32, 2, dim), s.allocate(DType.F32, 2, dim));
                int[] same = new int[call.stateSize()];
                same[1] = 2;
                for (int i = 0; i < 2; i++) {
                    same[3 + i * (3 + maxLen)] = 1;
                    same[3 + i * (3 + maxLen) + 2] = 1;
                }
                assertThatThrownBy(() -> call.run(2, same, new int[2 * call.recordStride()])).hasMessageContaining("ee_exit_steps: sequences 0 and 1 share cache slot 1");
            }
        }
    }

    /**
     * What {@link #decode} recorded of the Java passes step by step and of the native chunks agrees: exit layers,
     * complete lengths, counts; the passes made no native chunk call.
     */
    private static void assertSameDecoding(String what, Object[] stepwise, Object[] chunked) {
        assertThat((int[][]) chunked[0]).as("%s: exit layers", what).isDeepEqualTo((int[][]) stepwise[0]);
        EarlyExitGenerator.Stats a = (EarlyExitGenerator.Stats) stepwise[2], b = (EarlyExitGenerator.Stats) chunked[2];
        if ((long) chunked[5] == 0) {
            assertThat((int[]) chunked[1]).as("%s: complete lengths", what).containsExactly((int[]) stepwise[1]);
            assertThat(b.rowLayers()).as(what).isEqualTo(a.rowLayers());
        } else { // the pipeline completes its rows within the call, the passes may leave exited ones pending
            int[] want = (int[]) stepwise[1], got = (int[]) chunked[1];
            for (int s = 0; s < want.length; s++) assertThat(got[s]).as("%s: complete length of seq %d", what, s).isGreaterThanOrEqualTo(want[s]);
            assertThat(b.rowLayers()).as(what).isGreaterThanOrEqualTo(a.rowLayers());
        }
        assertThat(b.exitCounts()).as(what).containsExactly(a.exitCounts());
        assertThat(b.headEvaluations()).as(what).isEqualTo(a.headEvaluations());
        assertThat(b.headLayers()).as(what).isCloseTo(a.headLayers(), org.assertj.core.data.Offset.offset(1e-9));
        assertThat((long) stepwise[3]).isZero();
    }

    /** {@link #assertSameDecoding}, and the chunks ran and exits fired (so the comparison compared something). */
    private static void assertSameDecodingWithExits(String what, Object[] stepwise, Object[] chunked) {
        assertSameDecoding(what, stepwise, chunked);
        EarlyExitGenerator.Stats b = (EarlyExitGenerator.Stats) chunked[2];
        assertThat((long) chunked[3]).as("%s: native chunks ran", what).isPositive();
        long exited = 0;
        for (int l = 1; l < model.config().nLayers(); l++) exited += b.exitCounts()[l];
        assertThat(exited).as("%s: exits fired", what).isPositive();
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** A prepared ee_exit_steps call's state for one sequence in cache slot {@code slot}, {@code length} tokens long, none complete. */
    private static int[] exitState(int maxLen, int length, int slot) {
        int[] state = new int[3 + 3 + maxLen];
        state[1] = 1;
        state[3] = slot;
        state[5] = length;
        return state;
    }

    /** The first token {@code r} generates at least {@code after} tokens past {@code from} that it had not generated before, or -1. */
    private static int firstNewTokenAfter(GenerationResult r, int from, int after) {
        Set<Integer> seen = new java.util.HashSet<>();
        for (int i = from; i < r.tokens().length; i++) {
            if (i >= from + after && !seen.contains(r.tokens()[i])) return r.tokens()[i];
            seen.add(r.tokens()[i]);
        }
        return -1; // a greedy loop: no stop token (the sampled runs meet one)
    }

    /** The first token that {@code r} generates (from position {@code from}) and {@code other} does not. */
    private static int earlyTokenNotIn(GenerationResult r, int from, GenerationResult other) {
        Set<Integer> seen = new java.util.HashSet<>();
        for (int t : other.tokens()) seen.add(t);
        for (int i = from; i < r.tokens().length; i++) if (!seen.contains(r.tokens()[i])) return r.tokens()[i];
        throw new AssertionError("every token of one sequence appears in the other");
    }

    /**
     * Decodes with native chunks on or off; {@code out}: exit layers, complete lengths, stats, ee_exit_steps calls,
     * tokens decoded in chunks, steps run as a pipeline, the row-layers the pending rows still owe; the cache of every
     * complete position checked against a fresh prefill.
     */
    private static List<GenerationResult> decode(EarlyExitModel h, EarlyExitPolicy policy, List<int[]> ps, GenerationConfig cfg, boolean chunks, Object[] out) {
        long pipelined = CPU.exitPipelineSteps();
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, h, policy, ps.size(), 128); dev.eetune.backend.KernelProfile profile = CPU.ops().profile()) {
            g.nativeChunks(chunks);
            List<GenerationResult> res = g.generate(ps, cfg, null);
            if (out != null) {
                out[0] = g.lastExitLayers();
                out[1] = g.completeLengths();
                out[2] = g.lastStats();
                out[3] = profile.calls("ee_exit_steps");
                out[4] = g.nativeExitStepsRun;
                out[5] = CPU.exitPipelineSteps() - pipelined;
                long owed = 0;
                for (int s = 0; s < ps.size(); s++) {
                    int[] done = g.doneLayers(s);
                    for (int p = g.completeLengths()[s]; p < res.get(s).tokens().length - 1; p++) owed += model.config().nLayers() - done[p];
                }
                out[6] = owed;
                List<float[]> kv = new ArrayList<>(); // sequence 0's K/V of its complete positions, layer by layer
                for (int l = 0; l < model.config().nLayers(); l++) {
                    kv.add(g.cache().keys(l).get(0).slice(0, g.completeLengths()[0]).toFloatArray());
                    kv.add(g.cache().values(l).get(0).slice(0, g.completeLengths()[0]).toFloatArray());
                }
                out[7] = kv;
                int[] complete = g.completeLengths();
                for (int s = 0; s < ps.size(); s++) {
                    if (complete[s] > 0) EarlyExitGeneratorTest.assertCacheMatchesFreshPrefill(model, g.cache(), s, Arrays.copyOf(res.get(s).tokens(), complete[s]), policy + " seq " + s);
                }
            }
            return res;
        }
    }

    /**
     * The next token of {@code prefix} by a stateless full-prefix pass that applies {@code policy}'s rule
     * ({@link EarlyExitPolicy#exits}: the cheap score and the head's max softmax probability of the last row) at each
     * enabled exit: what the decoder must produce.
     */
    private static int oracleNext(int[] prefix, EarlyExitPolicy policy, int n) {
        try (Scope s = Scope.of(CPU); Workspace ws = model.newWorkspace(); KvCache kv = new KvCache(model.config(), CPU, 1, n);
             KvCache headKv = KvCache.scratch(model.config(), CPU, 1, n)) {
            int[] pos = new int[n];
            for (int i = 0; i < n; i++) pos[i] = i;
            Workspace.Rows rows = ws.rows(prefix, new int[n], pos);
            Tensor x = ws.x(n);
            model.embed(x, rows);
            int[] answer = {-1};
            Tensor idx = s.of(new int[] {n - 1}, 1);
            float[][] before = new float[1][];
            heads.run(new Pass(x, rows), kv, 0, model.config().nLayers(), ws, new ExitVisitor() {
                @Override
                public Pass beforeLayer(int layer, Pass pass) {
                    before[0] = pass.x().toFloatArray();
                    return pass;
                }

                @Override
                public KvCache.Layer ownCache(ExitHead head) { return headKv.layer(0); }

                @Override
                public Pass atExit(ExitHead h, ExitInput in, Pass pass) {
                    if (!policy.canExit(h.layer())) return pass;
                    Tensor all = h.decodeLogits(s, in, n);
                    float[] score = policy.confidence().isCheap() ? ExitScores.cheap(policy.confidence(), heads.gate(h.layer()), h, s.allocate(DType.F32, n), in, before[0], n) : new float[n];
                    Tensor logits = s.allocate(DType.F32, 1, model.config().vocabSize()), am = s.allocate(DType.I32, 1), mp = s.allocate(DType.F32, 1);
                    CPU.ops().gatherRows(logits, all, idx);
                    CPU.ops().argmax(am, mp, logits, h.temperature());
                    if (!policy.exits(h.layer(), score[n - 1], mp.toFloatArray()[0])) return pass;
                    CPU.ops().argmax(am, null, logits, 1f);
                    answer[0] = am.toIntArray()[0];
                    return null;
                }
            });
            if (answer[0] >= 0) return answer[0];
            Tensor last = s.allocate(DType.F32, 1, model.config().dim()), logits = s.allocate(DType.F32, 1, model.config().vocabSize()), am = s.allocate(DType.I32, 1);
            CPU.ops().gatherRows(last, x, idx);
            model.logits(logits, last, s.allocate(DType.F32, 1, model.config().dim()));
            CPU.ops().argmax(am, null, logits, 1f);
            return am.toIntArray()[0];
        }
    }

    /** Every method's decoded stream equals the stateless oracle's, token by token (cascade: gate AND softmax pass). */
    @Test
    void theStreamEqualsAStatelessOracle() {
        int steps = 12;
        for (EarlyExitPolicy policy : List.of(EarlyExitPolicy.global(medianScore(ConfidenceMethod.GATE), LAYERS).withConfidence(ConfidenceMethod.GATE),
                EarlyExitPolicy.global(medianScore(ConfidenceMethod.SATURATION), LAYERS).withConfidence(ConfidenceMethod.SATURATION),
                cascade(0.3, 0.5, LAYERS))) {
            EarlyExitGenerator.Stats[] st = new EarlyExitGenerator.Stats[1];
            for (int i = 0; i < 2; i++) {
                int[] p = prompts.get(i), out = generate(policy, List.of(p), steps, st).get(0);
                int[] seq = Arrays.copyOf(p, p.length + steps);
                int len = p.length;
                for (int step = 0; step < steps; step++) seq[len] = oracleNext(Arrays.copyOf(seq, len), policy, len++);
                assertThat(out).as("%s prompt %d", policy.confidence(), i).containsExactly(seq);
            }
        }
    }

    /**
     * Cascade: the head runs for exactly the rows whose gate passes (each evaluated once), and a row exits only if its
     * softmax passes too: fewer exits than head evaluations when the softmax threshold is strict.
     */
    @Test
    void theCascadeRunsTheHeadOnGatePassingRowsAndExitsOnlyWhereTheSoftmaxConfirms() {
        EarlyExitGenerator.Stats[] loose = new EarlyExitGenerator.Stats[1], strict = new EarlyExitGenerator.Stats[1];
        generate(cascade(0.3, 0.0, LAYERS[0]), prompts, 30, loose);
        generate(cascade(0.3, 0.8, LAYERS[0]), prompts, 30, strict);
        long looseExits = loose[0].exitCounts()[LAYERS[0]], strictExits = strict[0].exitCounts()[LAYERS[0]];
        assertThat(looseExits).as("softmax threshold 0 confirms every gate-passing row").isEqualTo(loose[0].headEvaluations()).isPositive();
        assertThat(strictExits).as("a strict softmax confirms fewer").isLessThan(strict[0].headEvaluations());
    }

    @Test
    void gatesSaveAndLoadWithTheHeadsAndHeadsWithoutGatesStillLoad(@TempDir Path dir) throws Exception {
        Path withGates = dir.resolve("gated.safetensors"), plain = dir.resolve("plain.safetensors");
        heads.save(withGates, DType.F32);
        try (EarlyExitModel loaded = EarlyExitModel.load(model, withGates)) {
            assertThat(loaded.hasGates()).isTrue();
            for (int l : LAYERS) {
                assertThat(loaded.gate(l).kind()).isEqualTo(ExitGate.MLP);
                assertThat(loaded.gate(l).hiddenUnits()).isEqualTo(GateTrainer.Settings.DEFAULT_HIDDEN);
                for (int i = 0; i < 4; i++) assertThat(loaded.gate(l).parameters().get(i).value().toFloatArray()).containsExactly(heads.gate(l).parameters().get(i).value().toFloatArray());
            }
            List<int[]> a = generate(EarlyExitPolicy.global(medianScore(ConfidenceMethod.GATE), LAYERS).withConfidence(ConfidenceMethod.GATE), prompts.subList(0, 2), 10, null);
            try (EarlyExitGenerator g = new EarlyExitGenerator(model, loaded, EarlyExitPolicy.global(medianScore(ConfidenceMethod.GATE), LAYERS).withConfidence(ConfidenceMethod.GATE), 2, 128)) {
                List<int[]> b = g.generate(prompts.subList(0, 2), GenerationConfig.greedy(10, Set.of()), null).stream().map(GenerationResult::tokens).toList();
                for (int i = 0; i < 2; i++) assertThat(b.get(i)).containsExactly(a.get(i));
            }
        }
        try (EarlyExitModel bare = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY)), 0)) {
            bare.save(plain, DType.F32);
        }
        try (EarlyExitModel loaded = EarlyExitModel.load(model, plain)) {
            assertThat(loaded.hasGates()).isFalse();
            assertThatThrownBy(() -> new EarlyExitGenerator(model, loaded, EarlyExitPolicy.global(0.5f, 2).withConfidence(ConfidenceMethod.GATE), 1, 16))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("has no gate");
            try (EarlyExitGenerator g = new EarlyExitGenerator(model, loaded, EarlyExitPolicy.global(0.5f, 2), 1, 32)) { // softmax still works
                assertThat(g.generate(prompts.subList(0, 1), GenerationConfig.greedy(5, Set.of()), null).get(0).generated()).hasSize(5);
            }
        }
    }
}
