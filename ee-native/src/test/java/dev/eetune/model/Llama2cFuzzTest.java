package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.Generator;
import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/** Fuzzing of llama2.c checkpoints ({@link Fuzzer}): mostly their 28-byte header, and their length. */
class Llama2cFuzzTest {
    static final Backend CPU = Backends.cpu();

    @TempDir
    Path dir;

    /** A legacy llama2.c file: the header, then small random f32 weights (and the unused freq_cis). */
    static byte[] checkpoint(int dim, int hidden, int layers, int heads, int kvHeads, int vocab, int seqLen, long seed) {
        int headDim = dim / heads, kvDim = kvHeads * headDim;
        long floats = (long) Math.abs(vocab) * dim + layers * (2L * dim + 2L * dim * dim + 2L * dim * kvDim + 3L * dim * hidden) + dim + (long) seqLen * headDim
            + (vocab < 0 ? (long) -vocab * dim : 0);
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(28 + 4 * floats)).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(dim).putInt(hidden).putInt(layers).putInt(heads).putInt(kvHeads).putInt(vocab).putInt(seqLen);
        Random r = new Random(seed);
        while (b.hasRemaining()) b.putFloat((float) (0.1 * r.nextGaussian()));
        return b.array();
    }

    @Test
    void llama2cCheckpoints() {
        Path file = dir.resolve("model.bin");
        List<byte[]> seeds = List.of(checkpoint(8, 16, 2, 2, 1, 32, 8, 1), checkpoint(16, 24, 1, 4, 4, -40, 4, 2));
        Fuzzer.Report r = Fuzzer.run("llama2c-bin", seeds, Fuzzer.bytes(28), 3_000, file, file, f -> {
            try (LlamaModel m = LlamaModel.load(f, CPU); Generator g = new Generator(m, 1, 4)) { // what loads must run
                int[] out = g.generate(List.of(new int[] {1}), GenerationConfig.greedy(2, Set.of()), null).get(0).tokens();
                for (int t : out) assertThat(t).isBetween(0, m.config().vocabSize() - 1);
            }
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }
}
