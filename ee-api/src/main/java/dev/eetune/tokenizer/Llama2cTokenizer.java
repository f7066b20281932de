package dev.eetune.tokenizer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.BufferUnderflowException;
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

/**
 * A llama2.c {@code tokenizer.bin}: little-endian int32 max_token_length, then per token a float32 score, an int32
 * byte length and the bytes, up to the end of the file. Encoding and decoding reproduce llama2.c's run.c exactly:
 * BOS is id 1, EOS id 2, and bytes missing from the vocabulary fall back to the pieces {@code <0x00>..<0xFF>} at ids
 * 3..258.
 *
 * <p>Pieces are kept as ISO-8859-1 strings (one char per byte) so that concatenating and looking them up works on
 * the raw bytes, as llama2.c does, whatever the bytes are.
 */
public final class Llama2cTokenizer implements Tokenizer {
    private static final int BOS = 1, EOS = 2, BYTE_OFFSET = 3;
    /** llama2.c's initial best score: pairs scoring at or below it are never merged. */
    private static final float NO_MERGE = -1e10f;

    private final Path file;
    private final String[] pieces;
    private final float[] scores;
    private final Map<String, Integer> ids;
    /** The byte a {@code <0xNN>} piece stands for, -1 for other pieces. */
    private final int[] rawByte;
    private final boolean byteFallback;
    /** The dummy-prefix token: the piece " ". */
    private final int spaceId;

    private Llama2cTokenizer(Path file, String[] pieces, float[] scores) {
        this.file = file;
        this.pieces = pieces;
        this.scores = scores;
        this.ids = new HashMap<>(pieces.length * 2);
        this.rawByte = new int[pieces.length];
        for (int i = 0; i < pieces.length; i++) {
            ids.putIfAbsent(pieces[i], i); // duplicates (none in real vocabularies) resolve to the lowest id
            rawByte[i] = parseBytePiece(pieces[i]);
        }
        boolean fallback = pieces.length >= BYTE_OFFSET + 256;
        for (int b = 0; fallback && b < 256; b++) fallback = rawByte[BYTE_OFFSET + b] == b;
        this.byteFallback = fallback;
        Integer space = ids.get(" ");
        // llama2.c assumes " " is in the vocabulary; fall back to its byte piece rather than emitting id -1
        this.spaceId = space != null ? space : byteFallback ? BYTE_OFFSET + ' ' : -1;
    }

    /** Reads a llama2.c tokenizer.bin; every byte of the file must belong to a token. */
    public static Llama2cTokenizer load(Path file) {
        byte[] data;
        try {
            data = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read llama2.c tokenizer " + file, e);
        }
        ByteBuffer in = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (data.length < 4) throw new IllegalArgumentException(file + ": " + data.length + " bytes is too short for a llama2.c tokenizer.bin");
        int maxTokenLength = in.getInt();
        if (maxTokenLength <= 0 || maxTokenLength > 1 << 16) {
            throw new IllegalArgumentException(file + ": max_token_length " + maxTokenLength + " is implausible (is this a llama2.c tokenizer.bin?)");
        }
        List<String> pieces = new ArrayList<>();
        List<Float> scores = new ArrayList<>();
        while (in.hasRemaining()) {
            int id = pieces.size();
            try {
                float score = in.getFloat();
                int len = in.getInt();
                if (len < 0 || len > in.remaining()) {
                    throw new IllegalArgumentException(file + ": token " + id + " at byte " + (in.position() - 4) + " has length " + len + " but "
                        + in.remaining() + " bytes remain (is this a llama2.c tokenizer.bin?)");
                }
                byte[] piece = new byte[len];
                in.get(piece);
                pieces.add(new String(piece, StandardCharsets.ISO_8859_1));
                scores.add(score);
            } catch (BufferUnderflowException e) {
                throw new IllegalArgumentException(file + ": truncated in the header of token " + id + " (is this a llama2.c tokenizer.bin?)", e);
            }
        }
        if (pieces.size() <= EOS) throw new IllegalArgumentException(file + ": only " + pieces.size() + " tokens; llama2.c needs at least <unk>, BOS and EOS");
        float[] s = new float[scores.size()];
        for (int i = 0; i < s.length; i++) s[i] = scores.get(i);
        return new Llama2cTokenizer(file, pieces.toArray(String[]::new), s);
    }

