package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.backend.spi.Binding;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static dev.eetune.nativelib.Bindings.randn;
import static dev.eetune.nativelib.Bindings.relError;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Every inference kernel vs the double-precision {@link Reference}, on fresh random inputs, through each binding. */
class KernelTest {
    static final double F32_TOL = 1e-5;
    static final int[][] SIZES = {{1, 1}, {3, 8}, {17, 64}, {67, 130}, {5, 1000}};

    static List<Binding> bindings() { return Bindings.available(); }

    private static Backend backend(Binding b) { return CpuLibrary.backend(b); }

    @ParameterizedTest
    @MethodSource("bindings")
    void rmsnorm(Binding binding) {
        Random r = Bindings.random("rmsnorm");
        Backend be = backend(binding);
        for (int[] s : SIZES) {
            int rows = s[0], dim = s[1];
            try (Scope sc = Scope.of(be)) {
                float[] x = randn(r, rows * dim), w = randn(r, dim);
                Tensor out = sc.allocate(DType.F32, rows, dim), inv = sc.allocate(DType.F32, rows);
                be.ops().rmsnorm(out, inv, sc.of(x, rows, dim), sc.of(w, dim), 1e-5f);
                double[] refInv = new double[rows];
                assertThat(relError(out.toFloatArray(), Reference.rmsnorm(x, w, rows, dim, 1e-5, refInv))).as("rmsnorm %s", Arrays.toString(s)).isLessThan(F32_TOL);
                assertThat(relError(inv.toFloatArray(), refInv)).isLessThan(F32_TOL);
            }
        }
    }

    /** Every batch size of the decode path (m <= 16, B transposed) with n off its tiles of 16, 8, 6, 4 or 3 weight rows
     *  and k off its steps (bf16 pairs of 32 or 16 elements, then 16 or 8 lanes, then a tail), m = 1 also on several
     *  threads (333 x 290); then past it (the packed kernel and OpenBLAS). */
    static final int[][] GEMM_SIZES = {{1, 1, 1}, {1, 37, 95}, {1, 333, 290}, {2, 7, 33}, {2, 19, 100}, {3, 5, 7}, {3, 29, 64},
        {4, 10, 16}, {5, 4, 47}, {6, 8, 17}, {7, 11, 31},
        {8, 300, 97}, {9, 13, 65}, {10, 2, 15}, {11, 7, 40}, {12, 5, 290}, {13, 9, 3}, {14, 6, 77}, {15, 14, 129},
        {16, 31, 300}, {17, 33, 65}, {67, 129, 31}, {130, 70, 257}};

    @ParameterizedTest
    @MethodSource("bindings")
    void gemmAllTransposesDtypesAndPaths(Binding binding) {
        Random r = Bindings.random("gemm");
        Backend be = backend(binding);
        try {
            for (Backend.GemmPath path : new Backend.GemmPath[] {Backend.GemmPath.AUTO, Backend.GemmPath.FALLBACK}) {
                be.setGemmPath(path);
                for (DType bt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                    for (int[] s : GEMM_SIZES) {
                        for (int t = 0; t < 4; t++) {
                            boolean ta = (t & 1) != 0, tb = (t & 2) != 0;
                            checkGemm(be, r, s[0], s[1], s[2], ta, tb, bt, path);
                        }
                    }
                }
            }
        } finally {
            be.setGemmPath(Backend.GemmPath.AUTO);
        }
    }

