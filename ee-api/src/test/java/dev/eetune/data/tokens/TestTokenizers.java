package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Corpus;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Tokenizers and token files for the data tests. */
public final class TestTokenizers {
    private TestTokenizers() {}

    /** The byte-level tokens of the documents of {@code text} (a text file written under {@code dir}). */
    public static TokenFile byteTokens(Path dir, String text) throws IOException {
        Path file = Files.writeString(Files.createTempFile(dir, "corpus", ".txt"), text);
        return TokenFile.openOrBuild(Corpus.open(file, null), new ByteTokenizer(), dir.resolve(file.getFileName() + ".tokens"), 2);
    }

    /** Bytes shifted past 65536, so that token files need int32 tokens: byte b is id 65536 + b, BOS is 69999. */
    static final class Wide implements Tokenizer {
        static final int OFFSET = 1 << 16, BOS = 69_999;
        private final ByteTokenizer bytes = new ByteTokenizer();

        @Override
        public int[] encode(String text) {
            int[] ids = bytes.encode(text);
            ids[0] = BOS;
            for (int i = 1; i < ids.length; i++) ids[i] += OFFSET;
            return ids;
        }

        @Override
        public String decode(int[] ids) { throw new UnsupportedOperationException(); }

        @Override
        public String decodeToken(int previous, int token) { return token >= OFFSET && token < OFFSET + 256 ? "<" + (token - OFFSET) + ">" : ""; }

        @Override
        public int bos() { return BOS; }

        @Override
        public int eos() { return -1; }

        @Override
        public int vocabSize() { return 70_000; }
    }

    /** A byte tokenizer that fails on any text containing {@code POISON}. */
    static final class Failing implements Tokenizer {
        private final ByteTokenizer bytes = new ByteTokenizer();

        @Override
        public int[] encode(String text) {
            if (text.contains("POISON")) throw new IllegalStateException("poisoned text");
            return bytes.encode(text);
        }

        @Override
        public String decode(int[] ids) { return bytes.decode(ids); }

        @Override
        public String decodeToken(int previous, int token) { return bytes.decodeToken(previous, token); }

        @Override
        public int bos() { return bytes.bos(); }

        @Override
        public int eos() { return bytes.eos(); }

        @Override
        public int vocabSize() { return bytes.vocabSize(); }
    }
}
