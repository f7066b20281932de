package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.backend.Ops;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitInput;
import dev.eetune.exit.ExitVisitor;
import dev.eetune.exit.Pass;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/** Early-exit decoding on stories260K: exact KV caches (P1-P4 of docs/exact-kv-recomputation.md §6), batch independence, τ = 1. */
class EarlyExitGeneratorTest {
    static final Backend CPU = Backends.cpu();
    static final String[] PROMPTS = {"Once upon a time", "The dog", "Lily and Tom went to the park. They", "One day", "Ben had a big red", "She was very",
        "The sun was", "Mom said"};
    static LlamaModel model;
    static EarlyExitModel heads;
    static Tokenizer tok;
    static List<int[]> prompts = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        model = LlamaModel.load(TestData.stories260K(), CPU);
        tok = Tokenizer.load(TestData.stories260KTokenizer());
        // copy-initialised heads: the logit lens of layers 2 (mlp), 3 (layer) and 4 (norm) already fires at low thresholds
        heads = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY),
            new ExitSpec(4, ExitArchitecture.NORM, ExitInit.COPY)), 0);
        for (String p : PROMPTS) prompts.add(tok.encode(p));
    }

    @AfterAll
    static void tearDown() {
        heads.close();
        model.close();
    }

    static GenerationConfig greedy(int n) { return GenerationConfig.greedy(n, Set.of()); }

    static List<int[]> generate(EarlyExitPolicy policy, List<int[]> ps, int n, boolean poison, EarlyExitGenerator.Stats[] stats) {
        return generate(policy, ps, greedy(n), poison, stats);
    }

    static List<int[]> generate(EarlyExitPolicy policy, List<int[]> ps, GenerationConfig cfg, EarlyExitGenerator.Stats[] stats) {
        return generate(policy, ps, cfg, false, stats);
    }

    static List<int[]> generate(EarlyExitPolicy policy, List<int[]> ps, GenerationConfig cfg, boolean poison, EarlyExitGenerator.Stats[] stats) {
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, ps.size(), 128)) {
            g.poisonSkippedKv(poison);
            List<int[]> out = g.generate(ps, cfg, null).stream().map(GenerationResult::tokens).toList();
            if (stats != null) stats[0] = g.lastStats();
            return out;
        }
    }

    @Test
    void thresholdOneReproducesTheFullModelTokenForTokenForABatchOfEight() {
        List<int[]> full;
        try (Generator g = new Generator(model, 8, 128)) {
            full = g.generate(prompts, greedy(40), null).stream().map(GenerationResult::tokens).toList();
        }
        EarlyExitGenerator.Stats[] st = new EarlyExitGenerator.Stats[1];
        List<int[]> ee = generate(EarlyExitPolicy.global(1f, 2, 3, 4).evaluatingDisabledHeads(), prompts, 40, false, st);
        for (int i = 0; i < full.size(); i++) assertThat(ee.get(i)).as(PROMPTS[i]).containsExactly(full.get(i));
        assertThat(st[0].headEvaluations()).isPositive(); // the heads ran, and never fired
        assertThat(st[0].exitCounts()[model.config().nLayers()]).isEqualTo(8 * 40);
    }

    @Test
    void batchesReadTheHeadsPackedAndDecideAsWithThePlainHeads() {
        // stories260K is 64 wide: its batches read packed matrices at every row count, and from 8 sequences the heads'
        // LM matrices are packed at the start of each call (EarlyExitGenerator.packedHeads)
        for (EarlyExitPolicy policy : new EarlyExitPolicy[] {EarlyExitPolicy.global(0.6f, 2, 3, 4), EarlyExitPolicy.global(1f, 2, 3, 4).evaluatingDisabledHeads()}) {
            List<int[]> tokens = new ArrayList<>();
            List<int[][]> layers = new ArrayList<>();
            long[] packedRows = new long[2];
            for (int on = 0; on < 2; on++) {
                try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, 8, 128)) {
                    g.packHeads(on == 1);
                    for (int call = 0; call < 2; call++) { // the second call packs again into the same copies
                        g.generate(prompts, greedy(30), null).forEach(r -> tokens.add(r.tokens()));
                        layers.add(g.lastExitLayers());
                    }
                    packedRows[on] = g.packedHeadRows;
                }
            }
            assertThat(packedRows[0]).as("rows from packed heads with packing off").isZero();
            assertThat(packedRows[1]).as("rows from packed heads").isPositive();
            for (int i = 0; i < 16; i++) assertThat(tokens.get(16 + i)).as("%s, call %d, %s", policy, i / 8, PROMPTS[i % 8]).containsExactly(tokens.get(i));
            for (int c = 0; c < 2; c++) assertThat(layers.get(2 + c)).as("exit layers, %s, call %d", policy, c).isDeepEqualTo(layers.get(c));
        }
    }

    @Test
    void packedHeadsFollowAHeadChangedBetweenCalls() {
        Tensor w = heads.head(4).lmHead().value();
        float[] saved = w.toFloatArray();
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(0.6f, 4), 8, 128)) {
            g.generate(prompts, greedy(20), null);
            assertThat(g.lastStats().exitCounts()[4]).as("exits after layer 4 before the change").isPositive();
            w.copyFrom(new float[saved.length]); // a zero head: every token 1/512, so it can no longer reach 0.6
            g.generate(prompts, greedy(20), null);
            assertThat(g.packedHeadRows).as("rows from packed heads").isPositive();
            assertThat(g.lastStats().exitCounts()[4]).as("exits after layer 4 from a stale packed copy").isZero();
        } finally {
            w.copyFrom(saved);
        }
    }

    @Test
    void kvCacheEqualsAFreshFullPrefillForSeveralThresholdsAndBatchSizes() {
        // copy-initialised heads fire a lot at low thresholds, leaving little complete; deeper exits leave more to compare
        EarlyExitPolicy[] policies = {EarlyExitPolicy.global(0.9f, 2, 3, 4), EarlyExitPolicy.global(0.6f, 3, 4), EarlyExitPolicy.global(0.3f, 4)};
        for (EarlyExitPolicy policy : policies) {
            float tau = policy.threshold(4);
            int compared = 0;
            for (int batch : new int[] {1, 3, 8}) {
                List<int[]> ps = prompts.subList(0, batch);
                try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, batch, 128)) {
                    List<GenerationResult> res = g.generate(ps, greedy(30), null);
                    EarlyExitGenerator.Stats st = g.lastStats();
                    assertThat(st.generatedTokens() - st.exitCounts()[5]).as("exits fired at tau %s", tau).isPositive();
                    int[] complete = g.completeLengths();
                    for (int s = 0; s < batch; s++) {
                        if (complete[s] == 0) continue; // everything still pending (the last passes exited early)
                        compared += complete[s];
                        assertCacheMatchesFreshPrefill(model, g.cache(), s, Arrays.copyOf(res.get(s).tokens(), complete[s]), "tau " + tau + " batch " + batch + " seq " + s);
                    }
                }
            }
            System.out.println("tau " + tau + ": compared " + compared + " complete positions");
            assertThat(compared).as("positions compared at tau %s", tau).isGreaterThan(20);
        }
    }

    /**
     * Plain decoding runs in chunks of native steps (ee_decode_steps), greedy or sampled: the same tokens, listener calls
     * and cache as the step-by-step passes (which heads evaluated but never exiting keep it to), with a stop token met
     * inside a chunk and sequences that end at different steps.
     */
    @Test
    void plainDecodeInNativeChunksEqualsTheStepByStepPasses() {
        int n = 45, p0 = prompts.get(0).length;
        for (boolean greedy : new boolean[] {true, false}) {
            GenerationConfig free = greedy ? greedy(n) : new GenerationConfig(n, 0.9f, 0.95f, 7L, Set.of());
            int[] first = generate(EarlyExitPolicy.none(), prompts.subList(0, 1), free, null).get(0);
            // a stop token sequence 0 meets within the run (maybe before step 20)
            GenerationConfig cfg = new GenerationConfig(n, free.temperature(), free.topP(), free.seed(), Set.of(first[p0 + 20]));
            for (int batch : new int[] {1, 3, 8}) {
                String what = (greedy ? "greedy" : "sampled") + ", batch " + batch;
                List<int[]> ps = prompts.subList(0, batch);
                List<GenerationResult> stepwise, chunked;
                List<List<Integer>> heardStepwise = new ArrayList<>(), heardChunked = new ArrayList<>();
                for (int s = 0; s < batch; s++) { heardStepwise.add(new ArrayList<>()); heardChunked.add(new ArrayList<>()); }
                try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(1f, 2, 3, 4).evaluatingDisabledHeads(), batch, 128)) {
                    stepwise = g.generate(ps, cfg, (s, t) -> heardStepwise.get(s).add(t));
                }
                try (EarlyExitGenerator g = new EarlyExitGenerator(model, null, EarlyExitPolicy.none(), batch, 128);
                     dev.eetune.backend.KernelProfile profile = CPU.ops().profile()) {
                    chunked = g.generate(ps, cfg, (s, t) -> heardChunked.get(s).add(t));
                    assertThat(profile.calls("ee_decode_steps")).as("%s: native chunks", what).isGreaterThan(1);
                    assertThat(profile.calls("ee_decoder_layers_fwd")).as("%s: only the prefill runs layers from Java", what).isEqualTo(1);
                    EarlyExitGenerator.Stats st = g.lastStats();
                    assertThat(st.exitCounts()[model.config().nLayers()]).isEqualTo(st.generatedTokens());
                    int[] complete = g.completeLengths();
                    for (int s = 0; s < batch; s++) {
                        int[] tokens = chunked.get(s).tokens();
                        assertThat(complete[s]).as("%s seq %d: every token but the last has run", what, s).isEqualTo(tokens.length - 1);
                        assertCacheMatchesFreshPrefill(model, g.cache(), s, Arrays.copyOf(tokens, complete[s]), what + " seq " + s);
                    }
                }
                for (int s = 0; s < batch; s++) {
                    assertThat(chunked.get(s).tokens()).as("%s seq %d", what, s).containsExactly(stepwise.get(s).tokens());
                    assertThat(chunked.get(s).stopReason()).isEqualTo(stepwise.get(s).stopReason());
                    assertThat(heardChunked.get(s)).as("%s seq %d: the listener", what, s).containsExactlyElementsOf(heardStepwise.get(s));
                }
                assertThat(chunked.get(0).stopReason()).as(what).isEqualTo(GenerationResult.StopReason.STOP_TOKEN);
            }
        }
    }

    /** The K/V of sequence {@code seq}'s complete positions in {@code cache} equal a fresh full prefill's. */
    static void assertCacheMatchesFreshPrefill(LlamaModel model, KvCache cache, int seq, int[] tokens, String what) {
        int n = tokens.length, kv = model.config().nKvHeads() * model.config().headDim();
        try (Workspace ws = model.newWorkspace(); KvCache fresh = new KvCache(model.config(), CPU, 1, n)) {
            int[] pos = new int[n];
            for (int i = 0; i < n; i++) pos[i] = i;
            Workspace.Rows rows = ws.rows(tokens, new int[n], pos);
            model.embed(ws.x(n), rows);
            model.layers(ws.x(n), rows, fresh, 0, model.config().nLayers(), ws);
            for (int l = 0; l < model.config().nLayers(); l++) {
                for (Tensor[] pair : new Tensor[][] {{cache.keys(l), fresh.keys(l)}, {cache.values(l), fresh.values(l)}}) {
                    float[] got = pair[0].get(seq).slice(0, n).toFloatArray(), want = pair[1].get(0).slice(0, n).toFloatArray();
                    double max = 0, err = 0;
                    for (int i = 0; i < want.length; i++) {
                        max = Math.max(max, Math.abs(want[i]));
                        err = Math.max(err, Math.abs(got[i] - want[i]));
                    }
                    assertThat(err).as("%s layer %d: K/V of %d complete positions vs a full prefill (%d x %d)", what, l, n, n, kv).isLessThanOrEqualTo(1e-5 * max);
                }
            }
        }
    }

    @Test
    void poisoningSkippedSlotsChangesNothing() {
        for (float tau : new float[] {0.8f, 0.4f}) {
            List<int[]> clean = generate(EarlyExitPolicy.global(tau, 2, 3, 4), prompts, 30, false, null);
            List<int[]> poisoned = generate(EarlyExitPolicy.global(tau, 2, 3, 4), prompts, 30, true, null);
            for (int i = 0; i < clean.size(); i++) assertThat(poisoned.get(i)).as("tau %s prompt %d", tau, i).containsExactly(clean.get(i));
        }
    }

    @Test
    void eachSequenceAloneEqualsTheSameSequenceInABatch() {
        List<int[]> batch = generate(EarlyExitPolicy.global(0.5f, 2, 3, 4), prompts, 30, false, null);
        for (int i = 0; i < prompts.size(); i++) {
            List<int[]> alone = generate(EarlyExitPolicy.global(0.5f, 2, 3, 4), List.of(prompts.get(i)), 30, false, null);
            assertThat(alone.get(0)).as(PROMPTS[i]).containsExactly(batch.get(i));
        }
    }

    /** P2: a stateless oracle (full prefill of the whole prefix each step, heads scanned in layer order). */
    @Test
    void greedyStreamEqualsAStatelessOracle() {
        float tau = 0.5f;
        int steps = 25;
        int[] prompt = prompts.get(0);
        int[] fast = generate(EarlyExitPolicy.global(tau, 2, 3, 4), List.of(prompt), steps, false, null).get(0);
        int[] seq = Arrays.copyOf(prompt, prompt.length + steps);
        int len = prompt.length;
        for (int step = 0; step < steps; step++) seq[len] = oracleNext(Arrays.copyOf(seq, len), tau, len++);
        assertThat(fast).containsExactly(seq);
    }

    private static int oracleNext(int[] prefix, float tau, int n) {
        Ops ops = CPU.ops();
        try (Scope s = Scope.of(CPU); Workspace ws = model.newWorkspace(); KvCache kv = new KvCache(model.config(), CPU, 1, n);
             KvCache headKv = KvCache.scratch(model.config(), CPU, 1, n)) {
            int[] pos = new int[n];
            for (int i = 0; i < n; i++) pos[i] = i;
            Workspace.Rows rows = ws.rows(prefix, new int[n], pos);
            Tensor x = ws.x(n);
            model.embed(x, rows);
            int[] answer = {-1};
            Tensor idx = s.of(new int[] {n - 1}, 1);
            heads.run(new Pass(x, rows), kv, 0, model.config().nLayers(), ws, new ExitVisitor() {
                @Override
                public KvCache.Layer ownCache(ExitHead head) { return headKv.layer(0); }

                @Override
                public Pass atExit(ExitHead h, ExitInput in, Pass pass) {
                    // all rows through the head (a LAYER head needs every row for its own cache), then the last one
                    Tensor all = h.decodeLogits(s, in, n);
                    Tensor logits = s.allocate(DType.F32, 1, model.config().vocabSize());
                    ops.gatherRows(logits, all, idx);
                    Tensor am = s.allocate(DType.I32, 1), mp = s.allocate(DType.F32, 1);
                    ops.argmax(am, mp, logits, h.temperature());
                    if (mp.toFloatArray()[0] >= tau) {
                        answer[0] = am.toIntArray()[0];
                        return null;
                    }
                    return pass;
                }
            });
            if (answer[0] >= 0) return answer[0];
            Tensor last = s.allocate(DType.F32, 1, model.config().dim()), logits = s.allocate(DType.F32, 1, model.config().vocabSize());
            ops.gatherRows(last, x, idx);
            model.logits(logits, last, s.allocate(DType.F32, 1, model.config().dim()));
            Tensor am = s.allocate(DType.I32, 1);
            ops.argmax(am, null, logits, 1f);
            return am.toIntArray()[0];
        }
    }
}
