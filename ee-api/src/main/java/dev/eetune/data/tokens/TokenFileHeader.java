package dev.eetune.data.tokens;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * The header of a token file, all little-endian: the magic "EETOKENS", int32 version, int32 bytes per token (2 for
 * uint16 when the vocabulary has at most 65536 ids, else 4 for int32), int32 vocabulary size, int32 BOS id, int64
 * token count, int64 document count, int32 header length, then the tokenizer fingerprint and the corpus stamp, each
 * as an int32 byte length and UTF-8 bytes, zero-padded to the header length (a multiple of 64 so that the tokens
 * after it are aligned). The tokens follow the header up to the end of the file.
 */
record TokenFileHeader(int vocabSize, int bos, long tokenCount, long documentCount, String fingerprint, String sourceStamp) {
    private static final byte[] MAGIC = "EETOKENS".getBytes(StandardCharsets.US_ASCII);
    private static final int VERSION = 1;
    /** Through the header length field. */
    private static final int FIXED_BYTES = 44;
    /** A sanity bound on the header length read from a file. */
    private static final int MAX_HEADER_BYTES = 1 << 20;

    TokenFileHeader {
        if (vocabSize <= 0) throw new IllegalArgumentException("vocabulary size must be positive, got " + vocabSize);
        if (bos < 0 || bos >= vocabSize) throw new IllegalArgumentException("BOS id " + bos + " is outside the vocabulary [0, " + vocabSize + ")");
    }

    TokenFileHeader withCounts(long tokens, long documents) {
        return new TokenFileHeader(vocabSize, bos, tokens, documents, fingerprint, sourceStamp);
    }

    int tokenBytes() { return vocabSize <= 1 << 16 ? 2 : 4; }

    int length() {
        int raw = FIXED_BYTES + 4 + utf8(fingerprint).length + 4 + utf8(sourceStamp).length;
        return (raw + 63) & -64;
    }

    ByteBuffer toBytes() {
        byte[] fp = utf8(fingerprint), stamp = utf8(sourceStamp);
        ByteBuffer b = ByteBuffer.allocate(length()).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC).putInt(VERSION).putInt(tokenBytes()).putInt(vocabSize).putInt(bos).putLong(tokenCount).putLong(documentCount).putInt(length());
        b.putInt(fp.length).put(fp).putInt(stamp.length).put(stamp);
        return b.clear();
    }

    /**
     * Reads and checks the header of {@code file}, including that the file holds exactly its tokens.
     *
     * @throws IllegalArgumentException naming the file and the problem when it is not a complete token file
     */
    static TokenFileHeader read(Path file, FileChannel in) {
        try {
            ByteBuffer fixed = readFully(file, in, 0, FIXED_BYTES);
            byte[] magic = new byte[MAGIC.length];
            fixed.get(magic);
            if (!Arrays.equals(magic, MAGIC)) throw corrupt(file, "it does not start with " + new String(MAGIC, StandardCharsets.US_ASCII) + ": not a token file");
            int version = fixed.getInt();
            if (version != VERSION) throw corrupt(file, "format version " + version + ", but this build reads version " + VERSION);
            int tokenBytes = fixed.getInt(), vocabSize = fixed.getInt(), bos = fixed.getInt();
            long tokens = fixed.getLong(), documents = fixed.getLong();
            int length = fixed.getInt();
            if (length < FIXED_BYTES + 8 || length > MAX_HEADER_BYTES) throw corrupt(file, "header length " + length + " is out of range");
            if (vocabSize <= 0 || bos < 0 || bos >= vocabSize) throw corrupt(file, "vocabulary size " + vocabSize + " and BOS id " + bos + " are inconsistent");
            ByteBuffer rest = readFully(file, in, FIXED_BYTES, length - FIXED_BYTES);
            TokenFileHeader h = new TokenFileHeader(vocabSize, bos, tokens, documents, string(file, rest), string(file, rest));
            if (tokenBytes != h.tokenBytes()) throw corrupt(file, tokenBytes + " bytes per token for a vocabulary of " + vocabSize);
            if (h.length() != length) throw corrupt(file, "header length " + length + " does not fit its fields");
            // bounded first, so that a forged count cannot wrap the product around to the file's size
            if (tokens < 0 || tokens > Long.MAX_VALUE / 8 || in.size() != length + tokens * tokenBytes) {
                throw corrupt(file, "it holds " + in.size() + " bytes, but its header promises " + tokens + " tokens of " + tokenBytes + " bytes after a "
                    + length + "-byte header (truncated?)");
            }
            if (documents < 0 || documents > tokens) throw corrupt(file, "document count " + documents + " for " + tokens + " tokens (each document starts with BOS)");
            return h;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read token file " + file, e);
        }
    }

    private static ByteBuffer readFully(Path file, FileChannel in, long position, int bytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            if (in.read(b, position + b.position()) < 0) throw corrupt(file, "it ends inside its " + (position + bytes) + "-byte header");
        }
        return b.flip();
    }

    private static String string(Path file, ByteBuffer b) {
        int n = b.getInt();
        if (n < 0 || n > b.remaining()) throw corrupt(file, "a header string of " + n + " bytes overruns the header");
        byte[] bytes = new byte[n];
        b.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static IllegalArgumentException corrupt(Path file, String why) {
        return new IllegalArgumentException("token file " + file + " is unusable: " + why);
    }

    private static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }
}
