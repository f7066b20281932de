package dev.eetune.tokenizer;

import dev.eetune.testing.TestData;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.IntStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class Llama2cTokenizerTest {
    private static Llama2cTokenizer tok;

    @BeforeAll
    static void load() { tok = Llama2cTokenizer.load(TestData.stories260KTokenizer()); }

    @Test
    void encodesTheDocumentedExample() {
        assertThat(tok.encode("Once upon a time")).containsExactly(1, 403, 407, 261, 378);
        assertThat(tok.vocabSize()).isEqualTo(512);
        assertThat(tok.bos()).isEqualTo(1);
        assertThat(tok.eos()).isEqualTo(2);
    }

    @Test
    void matchesIdsFromAPythonPortOfRunC() {
        // expected ids computed by a straight Python transcription of llama2.c's encode()
        assertThat(tok.encode("I love 😀 and café!")).containsExactly(1, 359, 401, 360, 410, 243, 162, 155, 131, 269, 280, 412, 431, 485, 443);
        assertThat(tok.encode("Tom said, \"Hi!\"\nThe end.")).containsExactly(1, 274, 287, 336, 432, 313, 440, 417, 443, 436, 13, 434, 260, 344, 264, 426);
        assertThat(tok.encode("")).containsExactly(1);
        assertThat(tok.encode("", false, true)).isEmpty();
    }

    @Test
    void bytesOfCharactersMissingFromTheVocabularyFallBackToBytePieces() {
        String text = "A dragon 🐉 said 你好.";
        int[] ids = tok.encode(text);
        byte[] dragon = "🐉".getBytes(StandardCharsets.UTF_8);
        int[] expectedBytes = IntStream.range(0, dragon.length).map(i -> (dragon[i] & 0xFF) + 3).toArray();
        assertThat(indexOf(ids, expectedBytes)).isNotNegative();
        assertThat(tok.decode(ids)).isEqualTo(text);
        // one byte of a multi-byte character cannot be shown alone
        assertThat(tok.decodeToken(ids[0], expectedBytes[0])).isEqualTo("\uFFFD");
        assertThat(tok.decodeToken(ids[0], 'A' + 3)).isEqualTo("A");
    }

    @Test
    void decodeFollowsLlama2cRules() {
        int[] ids = {1, 403, 407, 261, 378, 2};
        assertThat(tok.decode(ids)).isEqualTo("Once upon a time");
        assertThat(tok.decode(new int[] {403, 407})).isEqualTo(" Once upon"); // no BOS: the space stays
        StringBuilder streamed = new StringBuilder();
        for (int i = 1; i < ids.length; i++) streamed.append(tok.decodeToken(ids[i - 1], ids[i]));
        assertThat(streamed).hasToString("Once upon a time");
        assertThat(tok.decodeToken(-1, 1)).isEmpty();
        assertThat(tok.decodeToken(378, 403)).isEqualTo(" Once");
        assertThatThrownBy(() -> tok.decode(new int[] {1, 512})).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("512");
        assertThatThrownBy(() -> tok.decodeToken(1, -3)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("-3");
    }

    @Test
    void roundTripsATinyStoriesParagraph() throws IOException {
        String text = Files.readString(TestData.tinyStoriesValid());
        String paragraph = text.substring(0, text.indexOf("\n\n"));
        assertThat(paragraph).hasSizeGreaterThan(100);
        int[] ids = tok.encode(paragraph);
        assertThat(ids.length).isLessThan(paragraph.length() * 7 / 10); // merges happened (a 512-piece vocabulary gives ~2 bytes per token)
        assertThat(tok.decode(ids)).isEqualTo(paragraph);
    }

    @Test
    void agreesWithAStraightPortOfRunCOnRealAndRandomText() throws IOException {
        NaiveRunC naive = new NaiveRunC(TestData.stories260KTokenizer());
        List<String> texts = new ArrayList<>(Files.readAllLines(TestData.tinyStoriesValid()).subList(0, 400));
        Random rnd = new Random(42);
        String alphabet = "abcdefghijklmnopqrstuvwxyz ABC .,!?'\"\n\téü€😀你";
        for (int i = 0; i < 300; i++) {
            StringBuilder sb = new StringBuilder();
            int len = rnd.nextInt(60);
            for (int k = 0; k < len; k++) sb.appendCodePoint(alphabet.codePointAt(alphabet.offsetByCodePoints(0, rnd.nextInt(alphabet.codePointCount(0, alphabet.length())))));
            texts.add(sb.toString());
        }
        for (String t : texts) {
            assertThat(tok.encode(t)).as("encode(%s)", t).containsExactly(naive.encode(t));
            assertThat(tok.decode(tok.encode(t))).isEqualTo(t);
        }
    }

    @Test
    @Timeout(120) // a hang guard (merging that is quadratic in the text's length takes hours here), not a speed figure
    void encodesTheTwoMebibyteCorpusExactly() throws IOException {
        String corpus = Files.readString(TestData.tinyStoriesTrain());
        int[] ids = tok.encode(corpus);
        assertThat(tok.decode(ids)).isEqualTo(corpus);
        assertThat(ids.length).isBetween(corpus.length() / 3, corpus.length() * 7 / 10);
    }

    @Test
    void encodingInPartsCutBeforeSpacesEqualsEncodingTheWhole() throws IOException {
        String text = Files.readString(TestData.tinyStoriesValid()).substring(0, 60_000);
        Random rnd = new Random(7);
        List<Integer> cuts = new ArrayList<>();
        for (int i = 1; i < text.length(); i++) if (text.charAt(i) == ' ' && rnd.nextInt(8) == 0) cuts.add(i);
        cuts.add(text.length());
        List<Integer> joined = new ArrayList<>();
        int from = 0;
        for (int cut : cuts) {
            int[] part = tok.encode(text.substring(from, cut), from == 0, from == 0);
            for (int id : part) joined.add(id);
            from = cut;
        }
        assertThat(joined).containsExactly(Arrays.stream(tok.encode(text)).boxed().toArray(Integer[]::new));
    }

    @Test
    void loadPicksTheFormatAndRejectsCorruptFiles(@TempDir Path dir) throws IOException {
        byte[] bytes = Files.readAllBytes(TestData.stories260KTokenizer());
        Files.write(dir.resolve("tokenizer.bin"), bytes);
        assertThat(Tokenizer.load(dir)).isInstanceOf(Llama2cTokenizer.class);
        assertThat(Tokenizer.load(TestData.stories260KTokenizer()).encode("Once upon a time")).containsExactly(1, 403, 407, 261, 378);

        Path truncated = Files.write(dir.resolve("truncated.bin"), Arrays.copyOf(bytes, 1001));
        assertThatThrownBy(() -> Llama2cTokenizer.load(truncated)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(truncated.toString()).hasMessageContaining("token");
        Path garbage = Files.write(dir.resolve("garbage.bin"), "this is not a tokenizer".getBytes(StandardCharsets.UTF_8));
        assertThatThrownBy(() -> Tokenizer.load(garbage)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(garbage.toString());
        Path empty = Files.createDirectory(dir.resolve("empty"));
        assertThatThrownBy(() -> Tokenizer.load(empty)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("tokenizer.json");
    }

    private static int indexOf(int[] haystack, int[] needle) {
        outer:
        for (int i = 0; i + needle.length <= haystack.length; i++) {
            for (int k = 0; k < needle.length; k++) if (haystack[i + k] != needle[k]) continue outer;
            return i;
        }
        return -1;
    }

    /** llama2.c's encode() transcribed line by line (O(n^2) merge loop), as the reference. */
    private static final class NaiveRunC {
        private final List<byte[]> vocab = new ArrayList<>();
        private final List<Float> scores = new ArrayList<>();
        private final Map<String, Integer> lookup = new HashMap<>();

        NaiveRunC(Path file) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
            b.getInt();
            while (b.hasRemaining()) {
                scores.add(b.getFloat());
                byte[] piece = new byte[b.getInt()];
                b.get(piece);
                lookup.putIfAbsent(new String(piece, StandardCharsets.ISO_8859_1), vocab.size());
                vocab.add(piece);
            }
        }

        int[] encode(String text) {
            byte[] s = text.getBytes(StandardCharsets.UTF_8);
            List<Integer> tokens = new ArrayList<>();
            tokens.add(1);
            if (s.length > 0) tokens.add(lookup.get(" "));
            byte[] buf = new byte[4];
            int len = 0;
            for (int i = 0; i < s.length; i++) {
                if ((s[i] & 0xC0) != 0x80) len = 0;
                buf[len++] = s[i];
                if (i + 1 < s.length && (s[i + 1] & 0xC0) == 0x80 && len < 4) continue;
                Integer id = lookup.get(new String(buf, 0, len, StandardCharsets.ISO_8859_1));
                if (id != null) tokens.add(id);
                else for (int k = 0; k < len; k++) tokens.add((buf[k] & 0xFF) + 3);
                len = 0;
            }
            while (true) {
                float best = -1e10f;
                int bestId = -1, bestIdx = -1;
                for (int i = 0; i < tokens.size() - 1; i++) {
                    String merged = new String(vocab.get(tokens.get(i)), StandardCharsets.ISO_8859_1) + new String(vocab.get(tokens.get(i + 1)), StandardCharsets.ISO_8859_1);
                    Integer id = lookup.get(merged);
                    if (id != null && scores.get(id) > best) {
                        best = scores.get(id);
                        bestId = id;
                        bestIdx = i;
                    }
                }
                if (bestIdx == -1) break;
                tokens.set(bestIdx, bestId);
                tokens.remove(bestIdx + 1);
            }
            return tokens.stream().mapToInt(Integer::intValue).toArray();
        }
    }
}
