package dev.eetune.data.batch;

/**
 * A pseudo-random permutation of {@code [0, n)} in O(1) memory: a balanced Feistel network over the smallest even
 * number of bits that covers n, applied again while the result is {@code >= n} ("cycle walking"). A Feistel network is
 * a bijection whatever its round function, and cycle walking restricts a bijection to a subset, so every index
 * appears exactly once; the bit domain is under 4n, so fewer than 4 steps are needed on average.
 */
final class Permutation {
    private static final int ROUNDS = 6;
    /** Windows of a real corpus are far fewer; the bound keeps both halves within a long. */
    static final long MAX_SIZE = 1L << 62;

    private final long n;
    private final int halfBits;
    private final long halfMask;
    private final long[] roundKeys = new long[ROUNDS];

    Permutation(long n, long key) {
        if (n < 1 || n > MAX_SIZE) throw new IllegalArgumentException("permutation size must be in [1, 2^62], got " + n);
        this.n = n;
        int bits = Math.max(2, 64 - Long.numberOfLeadingZeros(n - 1));
        this.halfBits = (bits + 1) / 2;
        this.halfMask = (1L << halfBits) - 1;
        for (int r = 0; r < ROUNDS; r++) roundKeys[r] = mix(key + (r + 1) * 0x9E3779B97F4A7C15L);
    }

    /** The image of {@code i}, in {@code [0, n)}. */
    long apply(long i) {
        if (i < 0 || i >= n) throw new IndexOutOfBoundsException("index " + i + " is outside [0, " + n + ")");
        long x = i;
        do x = feistel(x); while (x >= n);
        return x;
    }

    private long feistel(long x) {
        long left = x >>> halfBits, right = x & halfMask;
        for (long k : roundKeys) {
            long next = left ^ (mix(right ^ k) & halfMask);
            left = right;
            right = next;
        }
        return (left << halfBits) | right;
    }

    /** SplitMix64's finalizer: a well-mixed 64-bit hash. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
