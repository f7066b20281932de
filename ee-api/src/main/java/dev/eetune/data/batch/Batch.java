package dev.eetune.data.batch;

/**
 * {@code batchSize} windows of {@code seqLen} tokens, row-major: row {@code b} of {@code inputs} is
 * {@code inputs[b * seqLen, (b + 1) * seqLen)}, and {@code targets} holds each input's next token, or
 * {@link PackedSequences#IGNORED} where no loss applies.
 */
public record Batch(int[] inputs, int[] targets, int batchSize, int seqLen) {
    public Batch {
        if (batchSize < 1 || seqLen < 1) throw new IllegalArgumentException("batchSize and seqLen must be positive, got " + batchSize + " and " + seqLen);
        long n = (long) batchSize * seqLen;
        if (inputs.length != n || targets.length != n) {
            throw new IllegalArgumentException("a batch of " + batchSize + " x " + seqLen + " needs " + n + " inputs and targets, got " + inputs.length + " and " + targets.length);
        }
    }
}
