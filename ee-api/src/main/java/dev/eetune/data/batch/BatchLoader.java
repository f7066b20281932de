package dev.eetune.data.batch;

import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Objects;

/**
 * Deterministic shuffled batches of windows. Each epoch visits every window exactly once, in the order of a
 * pseudo-random permutation seeded by {@code (seed, epoch)} and computed on the fly (O(1) memory, whatever the
 * number of windows). Batches run across epoch ends, so every batch is full and no window is skipped: the last
 * batch of an epoch may finish with the first windows of the next.
 *
 * <p>The loader is a pure function of {@code (data, batchSize, seed, position)}: {@link #position()} saved after k
 * batches and given to {@link #seek} on a new loader continues with exactly the batches the first would have
 * produced. Not thread-safe.
 */
public final class BatchLoader {
    private final PackedSequences data;
    private final int batchSize;
    private final long seed;
    private long epoch, index;
    /** The permutation of {@link #epoch}. */
    private Permutation order;

    public BatchLoader(PackedSequences data, int batchSize, long seed) {
        this.data = Objects.requireNonNull(data, "data");
        if (batchSize < 1) throw new IllegalArgumentException("batchSize must be at least 1, got " + batchSize);
        if ((long) batchSize * data.seqLen() > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a batch of " + batchSize + " x " + data.seqLen() + " tokens does not fit in an int[]");
        }
        this.batchSize = batchSize;
        this.seed = seed;
        seek(DataPosition.START);
    }

    /** The next {@code batchSize} windows of the shuffled order. */
    public Batch next() {
        int seqLen = data.seqLen();
        int[] inputs = new int[batchSize * seqLen], targets = new int[batchSize * seqLen];
        for (int b = 0; b < batchSize; b++) {
            data.read(order.apply(index), inputs, b * seqLen, targets, b * seqLen);
            if (++index == data.size()) {
                epoch++;
                index = 0;
                order = permutation(epoch);
            }
        }
        return new Batch(inputs, targets, batchSize, seqLen);
    }

    /** Where the next batch starts. */
    public DataPosition position() { return new DataPosition(epoch, index); }

    /** Continues from {@code position}, as saved by {@link #position()} from a loader over the same data. */
    public void seek(DataPosition position) {
        if (position.index() >= data.size()) {
            throw new IllegalArgumentException("cannot seek to " + position + ": an epoch has only " + data.size() + " windows (was it saved for other data?)");
        }
        epoch = position.epoch();
        index = position.index();
        order = permutation(epoch);
    }

    public int batchSize() { return batchSize; }

    /** The windows this loader draws from. */
    public PackedSequences data() { return data; }

    public long seed() { return seed; }

    /**
     * Evaluation batches: windows in file order from the first, {@code batchSize} per batch, at most
     * {@code maxBatches} batches; the last batch is smaller when the windows run out, so none is dropped or repeated.
     * Each iteration starts again from the first window; the shuffled position is not affected.
     */
    public Iterable<Batch> evaluationBatches(int maxBatches) {
        if (maxBatches < 1) throw new IllegalArgumentException("maxBatches must be at least 1, got " + maxBatches);
        long windows = Math.min(data.size(), (long) maxBatches * batchSize);
        return () -> new Iterator<>() {
            private long next;

            @Override
            public boolean hasNext() { return next < windows; }

            @Override
            public Batch next() {
                if (!hasNext()) throw new NoSuchElementException("no more evaluation batches");
                int rows = (int) Math.min(batchSize, windows - next), seqLen = data.seqLen();
                int[] inputs = new int[rows * seqLen], targets = new int[rows * seqLen];
                for (int b = 0; b < rows; b++) data.read(next++, inputs, b * seqLen, targets, b * seqLen);
                return new Batch(inputs, targets, rows, seqLen);
            }
        };
    }

    private Permutation permutation(long epoch) {
        return new Permutation(data.size(), Permutation.mix(seed) ^ Permutation.mix(epoch + 0x632BE59BD9B4E019L));
    }

    @Override
    public String toString() { return "BatchLoader[" + data + ", batch " + batchSize + ", seed " + seed + ", at " + position() + "]"; }
}
