package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/** Self-speculative decoding is lossless: greedy output equals the full model's; sampling follows its distribution. */
class SelfSpeculativeDecoderTest {
    static final Backend CPU = Backends.cpu();
    static LlamaModel model;
    static EarlyExitModel heads;
    static Tokenizer tok;
    static final List<int[]> prompts = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        model = LlamaModel.load(TestData.stories260K(), CPU);
        tok = Tokenizer.load(TestData.stories260KTokenizer());
        heads = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY),
            new ExitSpec(4, ExitArchitecture.NORM, ExitInit.COPY)), 0);
        for (String p : EarlyExitGeneratorTest.PROMPTS) prompts.add(tok.encode(p));
    }

    @AfterAll
    static void tearDown() {
        heads.close();
        model.close();
    }

    @Test
    void greedyOutputEqualsFullModelGreedyForEveryDrafterAndDraftLength() {
        GenerationConfig cfg = GenerationConfig.greedy(48, Set.of(tok.eos()));
        List<GenerationResult> full;
        try (Generator g = new Generator(model, 8, 128)) {
            full = g.generate(prompts, cfg, null);
        }
        int[][] cases = {{2, 3, 0}, {2, 1, 1}, {3, 4, 0}, {3, 2, 1}, {4, 6, 0}, {4, 3, 1}}; // exit, k, adaptive
        for (int[] c : cases) {
            try (SelfSpeculativeDecoder d = new SelfSpeculativeDecoder(heads, c[0], c[1], c[2] == 1, 0f, 8, 128)) {
                List<GenerationResult> spec = d.generate(prompts, cfg, null);
                for (int i = 0; i < prompts.size(); i++) {
                    assertThat(spec.get(i).tokens()).as("exit %d k %d adaptive %s prompt %d", c[0], c[1], c[2] == 1, i).containsExactly(full.get(i).tokens());
                    assertThat(spec.get(i).stopReason()).isEqualTo(full.get(i).stopReason());
                }
                SelfSpeculativeDecoder.Stats st = d.lastStats();
                assertThat(st.accepted()).isLessThanOrEqualTo(st.drafted());
                if (c[0] == 4) assertThat(st.acceptanceRate()).as("the layer-4 logit lens agrees often").isGreaterThan(0.1);
            }
        }
    }

    @Test
    void confidenceStopAndBatchOfOneStayLossless() {
        GenerationConfig cfg = GenerationConfig.greedy(40, Set.of());
        int[] full;
        try (Generator g = new Generator(model, 1, 128)) {
            full = g.generate(List.of(prompts.get(2)), cfg, null).get(0).tokens();
        }
        try (SelfSpeculativeDecoder d = new SelfSpeculativeDecoder(heads, 2, 4, true, 0.5f, 1, 128)) {
            assertThat(d.generate(List.of(prompts.get(2)), cfg, null).get(0).tokens()).containsExactly(full);
        }
    }

    /** The check of docs/self-speculation.md §3: p = (.5, .3, .2), q = (.8, .1, .1) gives P = p through accept / residual. */
    @Test
    void acceptResidualRuleReproducesTheTargetDistribution() {
        float[] p = {0.5f, 0.3f, 0.2f}, q = {0.8f, 0.1f, 0.1f};
        Random r = new Random(11);
        int n = 400_000;
        int[] counts = new int[3];
        for (int i = 0; i < n; i++) {
            int d = SpeculativeSampling.draw(q, r.nextFloat());
            int out = SpeculativeSampling.accept(p, q, d, r.nextFloat()) ? d : SpeculativeSampling.residual(p, q, r.nextFloat());
            counts[out]++;
        }
        for (int j = 0; j < 3; j++) assertThat((double) counts[j] / n).as("P(token %d)", j).isCloseTo(p[j], within(0.005));
    }

    @Test
    void samplingIsDeterministicForASeedAndDraftsFromTheProcessedDistribution() {
        GenerationConfig cfg = new GenerationConfig(30, 0.8f, 0.9f, 77L, Set.of());
        try (SelfSpeculativeDecoder d = new SelfSpeculativeDecoder(heads, 4, 3, false, 0f, 2, 128)) {
            List<GenerationResult> a = d.generate(prompts.subList(0, 2), cfg, null), b = d.generate(prompts.subList(0, 2), cfg, null);
            for (int i = 0; i < 2; i++) {
                assertThat(a.get(i).tokens()).containsExactly(b.get(i).tokens());
                assertThat(a.get(i).generated()).hasSize(30);
            }
        }
    }
}
