package dev.eetune.nativelib;

/**
 * Straightforward double-precision reference implementations of every kernel, for tests. Arrays are row-major;
 * the semantics are those documented in native/include/eetune/eetune.h.
 */
final class Reference {
    private Reference() {}

    static double[] rmsnorm(float[] x, float[] w, int rows, int dim, double eps, double[] invRmsOut) {
        double[] out = new double[rows * dim];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int j = 0; j < dim; j++) ss += (double) x[r * dim + j] * x[r * dim + j];
            double inv = 1 / Math.sqrt(ss / dim + eps);
            if (invRmsOut != null) invRmsOut[r] = inv;
            for (int j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j] * inv * w[j];
        }
        return out;
    }

    /** C = alpha op(A) op(B) + beta C. */
    static double[] gemm(boolean ta, boolean tb, int m, int n, int k, double alpha, float[] a, float[] b, double beta, float[] c) {
        double[] out = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) {
                    double av = ta ? a[p * m + i] : a[i * k + p];
                    double bv = tb ? b[j * k + p] : b[p * n + j];
                    s += av * bv;
                }
                out[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * n + j]);
            }
        }
        return out;
    }

    static double[] rope(float[] x, int[] pos, float[] invFreq, int rows, int heads, int hd, boolean interleaved, boolean inverse) {
        return rope(toDouble(x), pos, invFreq, rows, heads, hd, interleaved, inverse);
    }

    /** Attention of packed rows against caches [nSeq][maxLen][kvHeads*hd]; lseOut [rows*heads] may be null. */
    static double[] attention(float[] q, float[] kc, float[] vc, int[] seq, int[] pos, int rows, int heads, int kvHeads, int hd, int maxLen, double scale, double[] lseOut) {
        double[] out = new double[rows * heads * hd];
        int kvDim = kvHeads * hd, group = heads / kvHeads;
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                int kh = h / group, n = pos[r] + 1;
                double[] s = new double[n];
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t < n; t++) {
                    double dot = 0;
                    long kb = ((long) seq[r] * maxLen + t) * kvDim + (long) kh * hd;
                    for (int d = 0; d < hd; d++) dot += (double) q[r * heads * hd + h * hd + d] * kc[(int) kb + d];
                    s[t] = dot * scale;
                    max = Math.max(max, s[t]);
                }
                double sum = 0;
                for (int t = 0; t < n; t++) sum += Math.exp(s[t] - max);
                if (lseOut != null) lseOut[r * heads + h] = max + Math.log(sum);
                for (int t = 0; t < n; t++) {
                    double p = Math.exp(s[t] - max) / sum;
                    long vb = ((long) seq[r] * maxLen + t) * kvDim + (long) kh * hd;
                    for (int d = 0; d < hd; d++) out[r * heads * hd + h * hd + d] += p * vc[(int) vb + d];
                }
            }
        }
        return out;
    }

    static double silu(double g) { return g / (1 + Math.exp(-g)); }

    static double[] softmaxRow(float[] x, int off, int n, double temperature) {
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < n; j++) max = Math.max(max, x[off + j] / temperature);
        double sum = 0;
        double[] p = new double[n];
        for (int j = 0; j < n; j++) sum += p[j] = Math.exp(x[off + j] / temperature - max);
        for (int j = 0; j < n; j++) p[j] /= sum;
        return p;
    }

    /** Per-row cross-entropy of x W^T / T (w [vocab][dim]); targets < 0 give 0. */
    static double[] crossEntropy(float[] x, float[] w, int[] targets, int rows, int dim, int vocab, double temperature) {
        return crossEntropy(toDouble(x), toDouble(w), targets, rows, dim, vocab, temperature);
    }

    // ---- double-input forwards and numerical gradients, for the backward kernels ----------------------------------

    static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    /** sum_i a[i] * b[i] in double: the scalar objective L = dout . forward(...) whose gradient a backward computes. */
    static double dot(float[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < b.length; i++) s += a[i] * b[i];
        return s;
    }

    /**
     * Central-difference gradient of f with respect to param[i] for each i in idx (step h; param is perturbed in place
     * and restored). Entries not in idx are NaN.
     */
    static double[] numericalGradient(java.util.function.DoubleSupplier f, double[] param, int[] idx, double h) {
        double[] g = new double[param.length];
        java.util.Arrays.fill(g, Double.NaN);
        for (int i : idx) {
            double p0 = param[i];
            param[i] = p0 + h;
            double up = f.getAsDouble();
            param[i] = p0 - h;
            double down = f.getAsDouble();
            param[i] = p0;
            g[i] = (up - down) / (2 * h);
        }
        return g;
    }

    /** RMSNorm of double inputs (see {@link #rmsnorm(float[], float[], int, int, double, double[])}). */
    static double[] rmsnorm(double[] x, double[] w, int rows, int dim, double eps) {
        double[] out = new double[rows * dim];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int j = 0; j < dim; j++) ss += x[r * dim + j] * x[r * dim + j];
            double inv = 1 / Math.sqrt(ss / dim + eps);
            for (int j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j] * inv * w[j];
        }
        return out;
    }

    /** silu(gate) * up elementwise. */
    static double[] swiglu(double[] gate, double[] up) {
        double[] out = new double[gate.length];
        for (int i = 0; i < out.length; i++) out[i] = silu(gate[i]) * up[i];
        return out;
    }

    /** out[r] = table[ids[r]] for a [vocab][dim] table. */
    static double[] embedding(double[] table, int[] ids, int dim) {
        double[] out = new double[ids.length * dim];
        for (int r = 0; r < ids.length; r++) System.arraycopy(table, ids[r] * dim, out, r * dim, dim);
        return out;
    }

    /** RoPE of double inputs (see {@link #rope(float[], int[], float[], int, int, int, boolean, boolean)}). */
    static double[] rope(double[] x, int[] pos, float[] invFreq, int rows, int heads, int hd, boolean interleaved, boolean inverse) {
        double[] out = x.clone();
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                int base = r * heads * hd + h * hd;
                for (int i = 0; i < hd / 2; i++) {
                    double ang = (double) pos[r] * invFreq[i] * (inverse ? -1 : 1);
                    double c = Math.cos(ang), s = Math.sin(ang);
                    int a = interleaved ? base + 2 * i : base + i, b = interleaved ? base + 2 * i + 1 : base + i + hd / 2;
                    double x0 = x[a], x1 = x[b];
                    out[a] = x0 * c - x1 * s;
                    out[b] = x0 * s + x1 * c;
                }
            }
        }
        return out;
    }

    /**
     * Attention of double inputs against caches [nSeq][maxLen][kvHeads*hd] (see the float version). A dense batch
     * [batch][seq] is the cache layout with maxLen = seq, row (b, t) at sequence b, position t.
     */
    static double[] attention(double[] q, double[] kc, double[] vc, int[] seq, int[] pos, int rows, int heads, int kvHeads, int hd, int maxLen, double scale) {
        double[] out = new double[rows * heads * hd];
        int kvDim = kvHeads * hd, group = heads / kvHeads;
        double[] s = new double[maxLen];
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                int kh = h / group, n = pos[r] + 1, qb = r * heads * hd + h * hd;
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t < n; t++) {
                    double dot = 0;
                    int kb = (seq[r] * maxLen + t) * kvDim + kh * hd;
                    for (int d = 0; d < hd; d++) dot += q[qb + d] * kc[kb + d];
                    s[t] = dot * scale;
                    max = Math.max(max, s[t]);
                }
                double sum = 0;
                for (int t = 0; t < n; t++) sum += s[t] = Math.exp(s[t] - max);
                for (int t = 0; t < n; t++) {
                    double p = s[t] / sum;
                    int vb = (seq[r] * maxLen + t) * kvDim + kh * hd;
                    for (int d = 0; d < hd; d++) out[qb + d] += p * vc[vb + d];
                }
            }
        }
        return out;
    }

    /** Per-row cross-entropy of x W^T / T with double inputs (see the float version); targets < 0 give 0. */
    static double[] crossEntropy(double[] x, double[] w, int[] targets, int rows, int dim, int vocab, double temperature) {
        double[] loss = new double[rows];
        double[] logits = new double[vocab];
        for (int r = 0; r < rows; r++) {
            if (targets[r] < 0) continue;
            double max = Double.NEGATIVE_INFINITY;
            for (int v = 0; v < vocab; v++) {
                double s = 0;
                for (int d = 0; d < dim; d++) s += x[r * dim + d] * w[v * dim + d];
                logits[v] = s / temperature;
                max = Math.max(max, logits[v]);
            }
            double sum = 0;
            for (double l : logits) sum += Math.exp(l - max);
            loss[r] = max + Math.log(sum) - logits[targets[r]];
        }
        return loss;
    }

    /**
     * One AdamW step in double, in place, exactly as the header states: g' = g * gradScale; m = b1 m + (1-b1) g';
     * v = b2 v + (1-b2) g'^2; p -= lr * (m / bias1 / (sqrt(v / bias2) + eps) + weightDecay * p).
     */
    static void adamw(double[] p, double[] g, double[] m, double[] v, double lr, double beta1, double beta2, double eps,
                      double weightDecay, double bias1, double bias2, double gradScale) {
        for (int i = 0; i < p.length; i++) {
            double gi = g[i] * gradScale;
            m[i] = beta1 * m[i] + (1 - beta1) * gi;
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
            p[i] -= lr * (m[i] / bias1 / (Math.sqrt(v[i] / bias2) + eps) + weightDecay * p[i]);
        }
    }
}