    private static void checkGemm(Backend be, Random r, int m, int n, int k, boolean ta, boolean tb, DType bt, Backend.GemmPath path) {
        try (Scope sc = Scope.of(be)) {
            float[] a = randn(r, m * k), b = randn(r, k * n), c = randn(r, m * n);
            Tensor ta_ = sc.of(a, ta ? k : m, ta ? m : k);
            Tensor tb_ = sc.of(bt, b, tb ? n : k, tb ? k : n);
            float[] bq = tb_.toFloatArray(); // the reference sees B as rounded to its dtype
            for (float beta : new float[] {0f, 0.5f}) {
                Tensor tc = sc.of(c, m, n);
                if (beta == 0) tc.copyFrom(nans(m * n));
                be.ops().gemm(ta, tb, 1.25f, ta_, tb_, beta, tc);
                double[] ref = Reference.gemm(ta, tb, m, n, k, 1.25, a, bq, beta, c);
                // the error relative to the size of the terms: with few of them (k = 1) they can cancel to near 0
                double[] terms = Reference.gemm(ta, tb, m, n, k, 1.25, abs(a), abs(bq), beta, abs(c));
                double err = 0, scale = 1e-30;
                float[] got = tc.toFloatArray();
                for (int i = 0; i < ref.length; i++) {
                    err = Math.max(err, Math.abs(got[i] - ref[i]));
                    scale = Math.max(scale, terms[i]);
                }
                assertThat(err / scale).as("gemm m=%d n=%d k=%d ta=%s tb=%s b=%s beta=%s path=%s", m, n, k, ta, tb, bt, beta, path)
                    .isLessThan(F32_TOL);
            }
        }
    }

