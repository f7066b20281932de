package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.corpus.CorpusTest;
import dev.eetune.tokenizer.ByteTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class TokenFileTest {
    private static final int BOS = ByteTokenizer.BOS;

    @TempDir
    Path dir;

    @Test
    void roundTripStoresEachDocumentAfterBosAsUint16() throws IOException {
        Path corpus = Files.writeString(dir.resolve("c.txt"), "ab\n<|endoftext|>\nc\u00e9");
        Path cache = dir.resolve("c.tokens");

        TokenFile tokens = TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);

        int[] expected = {BOS, 'a', 'b', BOS, 'c', 0xC3, 0xA9};
        assertThat(tokens.size()).isEqualTo(expected.length);
        assertThat(tokens.documentCount()).isEqualTo(2);
        assertThat(tokens.bos()).isEqualTo(BOS);
        assertThat(tokens.vocabSize()).isEqualTo(ByteTokenizer.VOCAB_SIZE);
        assertThat(all(tokens)).containsExactly(expected);
        for (int i = 0; i < expected.length; i++) assertThat(tokens.get(i)).isEqualTo(expected[i]);
        int[] middle = new int[3];
        tokens.read(2, middle);
        assertThat(middle).containsExactly('b', BOS, 'c');
        assertThat(Files.size(cache)).isEqualTo(dataOffset(tokens) + 2L * expected.length);
        assertThat(dataOffset(tokens) % 64).isZero();
        assertThat(TokenFile.open(cache).tokenizerFingerprint()).isEqualTo(tokens.tokenizerFingerprint()).startsWith("ByteTokenizer vocab=258");
        assertThatThrownBy(() -> tokens.get(expected.length)).isInstanceOf(IndexOutOfBoundsException.class);
    }

    @Test
    void tokenizingReportsBytesOfTheCorpusSizeAndTheTokenCountButNotWhenTheCacheIsReused() throws IOException {
        String text = "x".repeat(400_000) + "\n<|endoftext|>\n" + "y".repeat(400_000); // several jobs
        Path corpus = Files.writeString(dir.resolve("big.txt"), text);
        Path cache = dir.resolve("big.tokens");
        List<long[]> updates = new ArrayList<>();
        List<String> details = new ArrayList<>();

        TokenFile tokens = TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache, 1, (done, total, detail) -> {
            updates.add(new long[] {done, total});
            details.add(detail);
        });

        assertThat(updates).hasSizeGreaterThanOrEqualTo(2);
        for (int i = 0; i < updates.size(); i++) {
            assertThat(updates.get(i)[1]).isEqualTo(text.length()); // total: the file's size
            assertThat(updates.get(i)[0]).isBetween(1L, (long) text.length());
            if (i > 0) assertThat(updates.get(i)[0]).isGreaterThanOrEqualTo(updates.get(i - 1)[0]);
        }
        assertThat(updates.get(updates.size() - 1)[0]).isEqualTo(800_000); // the text; the marker and its newlines are not text
        assertThat(details.get(details.size() - 1)).isEqualTo(String.format(java.util.Locale.ROOT, "%,d tokens", tokens.size()));

        updates.clear();
        TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache, 2, (done, total, detail) -> updates.add(new long[] {done, total}));
        assertThat(updates).isEmpty();
    }

    @Test
    void vocabularyBeyond65536IsStoredAsInt32() throws IOException {
        Path corpus = Files.writeString(dir.resolve("c.txt"), "hi");
        Path cache = dir.resolve("c.tokens");

        TokenFile tokens = TokenFile.openOrBuild(Corpus.open(corpus, null), new TestTokenizers.Wide(), cache);

        assertThat(all(tokens)).containsExactly(TestTokenizers.Wide.BOS, 65536 + 'h', 65536 + 'i');
        assertThat(Files.size(cache)).isEqualTo(dataOffset(tokens) + 4L * 3);
    }

    @Test
    void reusedWhileCorpusAndTokenizerAreUnchanged() throws IOException {
        Path corpus = Files.writeString(dir.resolve("c.txt"), "some text");
        Path cache = dir.resolve("c.tokens");
        TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);
        Object built = fileKey(cache);

        TokenFile again = TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);

        assertThat(fileKey(cache)).isEqualTo(built); // a rebuild renames a new file into place
        assertThat(again.size()).isEqualTo(10);
    }

    @Test
    void rebuiltWhenTheCorpusChanges() throws IOException {
        Path corpus = Files.writeString(dir.resolve("c.txt"), "one");
        Path cache = dir.resolve("c.tokens");
        TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);

        Files.writeString(corpus, "one<|endoftext|>two");
        TokenFile rebuilt = TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);

        assertThat(all(rebuilt)).containsExactly(BOS, 'o', 'n', 'e', BOS, 't', 'w', 'o');
    }

    @Test
    void rebuiltWhenTheTokenizerChangesOrTheFileIsDamaged() throws IOException {
        Path corpus = Files.writeString(dir.resolve("c.txt"), "xy");
        Path cache = dir.resolve("c.tokens");
        TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);

        TokenFile wide = TokenFile.openOrBuild(Corpus.open(corpus, null), new TestTokenizers.Wide(), cache);
        assertThat(all(wide)).containsExactly(TestTokenizers.Wide.BOS, 65536 + 'x', 65536 + 'y');

        try (FileChannel ch = FileChannel.open(cache, StandardOpenOption.WRITE)) {
            ch.truncate(Files.size(cache) - 1);
        }
        assertThatThrownBy(() -> TokenFile.open(cache)).hasMessageContaining(cache.toString()).hasMessageContaining("truncated");
        TokenFile repaired = TokenFile.openOrBuild(Corpus.open(corpus, null), new TestTokenizers.Wide(), cache);
        assertThat(all(repaired)).containsExactly(TestTokenizers.Wide.BOS, 65536 + 'x', 65536 + 'y');
    }

    @Test
    void failedBuildLeavesNoPartialFileAndKeepsTheOldOne() throws IOException {
        // several MB, so that jobs before the poisoned one have been written when it fails
        Random random = new Random(7);
        List<String> docs = new ArrayList<>();
        for (int d = 0; d < 2000; d++) docs.add(CorpusTest.randomText(random, 2000));
        docs.set(1500, "POISON");
        Path corpus = Files.writeString(dir.resolve("c.txt"), String.join("<|endoftext|>", docs));
        Path cache = dir.resolve("c.tokens");

        assertThatThrownBy(() -> TokenFile.openOrBuild(Corpus.open(corpus, null), new TestTokenizers.Failing(), cache, 2)).hasMessageContaining("poisoned");
        assertThat(listing()).containsExactly("c.txt");

        TokenFile.openOrBuild(Corpus.open(corpus, null), new ByteTokenizer(), cache);
        Object good = fileKey(cache);
        Files.writeString(corpus, "changed<|endoftext|>POISON");
        assertThatThrownBy(() -> TokenFile.openOrBuild(Corpus.open(corpus, null), new TestTokenizers.Failing(), cache, 2)).hasMessageContaining("poisoned");
        assertThat(listing()).containsExactly("c.tokens", "c.txt");
        assertThat(fileKey(cache)).isEqualTo(good);
    }

    @Test
    void openRejectsFilesThatAreNotTokenFiles() throws IOException {
        Path notTokens = Files.writeString(dir.resolve("x.tokens"), "definitely not a token file, but long enough for a header");

        assertThatThrownBy(() -> TokenFile.open(notTokens)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(notTokens.toString()).hasMessageContaining("not a token file");
    }

    @Test
    void chunkedMappingReadsTheSameTokensAcrossChunkBoundaries() throws IOException {
        Random random = new Random(3);
        TokenFile whole = TestTokenizers.byteTokens(dir, CorpusTest.randomText(random, 5000));
        TokenFile chunked = TokenFile.open(whole.path(), 64); // 32 tokens per chunk

        assertThat(all(chunked)).isEqualTo(all(whole)); // not containsExactly: quadratic in AssertJ
        for (int from = 0; from < 200; from += 7) {
            for (int length : new int[] {0, 1, 31, 32, 33, 100}) {
                int[] a = new int[length], b = new int[length];
                whole.read(from, a);
                chunked.read(from, b);
                assertThat(b).containsExactly(a);
            }
        }
    }

    @Test
    void threadsDoNotChangeTheTokens() throws IOException {
        Random random = new Random(5);
        List<String> docs = new ArrayList<>();
        for (int d = 0; d < 500; d++) docs.add(CorpusTest.randomText(random, 1 + random.nextInt(5000)));
        Path corpus = Files.writeString(dir.resolve("c.txt"), String.join("<|endoftext|>", docs));

        TokenFile one = TokenFile.openOrBuild(Corpus.open(corpus, null, 300), new ByteTokenizer(), dir.resolve("one.tokens"), 1);
        TokenFile four = TokenFile.openOrBuild(Corpus.open(corpus, null, 300), new ByteTokenizer(), dir.resolve("four.tokens"), 4);

        assertThat(all(four)).isEqualTo(all(one));
        assertThat(four.documentCount()).isEqualTo(one.documentCount()).isEqualTo(docs.size());
    }

    /**
     * 50 MB of documents in 25 files, tokenized byte-level and checked against the corpus read again, document by
     * document: the writer holds only a few jobs of 256 Ki characters in memory at a time.
     */
    @Test
    void largeCorpusStreamsThrough() throws IOException {
        Path corpusDir = Files.createDirectory(dir.resolve("corpus"));
        Random random = new Random(11);
        long bytes = 0, documents = 0;
        for (int f = 0; f < 25; f++) {
            StringBuilder file = new StringBuilder();
            while (file.length() < 2_000_000) {
                String doc = CorpusTest.randomText(random, 1000 + random.nextInt(20_000));
                file.append(doc).append("\n<|endoftext|>\n");
                bytes += doc.length();
                documents++;
            }
            Files.writeString(corpusDir.resolve(String.format("part-%02d.txt", f)), file);
        }
        Corpus corpus = Corpus.open(corpusDir, "*.txt");

        TokenFile tokens = TokenFile.openOrBuild(corpus, new ByteTokenizer(), dir.resolve("big.tokens"));

        assertThat(tokens.size()).isEqualTo(bytes + documents);
        assertThat(tokens.documentCount()).isEqualTo(documents);
        long at = 0;
        try (Stream<String> docs = corpus.documents()) {
            for (String doc : (Iterable<String>) docs::iterator) {
                byte[] utf8 = doc.getBytes(StandardCharsets.UTF_8);
                int[] read = new int[utf8.length + 1];
                tokens.read(at, read);
                assertThat(read[0]).isEqualTo(BOS);
                for (int i = 0; i < utf8.length; i++) if (read[i + 1] != (utf8[i] & 0xFF)) assertThat(read[i + 1]).as("token %d", at + i + 1).isEqualTo(utf8[i] & 0xFF);
                at += read.length;
            }
        }
        assertThat(at).isEqualTo(tokens.size());
    }

    private List<String> listing() throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }

    private static Object fileKey(Path file) throws IOException {
        return Files.readAttributes(file, BasicFileAttributes.class).fileKey();
    }

    /** The header length, from the header's fields. */
    private static long dataOffset(TokenFile t) {
        return new TokenFileHeader(t.vocabSize(), t.bos(), t.size(), t.documentCount(), t.tokenizerFingerprint(), t.corpusStamp()).length();
    }

    static int[] all(TokenFile tokens) {
        int[] all = new int[Math.toIntExact(tokens.size())];
        tokens.read(0, all);
        return all;
    }
}
