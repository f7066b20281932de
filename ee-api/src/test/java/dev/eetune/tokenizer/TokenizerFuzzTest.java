package dev.eetune.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.eetune.testing.Fuzzer;
import dev.eetune.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import static org.assertj.core.api.Assertions.assertThat;

/** Fuzzing of llama2.c tokenizer.bin and Hugging Face tokenizer.json files ({@link Fuzzer}). */
class TokenizerFuzzTest {
    @TempDir
    Path dir;

    /** A llama2.c tokenizer.bin: max_token_length, then (score, length, bytes) per piece. */
    static byte[] llama2cTokenizer(List<String> pieces) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuffer b = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
        out.writeBytes(b.putInt(0, 16).array());
        for (int i = 0; i < pieces.size(); i++) {
            byte[] p = pieces.get(i).getBytes(StandardCharsets.UTF_8);
            out.writeBytes(ByteBuffer.allocate(8 + p.length).order(ByteOrder.LITTLE_ENDIAN).putFloat(-i).putInt(p.length).put(p).array());
        }
        return out.toByteArray();
    }

    @Test
    void llama2cTokenizerBins() throws IOException {
        List<String> small = new ArrayList<>(List.of("<unk>", "\n<s>\n", "\n</s>\n"));
        for (int b = 0; b < 256; b++) small.add(String.format(Locale.ROOT, "<0x%02X>", b));
        small.addAll(List.of(" ", "a", "b", "ab", " a", " ab", "é"));
        List<byte[]> seeds = new ArrayList<>(List.of(llama2cTokenizer(small), llama2cTokenizer(List.of("<unk>", "<s>", "</s>", " ", "x", " x"))));
        Path real = TestData.root().resolve("stories260K/tok512.bin"); // the real one when the shared data is there
        if (Files.isRegularFile(real)) seeds.add(Files.readAllBytes(real));
        Path file = dir.resolve("tokenizer.bin");
        Fuzzer.Report r = Fuzzer.run("tokenizer.bin", seeds, Fuzzer.bytes(16), 3_000, file, file, f -> {
            Llama2cTokenizer tok = Llama2cTokenizer.load(f);
            for (String text : new String[] {"", "ab ab a", "é x\n"}) {
                int[] ids;
                try {
                    ids = tok.encode(text);
                } catch (IllegalArgumentException e) { // documented: a character the vocabulary cannot express
                    assertThat(e).hasMessageContaining(f.toString()).hasMessageContaining("not in the vocabulary");
                    continue;
                }
                for (int id : ids) assertThat(id).isBetween(0, tok.vocabSize() - 1);
                tok.decode(ids);
            }
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }

    @Test
    void huggingFaceTokenizerJsons() throws IOException {
        Path file = dir.resolve("tokenizer.json");
        List<Fuzzer.Mutation> mutations = new ArrayList<>(Fuzzer.bytes(0));
        for (int i = 0; i < 8; i++) mutations.add(Fuzzer.json());
        Fuzzer.Report r = Fuzzer.run("tokenizer.json", List.of(new ObjectMapper().writeValueAsBytes(HfTokenizerTest.llamaStyle())), mutations, 1_200, file, file, f -> {
            try (HfTokenizer tok = HfTokenizer.load(f)) {
                int[] ids = tok.encode("the cat sat");
                for (int id : ids) assertThat(id).isBetween(0, tok.vocabSize() - 1);
            }
        });
        assertThat(r.failures()).isEmpty();
        assertThat(r.accepted()).isPositive();
        assertThat(r.refused()).isPositive();
    }
}
