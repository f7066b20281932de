package dev.eetune.dist;

import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;

/**
 * Data parallelism over a {@link ProcessGroup}: a step's {@code microBatches} micro-batches are the global batch, read in
 * the same order on every rank as by one process; rank r computes the contiguous share
 * [r·m/size, (r+1)·m/size) of them, and the ranks' gradient and loss sums are then added in rank order. Every rank
 * ends the step with the same gradients, so identical AdamW updates keep the heads identical, and the result does not
 * depend on the number of ranks (beyond floating-point rounding of the sum order), which is what lets a run resume on
 * another rank count. Rank 0 writes checkpoints and reports progress.
 *
 * <p>Thread-safety: that of its group (one thread).
 */
public record DataParallel(ProcessGroup group) {
    /** One process doing all the work (what a run without a launcher gets). */
    public static final DataParallel LOCAL = new DataParallel(LocalGroup.INSTANCE);

    /** Fails unless the ranks can share {@code microBatches} evenly. */
    public void requireDivides(int microBatches) {
        if (microBatches % group.size() != 0) {
            throw new IllegalArgumentException("--micro-batches " + microBatches + " cannot be shared evenly by " + group.size()
                + " ranks: each rank computes micro-batches / ranks of every step (use a multiple of " + group.size() + ")");
        }
    }

    /** Whether this rank computes micro-batch {@code index} of a step of {@code microBatches}. */
    public boolean computes(int index, int microBatches) {
        return index / (microBatches / group.size()) == group.rank();
    }

    /** Whether this rank writes checkpoints and heads and reports progress. */
    public boolean leads() { return group.rank() == 0; }

    /** Sums the gradients of {@code parameters} and the per-exit loss sums and token counts over the ranks, in place. */
    public void combine(List<Parameter> parameters, double[] lossSum, long[] counted) {
        if (group.size() == 1) return;
        for (Parameter p : parameters) group.allReduceSum(p.grad());
        double[] stats = new double[lossSum.length + counted.length];
        System.arraycopy(lossSum, 0, stats, 0, lossSum.length);
        for (int i = 0; i < counted.length; i++) stats[lossSum.length + i] = counted[i]; // exact below 2^53 tokens
        group.allReduceSum(stats);
        System.arraycopy(stats, 0, lossSum, 0, lossSum.length);
        for (int i = 0; i < counted.length; i++) counted[i] = (long) stats[lossSum.length + i];
    }

    /**
     * Fails on every rank, naming the ranks and {@code what}, unless every rank has the same {@code value} as rank 0
     * (its SHA-256 is compared: values may be long). Catches runs started with different arguments, model or data files
     * before any step.
     */
    public void requireSame(String what, String value) {
        requireSameDigest(what, sha256(value.getBytes(StandardCharsets.UTF_8)), value);
    }

    /** {@link #requireSame} for tensor values, e.g. the heads' weights after initialisation or resume. */
    public void requireSame(String what, List<Tensor> tensors) {
        MessageDigest md = newDigest();
        for (Tensor t : tensors) {
            if (t.dtype() != DType.F32) throw new IllegalArgumentException(what + ": " + t + " is not f32");
            ByteBuffer b = ByteBuffer.allocate(4 * (int) t.size());
            b.asFloatBuffer().put(t.toFloatArray());
            md.update(b.array());
        }
        requireSameDigest(what, md.digest(), null);
    }

    private void requireSameDigest(String what, byte[] digest, String value) {
        if (group.size() == 1) return;
        byte[] root = group.broadcast(digest.clone(), 0);
        double[] differs = new double[group.size()];
        differs[group.rank()] = MessageDigest.isEqual(root, digest) ? 0 : 1;
        group.allReduceSum(differs);
        List<Integer> ranks = new ArrayList<>();
        for (int r = 0; r < differs.length; r++) if (differs[r] != 0) ranks.add(r);
        if (ranks.isEmpty()) return;
        throw new IllegalStateException("the ranks of this run differ in " + what + ": rank" + (ranks.size() > 1 ? "s " : " ") + ranks.toString().replaceAll("[\\[\\]]", "")
            + " differ" + (ranks.size() > 1 ? "" : "s") + " from rank 0" + (value != null && differs[group.rank()] != 0 ? " (this rank " + group.rank() + " has: " + value + ")" : ""));
    }

    private static byte[] sha256(byte[] bytes) { return newDigest().digest(bytes); }

    private static MessageDigest newDigest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