    /**
     * The decode path computes each row alike whatever the rows beside it: a GEMM of 16 rows equals, bit for bit, the
     * same rows in slices of every size 1-15, for plain and packed f32, bf16 and f16 weights, n and k off the tiles and
     * steps. ee_decoder_layer_fwd relies on it when it runs a batch's rows as slices on several threads
     * (DecoderLayerFusionTest.rowSlicesGiveOneThreadsBits): the bits do not depend on the thread count.
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void decodePathRowsDoNotDependOnTheirNeighbours(Binding binding) {
        Random r = Bindings.random("gemm slices");
        Backend be = backend(binding);
        Ops ops = be.ops();
        int rows = Ops.PANELS_MAX_ROWS;
        for (DType bt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            for (int[] nk : new int[][] {{37, 95}, {172, 64}, {64, 172}, {300, 97}}) {
                int n = nk[0], k = nk[1];
                try (Scope sc = Scope.of(be)) {
                    Tensor w = sc.of(bt, randn(r, n * k), n, k), packed = ops.packPanels(w, sc), x = sc.of(randn(r, rows * k), rows, k);
                    for (boolean panels : new boolean[] {false, true}) {
                        Tensor all = sc.zeros(DType.F32, rows, n);
                        if (panels) ops.linearPanels(all, x, packed);
                        else ops.linear(all, x, w);
                        float[] want = all.toFloatArray();
                        for (int m = 1; m < rows; m++) {
                            Tensor y = sc.zeros(DType.F32, rows, n);
                            for (int r0 = 0; r0 < rows; r0 += m) {
                                int r1 = Math.min(rows, r0 + m);
                                if (panels) ops.linearPanels(y.slice(r0, r1), x.slice(r0, r1), packed);
                                else ops.linear(y.slice(r0, r1), x.slice(r0, r1), w);
                            }
                            assertThat(y.toFloatArray()).as("%s%s n=%d k=%d in slices of %d rows", bt, panels ? " packed" : "", n, k, m).isEqualTo(want);
                        }
                    }
                }
            }
        }
    }

    /**
     * A decode pass's attention computes each row alike whatever rows share the call, for tiny heads (the keys-in-lanes
     * kernel): the rows of one sequence (up to 16, and two sequences side by side) equal, bit for bit, the same rows in
     * calls of every smaller size. The early-exit pipeline (cpu/exit_pipeline.c) and the deferred rows of the serial
     * loop group a sequence's rows differently, and give the same bits because of it (and of the GEMMs' rows above).
     * Heads this CPU serves with another kernel promise nothing (ee_attention_rows_alike) and are not checked.
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void tinyHeadAttentionRowsDoNotDependOnTheirNeighbours(Binding binding) {
        Random r = Bindings.random("attention slices");
        Backend be = backend(binding);
        Assumptions.assumeTrue(be.features().contains(Backend.Feature.AVX2), "the keys-in-lanes kernel needs AVX2 or AVX-512; this CPU (or EETUNE_NO_AVX2) runs the portable kernels");
        int maxLen = 256, rows = 16;
        for (int[] shape : new int[][] {{8, 4, 8}, {4, 4, 16}, {6, 2, 4}}) { // heads, KV heads, head_dim
            int heads = shape[0], kvHeads = shape[1], hd = shape[2];
            for (int nSeq : new int[] {1, 2}) {
                try (Scope sc = Scope.of(be)) {
                    Tensor kc = sc.of(randn(r, nSeq * maxLen * kvHeads * hd), nSeq, maxLen, kvHeads * hd), vc = sc.of(randn(r, nSeq * maxLen * kvHeads * hd), nSeq, maxLen, kvHeads * hd);
                    Tensor q = sc.of(randn(r, rows * heads * hd), rows, heads * hd);
                    int[] seq = new int[rows], pos = new int[rows];
                    int start = r.nextInt(maxLen - rows);
                    for (int i = 0; i < rows; i++) { // nSeq = 2: the first half one sequence, the second another
                        seq[i] = nSeq == 2 && i >= rows / 2 ? 1 : 0;
                        pos[i] = start + (nSeq == 2 ? i % (rows / 2) : i);
                    }
                    Tensor all = sc.zeros(DType.F32, rows, heads * hd);
                    be.ops().attention(all, null, q, kc, vc, sc.of(seq, rows), sc.of(pos, rows), heads, kvHeads, hd, 0.3f);
                    float[] want = all.toFloatArray();
                    for (int m = 1; m < rows; m++) {
                        Tensor y = sc.zeros(DType.F32, rows, heads * hd);
                        for (int r0 = 0; r0 < rows; r0 += m) {
                            int r1 = Math.min(rows, r0 + m);
                            be.ops().attention(y.slice(r0, r1), null, q.slice(r0, r1), kc, vc, sc.of(Arrays.copyOfRange(seq, r0, r1), r1 - r0),
                                sc.of(Arrays.copyOfRange(pos, r0, r1), r1 - r0), heads, kvHeads, hd, 0.3f);
                        }
                        assertThat(y.toFloatArray()).as("%d/%d heads of %d, %d sequence(s) from position %d, in calls of %d rows", heads, kvHeads, hd, nSeq, start, m)
                            .isEqualTo(want);
                    }
                }
            }
        }
    }

    private static float[] abs(float[] v) {
        float[] a = new float[v.length];
        for (int i = 0; i < v.length; i++) a[i] = Math.abs(v[i]);
        return a;
    }

    private static float[] nans(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    /**
     * The CPU library keeps each thread's last sine/cosine table and reuses it for a call with the same positions,
     * inv_freq values and direction: the same tensors rewritten in place between calls must still give fresh results,
     * for a per-row table (scattered positions) and a per-position one (a run of positions).
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void ropeTableFollowsItsInputsWhenTheyChangeInPlace(Binding binding) {
        Random r = Bindings.random("rope-reuse");
        Backend be = backend(binding);
        int heads = 3, hd = 8;
        for (int[] first : new int[][] {{7, 900, 31}, {40, 41, 42, 43}}) {
            int rows = first.length;
            float[] inv = {1f, 0.1f, 0.01f, 0.001f};
            try (Scope sc = Scope.of(be)) {
                Tensor posT = sc.of(first, rows), invT = sc.of(inv, hd / 2);
                int[][] positions = {first, first, first.clone(), first.clone()};
                positions[2][rows - 1] += 1; // one row moved
                for (int i = 0; i < rows; i++) positions[3][i] += 5; // the whole run moved
                for (int step = 0; step < 6; step++) {
                    int[] pos = positions[Math.min(step, 3)];
                    if (step == 4) inv[1] = 0.2f; // inv_freq rewritten under the same pointer
                    boolean inverse = step == 5;
                    posT.copyFrom(pos);
                    invT.copyFrom(inv);
                    float[] x = randn(r, rows * heads * hd);
                    Tensor t = sc.of(x, rows, heads * hd);
                    be.ops().rope(t, posT, invT, heads, hd, false, inverse);
                    assertThat(relError(t.toFloatArray(), Reference.rope(x, pos, inv, rows, heads, hd, false, inverse)))
                        .as("step %d positions %s", step, Arrays.toString(pos)).isLessThan(F32_TOL);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void ropeBothConventionsAndInverse(Binding binding) {
        Random r = Bindings.random("rope");
        Backend be = backend(binding);
        for (int[] s : new int[][] {{1, 1, 2}, {3, 2, 8}, {17, 6, 64}, {9, 5, 18}}) {
            int rows = s[0], heads = s[1], hd = s[2];
            float[] inv = new float[hd / 2];
            double theta = r.nextBoolean() ? 10000 : 500000;
            for (int i = 0; i < hd / 2; i++) inv[i] = (float) (1 / Math.pow(theta, 2.0 * i / hd));
            int[] pos = new int[rows];
            for (int i = 0; i < rows; i++) pos[i] = r.nextInt(4096);
            for (boolean interleaved : new boolean[] {true, false}) {
                for (boolean inverse : new boolean[] {false, true}) {
                    try (Scope sc = Scope.of(be)) {
                        float[] x = randn(r, rows * heads * hd);
                        Tensor t = sc.of(x, rows, heads * hd);
                        be.ops().rope(t, sc.of(pos, rows), sc.of(inv, hd / 2), heads, hd, interleaved, inverse);
                        assertThat(relError(t.toFloatArray(), Reference.rope(x, pos, inv, rows, heads, hd, interleaved, inverse)))
                            .as("rope %s interleaved=%s inverse=%s", Arrays.toString(s), interleaved, inverse).isLessThan(F32_TOL);
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void attentionOverKvCache(Binding binding) {
        Random r = Bindings.random("attention");
        Backend be = backend(binding);
        // rows, heads, KV heads, head size, sequences, cache length (past 64: several key blocks on the decode path);
        // 3 and 4 rows of one sequence at stories260K's heads: either side of the keys-in-lanes / slot switch on AVX-512
        for (int[] s : new int[][] {{1, 1, 1, 4, 1, 40}, {3, 4, 2, 8, 2, 40}, {9, 8, 4, 16, 3, 40}, {20, 6, 3, 10, 2, 40}, {33, 4, 4, 64, 1, 40},
                                    {2, 8, 4, 8, 2, 300}, {3, 8, 4, 8, 1, 300}, {4, 8, 4, 8, 1, 300}, {3, 6, 6, 48, 3, 150}, {1, 2, 1, 26, 1, 129}}) {
            int rows = s[0], heads = s[1], kvHeads = s[2], hd = s[3], nSeq = s[4], maxLen = s[5];
            int[] seq = new int[rows], pos = new int[rows];
            for (int i = 0; i < rows; i++) {
                seq[i] = r.nextInt(nSeq);
                pos[i] = r.nextInt(maxLen);
            }
            try (Scope sc = Scope.of(be)) {
                float[] q = randn(r, rows * heads * hd), kc = randn(r, nSeq * maxLen * kvHeads * hd), vc = randn(r, nSeq * maxLen * kvHeads * hd);
                Tensor out = sc.allocate(DType.F32, rows, heads * hd), lse = sc.allocate(DType.F32, rows, heads);
                float scale = (float) (1 / Math.sqrt(hd));
                be.ops().attention(out, lse, sc.of(q, rows, heads * hd), sc.of(kc, nSeq, maxLen, kvHeads * hd), sc.of(vc, nSeq, maxLen, kvHeads * hd),
                    sc.of(seq, rows), sc.of(pos, rows), heads, kvHeads, hd, scale);
                double[] refLse = new double[rows * heads];
                double[] ref = Reference.attention(q, kc, vc, seq, pos, rows, heads, kvHeads, hd, maxLen, scale, refLse);
                assertThat(relError(out.toFloatArray(), ref)).as("attention %s", Arrays.toString(s)).isLessThan(F32_TOL);
                assertThat(relError(lse.toFloatArray(), refLse)).as("lse %s", Arrays.toString(s)).isLessThan(F32_TOL);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void embeddingSwigluResidualAndFriends(Binding binding) {
        Random r = Bindings.random("elementwise");
        Backend be = backend(binding);
        Ops ops = be.ops();
        for (int[] s : SIZES) {
            int rows = s[0], dim = s[1], vocab = 50;
            try (Scope sc = Scope.of(be)) {
                float[] table = randn(r, vocab * dim);
                int[] ids = new int[rows];
                for (int i = 0; i < rows; i++) ids[i] = r.nextInt(vocab);
                for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                    Tensor tt = sc.of(dt, table, vocab, dim);
                    float[] tq = tt.toFloatArray();
                    Tensor out = sc.allocate(DType.F32, rows, dim);
                    ops.embedding(out, tt, sc.of(ids, rows));
                    double[] ref = new double[rows * dim];
                    for (int i = 0; i < rows; i++) for (int j = 0; j < dim; j++) ref[i * dim + j] = tq[ids[i] * dim + j];
                    assertThat(relError(out.toFloatArray(), ref)).as("embedding %s", dt).isZero();
                }
                float[] a = randn(r, rows * dim), b = randn(r, rows * dim), bias = randn(r, dim);
                Tensor ta = sc.of(a, rows, dim), tb = sc.of(b, rows, dim), out = sc.allocate(DType.F32, rows, dim);
                double[] ref = new double[rows * dim];
                ops.swiglu(out, ta, tb);
                for (int i = 0; i < ref.length; i++) ref[i] = Reference.silu(a[i]) * b[i];
                assertThat(relError(out.toFloatArray(), ref)).as("swiglu").isLessThan(F32_TOL);
                ops.axpby(out, ta, -0.75f, tb);
                for (int i = 0; i < ref.length; i++) ref[i] = a[i] - 0.75 * b[i];
                assertThat(relError(out.toFloatArray(), ref)).as("axpby").isLessThan(F32_TOL);
                ops.add(out, ta, tb);
                for (int i = 0; i < ref.length; i++) ref[i] = (double) a[i] + b[i];
                assertThat(relError(out.toFloatArray(), ref)).as("add").isLessThan(F32_TOL);
                ops.addBias(out, sc.of(bias, dim));
                for (int i = 0; i < ref.length; i++) ref[i] += bias[i % dim];
                assertThat(relError(out.toFloatArray(), ref)).as("addBias").isLessThan(F32_TOL);
                ops.scale(out, 3f);
                for (int i = 0; i < ref.length; i++) ref[i] *= 3;
                assertThat(relError(out.toFloatArray(), ref)).as("scale").isLessThan(F32_TOL);
                double ss = 0;
                for (float v : a) ss += (double) v * v;
                assertThat(Math.abs(ops.sumSquares(ta) - ss) / ss).as("sumSquares").isLessThan(1e-9);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void castsMatchJavaConversions(Binding binding) {
        Random r = Bindings.random("cast");
        Backend be = backend(binding);
        try (Scope sc = Scope.of(be)) {
            int n = 1001;
            float[] x = randn(r, n);
            x[0] = 65504f; x[1] = 1e-7f; x[2] = -0f; x[3] = Float.POSITIVE_INFINITY; x[4] = 3.3895314e38f; x[5] = 70000f; x[6] = 6e-8f;
            Tensor src = sc.of(x, n);
            for (DType dt : new DType[] {DType.BF16, DType.F16}) {
                Tensor half = sc.allocate(dt, n), back = sc.allocate(DType.F32, n);
                be.ops().cast(half, src);
                be.ops().cast(back, half);
                float[] viaJava = sc.of(dt, x, n).toFloatArray();
                assertThat(back.toFloatArray()).as("cast f32 -> %s -> f32 vs Java rounding", dt).containsExactly(viaJava);
            }
        }
    }

    /** A row with a NaN (anywhere, on the vector path too) or an infinite maximum has no confidence: NaN, never 1 or inf. */
    @ParameterizedTest
    @MethodSource("bindings")
    void argmaxGivesNoConfidenceForNonFiniteRows(Binding binding) {
        Backend be = backend(binding);
        int n = 64;
        float[][] rows = new float[5][n];
        for (float[] row : rows) for (int j = 0; j < n; j++) row[j] = 0.01f * j;
        rows[0][17] = Float.NaN;                 // one NaN among finite logits
        Arrays.fill(rows[1], Float.NaN);         // all NaN
        rows[2][3] = Float.POSITIVE_INFINITY;    // an infinite maximum
        Arrays.fill(rows[3], Float.NEGATIVE_INFINITY);
        float[] flat = new float[rows.length * n];
        for (int i = 0; i < rows.length; i++) System.arraycopy(rows[i], 0, flat, i * n, n);
        try (Scope sc = Scope.of(be)) {
            Tensor idx = sc.allocate(DType.I32, rows.length), mp = sc.allocate(DType.F32, rows.length);
            be.ops().argmax(idx, mp, sc.of(flat, rows.length, n), 1f);
            float[] p = mp.toFloatArray();
            for (int i = 0; i < 4; i++) assertThat(p[i]).as("row %d", i).isNaN();
            assertThat(p[4]).as("the finite row").isBetween(0f, 1f);
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void softmaxArgmaxAndTopP(Binding binding) {
        Random r = Bindings.random("softmax");
        Backend be = backend(binding);
        Ops ops = be.ops();
        for (int[] s : new int[][] {{1, 1}, {3, 7}, {9, 512}, {4, 32000}}) {
            int rows = s[0], n = s[1];
            try (Scope sc = Scope.of(be)) {
                float[] x = randn(r, rows * n);
                for (int i = 0; i < x.length; i++) x[i] *= 3;
                Tensor tx = sc.of(x, rows, n), out = sc.allocate(DType.F32, rows, n);
                float temp = 0.7f;
                ops.softmax(out, tx, temp);
                double[] ref = new double[rows * n];
                for (int i = 0; i < rows; i++) System.arraycopy(Reference.softmaxRow(x, i * n, n, temp), 0, ref, i * n, n);
                assertThat(relError(out.toFloatArray(), ref)).as("softmax").isLessThan(F32_TOL);

                Tensor idx = sc.allocate(DType.I32, rows), mp = sc.allocate(DType.F32, rows);
                ops.argmax(idx, mp, tx, temp);
                int[] got = idx.toIntArray();
                double[] refMax = new double[rows];
                for (int i = 0; i < rows; i++) {
                    int best = 0;
                    for (int j = 1; j < n; j++) if (x[i * n + j] > x[i * n + best]) best = j;
                    assertThat(got[i]).isEqualTo(best);
                    refMax[i] = ref[i * n + best];
                }
                assertThat(relError(mp.toFloatArray(), refMax)).as("max prob").isLessThan(F32_TOL);

                float[] u = new float[rows];
                for (int i = 0; i < rows; i++) u[i] = r.nextFloat();
                for (float topP : new float[] {0.5f, 0.9f, 1f}) {
                    Tensor pick = sc.allocate(DType.I32, rows);
                    ops.sampleTopP(pick, tx, sc.of(u, rows), temp, topP);
                    int[] p = pick.toIntArray();
                    for (int i = 0; i < rows; i++) {
                        assertThat(p[i]).as("top-p %s row %d", topP, i).isEqualTo(topPReference(Arrays.copyOfRange(ref, i * n, i * n + n), topP, u[i]));
                    }
                }
            }
        }
    }

    /** The header's top-p rule in double: sort by probability (ties: lower index), keep the nucleus, walk the CDF. */
    private static int topPReference(double[] p, float topP, float u) {
        Integer[] order = new Integer[p.length];
        for (int i = 0; i < p.length; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b));
        double kept = 0;
        int count = 0;
        while (count < p.length) {
            kept += p[order[count++]];
            if (topP < 1 && kept >= topP) break;
        }
        double target = u * kept, cum = 0;
        for (int i = 0; i < count; i++) {
            cum += p[order[i]];
            if (cum > target) return order[i];
        }
        return order[count - 1];
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void kvWriteAndGatherRows(Binding binding) {
        Random r = Bindings.random("kv");
        Backend be = backend(binding);
        try (Scope sc = Scope.of(be)) {
            int rows = 7, width = 12, nSeq = 3, maxLen = 5;
            Tensor cache = sc.zeros(DType.F32, nSeq, maxLen, width);
            float[] src = randn(r, rows * width);
            int[] seq = {0, 1, 2, 0, 1, 2, 2}, pos = {0, 4, 1, 3, 0, 4, 2};
            be.ops().kvWrite(cache, sc.of(src, rows, width), sc.of(seq, rows), sc.of(pos, rows));
            float[] c = cache.toFloatArray();
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < width; j++) assertThat(c[(seq[i] * maxLen + pos[i]) * width + j]).isEqualTo(src[i * width + j]);
            }
            int[] idx = {6, 0, 0, 3};
            Tensor g = sc.allocate(DType.F32, idx.length, width);
            be.ops().gatherRows(g, sc.of(src, rows, width), sc.of(idx, idx.length));
            float[] gv = g.toFloatArray();
            for (int i = 0; i < idx.length; i++) {
                assertThat(Arrays.copyOfRange(gv, i * width, i * width + width)).containsExactly(Arrays.copyOfRange(src, idx[i] * width, idx[i] * width + width));
            }
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void badShapesAreRejectedInJavaWithTheOpAndShapes(Binding binding) {
        Backend be = backend(binding);
        try (Scope sc = Scope.of(be)) {
            Tensor a = sc.zeros(DType.F32, 3, 4), b = sc.zeros(DType.F32, 5, 4), c = sc.zeros(DType.F32, 3, 3);
            assertThatThrownBy(() -> be.ops().gemm(false, true, 1, a, b, 0, c)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("gemm").hasMessageContaining("[3, 4]").hasMessageContaining("[5, 4]");
            assertThatThrownBy(() -> be.ops().rmsnorm(a, null, a, sc.zeros(DType.F32, 3), 1e-5f)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("rmsnorm");
            // a gate whose hidden weights do not match the hidden state's width, and an MLP gate without its biases
            Tensor score = sc.zeros(DType.F32, 3), w1 = sc.zeros(DType.F32, 16, 5), b1 = sc.zeros(DType.F32, 16), w = sc.zeros(DType.F32, 1, 16), bias = sc.zeros(DType.F32, 1);
            assertThatThrownBy(() -> be.ops().gateScore(score, a, w1, b1, w, bias, 1e-5f)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("gateScore").hasMessageContaining("[16, 5]").hasMessageContaining("[3, 4]");
            assertThatThrownBy(() -> be.ops().gateScore(score, a, sc.zeros(DType.F32, 16, 4), null, w, bias, 1e-5f)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("gateScore").hasMessageContaining("both");
            // argmax candidates with a radius that is not one per score column
            Tensor groups = sc.zeros(DType.I32, 3, 2), counts = sc.zeros(DType.I32, 3), scale = sc.zeros(DType.F32, 3);
            assertThatThrownBy(() -> be.ops().argmaxCandidates(groups, counts, a, sc.zeros(DType.F32, 5), scale, 2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("argmaxCandidates").hasMessageContaining("[5]").hasMessageContaining("[3, 4]");
            assertThatThrownBy(() -> be.ops().embedding(a, b, sc.zeros(DType.F32, 3))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("embedding").hasMessageContaining("I32");
            Tensor closed = sc.zeros(DType.F32, 2);
            closed.close();
            assertThatThrownBy(() -> be.ops().scale(closed, 2f)).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
        }
    }

    /** Indices are data: the kernels check them and fail the op with the kernel, row, value and bound; nothing is written. */
    @ParameterizedTest
    @MethodSource("bindings")
    void impossibleIndicesAreReportedByTheKernels(Binding binding) {
        Backend be = backend(binding);
        Ops ops = be.ops();
        try (Scope sc = Scope.of(be)) {
            int rows = 3, width = 4, nSeq = 2, maxLen = 5;
            Tensor cache = sc.zeros(DType.F32, nSeq, maxLen, width), src = sc.of(randn(new Random(1), rows * width), rows, width);
            Tensor seqOk = sc.of(new int[] {0, 1, 1}, rows), posOk = sc.of(new int[] {0, 1, 2}, rows);
            Tensor badSeq = sc.of(new int[] {0, 1, 7}, rows), badPos = sc.of(new int[] {0, 5, 2}, rows), negative = sc.of(new int[] {0, -1, 2}, rows);
            assertKernelError(() -> ops.kvWrite(cache, src, badSeq, posOk), "ee_kv_write: row 2 has seq 7, outside the cache's 2 sequences");
            assertKernelError(() -> ops.kvWrite(cache, src, seqOk, badPos), "ee_kv_write: row 1 has pos 5, outside the cache's 5 positions");
            assertKernelError(() -> ops.kvWrite(cache, src, negative, posOk), "ee_kv_write: row 1 has seq -1, outside the cache's 2 sequences");
            assertThat(cache.toFloatArray()).containsOnly(0f); // checked before anything was written
            Tensor q = sc.zeros(DType.F32, rows, 2 * width), out = sc.zeros(DType.F32, rows, 2 * width);
            assertKernelError(() -> ops.attention(out, null, q, cache, cache, badSeq, posOk, 2, 1, width, 0.5f),
                "ee_attention_fwd: row 2 has seq 7, outside the cache's 2 sequences");
            assertKernelError(() -> ops.attention(out, null, q, cache, cache, seqOk, negative, 2, 1, width, 0.5f),
                "ee_attention_fwd: row 1 has pos -1, outside the cache's 5 positions");
            assertKernelError(() -> ops.gatherRows(sc.zeros(DType.F32, rows, width), src, sc.of(new int[] {2, 3, 0}, rows)),
                "ee_gather_rows: row 1 has index 3, outside src's 3 rows");
            Tensor table = sc.zeros(DType.F32, 10, width);
            assertKernelError(() -> ops.embedding(sc.zeros(DType.F32, 2, width), table, sc.of(new int[] {9, 10}, 2)),
                "ee_embedding_fwd: row 1 has id 10, outside the table's 10 rows");
            assertKernelError(() -> ops.embeddingBackward(table, sc.zeros(DType.F32, 2, width), sc.of(new int[] {-3, 0}, 2)),
                "ee_embedding_bwd: row 0 has id -3, outside the table's 10 rows");
            Tensor loss = sc.zeros(DType.F32, rows);
            assertKernelError(() -> ops.linearCrossEntropy(loss, null, null, null, null, src, table, sc.of(new int[] {-1, 4, 12}, rows), null, 4, 1f),
                "ee_linear_cross_entropy: row 2 has target 12, outside the vocabulary of 10");
        }
    }

    private static void assertKernelError(org.assertj.core.api.ThrowableAssert.ThrowingCallable op, String message) {
        assertThatThrownBy(op).isInstanceOf(IllegalStateException.class).hasMessageContaining(message);
    }
}
