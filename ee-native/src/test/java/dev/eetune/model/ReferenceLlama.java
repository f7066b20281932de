package dev.eetune.model;

import java.util.ArrayList;
import java.util.List;

/**
 * A straightforward double-precision Llama forward with no cache (test scope): the oracle the native forward is
 * compared with. Weights are read from a loaded model (BF16/F16 widened exactly).
 */
public final class ReferenceLlama {
    /** One layer's weights as arrays. */
    public record Layer(float[] attnNorm, float[] wq, float[] wk, float[] wv, float[] wo, float[] bq, float[] bk, float[] bv,
                         float[] ffnNorm, float[] gate, float[] down, float[] up) {
        public static Layer of(LayerWeights l) {
            return new Layer(l.attnNorm().toFloatArray(), l.wq().toFloatArray(), l.wk().toFloatArray(), l.wv().toFloatArray(), l.wo().toFloatArray(),
                l.bq() == null ? null : l.bq().toFloatArray(), l.bk() == null ? null : l.bk().toFloatArray(), l.bv() == null ? null : l.bv().toFloatArray(),
                l.ffnNorm().toFloatArray(), l.wGate().toFloatArray(), l.wDown().toFloatArray(), l.wUp().toFloatArray());
        }
    }

    private final LlamaConfig c;
    private final float[] emb, norm, head, invFreq;
    private final List<Layer> layers = new ArrayList<>();

    public ReferenceLlama(LlamaModel m) {
        c = m.config();
        LlamaWeights w = m.weights();
        emb = w.tokenEmbedding().toFloatArray();
        norm = w.finalNorm().toFloatArray();
        head = w.lmHead().toFloatArray();
        invFreq = c.ropeInverseFrequencies();
        for (LayerWeights l : w.layers()) layers.add(Layer.of(l));
    }

    /** Hidden states after {@code nLayers} layers, [T][dim]. */
    public double[][] hidden(int[] tokens, int nLayers) {
        double[][] x = new double[tokens.length][c.dim()];
        for (int i = 0; i < tokens.length; i++) for (int j = 0; j < c.dim(); j++) x[i][j] = emb[tokens[i] * c.dim() + j];
        for (int l = 0; l < nLayers; l++) x = layer(layers.get(l), x, null);
        return x;
    }

    /** Backbone layer {@code l} (0-based). */
    public Layer layerWeights(int l) { return layers.get(l); }

    /**
     * One causal layer over a sequence x [T][dim] (positions 0..T-1); returns its output. attnResidualOut (may be
     * null) receives x + attention(x), the input of the layer's MLP residual branch.
     */
    public double[][] layer(Layer w, double[][] in, double[][] attnResidualOut) {
        int t = in.length, d = c.dim(), hd = c.headDim(), qd = c.nHeads() * hd, kd = c.nKvHeads() * hd;
        double[][] x = new double[t][];
        for (int i = 0; i < t; i++) x[i] = in[i].clone();
        double[][] q = new double[t][], k = new double[t][], v = new double[t][];
        for (int i = 0; i < t; i++) {
            double[] xn = rmsnorm(x[i], w.attnNorm());
            q[i] = rope(add(matvec(w.wq(), xn, qd), w.bq()), i, c.nHeads());
            k[i] = rope(add(matvec(w.wk(), xn, kd), w.bk()), i, c.nKvHeads());
            v[i] = add(matvec(w.wv(), xn, kd), w.bv());
        }
        for (int i = 0; i < t; i++) {
            double[] att = new double[qd];
            for (int h = 0; h < c.nHeads(); h++) {
                int kh = h / (c.nHeads() / c.nKvHeads());
                double[] s = new double[i + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j <= i; j++) {
                    double dot = 0;
                    for (int e = 0; e < hd; e++) dot += q[i][h * hd + e] * k[j][kh * hd + e];
                    s[j] = dot / Math.sqrt(hd);
                    max = Math.max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j <= i; j++) sum += s[j] = Math.exp(s[j] - max);
                for (int j = 0; j <= i; j++) for (int e = 0; e < hd; e++) att[h * hd + e] += s[j] / sum * v[j][kh * hd + e];
            }
            double[] o = matvec(w.wo(), att, d);
            for (int j = 0; j < d; j++) x[i][j] += o[j];
            if (attnResidualOut != null) attnResidualOut[i] = x[i].clone();
            double[] m = mlp(w.gate(), w.up(), w.down(), rmsnorm(x[i], w.ffnNorm()));
            for (int j = 0; j < d; j++) x[i][j] += m[j];
        }
        return x;
    }

    /** down(silu(gate x) * up x). */
    public double[] mlp(float[] gate, float[] up, float[] down, double[] x) {
        double[] g = matvec(gate, x, c.hiddenDim()), u = matvec(up, x, c.hiddenDim());
        for (int j = 0; j < g.length; j++) g[j] = g[j] / (1 + Math.exp(-g[j])) * u[j];
        return matvec(down, g, c.dim());
    }

    /** Logits at every position, [T][vocab]. */
    public double[][] logits(int[] tokens) {
        double[][] x = hidden(tokens, c.nLayers());
        double[][] out = new double[x.length][];
        for (int i = 0; i < x.length; i++) out[i] = matvec(head, rmsnorm(x[i], norm), c.vocabSize());
        return out;
    }

    public double[] rmsnorm(double[] x, float[] w) {
        double ss = 0;
        for (double v : x) ss += v * v;
        double inv = 1 / Math.sqrt(ss / x.length + c.normEps());
        double[] out = new double[x.length];
        for (int j = 0; j < x.length; j++) out[j] = x[j] * inv * w[j];
        return out;
    }

    public static double[] matvec(float[] w, double[] x, int rows) {
        double[] out = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int j = 0; j < x.length; j++) s += w[r * x.length + j] * x[j];
            out[r] = s;
        }
        return out;
    }

    private static double[] add(double[] x, float[] b) {
        if (b != null) for (int j = 0; j < x.length; j++) x[j] += b[j];
        return x;
    }

    private double[] rope(double[] x, int pos, int heads) {
        int hd = c.headDim(), half = hd / 2;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < half; i++) {
                double a = pos * (double) invFreq[i], cos = Math.cos(a), sin = Math.sin(a);
                int p0 = h * hd + (c.ropeInterleaved() ? 2 * i : i), p1 = h * hd + (c.ropeInterleaved() ? 2 * i + 1 : i + half);
                double x0 = x[p0], x1 = x[p1];
                x[p0] = x0 * cos - x1 * sin;
                x[p1] = x0 * sin + x1 * cos;
            }
        }
        return x;
    }
}