    @Override
    public int[] encode(String text) { return encode(text, true, true); }

    /**
     * llama2.c's {@code encode()}: optional BOS; when {@code dummyPrefix} and the text is non-empty, the " " token;
     * each UTF-8 character as its piece, else its bytes as byte pieces; then repeatedly the adjacent pair whose
     * concatenation is a piece with the highest score is merged (the leftmost such pair on ties).
     *
     * <p>Encoding a text in parts: for {@code t = t0 + t1 + ... + tk} with {@code t0} non-empty and every later
     * part starting with a space, {@code encode(t)} equals {@code encode(t0, true, true)} followed by
     * {@code encode(ti, false, false)} for each later part, provided no piece holds a space after its first byte
     * (true of SentencePiece vocabularies split by whitespace, like stories260K's tok512). No merged piece can then
     * cross a part boundary, and merges inside one part do not depend on the others. Encoding is O(n log n), so
     * splitting is never needed for speed.
     */
    public int[] encode(String text, boolean bos, boolean dummyPrefix) {
        byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
        int[] tok = new int[utf8.length + 2];
        int n = 0;
        if (bos) tok[n++] = BOS;
        if (dummyPrefix && utf8.length > 0) tok[n++] = spaceId >= 0 ? spaceId : missing(" ");
        // group bytes into UTF-8 characters exactly as run.c does: a character ends before a non-continuation
        // byte or after 4 bytes
        int start = 0, len = 0;
        for (int i = 0; i < utf8.length; i++) {
            if ((utf8[i] & 0xC0) != 0x80) {
                start = i;
                len = 0;
            }
            len++;
            if (i + 1 < utf8.length && (utf8[i + 1] & 0xC0) == 0x80 && len < 4) continue;
            Integer id = ids.get(new String(utf8, start, len, StandardCharsets.ISO_8859_1));
            if (id != null) {
                tok[n++] = id;
            } else {
                if (!byteFallback) missing(new String(utf8, start, len, StandardCharsets.UTF_8));
                for (int k = start; k < start + len; k++) tok[n++] = (utf8[k] & 0xFF) + BYTE_OFFSET;
            }
            start = i + 1;
            len = 0;
        }
        return merge(tok, n);
    }

    private int missing(String text) {
        throw new IllegalArgumentException("cannot encode '" + text + "' with " + file + ": it is not in the vocabulary and the vocabulary has no byte pieces <0x00>..<0xFF> at ids 3..258");
    }

