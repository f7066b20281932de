package dev.eetune.data.batch;

import dev.eetune.data.Sha256;
import dev.eetune.data.tokens.TokenFile;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.Objects;

/**
 * A token file cut into training windows: window {@code i} is the {@code seqLen + 1} tokens starting at
 * {@code i * seqLen}; its inputs are the first {@code seqLen} of them and its targets the last {@code seqLen} (each
 * input's next token). Consecutive windows share one token, so every token but the first is a target exactly once;
 * documents are packed back to back, separated by BOS.
 *
 * <p>With {@code maskBosTargets}, a target that is BOS becomes {@link #IGNORED}: the start of the next document
 * cannot be predicted from the one before it.
 *
 * <p>A view may cover a range of the windows ({@link #split}); window indices are relative to the view.
 */
public final class PackedSequences {
    /** The target value for "no loss here". */
    public static final int IGNORED = -1;

    private final TokenFile tokens;
    private final int seqLen;
    private final boolean maskBosTargets;
    private final long first, count;

    private PackedSequences(TokenFile tokens, int seqLen, boolean maskBosTargets, long first, long count) {
        this.tokens = tokens;
        this.seqLen = seqLen;
        this.maskBosTargets = maskBosTargets;
        this.first = first;
        this.count = count;
    }

    /** All {@code floor((tokens.size() - 1) / seqLen)} windows of {@code tokens}. */
    public static PackedSequences of(TokenFile tokens, int seqLen, boolean maskBosTargets) {
        Objects.requireNonNull(tokens, "tokens");
        if (seqLen < 1) throw new IllegalArgumentException("seqLen must be at least 1, got " + seqLen);
        long windows = Math.max(0, (tokens.size() - 1) / seqLen);
        if (windows == 0) {
            throw new IllegalArgumentException(tokens.path() + " holds " + tokens.size() + " tokens, too few for one window of " + (seqLen + 1) + " (seqLen + 1) tokens");
        }
        return new PackedSequences(tokens, seqLen, maskBosTargets, 0, windows);
    }

    /** The number of windows. */
    public long size() { return count; }

    public int seqLen() { return seqLen; }

    public boolean masksBosTargets() { return maskBosTargets; }

    public TokenFile tokens() { return tokens; }

    /** The index of the first token of window {@code window} in the token file. */
    public long start(long window) {
        Objects.checkIndex(window, count);
        return (first + window) * seqLen;
    }

    /** Writes window {@code window}'s inputs and targets ({@code seqLen} each) at the given offsets. */
    public void read(long window, int[] inputs, int inputsOffset, int[] targets, int targetsOffset) {
        Objects.checkFromIndexSize(targetsOffset, seqLen, targets.length);
        long start = start(window);
        tokens.read(start, inputs, inputsOffset, seqLen);
        System.arraycopy(inputs, inputsOffset + 1, targets, targetsOffset, seqLen - 1);
        targets[targetsOffset + seqLen - 1] = tokens.get(start + seqLen);
        if (!maskBosTargets) return;
        int bos = tokens.bos();
        for (int k = targetsOffset; k < targetsOffset + seqLen; k++) if (targets[k] == bos) targets[k] = IGNORED;
    }

    /**
     * Splits off the last windows for validation: {@code round(size() * heldOutFraction)} of them, at least one, and
     * at least one window is left for training. Deterministic; the last training window's final target is the first
     * validation input (the windows share that one token). For a separate validation corpus, build a second token
     * file and view it with {@link #of} instead.
     */
    public Split split(double heldOutFraction) {
        if (!(heldOutFraction > 0 && heldOutFraction < 1)) throw new IllegalArgumentException("heldOutFraction must be in (0, 1), got " + heldOutFraction);
        if (count < 2) throw new IllegalArgumentException("cannot hold out part of " + count + " window: at least 2 are needed");
        long heldOut = Math.min(count - 1, Math.max(1, Math.round(count * heldOutFraction)));
        return new Split(new PackedSequences(tokens, seqLen, maskBosTargets, first, count - heldOut),
            new PackedSequences(tokens, seqLen, maskBosTargets, first + count - heldOut, heldOut));
    }

    /**
     * A SHA-256 (hex) of what the windows hold: the sequence length, the masking and every token of the view. Reads
     * all tokens; checkpoints record it so that a resume on other data is refused.
     */
    public String sha256() {
        MessageDigest md = Sha256.digest();
        md.update(ByteBuffer.allocate(9).putInt(seqLen).putInt(tokens.bos()).put((byte) (maskBosTargets ? 1 : 0)).array());
        long from = start(0), end = start(count - 1) + seqLen + 1;
        int[] buf = new int[1 << 16];
        ByteBuffer bytes = ByteBuffer.allocate(buf.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = from; i < end; i += buf.length) {
            int n = (int) Math.min(buf.length, end - i);
            tokens.read(i, buf, 0, n);
            bytes.clear();
            bytes.asIntBuffer().put(buf, 0, n);
            md.update(bytes.array(), 0, n * 4);
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** Training and validation windows, disjoint. */
    public record Split(PackedSequences train, PackedSequences validation) {}

    @Override
    public String toString() {
        return "PackedSequences[" + count + " windows of " + seqLen + " from window " + first + " of " + tokens.path() + (maskBosTargets ? ", BOS targets masked" : "") + "]";
    }
}
