package dev.eetune.model;

import dev.eetune.backend.Int8Panels;
import dev.eetune.backend.Ops;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/**
 * An 8-bit copy of an LM matrix w [vocab, dim] ({@link Ops#packInt8Panels}) and the radius of its scores' bound: for
 * any x, the score s_j = {@code scores} row j times x lies within E radius_j of the logit f_j an exact f32 kernel
 * computes from w, E the row's scale {@link #norms} gives (R_j of {@link LlamaModel#greedyTokens}, which derives it). Greedy decode screens its classifier
 * with one ({@link LlamaModel#greedyTokens}: {@link Ops#argmaxCandidates}), softmax exits their heads
 * ({@code EarlyExitGenerator}: {@link Ops#maxProbUpper}).
 *
 * <p>Usage: {@code ScoreScreen s = ScoreScreen.of(ops, w, scope); ops.linearPanels(scores, x, s.scores());
 * ops.maxProbUpper(upper, scores, s.radius(), scope.allocate(DType.F32, rows).copyFrom(ScoreScreen.norms(x)), t);}
 */
public final class ScoreScreen {
    private final Int8Panels scores;
    private final Tensor resid, norm, radius;

    private ScoreScreen(Int8Panels scores, Tensor resid, Tensor norm, Tensor radius) {
        this.scores = scores;
        this.resid = resid;
        this.norm = norm;
        this.radius = radius;
    }

    /** The screen of w (F32, or BF16 widened exactly) in {@code scope}: the copy, a quarter of the f32 bytes, and vocab floats thrice. */
    public static ScoreScreen of(Ops ops, Tensor w, Scope scope) {
        int vocab = w.dim(0), dim = w.dim(1);
        try (Scope tmp = scope.child()) {
            Tensor f32 = w;
            if (w.dtype() != DType.F32) ops.cast(f32 = tmp.allocate(DType.F32, vocab, dim), w);
            Tensor resid = scope.allocate(DType.F32, vocab), norm = scope.allocate(DType.F32, vocab);
            ScoreScreen s = new ScoreScreen(ops.packInt8Panels(f32, resid, norm, scope), resid, norm, scope.allocate(DType.F32, vocab));
            s.measure();
            return s;
        }
    }

    /** Copies the F32 w again (of the shape {@link #of} had; it has changed since, as trainable heads do). */
    public void repack(Ops ops, Tensor w) {
        ops.repackInt8Panels(scores, resid, norm, w);
        measure();
    }

    /** The copy, for {@link Ops#linearPanels(Tensor, Tensor, Int8Panels)}. */
    public Int8Panels scores() { return scores; }

    /** radius [vocab]: score j lies within E radius_j of the exact logit, E from {@link #norms}. */
    public Tensor radius() { return radius; }

    /** The share of a row's norm the radii allow for the kernel's rounding of the row (c below; EE_SCREEN_ROUNDING). */
    static final double ROUNDING = 1.0 / 128;

    /**
     * radius_j = (r_j + (c + (2g + 2^-21)(1 + c))(||w_j|| + r_j))(1 + 1e-4), rounded up, from the copy's residual
     * norms r_j and the rows' norms; c = 1/128 (the share of a row's scale {@link #norms} leaves to the kernel's 8-bit
     * rounding of it), g = (k + 8) 2^-24 / (1 - (k + 8) 2^-24), k = dim. See {@link LlamaModel#greedyTokens} for why.
     */
    private void measure() {
        float[] r = resid.toFloatArray(), n = norm.toFloatArray(), out = new float[r.length];
        int k = scores.in();
        double u = Math.scalb(1.0, -24), g = (k + 8) * u / (1 - (k + 8) * u), c = ROUNDING;
        for (int j = 0; j < out.length; j++) out[j] = Math.nextUp((float) ((r[j] + (c + (2 * g + 8 * u) * (1 + c)) * (n[j] + r[j])) * (1 + 1e-4)));
        radius.copyFrom(out);
    }

    /**
     * The bound's scale for each row x of x [rows, dim] (F32): E = max(||x||, 128 ||x - x'||) rounded up, x' the row as
     * the 8-bit kernel rounds it (x times 127 / max |x| in f32, the exact product rounded to the nearest, ties to even,
     * times max |x| / 127), so that ||x|| &le; E and ||x - x'|| &le; E / 128: every score lies within E radius_j of its
     * logit. The native exit steps compute the same (ee_screen_scale in native/common/candidates.h). NaN or +inf for a
     * row with a value that is not finite or a max |x| too small to scale (below 127 / Float.MAX_VALUE).
     */
    public static float[] norms(Tensor x) {
        int rows = x.dim(0), dim = x.dim(1);
        float[] v = x.toFloatArray(), out = new float[rows];
        for (int r = 0; r < rows; r++) {
            float top = 0;
            double ss = 0, ee = 0;
            for (int i = r * dim; i < (r + 1) * dim; i++) {
                top = Math.max(top, Math.abs(v[i]));
                ss += (double) v[i] * v[i];
            }
            if (!Double.isFinite(ss)) {
                out[r] = (float) ss;
                continue;
            }
            float inv = top > 0 ? 127f / top : 0f, scale = top / 127f;
            if (Float.isInfinite(inv)) { // too small to scale: the kernels give NaN scores, the exact logits decide
                out[r] = Float.NaN;
                continue;
            }
            for (int i = r * dim; i < (r + 1) * dim; i++) {
                double d = v[i] - (double) scale * Math.min(127, Math.max(-127, Math.rint((double) v[i] * inv)));
                ee += d * d;
            }
            out[r] = Math.nextUp((float) Math.max(Math.sqrt(ss), Math.sqrt(ee) / ROUNDING));
        }
        return out;
    }

    @Override
    public String toString() { return "ScoreScreen[" + scores + "]"; }
}
