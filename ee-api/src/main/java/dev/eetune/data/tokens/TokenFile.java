package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Corpus;
import dev.eetune.progress.ProgressListener;
import dev.eetune.tokenizer.Tokenizer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Objects;

/**
 * A corpus tokenized once into a binary file (format: {@link TokenFileHeader}) and read back memory-mapped: every
 * document is its tokens preceded by the tokenizer's BOS, all documents back to back.
 *
 * <p>{@link #openOrBuild} reuses the file while the tokenizer's fingerprint and the corpus's {@link Corpus#stamp()}
 * (file sizes and modification times) are those it was built from, and rebuilds it otherwise. The file is mapped in
 * chunks of at most 1 GiB, so files beyond 2 GiB work. Instances are immutable and thread-safe; the mapping lives
 * until the instance is garbage-collected.
 *
 * <p>Keep the cache file out of a directory corpus: it would be read as part of the corpus.
 */
public final class TokenFile {
    private static final Logger LOG = LoggerFactory.getLogger(TokenFile.class);
    private static final int CHUNK_BYTES = 1 << 30;

    private final Path file;
    private final TokenFileHeader header;
    private final ByteBuffer[] chunks;
    private final int chunkShift;
    private final long chunkMask;
    private final int tokenBytes;

    private TokenFile(Path file, TokenFileHeader header, ByteBuffer[] chunks, int chunkBytes) {
        this.file = file;
        this.header = header;
        this.chunks = chunks;
        this.chunkShift = Integer.numberOfTrailingZeros(chunkBytes);
        this.chunkMask = chunkBytes - 1L;
        this.tokenBytes = header.tokenBytes();
    }

    /** The token file at {@code file}, built by {@link #openOrBuild}; fails naming the file when it is not a complete one. */
    public static TokenFile open(Path file) { return open(file, CHUNK_BYTES); }

