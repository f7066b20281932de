package dev.eetune.data.tokens;

import dev.eetune.data.Sha256;
import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.corpus.Segment;
import dev.eetune.tokenizer.Llama2cTokenizer;
import dev.eetune.tokenizer.Tokenizer;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Arrays;

/**
 * Encodes a corpus's segments so that each document starts with the tokenizer's BOS (the document separator; no EOS
 * is added) and a continuation segment adds no BOS and no EOS.
 *
 * <p>The splitting rule: a {@link Corpus} (its {@code TextSplitter}) cuts a long document only before a run of
 * newlines or before a space, and a continuation segment is encoded as text that does not start a document: for a
 * {@link Llama2cTokenizer}, {@code encode(text, false, false)} (no BOS, no dummy-prefix space). When no piece holds a
 * newline, or a space after its first character (true of llama2.c's SentencePiece vocabularies, stories260K's tok512
 * included), no piece could have crossed the cut, so the segments encode exactly as the whole document. Other
 * tokenizers encode a continuation with {@link Tokenizer#encode} minus the BOS/EOS it adds; a tokenizer that prefixes
 * every text with a space (Hugging Face SentencePiece Llama) then gains one extra space token per cut: only documents
 * longer than a segment (64 Ki characters by default) are affected. Byte tokenizers are always exact.
 */
final class SegmentEncoder {
    /** Names this rule in the cache fingerprint: change it when the rule changes, so that old caches are rebuilt. */
    private static final String RULE = "segments-v1";
    /** Text whose encoding, with the vocabulary, identifies the tokenizer. */
    private static final String PROBE = "Once upon a time, there was a little girl named Lily. She liked to play outside.\n\n"
        + "\"Mom,\" she said, \"can I have 3 apples?\" Her mom smiled: \"Yes!\"\n"
        + "public static int main(String[] args) { return args.length > 0 ? 1 : 0; } // tab\there\r\n"
        + "Ünïcödé: café, naïve, Ελληνικά, 日本語, emoji 🙂, math ∑ x² ≤ ∞.";

    private final Tokenizer tokenizer;
    private final int bos, eos;
    /** Whether {@code tokenizer.encode} adds BOS / EOS around the text. */
    private final boolean addsBos, addsEos;
    private final String fingerprint;

    private SegmentEncoder(Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
        this.bos = tokenizer.bos();
        this.eos = tokenizer.eos();
        if (bos < 0) throw new IllegalArgumentException(tokenizer + " has no BOS token, which separates the documents of a token file");
        int[] probe = tokenizer.encode("a");
        this.addsBos = probe.length > 0 && probe[0] == bos;
        this.addsEos = eos >= 0 && probe.length > 1 && probe[probe.length - 1] == eos;
        this.fingerprint = computeFingerprint();
    }

    static SegmentEncoder of(Tokenizer tokenizer) { return new SegmentEncoder(tokenizer); }

    int[] encode(Segment segment) {
        String text = segment.text();
        boolean start = segment.documentStart();
        if (tokenizer instanceof Llama2cTokenizer llama2c) return llama2c.encode(text, start, start);
        int[] ids = tokenizer.encode(text);
        int from = addsBos ? 1 : 0, to = addsEos ? ids.length - 1 : ids.length;
        if (!start) return Arrays.copyOfRange(ids, from, to);
        int[] out = new int[to - from + 1];
        out[0] = bos;
        System.arraycopy(ids, from, out, 1, to - from);
        return out;
    }

    int vocabSize() { return tokenizer.vocabSize(); }

    int bos() { return bos; }

    /**
     * Identifies the tokenizer by what it does rather than where it was loaded from: its class, special ids, the
     * text of every token, this encoder's rule and the encoding of a probe text.
     */
    String fingerprint() { return fingerprint; }

    private String computeFingerprint() {
        MessageDigest sha = Sha256.digest();
        for (int id = 0; id < tokenizer.vocabSize(); id++) {
            String piece;
            try {
                piece = tokenizer.decodeToken(-1, id);
            } catch (RuntimeException e) { // an id the vocabulary leaves unused
                piece = "\0unused";
            }
            sha.update(piece.getBytes(StandardCharsets.UTF_8));
            sha.update((byte) 0);
        }
        for (boolean start : new boolean[] {true, false}) {
            try {
                for (int id : encode(new Segment(PROBE, start))) sha.update((id + ",").getBytes(StandardCharsets.US_ASCII));
            } catch (RuntimeException e) { // a vocabulary without some of the probe's characters: that is telling too
                sha.update(e.getClass().getName().getBytes(StandardCharsets.UTF_8));
            }
        }
        return tokenizer.getClass().getSimpleName() + " vocab=" + tokenizer.vocabSize() + " bos=" + bos + " eos=" + eos + " rule=" + RULE
            + " sha256=" + Sha256.shortHex(sha);
    }

    @Override
    public String toString() { return tokenizer.toString(); }
}
