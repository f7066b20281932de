package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Softmax exits that screen their heads ({@code EarlyExitGenerator.headScreens}): the same tokens and exit layers as
 * with the heads' exact logits, at thresholds where some rows exit and others do not, greedy and sampled, one
 * sequence and a batch (a sampled single sequence in native exit steps, ee_exit_steps), and for a disabled head
 * evaluated for its overhead; rows are decided by the screen alone; a
 * head changed between calls is screened as it is now. A random model 64 wide with a 32768-token vocabulary, so that
 * the heads (copies of its classifier, 8 MiB each) reach {@code LlamaModel.SCREEN_MIN_BYTES}.
 */
class ScreenedSoftmaxExitTest {
    static final Backend CPU = Backends.cpu();
    static LlamaModel model;
    static EarlyExitModel heads;
    static final List<int[]> PROMPTS = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        LlamaConfig c = RandomModels.config(64, 4, 4, 4, 96, 32768, false, false, null);
        model = LlamaModel.random(c, CPU, 21, 0.3f);
        heads = EarlyExitModel.attach(model, List.of(new ExitSpec(1, ExitArchitecture.NORM, ExitInit.COPY), new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY)), 0);
        SplittableRandom r = new SplittableRandom(3);
        for (int s = 0; s < 4; s++) PROMPTS.add(new int[] {1, r.nextInt(3, 32768), r.nextInt(3, 32768)});
    }

    @AfterAll
    static void tearDown() {
        heads.close();
        model.close();
    }

    record Run(List<int[]> tokens, int[][] layers, long screened, long unscreened, int exits, long nativeSteps) {}

    static Run run(EarlyExitPolicy policy, List<int[]> prompts, GenerationConfig cfg, boolean screen) {
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, prompts.size(), 64)) {
            g.screenHeads(screen);
            List<int[]> tokens = g.generate(prompts, cfg, null).stream().map(GenerationResult::tokens).toList();
            long[] counts = g.lastStats().exitCounts();
            return new Run(tokens, g.lastExitLayers(), g.screenedHeadRows, g.unscreenedHeadRows, (int) (counts[1] + counts[2]), g.nativeExitStepsRun);
        }
    }

    @Test
    void screenedExitsDecideAsTheExactLogitsDo() {
        int exitsSeen = 0, keptSeen = 0, nativeScreened = 0;
        for (float tau : new float[] {0.02f, 0.05f, 0.2f}) {
            for (EarlyExitPolicy policy : new EarlyExitPolicy[] {EarlyExitPolicy.global(tau, 1, 2), EarlyExitPolicy.global(tau, 2).evaluatingDisabledHeads()}) {
                for (GenerationConfig cfg : new GenerationConfig[] {GenerationConfig.greedy(40, Set.of()), new GenerationConfig(40, 0.9f, 0.95f, 5L, Set.of())}) {
                    for (List<int[]> prompts : List.of(PROMPTS.subList(0, 1), PROMPTS)) {
                        String what = policy + ", " + (cfg.isGreedy() ? "greedy" : "sampled") + ", batch " + prompts.size();
                        Run exact = run(policy, prompts, cfg, false), screened = run(policy, prompts, cfg, true);
                        assertThat(exact.screened() + exact.unscreened()).as("screened rows with the screens off, %s", what).isZero();
                        for (int s = 0; s < prompts.size(); s++) assertThat(screened.tokens().get(s)).as("%s, sequence %d", what, s).containsExactly(exact.tokens().get(s));
                        assertThat(screened.layers()).as("exit layers, %s", what).isDeepEqualTo(exact.layers());
                        exitsSeen += screened.exits();
                        keptSeen += screened.screened() > 0 ? 1 : 0;
                        nativeScreened += screened.nativeSteps() > 0 && screened.screened() > 0 ? 1 : 0; // sampled single sequences: ee_exit_steps screens
                        System.out.printf("tau %s, %s: %d exits, %d rows screened, %d after the screen%n", tau, what, screened.exits(), screened.screened(), screened.unscreened());
                    }
                }
            }
        }
        assertThat(exitsSeen).as("exits taken across the runs").isGreaterThan(20);
        assertThat(keptSeen).as("runs in which the screen decided rows").isGreaterThan(12);
        assertThat(nativeScreened).as("runs whose native exit steps screened rows").isGreaterThanOrEqualTo(2);
    }

    @Test
    void shortCallsKeepTheExactHeads() {
        Run run = run(EarlyExitPolicy.global(0.2f, 1, 2), PROMPTS, GenerationConfig.greedy(EarlyExitGenerator.SCREEN_MIN_TOKENS - 1, Set.of()), true);
        assertThat(run.screened() + run.unscreened()).as("rows screened in a call of %d new tokens", EarlyExitGenerator.SCREEN_MIN_TOKENS - 1).isZero();
    }

    @Test
    void aHeadChangedBetweenCallsIsScreenedAsItIsNow() {
        Tensor w = heads.head(2).lmHead().value();
        float[] saved = w.toFloatArray();
        EarlyExitPolicy policy = EarlyExitPolicy.global(0.02f, 2);
        GenerationConfig cfg = GenerationConfig.greedy(40, Set.of()); // EarlyExitGenerator.SCREEN_MIN_TOKENS and more
        try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, policy, 4, 64)) {
            g.generate(PROMPTS, cfg, null);
            assertThat(g.lastStats().exitCounts()[2]).as("exits after layer 2 before the change").isPositive();
            float[] sharp = saved.clone();
            for (int i = 0; i < sharp.length; i++) sharp[i] *= 8; // logits 8x apart: a head sure of every token
            w.copyFrom(sharp);
            long before = g.screenedHeadRows;
            g.generate(PROMPTS, cfg, null);
            assertThat(g.lastStats().screenedHeadRows()).as("the call's screened rows in its stats").isEqualTo(g.screenedHeadRows - before).isZero(); // every row may pass
            assertThat(g.lastStats().exitCounts()[2]).as("exits after layer 2 with the sharpened head").isEqualTo(4 * 40);
            w.copyFrom(new float[saved.length]); // a zero head: every token 1/32768, below 0.02
            g.generate(PROMPTS, cfg, null);
            assertThat(g.lastStats().exitCounts()[2]).as("exits after layer 2 from a zero head").isZero();
            assertThat(g.lastStats().screenedHeadRows()).as("the call's screened rows in its stats").isEqualTo(g.lastStats().headEvaluations()).isPositive();
            assertThat(g.lastStats().toString()).contains("decided by the heads' 8-bit screens");
            assertThat(g.screenedHeadRows - before).as("rows the screens decided").isPositive();
        } finally {
            w.copyFrom(saved);
        }
    }
}
