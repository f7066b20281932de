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
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * One model and one set of exit heads shared by 8 threads, each with its own decoder (plain greedy, sampled, early
 * exits, self-speculative), 200 generations each: every output equals what one thread alone produces.
 */
class ConcurrentDecodingTest {
    static final Backend CPU = Backends.cpu();
    static final int THREADS = 8, GENERATIONS = 200, NEW_TOKENS = 8;
    static final String[] PROMPTS = {"Once upon a time", "The dog", "Lily and Tom went to the park. They", "One day", "Ben had a big red", "She was very",
        "The sun was", "Mom said"};

    @Test
    void eightThreadsDecodingWithOneModelGetWhatOneThreadGets() throws Exception {
        Tokenizer tok = Tokenizer.load(TestData.stories260KTokenizer());
        List<int[]> prompts = Arrays.stream(PROMPTS).map(tok::encode).toList();
        try (LlamaModel model = LlamaModel.load(TestData.stories260K(), CPU);
             EarlyExitModel heads = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY),
                 new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY), new ExitSpec(4, ExitArchitecture.NORM, ExitInit.COPY)), 0)) {
            GenerationConfig greedy = GenerationConfig.greedy(NEW_TOKENS, Set.of()), sampled = new GenerationConfig(NEW_TOKENS, 0.9f, 0.95f, 7, Set.of());
            // per kind: how a thread makes its decoder, and the config it decodes with
            List<Supplier<Decoder>> makers = List.of(() -> new Generator(model, 1, 64), () -> new Generator(model, 1, 64),
                () -> new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(0.2f, 2, 3, 4), 1, 64),
                () -> new SelfSpeculativeDecoder(heads, 2, 3, true, 0f, 1, 64));
            List<GenerationConfig> configs = List.of(greedy, sampled, greedy, greedy);
            int kinds = makers.size();
            int[][][] expected = new int[kinds][prompts.size()][];
            for (int k = 0; k < kinds; k++) {
                try (Decoder d = makers.get(k).get()) {
                    for (int p = 0; p < prompts.size(); p++) expected[k][p] = d.generate(List.of(prompts.get(p)), configs.get(k), null).get(0).tokens();
                }
            }
            assertThat(expected[2][0]).isNotEqualTo(expected[0][0]); // the heads fire, so early-exit threads do other work than the full model

            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            CyclicBarrier start = new CyclicBarrier(THREADS);
            List<Future<Integer>> mismatches = new ArrayList<>();
            long t0 = System.nanoTime();
            for (int t = 0; t < THREADS; t++) {
                int kind = t % kinds, offset = t;
                mismatches.add(pool.submit(() -> {
                    int wrong = 0;
                    try (Decoder d = makers.get(kind).get()) {
                        start.await();
                        for (int i = 0; i < GENERATIONS; i++) {
                            int p = (offset + i) % prompts.size();
                            if (!Arrays.equals(d.generate(List.of(prompts.get(p)), configs.get(kind), null).get(0).tokens(), expected[kind][p])) wrong++;
                        }
                    }
                    return wrong;
                }));
            }
            pool.shutdown();
            int wrong = 0;
            for (Future<Integer> f : mismatches) wrong += f.get();
            System.out.printf("ConcurrentDecodingTest: %d threads x %d generations of %d tokens, %d outputs differ from one thread's, %.1f s%n",
                THREADS, GENERATIONS, NEW_TOKENS, wrong, (System.nanoTime() - t0) / 1e9);
            assertThat(wrong).isZero();
        }
    }
}
