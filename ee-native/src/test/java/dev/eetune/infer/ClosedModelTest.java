package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.Batch;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.testing.TestData;
import dev.eetune.testing.Threads;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Closed models and heads: using them throws (before native code) instead of crashing the JVM, and closing them while
 * other threads decode waits for the running calls instead of unmapping under a kernel.
 */
class ClosedModelTest {
    static final Backend CPU = Backends.cpu();
    static final GenerationConfig GREEDY = GenerationConfig.greedy(16, Set.of());
    static List<int[]> prompt;

    @BeforeAll
    static void setUp() {
        prompt = List.of(Tokenizer.load(TestData.stories260KTokenizer()).encode("Once upon a time"));
    }

    static LlamaModel load() { return LlamaModel.load(TestData.stories260K(), CPU); }

    static EarlyExitModel heads(LlamaModel m) {
        return EarlyExitModel.attach(m, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY)), 0);
    }

    static int[] tokens(Decoder d, TokenListener listener) { return d.generate(prompt, GREEDY, listener).get(0).tokens(); }

    @Test
    void everyDecoderOfAClosedModelThrowsNamingTheModel() {
        LlamaModel m = load();
        EarlyExitModel ee = heads(m);
        List<Decoder> decoders = List.of(new Generator(m, 1, 64), new EarlyExitGenerator(m, ee, EarlyExitPolicy.global(0.2f, 2, 3), 1, 64),
            new SelfSpeculativeDecoder(ee, 2, 3, false, 0f, 1, 64));
        for (Decoder d : decoders) assertThat(tokens(d, null)).hasSizeGreaterThan(prompt.get(0).length);
        m.close(); // before: the next generate read the unmapped weights and the JVM died of SIGSEGV
        for (Decoder d : decoders) {
            assertThatThrownBy(() -> tokens(d, null)).isInstanceOf(IllegalStateException.class).hasMessageContaining("stories260K.bin").hasMessageContaining("closed");
            d.close();
        }
        try (Generator late = new Generator(m, 1, 64)) {
            assertThatThrownBy(() -> tokens(late, null)).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
        }
        ee.close();
    }

    @Test
    void decodersAndTunersOfClosedHeadsThrow() {
        try (LlamaModel m = load()) {
            EarlyExitModel ee = heads(m);
            EarlyExitGenerator g = new EarlyExitGenerator(m, ee, EarlyExitPolicy.global(0.2f, 2, 3), 1, 64);
            SelfSpeculativeDecoder sd = new SelfSpeculativeDecoder(ee, 2, 3, false, 0f, 1, 64);
            AdamW opt = AdamW.withDefaults(ee.parameters(), 0f);
            Tuner t = new Tuner(ee, TunerConfig.defaults(1, 1, 16, 1e-3f), null, opt, List.of());
            ee.close();
            for (Decoder d : List.<Decoder>of(g, sd)) assertThatThrownBy(() -> tokens(d, null)).isInstanceOf(IllegalStateException.class).hasMessage("exit heads is closed");
            int[] in = new int[16];
            assertThatThrownBy(() -> t.accumulateGradients(new Batch(in, in, 1, 16), new double[2], new long[2]))
                .isInstanceOf(IllegalStateException.class).hasMessage("exit heads is closed");
            t.close();
            opt.close();
            g.close();
            sd.close();
        }
    }

    @Test
    void closingTheModelWhileAnotherThreadGeneratesWaitsForThatCallToEnd() throws Exception {
        LlamaModel m = load();
        int[] expected;
        try (Generator g = new Generator(m, 1, 64)) {
            expected = tokens(g, null);
        }
        try (Generator g = new Generator(m, 1, 64)) {
            AtomicReference<Throwable> closeFailure = new AtomicReference<>();
            Thread closer = new Thread(m::close);
            closer.setUncaughtExceptionHandler((th, e) -> closeFailure.set(e));
            AtomicInteger emitted = new AtomicInteger();
            int[] got = tokens(g, (seq, token) -> {
                if (emitted.incrementAndGet() != 1) return;
                // closing from inside the call on its own thread would wait for itself: refused
                assertThatThrownBy(m::close).isInstanceOf(IllegalStateException.class).hasMessageContaining("this thread");
                closer.start();
                Threads.awaitBlocked(closer);
                assertThat(closer.getState()).as("close must wait for the running generate").isEqualTo(Thread.State.WAITING);
            });
            closer.join();
            assertThat(closeFailure.get()).isNull();
            assertThat(got).containsExactly(expected); // the rest of the call ran on intact weights
            assertThatThrownBy(() -> tokens(g, null)).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
        }
    }

    @Test
    void closingTheModelUnderFourDecodingThreadsEndsEachWithAResultOrAnException() throws Exception {
        LlamaModel m = load();
        EarlyExitModel ee = heads(m);
        int[] expected;
        try (Generator g = new Generator(m, 1, 64)) {
            expected = tokens(g, null);
        }
        List<Throwable> ends = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger calls = new AtomicInteger(), wrong = new AtomicInteger();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            boolean early = i % 2 == 1;
            threads.add(new Thread(() -> {
                try (Decoder d = early ? new EarlyExitGenerator(m, ee, EarlyExitPolicy.global(1f, 2, 3).evaluatingDisabledHeads(), 1, 64) : new Generator(m, 1, 64)) {
                    while (true) {
                        if (!java.util.Arrays.equals(tokens(d, null), expected)) wrong.incrementAndGet();
                        calls.incrementAndGet();
                    }
                } catch (Throwable e) {
                    ends.add(e);
                }
            }));
        }
        threads.forEach(Thread::start);
        while (calls.get() < 20) Thread.onSpinWait();
        m.close(); // at whatever point each thread is: it finishes its call, then its next call fails
        for (Thread t : threads) t.join();
        assertThat(wrong.get()).isZero();
        assertThat(ends).hasSize(4).allSatisfy(e -> assertThat(e).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed"));
        ee.close();
    }
}
