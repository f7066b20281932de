package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import dev.eetune.train.TuningListener;
import org.assertj.core.api.ThrowableAssert.ThrowingCallable;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.ConcurrentModificationException;
import java.util.List;
import java.util.Set;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowable;

/**
 * A decoder or tuner used by a second thread while a call runs: the second thread's calls throw (before, they ran and
 * silently corrupted the first call's caches), and the first call's result is unharmed.
 */
class SharedDecoderTest {
    static final Backend CPU = Backends.cpu();
    static final GenerationConfig GREEDY = GenerationConfig.greedy(24, Set.of());
    static LlamaModel model;
    static EarlyExitModel heads;
    static Tokenizer tok;
    static List<int[]> prompt, other;

    @BeforeAll
    static void setUp() {
        model = LlamaModel.load(TestData.stories260K(), CPU);
        heads = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY)), 0);
        tok = Tokenizer.load(TestData.stories260KTokenizer());
        prompt = List.of(tok.encode("Once upon a time"));
        other = List.of(tok.encode("The dog ran to the park and"));
    }

    @AfterAll
    static void tearDown() {
        heads.close();
        model.close();
    }

    /** What a second thread's call did, run to its end while the caller waits. */
    static Throwable fromAnotherThread(ThrowingCallable call) throws InterruptedException {
        Throwable[] thrown = new Throwable[1];
        Thread t = new Thread(() -> thrown[0] = catchThrowable(call));
        t.start();
        t.join();
        return thrown[0];
    }

    static void assertOneThreadAtATime(Throwable t, String type) {
        assertThat(t).isInstanceOf(ConcurrentModificationException.class).hasMessageContaining("this " + type + " is in use by thread")
            .hasMessageContaining("one thread at a time");
    }

    void checkDecoder(Supplier<Decoder> make, String type) throws Exception {
        int[] expected;
        try (Decoder d = make.get()) {
            expected = d.generate(prompt, GREEDY, null).get(0).tokens();
        }
        try (Decoder d = make.get()) {
            List<Throwable> seen = new ArrayList<>();
            int[] got = d.generate(prompt, GREEDY, (seq, token) -> {
                if (!seen.isEmpty()) return;
                try {
                    seen.add(fromAnotherThread(() -> d.generate(other, GREEDY, null)));
                    seen.add(fromAnotherThread(d::close));
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            }).get(0).tokens();
            assertThat(seen).hasSize(2);
            for (Throwable t : seen) assertOneThreadAtATime(t, type);
            assertThat(got).containsExactly(expected);
            // the rule is one thread at a time, not one thread ever: another thread may use it once the call ended
            assertThat(fromAnotherThread(() -> d.generate(prompt, GREEDY, null))).isNull();
        }
    }

    @Test
    void aGeneratorUsedByTwoThreadsAtOnceRefusesTheSecond() throws Exception {
        checkDecoder(() -> new Generator(model, 1, 64), "Generator");
    }

    @Test
    void anEarlyExitGeneratorUsedByTwoThreadsAtOnceRefusesTheSecond() throws Exception {
        checkDecoder(() -> new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(0.3f, 2, 3), 1, 64), "EarlyExitGenerator");
    }

    @Test
    void aSelfSpeculativeDecoderUsedByTwoThreadsAtOnceRefusesTheSecond() throws Exception {
        checkDecoder(() -> new SelfSpeculativeDecoder(heads, 2, 3, true, 0f, 1, 64), "SelfSpeculativeDecoder");
    }

    @Test
    void aTunerUsedByTwoThreadsAtOnceRefusesTheSecond(@TempDir Path tmp) throws Exception {
        TokenFile tokens = TokenFile.openOrBuild(Corpus.open(TestData.tinyStoriesValid(), null), tok, tmp.resolve("valid.tokens"));
        try (EarlyExitModel ee = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY)), 0);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            List<Throwable> seen = new ArrayList<>();
            Tuner[] tuner = new Tuner[1];
            TuningListener listener = TuningListener.onEachStep(r -> {
                try {
                    seen.add(fromAnotherThread(tuner[0]::trainStep));
                    seen.add(fromAnotherThread(() -> tuner[0].runUntil(2)));
                    seen.add(fromAnotherThread(tuner[0]::close));
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            });
            try (Tuner t = new Tuner(ee, TunerConfig.defaults(1, 2, 32, 1e-3f), new BatchLoader(PackedSequences.of(tokens, 32, true), 2, 42), opt, List.of(listener))) {
                tuner[0] = t;
                t.run();
                assertThat(t.step()).isEqualTo(1); // the other thread's step did not run
            }
            assertThat(seen).hasSize(3);
            for (Throwable t : seen) assertOneThreadAtATime(t, "Tuner");
        }
    }
}
