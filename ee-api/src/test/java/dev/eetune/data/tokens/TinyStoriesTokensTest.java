package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Corpus;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Llama2cTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** The real corpus and tokenizer: stories260K's tok512 on TinyStories. */
class TinyStoriesTokensTest {
    @TempDir
    Path dir;

    @Test
    void trainFileTokenizesStoryByStoryWithinTheTimeBound() {
        Llama2cTokenizer tok = Llama2cTokenizer.load(TestData.stories260KTokenizer());
        Corpus corpus = Corpus.open(TestData.tinyStoriesTrain(), null);

        long start = System.nanoTime();
        TokenFile tokens = TokenFile.openOrBuild(corpus, tok, dir.resolve("train.tokens"), 2);
        double seconds = (System.nanoTime() - start) / 1e9;

        assertThat(seconds).as("seconds to tokenize 2 MiB with 2 threads").isLessThan(20);
        assertThat(tokens.documentCount()).isEqualTo(2317); // 2,316 separators
        int[] expected;
        try (Stream<String> docs = corpus.documents()) {
            expected = docs.flatMapToInt(doc -> Arrays.stream(tok.encode(doc))).toArray();
        }
        assertThat(TokenFileTest.all(tokens)).isEqualTo(expected);
        assertThat(tokens.get(0)).isEqualTo(tok.bos());
    }

    /** The splitting rule: cutting before newlines or spaces gives tok512 the tokens of the whole document. */
    @Test
    void segmentCutsDoNotChangeTheTokens() throws IOException {
        Llama2cTokenizer tok = Llama2cTokenizer.load(TestData.stories260KTokenizer());
        Path train = TestData.tinyStoriesTrain(), valid = TestData.tinyStoriesValid();

        TokenFile whole = TokenFile.openOrBuild(Corpus.open(train, null), tok, dir.resolve("whole.tokens"));
        TokenFile cut = TokenFile.openOrBuild(Corpus.open(train, null, 200), tok, dir.resolve("cut.tokens"));
        assertThat(TokenFileTest.all(cut)).isEqualTo(TokenFileTest.all(whole));

        // no markers: one 794 KB document, cut into 64 Ki-character segments, and into 1000-character ones
        String text = Files.readString(valid).replaceAll("^[\r\n]+|[\r\n]+$", "");
        int[] expected = tok.encode(text);
        TokenFile segmented = TokenFile.openOrBuild(Corpus.open(valid, null), tok, dir.resolve("valid.tokens"));
        TokenFile fine = TokenFile.openOrBuild(Corpus.open(valid, null, 1000), tok, dir.resolve("valid-fine.tokens"));
        assertThat(segmented.documentCount()).isEqualTo(1);
        assertThat(TokenFileTest.all(segmented)).isEqualTo(expected);
        assertThat(TokenFileTest.all(fine)).isEqualTo(expected);
    }
}
