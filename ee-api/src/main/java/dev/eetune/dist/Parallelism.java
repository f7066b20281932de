package dev.eetune.dist;

import dev.eetune.backend.Backend;
import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * How the ranks of a {@link ProcessGroup} share EE-Tuning: {@code stages} pipeline stages times size / stages data
 * replicas. Rank r is stage r % stages of replica r / stages.
 *
 * <p>Data: a step's {@code microBatches} micro-batches are the global batch, read in the same order on every rank as by
 * one process; replica d computes the contiguous share [d·m/D, (d+1)·m/D) of them.
 *
 * <p>Pipeline: the backbone layers up to the last exit are split into contiguous, equally long ranges; stage s runs
 * layers (s·L/S, (s+1)·L/S], receiving the hidden states from stage s-1 and sending them on to stage s+1 (forward only:
 * the backbone is frozen, so nothing flows back). A stage touches only its layers' weights (they are memory-mapped), and
 * while stage s works on micro-batch m, stage s-1 already computes m+1. Each stage computes the heads inside its range.
 *
 * <p>Every rank holds all heads, and their gradients (zero where a rank computed no part of them) and loss sums are
 * added over all ranks in rank order: every rank ends a step with the same gradients and makes the same AdamW update,
 * rank 0 can write whole checkpoints, and a checkpoint resumes under any layout (or none). The result does not depend on
 * the layout beyond the rounding of that sum. Rank 0 writes checkpoints and reports progress.
 *
 * <p>The group carries the tensors of the run's backend: the launcher's (MPI) for host tensors, a device group for device
 * tensors ({@link #forBackend}: NCCL on CUDA, with the same rank-order sums).
 *
 * <p>Thread-safety: that of its group (one thread).
 */
public record Parallelism(ProcessGroup group, int stages) {
    /** One process doing all the work (what a run without a launcher gets). */
    public static final Parallelism LOCAL = new Parallelism(LocalGroup.INSTANCE, 1);

    public Parallelism {
        if (stages < 1 || group.size() % stages != 0) {
            throw new IllegalArgumentException("--pipeline-stages " + stages + " does not divide the " + group.size() + " ranks (ranks = stages x data replicas)");
        }
    }

    /**
     * The same layout on the group that carries {@code backend}'s tensors: this one for host tensors, else the backend's
     * device group made from this group's ({@link ProcessGroups#forBackend}: NCCL for CUDA); every rank calls it.
     */
    public Parallelism forBackend(Backend backend, Duration timeout) {
        ProcessGroup g = ProcessGroups.forBackend(group, backend, timeout);
        return g == group ? this : new Parallelism(g, stages);
    }

    /** Data-parallel replicas: ranks / stages. */
    public int replicas() { return group.size() / stages; }

    /** This rank's pipeline stage. */
    public int stage() { return group.rank() % stages; }

    /** Fails unless the replicas can share {@code microBatches} evenly and every stage gets at least one of {@code lastExitLayer} layers. */
    public void requireFits(int microBatches, int lastExitLayer) {
        if (microBatches % replicas() != 0) {
            throw new IllegalArgumentException("--micro-batches " + microBatches + " cannot be shared evenly by " + replicas()
                + " data-parallel replicas: each computes micro-batches / replicas of every step (use a multiple of " + replicas() + ")");
        }
        if (stages > lastExitLayer) {
            throw new IllegalArgumentException("--pipeline-stages " + stages + ": more stages than the " + lastExitLayer + " layers up to the last exit");
        }
    }

    /** Whether this rank computes micro-batch {@code index} of a step of {@code microBatches}. */
    public boolean computes(int index, int microBatches) {
        return index / (microBatches / replicas()) == group.rank() / stages;
    }

    /** The last layer before this stage (0 for the first stage, which embeds the tokens). */
    public int firstLayer(int lastExitLayer) { return stage() * lastExitLayer / stages; }

    /** This stage's last layer (1-based). */
    public int lastLayer(int lastExitLayer) { return (stage() + 1) * lastExitLayer / stages; }

    /** Receives the hidden states of the previous stage into {@code x} (not called on the first stage). */
    public void receive(Tensor x) { group.recv(x, group.rank() - 1, 0); }

    /** Sends the hidden states {@code x} on to the next stage; nothing on the last stage. */
    public void sendOn(Tensor x) {
        if (stage() < stages - 1) group.send(x, group.rank() + 1, 0);
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
        ByteBuffer block = ByteBuffer.allocate(4 << 16);
        for (Tensor t : tensors) {
            if (t.dtype() != DType.F32) throw new IllegalArgumentException(what + ": " + t + " is not f32");
            float[] v = t.toFloatArray();
            for (int from = 0; from < v.length; from += 1 << 16) { // blocks: a head tensor may hold hundreds of millions of values
                block.clear();
                block.asFloatBuffer().put(v, from, Math.min(1 << 16, v.length - from));
                md.update(block.array(), 0, 4 * Math.min(1 << 16, v.length - from));
            }
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
