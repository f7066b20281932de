package dev.eetune.infer;

/**
 * Counter-based random numbers: a uniform in [0, 1) that is a pure function of (seed, sequence, position, purpose),
 * so results do not depend on batch composition or on how decoding rounds fall.
 * Stateless: thread-safe.
 */
public final class CounterRng {
    private CounterRng() {}

    public static float uniform(long seed, int sequence, int position, int purpose) {
        long z = seed;
        z = mix(z ^ (0x9E3779B97F4A7C15L * (sequence + 1L)));
        z = mix(z ^ (0xC2B2AE3D27D4EB4FL * (position + 1L)));
        z = mix(z ^ (0x165667B19E3779F9L * (purpose + 1L)));
        return (z >>> 40) * 0x1.0p-24f; // 24 random bits: exactly representable, < 1
    }

    private static long mix(long z) { // SplitMix64 finaliser
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
