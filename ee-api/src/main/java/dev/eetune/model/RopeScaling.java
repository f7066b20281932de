package dev.eetune.model;

/**
 * RoPE frequency scaling for long contexts, as Hugging Face's {@code rope_scaling}: {@code "linear"} divides every
 * frequency by {@code factor}; {@code "llama3"} (Llama 3.1+) divides only the low frequencies, leaves the high ones
 * and interpolates smoothly in between. The other fields are used by llama3 only (0 for linear).
 * Immutable: thread-safe.
 */
public record RopeScaling(String type, float factor, float lowFreqFactor, float highFreqFactor, int originalMaxPositionEmbeddings) {
    public static final String LLAMA3 = "llama3";
    public static final String LINEAR = "linear";

    public RopeScaling {
        if (!LLAMA3.equals(type) && !LINEAR.equals(type)) throw new IllegalArgumentException("rope scaling type '" + type + "' is not supported (supported: llama3, linear)");
        if (!(factor > 0) || Float.isInfinite(factor)) throw new IllegalArgumentException("rope scaling factor must be > 0 and finite, got " + factor);
        if (LLAMA3.equals(type)) {
            if (!(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor) || Float.isInfinite(highFreqFactor)) {
                throw new IllegalArgumentException("llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor, got " + lowFreqFactor + " and " + highFreqFactor);
            }
            if (originalMaxPositionEmbeddings <= 0) {
                throw new IllegalArgumentException("llama3 rope scaling needs original_max_position_embeddings > 0, got " + originalMaxPositionEmbeddings);
            }
        }
    }

    public static RopeScaling llama3(float factor, float lowFreqFactor, float highFreqFactor, int originalMaxPositionEmbeddings) {
        return new RopeScaling(LLAMA3, factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings);
    }

    public static RopeScaling linear(float factor) { return new RopeScaling(LINEAR, factor, 0, 0, 0); }

    /** Scales one inverse frequency, as transformers' {@code _compute_llama3_parameters} / linear scaling. */
    public double apply(double invFreq) {
        if (LINEAR.equals(type)) return invFreq / factor;
        double lowFreqWavelen = originalMaxPositionEmbeddings / (double) lowFreqFactor;
        double highFreqWavelen = originalMaxPositionEmbeddings / (double) highFreqFactor;
        double wavelen = 2 * Math.PI / invFreq;
        if (wavelen < highFreqWavelen) return invFreq;
        if (wavelen > lowFreqWavelen) return invFreq / factor;
        double smooth = (originalMaxPositionEmbeddings / wavelen - lowFreqFactor) / ((double) highFreqFactor - lowFreqFactor);
        return (1 - smooth) * invFreq / factor + smooth * invFreq;
    }
}
