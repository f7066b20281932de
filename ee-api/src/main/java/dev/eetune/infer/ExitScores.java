package dev.eetune.infer;

import dev.eetune.exit.ExitCost;
import dev.eetune.exit.ExitGate;
import dev.eetune.exit.ExitHead;
import dev.eetune.exit.ExitInput;
import dev.eetune.model.LlamaConfig;
import dev.eetune.tensor.Tensor;

/**
 * The cheap confidence scores ({@link ConfidenceMethod#GATE}, {@link ConfidenceMethod#SATURATION}) of the first rows
 * at an exit, shared by the decoder and the teacher-forced measurements so that both decide alike. Stateless:
 * thread-safe.
 */
public final class ExitScores {
    private ExitScores() {}

    /**
     * The score of rows 0..rows-1: the gate's P(agreement) (gate, and cascade's pre-filter; computed into
     * {@code scratch}, F32 with at least {@code rows} values, which the decoder allocates once), or the cosine of the
     * hidden state before the layer ({@code before}, rows x dim on the host) and after it ({@code in.hidden()}).
     */
    public static float[] cheap(ConfidenceMethod method, ExitGate gate, ExitHead head, Tensor scratch, ExitInput in, float[] before, int rows) {
        switch (method) {
            case GATE:
            case CASCADE:
                if (gate == null) throw new IllegalStateException("the exit after layer " + head.layer() + " has no gate: train gates with `ee gates` first");
                return gate.score(scratch, in.hidden(), rows);
            case SATURATION:
                return cosines(before, in.hidden().slice(0, rows).toFloatArray(), rows);
            default:
                throw new IllegalArgumentException(method + " is not a cheap confidence method");
        }
    }

    /**
     * Row-wise cosine similarity of two [rows, dim] host arrays: a handful of rows of one hidden state each, so the
     * host does it without a kernel (one copy out per side). NaN for a zero or non-finite row: never confident.
     */
    static float[] cosines(float[] a, float[] b, int rows) {
        int dim = a.length / Math.max(1, rows);
        float[] out = new float[rows];
        for (int r = 0; r < rows; r++) {
            double ab = 0, aa = 0, bb = 0;
            for (int i = r * dim; i < (r + 1) * dim; i++) {
                ab += (double) a[i] * b[i];
                aa += (double) a[i] * a[i];
                bb += (double) b[i] * b[i];
            }
            double d = Math.sqrt(aa * bb);
            out[r] = d > 0 && Double.isFinite(d) ? (float) (ab / d) : Float.NaN;
        }
        return out;
    }

    /** The method's own cost per scored row, in layers (0 for softmax: its cost is the head's); gates of {@code gateHidden} hidden units. */
    public static double scoreLayers(ConfidenceMethod method, LlamaConfig c, int gateHidden) {
        switch (method) {
            case GATE:
            case CASCADE: return ExitCost.gateMacs(c, gateHidden) / ExitCost.layerMacs(c);
            case SATURATION: return ExitCost.saturationMacs(c) / ExitCost.layerMacs(c);
            default: return 0;
        }
    }

    /** A head's cost per evaluated row, in layers. */
    public static double headLayers(ExitHead h, LlamaConfig c) { return ExitCost.headMacs(h.architecture(), c) / ExitCost.layerMacs(c); }
}
