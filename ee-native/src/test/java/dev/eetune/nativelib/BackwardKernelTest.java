package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.backend.spi.Binding;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.function.DoubleSupplier;

import static dev.eetune.nativelib.Bindings.randn;
import static dev.eetune.nativelib.Bindings.relError;
import static dev.eetune.nativelib.Reference.dot;
import static dev.eetune.nativelib.Reference.numericalGradient;
import static dev.eetune.nativelib.Reference.toDouble;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Every backward kernel vs FINITE DIFFERENCES of the double-precision {@link Reference} forward, on fresh random
 * inputs, through each binding. The objective is L = sum(dout * forward(inputs)) with a random dout (for the fused
 * cross-entropy: L = sum_r grad_weight[r] * loss[r]); its central differences in double (step {@link #H}) are taken
 * on every element of small tensors and on a random sample (plus the first and last element) of larger ones, and
 * compared with the f32 native gradient as max |native - fd| / max |fd| over the checked elements (see
 * {@link #assertGrad(String, float[], float[], double[], double[], int[], double, double)} for the two refinements:
 * half an ulp for accumulated outputs, and the size of the summed terms where a gradient is a near-cancelling sum).
 * Outputs the header calls "written" are pre-filled with NaN; outputs it calls "accumulated" are pre-filled with
 * random values, which are subtracted before the comparison. AdamW, which is not a gradient, is checked against a
 * double-precision update. GEMM with transposes (the dW products) is covered by {@link KernelTest}.
 */
class BackwardKernelTest {
    /** Gradient tolerance: f32 kernels land around 1e-6 here; finite differences in double are good to ~1e-9. */
    static final double GRAD_TOL = 1e-4;
    /** Values (loss, max probability, fused vs unfused, optimizer state) that are one f32 computation away from double. */
    static final double F32_TOL = 1e-5;
    static final double H = 1e-5;
    /** Tensors up to this many elements are differenced on every element, larger ones on SAMPLE random elements. */
    static final int FULL = 300;
    static final int SAMPLE = 50;

    static List<Binding> bindings() { return Bindings.available(); }

    private static Backend backend(Binding b) { return CpuLibrary.backend(b); }

    // ---- RMSNorm ------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @MethodSource("bindings")
    void rmsnormBackward(Binding binding) {
        Random r = Bindings.random("rmsnormBackward");
        Backend be = backend(binding);
        Ops ops = be.ops();
        // dim = 1 is left out on purpose: there dx = w * eps / (x^2 + eps)^1.5 is ~1e-5 and the f32 formula
        // inv * (g - x * inv^2 * mean(g x)) cancels catastrophically; that is conditioning, not a kernel property.
        for (int[] s : new int[][] {{1, 2}, {3, 7}, {2, 64}, {5, 130}, {67, 33}, {3, 1000}}) {
            int rows = s[0], dim = s[1];
            String what = "rmsnorm " + Arrays.toString(s);
            try (Scope sc = Scope.of(be)) {
                float eps = 1e-5f;
                float[] x = randn(r, rows * dim), w = randn(r, dim), dout = randn(r, rows * dim), dw0 = randn(r, dim);
                Tensor tx = sc.of(x, rows, dim), tw = sc.of(w, dim), tdout = sc.of(dout, rows, dim);
                Tensor out = sc.allocate(DType.F32, rows, dim), inv = sc.allocate(DType.F32, rows);
                ops.rmsnorm(out, inv, tx, tw, eps);
                Tensor dx = sc.of(nans(rows * dim), rows, dim), dw = sc.of(dw0, dim);
                ops.rmsnormBackward(dx, dw, tdout, tx, tw, inv);

                double[] xd = toDouble(x), wd = toDouble(w);
                DoubleSupplier loss = () -> dot(dout, Reference.rmsnorm(xd, wd, rows, dim, eps));
                int[] ix = sample(r, x.length), iw = sample(r, w.length);
                double[] fdx = numericalGradient(loss, xd, ix, H), fdw = numericalGradient(loss, wd, iw, H);
                // terms: dx = inv (g - x inv^2 mean(g x)) with g = dout w, dw = sum_r dout x inv
                double[] scaleDx = new double[rows * dim], scaleDw = new double[dim];
                for (int i = 0; i < rows; i++) {
                    double ss = 0, gx = 0;
                    for (int j = 0; j < dim; j++) ss += xd[i * dim + j] * xd[i * dim + j];
                    double in = 1 / Math.sqrt(ss / dim + eps);
                    for (int j = 0; j < dim; j++) gx += Math.abs((double) dout[i * dim + j] * w[j] * x[i * dim + j]);
                    for (int j = 0; j < dim; j++) {
                        scaleDx[i * dim + j] = in * (Math.abs((double) dout[i * dim + j] * w[j]) + Math.abs(x[i * dim + j]) * in * in * gx / dim);
                        scaleDw[j] += Math.abs((double) dout[i * dim + j] * x[i * dim + j]) * in;
                    }
                }
                float[] gotDx = dx.toFloatArray(), gotDw = dw.toFloatArray();
                assertGrad(what + " dx", gotDx, null, fdx, scaleDx, ix);
                assertGrad(what + " dw (accumulated)", gotDw, dw0, fdw, scaleDw, iw);

                // either output may be skipped (null): the other one is unchanged
                Tensor dxOnly = sc.of(nans(rows * dim), rows, dim), dwOnly = sc.of(dw0, dim);
                ops.rmsnormBackward(dxOnly, null, tdout, tx, tw, inv);
                ops.rmsnormBackward(null, dwOnly, tdout, tx, tw, inv);
                assertThat(relError(dxOnly.toFloatArray(), toDouble(gotDx))).as(what + " dx without dw").isLessThan(F32_TOL);
                assertThat(relError(dwOnly.toFloatArray(), toDouble(gotDw))).as(what + " dw without dx").isLessThan(F32_TOL);
            }
        }
    }

    // ---- SwiGLU -------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @MethodSource("bindings")
    void swigluBackward(Binding binding) {
        Random r = Bindings.random("swigluBackward");
        Backend be = backend(binding);
        Ops ops = be.ops();
        for (int n : new int[] {1, 7, 64, 1001, 4099}) {
            String what = "swiglu n=" + n;
            try (Scope sc = Scope.of(be)) {
                float[] gate = randn(r, n), up = randn(r, n), dout = randn(r, n);
                for (int i = 0; i < n; i++) gate[i] *= 3;
                if (n >= 7) { // saturated sigmoid on both sides
                    gate[r.nextInt(n)] = 30f;
                    gate[r.nextInt(n)] = -30f;
                    gate[r.nextInt(n)] = -90f;
                }
                Tensor tg = sc.of(gate, n), tu = sc.of(up, n), tdout = sc.of(dout, n);
                Tensor dg = sc.of(nans(n), n), du = sc.of(nans(n), n);
                ops.swigluBackward(dg, du, tdout, tg, tu);

                double[] gd = toDouble(gate), ud = toDouble(up);
                DoubleSupplier loss = () -> dot(dout, Reference.swiglu(gd, ud));
                int[] idx = sample(r, n);
                // dsilu/dg = s (1 + g (1 - s)) vanishes near g = -1.28: measure dgate against its terms there
                double[] scaleDg = new double[n];
                for (int i = 0; i < n; i++) {
                    double sg = 1 / (1 + Math.exp(-gd[i]));
                    scaleDg[i] = Math.abs((double) dout[i] * up[i]) * sg * (1 + Math.abs(gd[i]) * (1 - sg));
                }
                float[] gotDg = dg.toFloatArray(), gotDu = du.toFloatArray();
                assertGrad(what + " dgate", gotDg, null, numericalGradient(loss, gd, idx, H), scaleDg, idx);
                assertGrad(what + " dup", gotDu, null, numericalGradient(loss, ud, idx, H), idx);

                // the header lets either output alias dout: same results, bit for bit
                Tensor alias1 = sc.of(dout, n), du2 = sc.allocate(DType.F32, n);
                ops.swigluBackward(alias1, du2, alias1, tg, tu);
                assertSameBits(what + " dgate aliasing dout", alias1.toFloatArray(), gotDg);
                assertSameBits(what + " dup with dgate aliasing dout", du2.toFloatArray(), gotDu);
                Tensor alias2 = sc.of(dout, n), dg2 = sc.allocate(DType.F32, n);
                ops.swigluBackward(dg2, alias2, alias2, tg, tu);
                assertSameBits(what + " dgate with dup aliasing dout", dg2.toFloatArray(), gotDg);
                assertSameBits(what + " dup aliasing dout", alias2.toFloatArray(), gotDu);
            }
        }
    }

    // ---- attention ----------------------------------------------------------------------------------------------

    @ParameterizedTest
    @MethodSource("bindings")
    void attentionBackwardDenseGqa(Binding binding) {
        Random r = Bindings.random("attentionBackward");
        Backend be = backend(binding);
        Ops ops = be.ops();
        // {batch, seq, heads, kvHeads, headDim}: groups of 1, 2 and 4 query heads per KV head, odd head dims,
        // and a sequence longer than the forward's 64-key block
        for (int[] s : new int[][] {{1, 1, 1, 1, 2}, {2, 5, 2, 1, 4}, {3, 7, 4, 1, 8}, {2, 6, 2, 2, 5}, {2, 9, 4, 4, 6},
                                    {1, 66, 2, 1, 8}, {2, 24, 8, 2, 16}, {3, 4, 6, 3, 3}}) {
            int batch = s[0], seq = s[1], heads = s[2], kvHeads = s[3], hd = s[4];
            int rows = batch * seq, qw = heads * hd, kvw = kvHeads * hd;
            String what = "attention " + Arrays.toString(s);
            try (Scope sc = Scope.of(be)) {
                float[] q = randn(r, rows * qw), k = randn(r, rows * kvw), v = randn(r, rows * kvw), dout = randn(r, rows * qw);
                float[] dk0 = randn(r, rows * kvw), dv0 = randn(r, rows * kvw);
                float scale = (float) (1 / Math.sqrt(hd));
                // a dense batch is the cache layout with max_len = seq: row (b, t) is sequence b at position t
                int[] rowSeq = new int[rows], rowPos = new int[rows];
                for (int i = 0; i < rows; i++) {
                    rowSeq[i] = i / seq;
                    rowPos[i] = i % seq;
                }
                Tensor tq = sc.of(q, rows, qw), tk = sc.of(k, batch, seq, kvw), tv = sc.of(v, batch, seq, kvw);
                Tensor out = sc.allocate(DType.F32, rows, qw), lse = sc.allocate(DType.F32, rows, heads);
                ops.attention(out, lse, tq, tk, tv, sc.of(rowSeq, rows), sc.of(rowPos, rows), heads, kvHeads, hd, scale);
                Tensor dq = sc.of(nans(rows * qw), rows, qw), dk = sc.of(dk0, batch, seq, kvw), dv = sc.of(dv0, batch, seq, kvw);
                ops.attentionBackward(dq, dk, dv, sc.of(dout, rows, qw), out, lse, tq, tk, tv, batch, seq, heads, kvHeads, hd, scale);

                double[] qd = toDouble(q), kd = toDouble(k), vd = toDouble(v);
                DoubleSupplier loss = () -> dot(dout, Reference.attention(qd, kd, vd, rowSeq, rowPos, rows, heads, kvHeads, hd, seq, scale));
                int[] iq = sample(r, q.length), ikv = sample(r, k.length);
                assertGrad(what + " dq", dq.toFloatArray(), null, numericalGradient(loss, qd, iq, H), iq);
                assertGrad(what + " dk (accumulated)", dk.toFloatArray(), dk0, numericalGradient(loss, kd, ikv, H), ikv);
                assertGrad(what + " dv (accumulated)", dv.toFloatArray(), dv0, numericalGradient(loss, vd, ikv, H), ikv);
            }
        }
    }

    // ---- RoPE ---------------------------------------------------------------------------------------------------

    /** The backward of x -> R x is dout -> R^T dout, which is rope with inverse = true applied to dout. */
    @ParameterizedTest
    @MethodSource("bindings")
    void ropeInverseIsTheBackward(Binding binding) {
        Random r = Bindings.random("ropeBackward");
        Backend be = backend(binding);
        for (int[] s : new int[][] {{1, 1, 2}, {3, 2, 8}, {17, 6, 64}, {9, 5, 18}}) {
            int rows = s[0], heads = s[1], hd = s[2], width = heads * hd;
            float[] inv = new float[hd / 2];
            double theta = r.nextBoolean() ? 10000 : 500000;
            for (int i = 0; i < hd / 2; i++) inv[i] = (float) (1 / Math.pow(theta, 2.0 * i / hd));
            int[] pos = new int[rows];
            for (int i = 0; i < rows; i++) pos[i] = r.nextInt(4096);
            for (boolean interleaved : new boolean[] {true, false}) {
                String what = "rope " + Arrays.toString(s) + " interleaved=" + interleaved;
                try (Scope sc = Scope.of(be)) {
                    float[] x = randn(r, rows * width), dout = randn(r, rows * width);
                    Tensor tpos = sc.of(pos, rows), tinv = sc.of(inv, hd / 2);
                    Tensor dx = sc.of(dout, rows, width);
                    be.ops().rope(dx, tpos, tinv, heads, hd, interleaved, true);

                    double[] xd = toDouble(x);
                    DoubleSupplier loss = () -> dot(dout, Reference.rope(xd, pos, inv, rows, heads, hd, interleaved, false));
                    int[] idx = sample(r, x.length);
                    assertGrad(what + " dx", dx.toFloatArray(), null, numericalGradient(loss, xd, idx, H), idx);

                    // and the inverse undoes the forward
                    Tensor t = sc.of(x, rows, width);
                    be.ops().rope(t, tpos, tinv, heads, hd, interleaved, false);
                    be.ops().rope(t, tpos, tinv, heads, hd, interleaved, true);
                    assertThat(relError(t.toFloatArray(), xd)).as(what + " inverse(forward(x))").isLessThan(F32_TOL);
                }
            }
        }
    }

    // ---- embedding ----------------------------------------------------------------------------------------------

    @ParameterizedTest
    @MethodSource("bindings")
    void embeddingBackwardScatterAddsRepeatedIds(Binding binding) {
        Random r = Bindings.random("embeddingBackward");
        Backend be = backend(binding);
        // {n, dim, vocab}: more ids than rows in most, so ids repeat
        for (int[] s : new int[][] {{1, 1, 1}, {7, 3, 4}, {33, 65, 10}, {100, 130, 50}, {5, 1000, 3}}) {
            int n = s[0], dim = s[1], vocab = s[2];
            String what = "embedding " + Arrays.toString(s);
            try (Scope sc = Scope.of(be)) {
                int[] ids = new int[n];
                for (int i = 0; i < n; i++) ids[i] = r.nextInt(vocab);
                ids[n - 1] = ids[0];
                float[] table = randn(r, vocab * dim), dout = randn(r, n * dim), dtable0 = randn(r, vocab * dim);
                Tensor dtable = sc.of(dtable0, vocab, dim);
                be.ops().embeddingBackward(dtable, sc.of(dout, n, dim), sc.of(ids, n));

                double[] td = toDouble(table);
                DoubleSupplier loss = () -> dot(dout, Reference.embedding(td, ids, dim));
                int[] must = new int[dim]; // the whole row of the repeated id
                for (int j = 0; j < dim; j++) must[j] = ids[0] * dim + j;
                int[] idx = sample(r, table.length, must);
                assertGrad(what + " dtable (accumulated)", dtable.toFloatArray(), dtable0, numericalGradient(loss, td, idx, H), idx);
            }
        }
    }

    // ---- fused linear + cross-entropy ----------------------------------------------------------------------------

    /** {rows, dim, vocab}: one row, a one-word vocabulary (softmax 1, zero loss and gradient), a 32000-word one */
    static final int[][] CE_SIZES = {{1, 1, 3}, {5, 4, 1}, {3, 5, 7}, {6, 16, 50}, {37, 24, 257}, {4, 48, 1000}, {3, 8, 32000}};

    @ParameterizedTest
    @MethodSource("bindings")
    void linearCrossEntropy(Binding binding) {
        Random r = Bindings.random("linearCrossEntropy");
        Backend be = backend(binding);
        DType[] dtypes = {DType.F32, DType.F32, DType.BF16, DType.F16};
        float[] temps = {1f, 0.6f, 1.7f, 1f};
        for (int[] s : CE_SIZES) {
            for (int c = 0; c < dtypes.length; c++) checkLinearCrossEntropy(be, r, s[0], s[1], s[2], dtypes[c], temps[c]);
        }
    }

    private static void checkLinearCrossEntropy(Backend be, Random r, int rows, int dim, int vocab, DType wType, float temp) {
        Ops ops = be.ops();
        String what = String.format("linearCrossEntropy rows=%d dim=%d vocab=%d w=%s T=%s", rows, dim, vocab, wType, temp);
        try (Scope sc = Scope.of(be)) {
            float[] x = randn(r, rows * dim), w = randn(r, vocab * dim), gw = randn(r, rows), dw0 = randn(r, vocab * dim);
            for (int i = 0; i < w.length; i++) w[i] *= (float) (2 / Math.sqrt(dim)); // logits of O(2)
            int[] targets = new int[rows];
            for (int i = 0; i < rows; i++) targets[i] = r.nextInt(4) == 0 ? -1 : r.nextInt(vocab);
            targets[0] = r.nextInt(vocab);
            if (rows >= 3) targets[rows - 1] = -1;
            if (rows >= 4) gw[1] = 0f;
            Tensor tx = sc.of(x, rows, dim), tw = sc.of(wType, w, vocab, dim), tt = sc.of(targets, rows), tgw = sc.of(gw, rows);
            float[] wq = tw.toFloatArray(); // the reference sees the weights rounded to their dtype

            // references: loss, argmax and max probability in double; gradients by finite differences
            double[] refLoss = Reference.crossEntropy(x, wq, targets, rows, dim, vocab, temp);
            double[] logits = Reference.gemm(false, true, rows, vocab, dim, 1.0 / temp, x, wq, 0, null);
            double[] refMaxProb = new double[rows];
            // The f32 error of p - onehot is ~ulp(1) however small the difference is (a confident row: p_target -> 1),
            // so dx and dw are measured against their terms with p + onehot in place of p - onehot.
            double[] scaleDx = new double[rows * dim], scaleDw = new double[vocab * dim];
            for (int i = 0; i < rows; i++) {
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int j = 0; j < vocab; j++) max = Math.max(max, logits[i * vocab + j]);
                for (int j = 0; j < vocab; j++) sum += Math.exp(logits[i * vocab + j] - max);
                refMaxProb[i] = 1 / sum;
                if (targets[i] < 0) continue;
                for (int j = 0; j < vocab; j++) {
                    double a = Math.abs(gw[i]) / temp * (Math.exp(logits[i * vocab + j] - max) / sum + (j == targets[i] ? 1 : 0));
                    for (int d = 0; d < dim; d++) {
                        scaleDx[i * dim + d] += a * Math.abs(wq[j * dim + d]);
                        scaleDw[j * dim + d] += a * Math.abs(x[i * dim + d]);
                    }
                }
            }
            // finite differences of L = sum_r grad_weight[r] * loss[r]; x[r] only reaches row r's term, so x is
            // differenced row by row on that term alone (the others are constants there), w on the whole sum
            double[] wd = toDouble(wq);
            double[] fdx = new double[x.length];
            int[] ix = sample(r, x.length);
            for (int i = 0; i < rows; i++) {
                final int row = i;
                double[] xr = toDouble(Arrays.copyOfRange(x, i * dim, i * dim + dim));
                int[] local = Arrays.stream(ix).filter(e -> e / dim == row).map(e -> e - row * dim).toArray();
                double[] g = numericalGradient(() -> gw[row] * Reference.crossEntropy(xr, wd, new int[] {targets[row]}, 1, dim, vocab, temp)[0], xr, local, H);
                System.arraycopy(g, 0, fdx, i * dim, dim);
            }
            double[] xd = toDouble(x);
            DoubleSupplier objective = () -> {
                double[] l = Reference.crossEntropy(xd, wd, targets, rows, dim, vocab, temp);
                double sum = 0;
                for (int i = 0; i < rows; i++) sum += gw[i] * l[i];
                return sum;
            };
            // the rows of w that are targets carry the large gradients: always check a few of their elements
            Set<Integer> targetElements = new LinkedHashSet<>();
            for (int t : targets) if (t >= 0 && targetElements.size() < 24) for (int j = 0; j < 2; j++) targetElements.add(t * dim + r.nextInt(dim));
            int[] iw = sample(r, w.length, targetElements.stream().mapToInt(Integer::intValue).toArray());
            double[] fdw = numericalGradient(objective, wd, iw, H);
            // the loss is lse - logit[target], a difference of numbers of the logits' size: its f32 error scales with them
            double lossScale = 0;
            for (double z : logits) lossScale = Math.max(lossScale, Math.abs(z));

            Unfused unfused = unfused(be, sc, tx, tw, x, targets, gw, dw0, rows, dim, vocab, temp);
            for (int i = 0; i < rows; i++) assertArgmax(what + " unfused", i, unfused.argmax[i], logits, vocab);

            for (int rowBlock : rowBlocks(rows)) {
                String at = what + " rowBlock=" + rowBlock;
                Tensor loss = sc.of(nans(rows), rows), dx = sc.of(nans(rows * dim), rows, dim), dw = sc.of(dw0, vocab, dim);
                Tensor am = sc.allocate(DType.I32, rows), mp = sc.of(nans(rows), rows);
                ops.linearCrossEntropy(loss, dx, dw, am, mp, tx, tw, tt, tgw, rowBlock, temp);
                float[] gotLoss = loss.toFloatArray(), gotDx = dx.toFloatArray(), gotDw = dw.toFloatArray(), gotMp = mp.toFloatArray();
                int[] gotAm = am.toIntArray();

                assertThat(lossError(gotLoss, refLoss, lossScale)).as(at + " loss").isLessThan(F32_TOL);
                assertGrad(at + " dx", gotDx, null, fdx, scaleDx, ix);
                // a target row of dw is rounded twice onto what it held: the GEMM's update and then the one-hot term
                // (cross_entropy.c), so half an ulp of the stored value per rounding
                assertGrad(at + " dw (accumulated)", gotDw, dw0, fdw, scaleDw, iw, 1.0, GRAD_TOL);
                assertThat(allFinite(gotDx)).as(at + " dx finite everywhere").isTrue();
                for (int i = 0; i < rows; i++) {
                    if (targets[i] >= 0) continue;
                    assertThat(gotLoss[i]).as(at + " loss of ignored row %d", i).isEqualTo(0f);
                    for (int j = 0; j < dim; j++) assertThat(Math.abs(gotDx[i * dim + j])).as(at + " dx of ignored row %d", i).isEqualTo(0f);
                }
                for (int i = 0; i < rows; i++) assertArgmax(at, i, gotAm[i], logits, vocab);
                assertThat(relError(gotMp, refMaxProb)).as(at + " max prob").isLessThan(F32_TOL);

                // fused vs the same thing through gemm, softmax and argmax with materialised logits
                assertThat(lossError(gotLoss, toDouble(unfused.loss), lossScale)).as(at + " loss fused vs unfused").isLessThan(F32_TOL);
                assertGrad(at + " dx fused vs unfused", gotDx, null, toDouble(unfused.dx), scaleDx, all(gotDx.length), 0, F32_TOL);
                assertGrad(at + " dw fused vs unfused (accumulated)", gotDw, dw0, unfused.dwGrad, scaleDw, all(gotDw.length), 1, F32_TOL);
                assertThat(relError(gotMp, toDouble(unfused.maxProb))).as(at + " max prob fused vs unfused").isLessThan(F32_TOL);
            }

            // dx or dw alone
            Tensor loss = sc.allocate(DType.F32, rows), dx = sc.of(nans(rows * dim), rows, dim), dw = sc.of(dw0, vocab, dim);
            ops.linearCrossEntropy(loss, dx, null, null, null, tx, tw, tt, tgw, 2, temp);
            assertGrad(what + " dx without dw", dx.toFloatArray(), null, fdx, scaleDx, ix);
            ops.linearCrossEntropy(loss, null, dw, null, null, tx, tw, tt, tgw, 2, temp);
            assertGrad(what + " dw without dx", dw.toFloatArray(), dw0, fdw, scaleDw, iw);

            // without grad weights there is no backward: the loss is the same and dw is untouched; all extras may be null
            dw = sc.of(dw0, vocab, dim);
            ops.linearCrossEntropy(loss, null, dw, null, null, tx, tw, tt, null, 2, temp);
            assertThat(lossError(loss.toFloatArray(), refLoss, lossScale)).as(what + " loss without backward").isLessThan(F32_TOL);
            assertSameBits(what + " dw untouched without grad weights", dw.toFloatArray(), dw0);

            // every row ignored: zero loss and dx, dw unchanged, argmax and max probability still reported
            int[] none = new int[rows];
            Arrays.fill(none, -1);
            Tensor am = sc.allocate(DType.I32, rows), mp = sc.allocate(DType.F32, rows);
            ops.linearCrossEntropy(loss, dx, dw, am, mp, tx, tw, sc.of(none, rows), tgw, 2, temp);
            for (int i = 0; i < rows; i++) assertThat(loss.toFloatArray()[i]).as(what + " all ignored: loss").isEqualTo(0f);
            for (float v : dx.toFloatArray()) assertThat(Math.abs(v)).as(what + " all ignored: dx").isEqualTo(0f);
            assertSameBits(what + " all ignored: dw unchanged", dw.toFloatArray(), dw0);
            int[] amv = am.toIntArray();
            for (int i = 0; i < rows; i++) assertArgmax(what + " all ignored", i, amv[i], logits, vocab);
            assertThat(relError(mp.toFloatArray(), refMaxProb)).as(what + " all ignored: max prob").isLessThan(F32_TOL);
        }
    }

    /** max |got - ref| / max(max |ref|, scale). */
    private static double lossError(float[] got, double[] ref, double scale) {
        double num = 0, den = scale;
        for (int i = 0; i < ref.length; i++) {
            num = Math.max(num, Math.abs(got[i] - ref[i]));
            den = Math.max(den, Math.abs(ref[i]));
        }
        return num / Math.max(den, 1e-30);
    }

    /** Rows per block: 0 (the scratch bound decides: one block here), one row, 2 and 7 (the last block short where rows
     *  is no multiple), all rows, more than the rows. */
    private static int[] rowBlocks(int rows) {
        Set<Integer> c = new LinkedHashSet<>(List.of(0, 1));
        for (int k : new int[] {2, 7}) if (k < rows && rows % k != 0) c.add(k);
        c.add(rows);
        c.add(rows + 13);
        return c.stream().mapToInt(Integer::intValue).toArray();
    }

    /** The native argmax must be the double argmax unless the top two logits are within f32 noise of each other. */
    private static void assertArgmax(String at, int row, int got, double[] logits, int vocab) {
        int best = 0;
        for (int j = 1; j < vocab; j++) if (logits[row * vocab + j] > logits[row * vocab + best]) best = j;
        if (got == best) return;
        assertThat(got).as(at + " argmax row %d", row).isBetween(0, vocab - 1);
        double gap = logits[row * vocab + best] - logits[row * vocab + got];
        assertThat(gap).as(at + " argmax row %d: got %d, expected %d", row, got, best).isLessThan(1e-5 * Math.max(1, Math.abs(logits[row * vocab + best])));
    }

    private static final class Unfused {
        float[] loss, dx, maxProb;
        double[] dwGrad; // what the unfused gemm added to dw0
        int[] argmax;
    }

    /**
     * The unfused computation through the other ops: gemm materialises x W^T, softmax and argmax read it at the
     * temperature, the cross-entropy and dlogits = grad_weight (p - onehot) / T are formed in f32 here, then
     * dx = dlogits W and dw += dlogits^T x are two gemms.
     */
    private static Unfused unfused(Backend be, Scope sc, Tensor tx, Tensor tw, float[] x, int[] targets, float[] gw, float[] dw0,
                                   int rows, int dim, int vocab, float temp) {
        Ops ops = be.ops();
        Tensor logits = sc.allocate(DType.F32, rows, vocab), probs = sc.allocate(DType.F32, rows, vocab);
        ops.gemm(false, true, 1f, tx, tw, 0f, logits);
        ops.softmax(probs, logits, temp);
        Tensor am = sc.allocate(DType.I32, rows), mp = sc.allocate(DType.F32, rows);
        ops.argmax(am, mp, logits, temp);
        float[] p = probs.toFloatArray();
        Unfused u = new Unfused();
        u.loss = new float[rows];
        float[] dlogits = new float[rows * vocab];
        for (int i = 0; i < rows; i++) {
            if (targets[i] < 0) continue;
            u.loss[i] = (float) -Math.log(p[i * vocab + targets[i]]);
            for (int j = 0; j < vocab; j++) dlogits[i * vocab + j] = gw[i] * (p[i * vocab + j] - (j == targets[i] ? 1f : 0f)) / temp;
        }
        Tensor dl = sc.of(dlogits, rows, vocab), dx = sc.allocate(DType.F32, rows, dim), dw = sc.of(dw0, vocab, dim);
        ops.gemm(false, false, 1f, dl, tw, 0f, dx);
        ops.gemm(true, false, 1f, dl, tx, 1f, dw);
        u.dx = dx.toFloatArray();
        float[] dwv = dw.toFloatArray();
        u.dwGrad = new double[dwv.length];
        for (int i = 0; i < dwv.length; i++) u.dwGrad[i] = (double) dwv[i] - dw0[i];
        u.argmax = am.toIntArray();
        u.maxProb = mp.toFloatArray();
        return u;
    }

    // ---- AdamW --------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @MethodSource("bindings")
    void adamwMatchesTheDoubleUpdateOverSteps(Binding binding) {
        Random r = Bindings.random("adamw");
        Backend be = backend(binding);
        float lr = 0.01f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, wd = 0.1f;
        int steps = 10;
        for (int n : new int[] {1, 7, 4101, 20000}) {
            float gradScale = n % 2 == 0 ? 1f : 1f / 256;
            String what = "adamw n=" + n + " grad_scale=" + gradScale;
            try (Scope sc = Scope.of(be)) {
                float[] p0 = randn(r, n);
                Tensor p = sc.of(p0, n), m = sc.zeros(DType.F32, n), v = sc.zeros(DType.F32, n);
                // the independent double trajectory from the same start
                double[] tp = toDouble(p0), tm = new double[n], tv = new double[n];
                for (int t = 1; t <= steps; t++) {
                    float[] g = randn(r, n);
                    for (int i = 0; i < n; i++) {
                        int kind = r.nextInt(8);
                        if (kind == 0) g[i] = 0f;                                                  // no gradient: decay only
                        else if (kind == 1) g[i] *= (float) Math.pow(10, -9 + 2 * r.nextDouble()); // sqrt(v) near eps
                        else if (kind == 2) g[i] *= 1000f;
                    }
                    float bias1 = (float) (1 - Math.pow(beta1, t)), bias2 = (float) (1 - Math.pow(beta2, t));
                    // one step from the native state, in double
                    float[] pBefore = p.toFloatArray();
                    double[] rp = toDouble(pBefore), rm = toDouble(m.toFloatArray()), rv = toDouble(v.toFloatArray()), gd = toDouble(g);
                    // m sums terms of either sign and may nearly cancel (n = 1 shows it): its error is relative to the
                    // size of the terms, beta1 |m| + (1 - beta1) |g'|, not to the possibly tiny sum
                    double mScale = 1e-30;
                    for (int i = 0; i < n; i++) mScale = Math.max(mScale, beta1 * Math.abs(rm[i]) + (1 - beta1) * Math.abs(gd[i] * gradScale));
                    Reference.adamw(rp, gd, rm, rv, lr, beta1, beta2, eps, wd, bias1, bias2, gradScale);
                    Reference.adamw(tp, gd, tm, tv, lr, beta1, beta2, eps, wd, bias1, bias2, gradScale);
                    be.ops().adamw(p, sc.of(g, n), m, v, lr, beta1, beta2, eps, wd, bias1, bias2, gradScale);

                    float[] pAfter = p.toFloatArray();
                    float[] mAfter = m.toFloatArray();
                    double mError = 0;
                    for (int i = 0; i < n; i++) mError = Math.max(mError, Math.abs(mAfter[i] - rm[i]));
                    assertThat(mError / mScale).as(what + " m at step " + t).isLessThan(F32_TOL);
                    assertThat(relError(v.toFloatArray(), rv)).as(what + " v at step " + t).isLessThan(F32_TOL);
                    // the step relative to the largest step (~lr), beyond the final rounding of p, which for |p| ~ 4
                    // is ~2e-7 and would otherwise dominate a step of lr * weight_decay * p on a zero gradient
                    assertThat(stepError(pAfter, rp, pBefore, 1)).as(what + " update at step " + t).isLessThan(F32_TOL);
                }
                // the whole trajectory vs the independent double one: one rounding of p per step, and f32 m, v states
                assertThat(stepError(p.toFloatArray(), tp, p0, steps)).as(what + " %d-step trajectory", steps).isLessThan(GRAD_TOL);
            }
        }
    }

    // ---- helpers ------------------------------------------------------------------------------------------------

    /** All indices when n <= FULL; otherwise SAMPLE distinct random ones plus the first, the last and {@code must}. */
    static int[] sample(Random r, int n, int... must) {
        if (n <= FULL) return all(n);
        Set<Integer> s = new LinkedHashSet<>();
        s.add(0);
        s.add(n - 1);
        for (int m : must) s.add(m);
        int target = s.size() + SAMPLE;
        while (s.size() < target) s.add(r.nextInt(n));
        return s.stream().mapToInt(Integer::intValue).toArray();
    }

    /** {@link #assertGrad(String, float[], float[], double[], double[], int[], double, double)} against finite differences. */
    static void assertGrad(String what, float[] got, float[] before, double[] fd, int[] idx) {
        assertGrad(what, got, before, fd, null, idx, before == null ? 0 : 0.5, GRAD_TOL);
    }

    /** The same with a cancellation-aware scale (see the other overload). */
    static void assertGrad(String what, float[] got, float[] before, double[] fd, double[] scale, int[] idx) {
        assertGrad(what, got, before, fd, scale, idx, before == null ? 0 : 0.5, GRAD_TOL);
    }

    /**
     * max over idx of |got - before - ref| / max over idx of max(|ref|, scale) < tol, where before == null means a
     * written output. An accumulated output is stored in f32 after adding to {@code before}, so {@code ulps} ulps of
     * the stored value are allowed on top (that matters when the gradient is much smaller than what it is added to).
     * scale (may be null) is, per element, the size of the terms the gradient is a sum of; where they cancel (a
     * confident softmax row: p - onehot ~ 0), f32 rounding of the terms, not of the result, bounds the error.
     */
    static void assertGrad(String what, float[] got, float[] before, double[] ref, double[] scale, int[] idx, double ulps, double tol) {
        double num = 0, den = 0;
        int worst = -1;
        for (int i : idx) {
            double g = before == null ? got[i] : (double) got[i] - before[i];
            double e = Math.max(0, Math.abs(g - ref[i]) - ulps * Math.ulp(got[i]));
            if (!(e <= num)) { num = e; worst = i; } // NaN counts as the worst
            den = Math.max(den, Math.max(Math.abs(ref[i]), scale == null ? 0 : scale[i]));
        }
        if (den == 0) { // e.g. dq and dk of a one-token sequence: the native gradient must vanish too
            assertThat(num).as("%s: the reference gradient is zero, the native one is not (worst element %d: %s)", what, worst,
                worst < 0 ? "-" : got[worst]).isLessThan(1e-6);
            return;
        }
        double err = num / den;
        assertThat(err).as("%s: max |native - reference| / scale = %s / %s (worst element %d: native %s, reference %s)", what, num, den, worst,
            worst < 0 ? "-" : (before == null ? got[worst] : (double) got[worst] - before[worst]), worst < 0 ? "-" : ref[worst]).isLessThan(tol);
    }

    /**
     * An f32 result vs the exact double one, relative to how far it moved from {@code start}, beyond the rounding of
     * the stored result (ulps: how many f32 roundings of a value of its size it went through):
     * max (|got - exact| - ulps * ulp(got)) / max |exact - start|.
     */
    private static double stepError(float[] got, double[] exact, float[] start, int ulps) {
        double num = 0, den = 1e-30;
        for (int i = 0; i < got.length; i++) {
            num = Math.max(num, Math.abs(got[i] - exact[i]) - ulps * Math.ulp(got[i]));
            den = Math.max(den, Math.abs(exact[i] - start[i]));
        }
        return Math.max(num, 0) / den;
    }

    static int[] all(int n) {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) a[i] = i;
        return a;
    }

    /** Bit-identical arrays (Arrays.equals compares floats by their bits), naming the first difference. */
    private static void assertSameBits(String what, float[] got, float[] expected) {
        int i = Arrays.mismatch(got, expected);
        assertThat(i).as("%s: first difference at %d (%s vs %s)", what, i, i < 0 || i >= got.length ? "-" : got[i],
            i < 0 || i >= expected.length ? "-" : expected[i]).isEqualTo(-1);
    }

    private static boolean allFinite(float[] a) {
        for (float v : a) if (!Float.isFinite(v)) return false;
        return true;
    }

    private static float[] nans(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }
}
