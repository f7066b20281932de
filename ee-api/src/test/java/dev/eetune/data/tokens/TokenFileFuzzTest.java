package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Corpus;
import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Fuzzing of token files, with 2- and 4-byte tokens ({@link Fuzzer}). */
class TokenFileFuzzTest {
    @TempDir
    Path dir;

    @Test
    void tokenFiles() throws IOException {
        Path narrow = TestTokenizers.byteTokens(dir, "one document\n\nand another one\n\nthird").path();
        Path text = Files.writeString(dir.resolve("wide.txt"), "wide tokens\n\nhere");
        Path wide = TokenFile.openOrBuild(Corpus.open(text, null), new TestTokenizers.Wide(), dir.resolve("wide.tokens"), 1).path();
        Path file = dir.resolve("fuzz.tokens");
        Fuzzer.Report r = Fuzzer.run("token-file", List.of(Files.readAllBytes(narrow), Files.readAllBytes(wide)), Fuzzer.bytes(64), 4_000, file, file, f -> {
            TokenFile t = TokenFile.open(f, 64); // small chunks: chunk boundaries are crossed too
            long n = t.size();
            assertThat(n).isEqualTo((Files.size(f) - (Files.size(f) - n * (t.vocabSize() <= 1 << 16 ? 2 : 4))) / (t.vocabSize() <= 1 << 16 ? 2 : 4));
            if (n > 0) {
                int[] all = new int[(int) n];
                t.read(0, all);
                assertThat(t.get(n - 1)).isEqualTo(all[all.length - 1]);
            }
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }
}