    /**
     * The merge loop of run.c, which rescans all pairs per merge (O(n^2)), done with a linked list and a heap of
     * candidate pairs ordered by (score descending, position ascending): the same merges in the same order. Heap
     * entries are not removed when their pair changes; a popped entry is used only if recomputing the pair at its
     * position gives the same key, which then is the best current key.
     */
    private int[] merge(int[] tok, int n) {
        int[] prev = new int[n], next = new int[n];
        boolean[] removed = new boolean[n];
        for (int i = 0; i < n; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        LongHeap heap = new LongHeap(Math.max(16, n));
        for (int i = 0; i + 1 < n; i++) pushPair(heap, tok, next, i);
        int count = n;
        while (!heap.isEmpty()) {
            long key = heap.pop();
            int i = (int) key, j = removed[i] ? -1 : next[i];
            if (j < 0) continue;
            int merged = mergedId(tok[i], tok[j]);
            if (merged < 0 || key(scores[merged], i) != key) continue;
            tok[i] = merged;
            removed[j] = true;
            next[i] = next[j];
            if (next[j] >= 0) prev[next[j]] = i;
            count--;
            if (prev[i] >= 0) pushPair(heap, tok, next, prev[i]);
            pushPair(heap, tok, next, i);
        }
        int[] out = new int[count];
        for (int i = n > 0 ? 0 : -1, k = 0; i >= 0; i = next[i]) out[k++] = tok[i];
        return out;
    }

    private void pushPair(LongHeap heap, int[] tok, int[] next, int i) {
        int j = next[i];
        if (j < 0) return;
        int merged = mergedId(tok[i], tok[j]);
        if (merged >= 0 && scores[merged] > NO_MERGE) heap.push(key(scores[merged], i));
    }

    private int mergedId(int a, int b) {
        Integer id = ids.get(pieces[a].concat(pieces[b]));
        return id == null ? -1 : id;
    }

    /** Smaller keys first: higher score, then lower position. */
    private static long key(float score, int position) {
        int bits = Float.floatToIntBits(score + 0.0f); // + 0 turns -0 into +0: C compares them equal
        int sortable = bits ^ ((bits >> 31) & 0x7fffffff); // int order == float order
        return ((long) ~sortable << 32) | position;
    }

    @Override
    public String decode(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(ids.length * 4);
        int previous = -1;
        for (int id : ids) {
            if (id != BOS && id != EOS) {
                if (rawByte[checked(id)] >= 0) {
                    out.write(rawByte[id]);
                } else {
                    byte[] b = pieces[id].getBytes(StandardCharsets.ISO_8859_1);
                    int from = previous == BOS && b.length > 0 && b[0] == ' ' ? 1 : 0;
                    out.write(b, from, b.length - from);
                }
            }
            previous = id;
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @Override
    public String decodeToken(int previous, int token) {
        if (token == BOS || token == EOS) return "";
        if (rawByte[checked(token)] >= 0) return new String(new byte[] {(byte) rawByte[token]}, StandardCharsets.UTF_8);
        String piece = pieces[token];
        if (previous == BOS && piece.startsWith(" ")) piece = piece.substring(1);
        return new String(piece.getBytes(StandardCharsets.ISO_8859_1), StandardCharsets.UTF_8);
    }

    private int checked(int id) {
        if (id < 0 || id >= pieces.length) throw new IllegalArgumentException("token id " + id + " is out of range [0, " + pieces.length + ") for " + file);
        return id;
    }

    /** The byte of a {@code <0xNN>} piece, else -1. */
    private static int parseBytePiece(String piece) {
        if (piece.length() != 6 || !piece.startsWith("<0x") || piece.charAt(5) != '>') return -1;
        int hi = Character.digit(piece.charAt(3), 16), lo = Character.digit(piece.charAt(4), 16);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

    @Override
    public int bos() { return BOS; }

    @Override
    public int eos() { return EOS; }

    /** EOS, and BOS: llama2.c's models (stories*) separate documents with BOS and end a story by emitting it (run.c stops there too). */
    @Override
    public java.util.Set<Integer> stopTokens() { return java.util.Set.of(EOS, BOS); }

    @Override
    public int vocabSize() { return pieces.length; }

    @Override
    public String toString() { return "Llama2cTokenizer[" + file + ", " + pieces.length + " tokens]"; }

    /** A binary min-heap of longs. */
    private static final class LongHeap {
        private long[] a;
        private int size;

        LongHeap(int capacity) { a = new long[capacity]; }

        boolean isEmpty() { return size == 0; }

        void push(long v) {
            if (size == a.length) a = Arrays.copyOf(a, a.length * 2);
            int i = size++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (a[parent] <= v) break;
                a[i] = a[parent];
                i = parent;
            }
            a[i] = v;
        }

        long pop() {
            long top = a[0], v = a[--size];
            int i = 0;
            while (true) {
                int c = 2 * i + 1;
                if (c >= size) break;
                if (c + 1 < size && a[c + 1] < a[c]) c++;
                if (a[c] >= v) break;
                a[i] = a[c];
                i = c;
            }
            a[i] = v;
            return top;
        }
    }
}
