package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.Batch;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.function.IntConsumer;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * 10,000 create/use/close cycles of scopes, tensors and decoders (with 1,000 model loads and tuners, 100 of them
 * training a step: as many as fit in a few seconds) leave native memory where it was: the backend's own allocation counter exactly, the process RSS within a generous
 * bound after a warm-up (a leak of one decoder's caches per cycle would be hundreds of MiB).
 */
class NativeMemoryLeakTest {
    static final Backend CPU = Backends.cpu();
    static final int CYCLES = 10_000, TUNER_EVERY = 10, STEP_EVERY = 100, WARM_UP = 300;
    static final long RSS_BOUND = 64L << 20;
    static final Path STATUS = Path.of("/proc/self/status");
    static final int[] TUNING_TOKENS = {1, 403, 407, 261, 378, 290, 300, 1, 403, 407, 261, 378, 290, 300, 1, 403};

    @Test
    void createAndCloseCyclesLeaveNativeMemoryFlat() throws IOException {
        Path modelFile = TestData.stories260K();
        int[] prompt = Tokenizer.load(TestData.stories260KTokenizer()).encode("Once upon a time");
        GenerationConfig cfg = GenerationConfig.greedy(2, Set.of());
        try (LlamaModel model = LlamaModel.load(modelFile, CPU);
             EarlyExitModel heads = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY),
                 new ExitSpec(3, ExitArchitecture.LAYER, ExitInit.COPY)), 0)) {
            Runnable[] cycle = {
                () -> { // scopes, a child, tensors and views
                    try (Scope s = Scope.of(CPU)) {
                        Scope child = s.child();
                        Tensor a = s.of(new float[] {1, 2, 3, 4}, 2, 2), b = child.zeros(DType.F32, 2, 2);
                        CPU.ops().add(b.reshape(4), a.reshape(4), a.slice(0, 2).reshape(4));
                        s.allocate(DType.I32, 16).close();
                    }
                },
                () -> { // a decoder of each kind, in turn
                    try (Decoder d = decoder(model, heads, kind++ % 3)) {
                        d.generate(List.of(prompt), cfg, null);
                    }
                },
            };
            IntConsumer tuner = i -> {
                try (LlamaModel m = LlamaModel.load(modelFile, CPU); EarlyExitModel ee = EarlyExitModel.attach(m, List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY)), 0);
                     AdamW opt = AdamW.withDefaults(ee.parameters(), 0f); Tuner t = new Tuner(ee, TunerConfig.defaults(1, 1, 16, 1e-3f), null, opt, List.of())) {
                    if (i % STEP_EVERY == 0) t.accumulateGradients(new Batch(TUNING_TOKENS, TUNING_TOKENS, 1, 16), new double[1], new long[1]);
                }
            };
            for (int i = 0; i < WARM_UP; i++) run(cycle, tuner, i);
            long bytes0 = CPU.liveBytes(), rss0 = rss(), heap0 = heapCommitted();
            for (int i = 0; i < CYCLES; i++) run(cycle, tuner, i);
            long bytes1 = CPU.liveBytes(), rss1 = rss(), heap1 = heapCommitted();
            System.out.printf("NativeMemoryLeakTest: %d cycles (%d with a model load and a tuner, %d tuning steps): backend live bytes %d -> %d; RSS %d -> %d KiB; Java heap committed %d -> %d KiB%n",
                CYCLES, CYCLES / TUNER_EVERY, CYCLES / STEP_EVERY, bytes0, bytes1, rss0 >> 10, rss1 >> 10, heap0 >> 10, heap1 >> 10);
            assertThat(bytes1).as("backend live bytes").isEqualTo(bytes0);
            Assumptions.assumeTrue(rss0 >= 0, "RSS not checked: no " + STATUS + " (not Linux)");
            // the Java heap may grow in the loop; what it committed is not native memory of ours
            assertThat(rss1 - rss0 - Math.max(0, heap1 - heap0)).as("RSS growth outside the Java heap").isLessThan(RSS_BOUND);
        }
    }

    private int kind;

    private Decoder decoder(LlamaModel model, EarlyExitModel heads, int k) {
        return switch (k) {
            case 0 -> new Generator(model, 1, 32);
            case 1 -> new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(0.3f, 2, 3), 1, 32);
            default -> new SelfSpeculativeDecoder(heads, 2, 2, false, 0f, 1, 32);
        };
    }

    private static void run(Runnable[] cycle, IntConsumer tuner, int i) {
        for (Runnable r : cycle) r.run();
        if (i % TUNER_EVERY == 0) tuner.accept(i);
    }

    /** Resident set size in bytes after a full GC (so freed Java objects release what they hold), or -1 without /proc. */
    private static long rss() throws IOException {
        System.gc();
        if (!Files.isReadable(STATUS)) return -1;
        for (String line : Files.readAllLines(STATUS)) {
            if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
        }
        return -1;
    }

    private static long heapCommitted() { return Runtime.getRuntime().totalMemory(); }
}
