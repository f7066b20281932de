package dev.eetune.train;

import dev.eetune.backend.Backend;
import dev.eetune.nn.Parameter;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW with fp32 state and decoupled weight decay (applied to parameters marked {@code decay}: matrices), one
 * fused native update per parameter. Gradient clipping is folded into the update as a gradient scale.
 */
public final class AdamW implements AutoCloseable {
    private final List<Parameter> params;
    private final float beta1, beta2, eps, weightDecay;
    private final Scope scope;
    private final Map<String, Tensor[]> state = new LinkedHashMap<>();
    private int t;

    public AdamW(List<Parameter> params, float beta1, float beta2, float eps, float weightDecay) {
        if (params.isEmpty()) throw new IllegalArgumentException("AdamW: no parameters to optimise");
        if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0 && Float.isFinite(eps))) {
            throw new IllegalArgumentException("AdamW: betas must lie in [0, 1) and eps be > 0 and finite, got " + beta1 + ", " + beta2 + ", " + eps);
        }
        if (!(weightDecay >= 0) || Float.isInfinite(weightDecay)) throw new IllegalArgumentException("AdamW: weight decay must be >= 0 and finite, got " + weightDecay);
        this.params = List.copyOf(params);
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        Backend be = params.get(0).value().backend();
        this.scope = Scope.of(be);
        for (Parameter p : params) state.put(p.name(), new Tensor[] {scope.zeros(DType.F32, p.value().shape().dims()), scope.zeros(DType.F32, p.value().shape().dims())});
    }

    /** The gradient scale of {@link #step} that clips a global gradient norm {@code norm} to {@code clip} (0: no clipping). */
    public static float clipScale(double norm, float clip) { return clip > 0 && norm > clip ? (float) (clip / norm) : 1f; }

    /** EE-Tuning's defaults: β = (0.9, 0.95), ε = 1e-8. */
    public static AdamW withDefaults(List<Parameter> params, float weightDecay) { return new AdamW(params, 0.9f, 0.95f, 1e-8f, weightDecay); }

    /** Steps taken so far (the bias-correction counter). */
    public int steps() { return t; }

    @Override
    public String toString() {
        long values = params.stream().mapToLong(p -> p.value().size()).sum();
        return String.format(java.util.Locale.ROOT, "AdamW[%d tensors, %,d values, step %d, beta1 %s, beta2 %s, eps %s, weight decay %s]",
            params.size(), values, t, beta1, beta2, eps, weightDecay);
    }

    /** One update of every parameter with learning rate {@code lr}; gradients are multiplied by {@code gradScale}. */
    public void step(float lr, float gradScale) {
        t++;
        float bias1 = (float) (1 - Math.pow(beta1, t)), bias2 = (float) (1 - Math.pow(beta2, t));
        for (Parameter p : params) {
            Tensor[] mv = state.get(p.name());
            p.value().backend().ops().adamw(p.value(), p.grad(), mv[0], mv[1], lr, beta1, beta2, eps, p.decay() ? weightDecay : 0f, bias1, bias2, gradScale);
        }
    }

    /** The global L2 norm of all gradients. */
    public double gradNorm() { return Math.sqrt(gradSumSquares(params)); }

    /** The sum of squares of the gradients of {@code params} (accumulated in double: finite iff every value is). */
    public static double gradSumSquares(List<Parameter> params) {
        double ss = 0;
        for (Parameter p : params) ss += p.grad().backend().ops().sumSquares(p.grad());
        return ss;
    }

    /** First and second moments by parameter name (for checkpoints). */
    public Map<String, Tensor[]> state() { return state; }

    /** Restores the step counter (moments are restored through {@link #state()}). */
    public void restoreSteps(int steps) { this.t = steps; }

    @Override
    public void close() { scope.close(); }
}