    /** {@link #open(Path)} mapping chunks of {@code chunkBytes} (a power of two, at least 4): small ones test chunking. */
    static TokenFile open(Path file, int chunkBytes) {
        if (chunkBytes < 4 || Integer.bitCount(chunkBytes) != 1) throw new IllegalArgumentException("chunk size must be a power of two >= 4, got " + chunkBytes);
        try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
            TokenFileHeader header = TokenFileHeader.read(file, in);
            long dataBytes = header.tokenCount() * header.tokenBytes();
            ByteBuffer[] chunks = new ByteBuffer[Math.toIntExact((dataBytes + chunkBytes - 1) / chunkBytes)];
            for (int k = 0; k < chunks.length; k++) {
                long from = (long) k * chunkBytes;
                chunks[k] = in.map(FileChannel.MapMode.READ_ONLY, header.length() + from, Math.min(chunkBytes, dataBytes - from)).order(ByteOrder.LITTLE_ENDIAN);
            }
            return new TokenFile(file, header, chunks, chunkBytes);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read token file " + file, e);
        }
    }

    /** {@link #openOrBuild(Corpus, Tokenizer, Path, int)} with one thread per processor. */
    public static TokenFile openOrBuild(Corpus corpus, Tokenizer tokenizer, Path cacheFile) {
        return openOrBuild(corpus, tokenizer, cacheFile, Runtime.getRuntime().availableProcessors());
    }

    /**
     * The tokens of {@code corpus}: the token file at {@code cacheFile} when it was built from the same corpus stamp
     * with the same tokenizer, else a new one tokenized with {@code threads} threads and written there (atomically:
     * a failure leaves any old file in place and no partial file behind).
     */
    public static TokenFile openOrBuild(Corpus corpus, Tokenizer tokenizer, Path cacheFile, int threads) {
        return openOrBuild(corpus, tokenizer, cacheFile, threads, ProgressListener.NONE);
    }

    /**
     * {@link #openOrBuild(Corpus, Tokenizer, Path, int)} telling {@code progress} how many bytes of text have been
     * tokenized of about {@link Corpus#bytes()} (the detail is the token count so far); not called when the cache is reused.
     */
    public static TokenFile openOrBuild(Corpus corpus, Tokenizer tokenizer, Path cacheFile, int threads, ProgressListener progress) {
        SegmentEncoder encoder = SegmentEncoder.of(tokenizer);
        String fingerprint = encoder.fingerprint();
        String stamp = corpus.stamp(); // before reading, so that a change while reading makes the next run rebuild
        if (Files.exists(cacheFile)) {
            String stale = staleness(cacheFile, fingerprint, stamp);
            if (stale == null) {
                TokenFile cached = open(cacheFile);
                LOG.info("reusing token file {}: {} tokens, {} documents of {}", cacheFile, cached.size(), cached.documentCount(), corpus);
                return cached;
            }
            LOG.info("rebuilding token file {}: {}", cacheFile, stale);
        }
        TokenFileWriter.write(corpus, stamp, encoder, cacheFile, threads, progress);
        return open(cacheFile);
    }

    /** Why the file at {@code cacheFile} cannot be reused, or null when it can. */
    private static String staleness(Path cacheFile, String fingerprint, String stamp) {
        TokenFileHeader cached;
        try (FileChannel in = FileChannel.open(cacheFile, StandardOpenOption.READ)) {
            cached = TokenFileHeader.read(cacheFile, in);
        } catch (IOException | UncheckedIOException | IllegalArgumentException e) {
            return "the existing file is unreadable (" + e.getMessage() + ")";
        }
        if (!cached.fingerprint().equals(fingerprint)) return "the tokenizer differs (was " + cached.fingerprint() + ", now " + fingerprint + ")";
        if (!cached.sourceStamp().equals(stamp)) return "the corpus changed (was " + cached.sourceStamp() + ", now " + stamp + ")";
        return null;
    }

    /** The number of tokens. */
    public long size() { return header.tokenCount(); }

    /** Token {@code i}. */
    public int get(long i) {
        Objects.checkIndex(i, size());
        long at = i * tokenBytes;
        ByteBuffer chunk = chunks[(int) (at >>> chunkShift)];
        int offset = (int) (at & chunkMask);
        return tokenBytes == 2 ? Short.toUnsignedInt(chunk.getShort(offset)) : chunk.getInt(offset);
    }

    /** Reads tokens {@code [from, from + dst.length)} into {@code dst}. */
    public void read(long from, int[] dst) { read(from, dst, 0, dst.length); }

    /** Reads tokens {@code [from, from + length)} into {@code dst[offset, offset + length)}. */
    public void read(long from, int[] dst, int offset, int length) {
        Objects.checkFromIndexSize(from, length, size());
        Objects.checkFromIndexSize(offset, length, dst.length);
        while (length > 0) {
            long at = from * tokenBytes;
            ByteBuffer chunk = chunks[(int) (at >>> chunkShift)];
            int pos = (int) (at & chunkMask);
            int n = Math.min(length, (chunk.limit() - pos) / tokenBytes); // chunk sizes are multiples of the token size
            if (tokenBytes == 2) {
                for (int k = 0; k < n; k++) dst[offset + k] = Short.toUnsignedInt(chunk.getShort(pos + 2 * k));
            } else {
                for (int k = 0; k < n; k++) dst[offset + k] = chunk.getInt(pos + 4 * k);
            }
            from += n;
            offset += n;
            length -= n;
        }
    }

    /** The vocabulary size of the tokenizer that wrote the file: every token is below it. */
    public int vocabSize() { return header.vocabSize(); }

    /** The BOS id that starts every document. */
    public int bos() { return header.bos(); }

    /** The number of documents. */
    public long documentCount() { return header.documentCount(); }

    /** Identifies the tokenizer the file was built with. */
    public String tokenizerFingerprint() { return header.fingerprint(); }

    /** Identifies the corpus content the file was built from ({@link Corpus#stamp()}). */
    public String corpusStamp() { return header.sourceStamp(); }

    public Path path() { return file; }

    @Override
    public String toString() { return "TokenFile[" + file + ", " + size() + " tokens, " + documentCount() + " documents, vocab " + vocabSize() + "]"; }
}
