package dev.eetune.data;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * SHA-256 for the short content identifiers in cache stamps and fingerprints: a directory corpus's stamp and a
 * tokenizer's fingerprint, which together decide whether a token file can be reused.
 */
public final class Sha256 {
    private Sha256() {}

    public static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK lacks SHA-256", e);
        }
    }

    /** The first 128 bits of the digest in hex: plenty to tell cache inputs apart. */
    public static String shortHex(MessageDigest digest) { return HexFormat.of().formatHex(digest.digest(), 0, 16); }
}
