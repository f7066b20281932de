package dev.eetune.tokenizer;

import java.nio.charset.StandardCharsets;

/**
 * Byte-level tokens for byte-level pretraining (e.g. on source code): ids 0..255 are the UTF-8 bytes of the text,
 * 256 is BOS and 257 EOS.
 */
public final class ByteTokenizer implements Tokenizer {
    public static final int BOS = 256, EOS = 257, VOCAB_SIZE = 258;
    /** A file of this name beside a model says its tokenizer is this byte-level one (see {@link Tokenizer#load}). */
    public static final String MARKER_FILE = "tokenizer.bytes";

    @Override
    public int[] encode(String text) {
        byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[utf8.length + 1];
        ids[0] = BOS;
        for (int i = 0; i < utf8.length; i++) ids[i + 1] = utf8[i] & 0xFF;
        return ids;
    }

    @Override
    public String decode(int[] ids) {
        byte[] bytes = new byte[ids.length];
        int n = 0;
        for (int id : ids) if (checked(id) < 256) bytes[n++] = (byte) id;
        return new String(bytes, 0, n, StandardCharsets.UTF_8);
    }

    @Override
    public String decodeToken(int previous, int token) {
        return checked(token) < 256 ? new String(new byte[] {(byte) token}, StandardCharsets.UTF_8) : "";
    }

    private static int checked(int id) {
        if (id < 0 || id >= VOCAB_SIZE) throw new IllegalArgumentException("token id " + id + " is out of range [0, " + VOCAB_SIZE + ") for the byte tokenizer");
        return id;
    }

    @Override
    public int bos() { return BOS; }

    @Override
    public int eos() { return EOS; }

    @Override
    public int vocabSize() { return VOCAB_SIZE; }

    @Override
    public String toString() { return "ByteTokenizer"; }
}
