package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.backend.spi.Binding;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;
import java.util.Random;

import static dev.eetune.nativelib.Bindings.randn;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;
import static org.assertj.core.api.Assertions.within;

/**
 * {@link Ops#decoderLayer} (ee_decoder_layer_fwd) against the composition of the single ops it replaces, bit for bit:
 * cached packed rows (GQA, with and without q/k/v biases, f32 and bf16 matrices, out in place or not, a separate
 * attention residual or not) and dense rows (no KV write, lse and 1/rms kept as training does).
 */
class DecoderLayerFusionTest {
    static List<Binding> bindings() { return Bindings.available(); }

    /** A layer's shapes: dim, heads, KV heads, head size, hidden. */
    private record Dims(int dim, int heads, int kvHeads, int headDim, int hidden) {
        int qd() { return heads * headDim; }

        int kd() { return kvHeads * headDim; }
    }

    /** The weights as tensors, in ee_decoder_layer_fwd's order (biases null when absent). */
    private record Weights(Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo, Tensor bq, Tensor bk, Tensor bv,
                           Tensor ffnNorm, Tensor wGate, Tensor wUp, Tensor wDown) {
        static Weights random(Scope s, Random r, Dims d, DType wt, boolean biases) {
            return new Weights(norm(s, r, d.dim()), mat(s, r, wt, d.qd(), d.dim()), mat(s, r, wt, d.kd(), d.dim()), mat(s, r, wt, d.kd(), d.dim()),
                mat(s, r, wt, d.dim(), d.qd()), biases ? vec(s, r, d.qd()) : null, biases ? vec(s, r, d.kd()) : null, biases ? vec(s, r, d.kd()) : null,
                norm(s, r, d.dim()), mat(s, r, wt, d.hidden(), d.dim()), mat(s, r, wt, d.hidden(), d.dim()), mat(s, r, wt, d.dim(), d.hidden()));
        }

        /** The layer's row of {@link Ops#layerTable} with these caches. */
        Tensor[] tableRow(Tensor kc, Tensor vc) { return new Tensor[] {attnNorm, wq, wk, wv, wo, bq, bk, bv, ffnNorm, wGate, wUp, wDown, kc, vc}; }

        /** The seven matrices packed by {@link Ops#packPanels}, norms and biases as they are. */
        Weights packed(Ops ops, Scope s) {
            return new Weights(attnNorm, ops.packPanels(wq, s), ops.packPanels(wk, s), ops.packPanels(wv, s), ops.packPanels(wo, s), bq, bk, bv, ffnNorm,
                ops.packPanels(wGate, s), ops.packPanels(wUp, s), ops.packPanels(wDown, s));
        }

        private static Tensor mat(Scope s, Random r, DType wt, int rows, int cols) {
            float[] v = randn(r, rows * cols);
            for (int i = 0; i < v.length; i++) v[i] *= 0.2f;
            return s.of(wt, v, rows, cols);
        }

        private static Tensor vec(Scope s, Random r, int n) { return s.of(randn(r, n), n); }

        private static Tensor norm(Scope s, Random r, int n) {
            float[] v = new float[n];
            for (int i = 0; i < n; i++) v[i] = 0.5f + r.nextFloat();
            return s.of(v, n);
        }
    }

    /** Buffers of one layer call; {@code shared} aliases them as the decode workspace does (xn1 = xn2, act = gate). */
    private record Buffers(Tensor residual, Tensor xn1, Tensor inv1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor lse, Tensor xn2, Tensor inv2,
                           Tensor gate, Tensor up, Tensor act) {
        static Buffers of(Scope s, Dims d, int rows, Tensor x, boolean separateResidual, boolean shared, boolean keep) {
            Tensor xn1 = s.zeros(DType.F32, rows, d.dim()), gate = s.zeros(DType.F32, rows, d.hidden());
            return new Buffers(separateResidual ? s.zeros(DType.F32, rows, d.dim()) : x, xn1, keep ? s.zeros(DType.F32, rows) : null,
                s.zeros(DType.F32, rows, d.qd()), s.zeros(DType.F32, rows, d.kd()), s.zeros(DType.F32, rows, d.kd()), s.zeros(DType.F32, rows, d.qd()),
                keep ? s.zeros(DType.F32, rows, d.heads()) : null, shared ? xn1 : s.zeros(DType.F32, rows, d.dim()), keep ? s.zeros(DType.F32, rows) : null,
                gate, s.zeros(DType.F32, rows, d.hidden()), shared ? gate : s.zeros(DType.F32, rows, d.hidden()));
        }

        List<Tensor> all() {
            return java.util.stream.Stream.of(residual, xn1, inv1, q, k, v, att, lse, xn2, inv2, gate, up, act).filter(t -> t != null).toList();
        }
    }

    /** The layer op by op, exactly as the Java layer composed it before the fused call. */
    private static void unfused(Ops ops, Dims d, Weights w, Tensor x, Tensor out, Buffers a, Tensor keys, Tensor values, boolean writeKv,
                                Tensor seq, Tensor pos, Tensor invFreq, boolean interleaved, float eps, float scale) {
        ops.rmsnorm(a.xn1(), a.inv1(), x, w.attnNorm(), eps);
        ops.linear(a.q(), a.xn1(), w.wq());
        ops.linear(a.k(), a.xn1(), w.wk());
        ops.linear(a.v(), a.xn1(), w.wv());
        if (w.bq() != null) {
            ops.addBias(a.q(), w.bq());
            ops.addBias(a.k(), w.bk());
            ops.addBias(a.v(), w.bv());
        }
        ops.rope(a.q(), pos, invFreq, d.heads(), d.headDim(), interleaved, false);
        ops.rope(a.k(), pos, invFreq, d.kvHeads(), d.headDim(), interleaved, false);
        if (writeKv) {
            ops.kvWrite(keys, a.k(), seq, pos);
            ops.kvWrite(values, a.v(), seq, pos);
        }
        ops.attention(a.att(), a.lse(), a.q(), keys, values, seq, pos, d.heads(), d.kvHeads(), d.headDim(), scale);
        if (a.residual() != x) a.residual().copyFrom(x);
        ops.gemm(false, true, 1f, a.att(), w.wo(), 1f, a.residual());
        unfusedFeedForward(ops, w, a.residual(), out, a, eps);
    }

    /** The layer's second half op by op: out = h + down(swiglu(gate n, up n)), n = rmsnorm(h). */
    private static void unfusedFeedForward(Ops ops, Weights w, Tensor h, Tensor out, Buffers a, float eps) {
        ops.rmsnorm(a.xn2(), a.inv2(), h, w.ffnNorm(), eps);
        ops.linear(a.gate(), a.xn2(), w.wGate());
        ops.linear(a.up(), a.xn2(), w.wUp());
        ops.swiglu(a.act(), a.gate(), a.up());
        if (out != h) out.copyFrom(h);
        ops.gemm(false, true, 1f, a.act(), w.wDown(), 1f, out);
    }

    /** {@link Ops#decoderLayers} over x in place with a's buffers (interleaved RoPE). */
    private static void layers(Ops ops, Ops.LayerTable t, int from, int to, Tensor x, Buffers a, Tensor seq, Tensor pos, Tensor invFreq, float eps, float scale) {
        ops.decoderLayers(t, from, to, x, x, a.residual(), a.xn1(), a.inv1(), a.q(), a.k(), a.v(), a.att(), a.lse(), a.xn2(), a.inv2(), a.gate(), a.up(), a.act(),
            seq, pos, invFreq, true, eps, scale);
    }

    private static void fused(Ops ops, Dims d, Weights w, Tensor x, Tensor out, Buffers a, Tensor keys, Tensor values, boolean writeKv,
                              Tensor seq, Tensor pos, Tensor invFreq, boolean interleaved, float eps, float scale) {
        fused(ops, d, w, false, x, out, a, keys, values, writeKv, seq, pos, invFreq, interleaved, eps, scale);
    }

    /** {@link Ops#decoderLayer} with a's buffers; {@code packed}: w's matrices are packed panels. */
    private static void fused(Ops ops, Dims d, Weights w, boolean packed, Tensor x, Tensor out, Buffers a, Tensor keys, Tensor values, boolean writeKv,
                              Tensor seq, Tensor pos, Tensor invFreq, boolean interleaved, float eps, float scale) {
        ops.decoderLayer(x, out, a.residual(), a.xn1(), a.inv1(), a.q(), a.k(), a.v(), a.att(), a.lse(), a.xn2(), a.inv2(), a.gate(), a.up(), a.act(),
            w.attnNorm(), w.wq(), w.wk(), w.wv(), w.wo(), w.bq(), w.bk(), w.bv(), w.ffnNorm(), w.wGate(), w.wUp(), w.wDown(), packed,
            keys, values, writeKv, seq, pos, invFreq, d.heads(), d.kvHeads(), d.headDim(), interleaved, eps, scale);
    }

    private static Tensor invFreq(Scope s, int headDim) {
        float[] f = new float[headDim / 2];
        for (int i = 0; i < f.length; i++) f[i] = (float) Math.pow(10000, -2.0 * i / headDim);
        return s.of(f, f.length);
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void cachedRowsMatchTheOpsBitForBit(Binding binding) {
        Random r = Bindings.random("decoderLayer cached");
        Backend be = CpuLibrary.backend(binding);
        // the last shape is large enough for the q/k/v and gate/up groups to run on several threads, whose runs of
        // tiles then cross from one matrix into the next (q's tiles into k's and v's)
        Dims[] shapes = {new Dims(64, 8, 4, 8, 172), new Dims(48, 4, 2, 12, 70), new Dims(96, 6, 6, 16, 256), new Dims(256, 8, 2, 32, 680)};
        int nSeq = 3, maxLen = 20;
        for (Dims d : shapes) {
            for (DType wt : new DType[] {DType.F32, DType.BF16}) {
                for (int variant = 0; variant < 4; variant++) {
                    boolean biases = (variant & 1) != 0, inPlace = (variant & 2) != 0;
                    for (int rows : new int[] {1, 5}) {
                        try (Scope s = Scope.of(be)) {
                            Weights w = Weights.random(s, r, d, wt, biases);
                            int[] seq = new int[rows], pos = new int[rows];
                            for (int i = 0; i < rows; i++) {
                                seq[i] = i % nSeq;
                                pos[i] = maxLen - 1 - i / nSeq; // distinct cells; earlier positions hold random K/V
                            }
                            float[] x0 = randn(r, rows * d.dim()), k0 = randn(r, nSeq * maxLen * d.kd()), v0 = randn(r, nSeq * maxLen * d.kd());
                            Tensor seqT = s.of(seq, rows), posT = s.of(pos, rows), inv = invFreq(s, d.headDim());
                            float eps = 1e-5f, scale = (float) (1 / Math.sqrt(d.headDim()));
                            boolean interleaved = (variant & 1) == 0;
                            Tensor[] results = new Tensor[2];
                            List<List<Tensor>> buffers = new java.util.ArrayList<>();
                            Tensor[][] caches = new Tensor[2][];
                            for (int f = 0; f < 2; f++) {
                                Tensor x = s.of(x0, rows, d.dim()), out = inPlace ? x : s.zeros(DType.F32, rows, d.dim());
                                Buffers a = Buffers.of(s, d, rows, x, !inPlace, inPlace, false);
                                Tensor kc = s.of(k0, nSeq, maxLen, d.kd()), vc = s.of(v0, nSeq, maxLen, d.kd());
                                if (f == 0) unfused(be.ops(), d, w, x, out, a, kc, vc, true, seqT, posT, inv, interleaved, eps, scale);
                                else fused(be.ops(), d, w, x, out, a, kc, vc, true, seqT, posT, inv, interleaved, eps, scale);
                                results[f] = out;
                                buffers.add(a.all());
                                caches[f] = new Tensor[] {kc, vc};
                            }
                            String what = d + " " + wt + " rows " + rows + (biases ? " biases" : "") + (inPlace ? " in place" : "");
                            assertThat(results[1].toFloatArray()).as(what).isEqualTo(results[0].toFloatArray());
                            for (int i = 0; i < buffers.get(0).size(); i++) {
                                assertThat(buffers.get(1).get(i).toFloatArray()).as(what + " buffer " + i).isEqualTo(buffers.get(0).get(i).toFloatArray());
                            }
                            for (int i = 0; i < 2; i++) assertThat(caches[1][i].toFloatArray()).as(what + " cache " + i).isEqualTo(caches[0][i].toFloatArray());
                        }
                    }
                }
            }
        }
    }

    /**
     * A layer over 8-16 rows of a small model runs its row-wise parts as slices of the rows on several threads
     * (ee_decoder_layer_fwd, layer_splits_rows): the same bits as on one thread -- outputs, every buffer, the caches --
     * for plain and packed f32, bf16 and f16 matrices, rows of three sequences that attend to rows of the other slice,
     * with and without a KV write; and a row's bad cache index is reported by its row in the call, with nothing written.
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void rowSlicesGiveOneThreadsBits(Binding binding) {
        Random r = Bindings.random("decoderLayer slices");
        Backend be = CpuLibrary.backend(binding);
        Ops ops = be.ops();
        int nSeq = 3, maxLen = 12;
        try {
            // also with OpenBLAS forced for every GEMM (where it is loaded), whose rows may depend on the rows beside them
            for (Backend.GemmPath path : new Backend.GemmPath[] {Backend.GemmPath.AUTO, Backend.GemmPath.BLAS}) {
                if (!usePath(be, path)) continue;
                for (Dims d : new Dims[] {new Dims(64, 8, 4, 8, 172), new Dims(32, 4, 2, 8, 90)}) {
                    for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                        for (boolean packed : new boolean[] {false, true}) {
                            for (int rows : new int[] {8, 11, 16}) {
                                for (boolean writeKv : new boolean[] {true, false}) {
                                    try (Scope s = Scope.of(be)) {
                                        Weights plain = Weights.random(s, r, d, dtype, false), w = packed ? plain.packed(ops, s) : plain;
                                        int[] seq = new int[rows], pos = new int[rows];
                                        int seqs = writeKv ? nSeq : 1, len = writeKv ? maxLen : rows;
                                        for (int i = 0; i < rows; i++) { // a sequence's rows lie in both halves of the call
                                            seq[i] = writeKv ? i % nSeq : 0;
                                            pos[i] = writeKv ? 4 + i / nSeq : i;
                                        }
                                        float[] x0 = randn(r, rows * d.dim()), k0 = randn(r, nSeq * maxLen * d.kd()), v0 = randn(r, nSeq * maxLen * d.kd());
                                        Tensor seqT = s.of(seq, rows), posT = s.of(pos, rows), inv = invFreq(s, d.headDim());
                                        List<List<float[]>> got = new java.util.ArrayList<>();
                                        for (int threads = 1; threads <= 2; threads++) {
                                            assertThat(be.setThreads(threads)).isEqualTo(threads);
                                            Tensor x = s.of(x0, rows, d.dim()), out = s.zeros(DType.F32, rows, d.dim());
                                            Buffers a = Buffers.of(s, d, rows, x, true, false, !writeKv);
                                            Tensor kc = writeKv ? s.of(k0, nSeq, maxLen, d.kd()) : a.k().reshape(seqs, len, d.kd());
                                            Tensor vc = writeKv ? s.of(v0, nSeq, maxLen, d.kd()) : a.v().reshape(seqs, len, d.kd());
                                            fused(ops, d, w, packed, x, out, a, kc, vc, writeKv, seqT, posT, inv, false, 1e-5f, 0.3f);
                                            List<float[]> all = new java.util.ArrayList<>(List.of(out.toFloatArray(), kc.toFloatArray(), vc.toFloatArray()));
                                            for (Tensor t : a.all()) all.add(t.toFloatArray());
                                            got.add(all);
                                        }
                                        String what = path + " " + d + " " + dtype + (packed ? " packed" : "") + " rows " + rows + (writeKv ? "" : " without a KV write");
                                        for (int i = 0; i < got.get(0).size(); i++) assertThat(got.get(1).get(i)).as(what + ": array " + i).isEqualTo(got.get(0).get(i));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            be.setGemmPath(Backend.GemmPath.AUTO);
            try (Scope s = Scope.of(be)) {
                Dims d = new Dims(64, 8, 4, 8, 172);
                int rows = 12;
                Weights w = Weights.random(s, r, d, DType.F32, false);
                int[] seq = new int[rows], pos = new int[rows];
                for (int i = 0; i < rows; i++) pos[i] = i;
                seq[rows - 1] = nSeq; // outside the cache
                float[] k0 = randn(r, nSeq * maxLen * d.kd());
                Tensor x = s.of(randn(r, rows * d.dim()), rows, d.dim()), kc = s.of(k0, nSeq, maxLen, d.kd()), vc = s.of(k0, nSeq, maxLen, d.kd());
                Buffers a = Buffers.of(s, d, rows, x, true, false, false);
                String[] messages = new String[2];
                for (int threads = 1; threads <= 2; threads++) {
                    assertThat(be.setThreads(threads)).isEqualTo(threads);
                    Throwable t = catchThrowable(() -> fused(ops, d, w, x, x, a, kc, vc, true, s.of(seq, rows), s.of(pos, rows), invFreq(s, d.headDim()), false, 1e-5f, 0.3f));
                    assertThat(t).as("%d thread(s)", threads).isInstanceOf(IllegalStateException.class).hasMessageContaining("ee_kv_write: row 11 has seq 3");
                    messages[threads - 1] = t.getMessage();
                }
                assertThat(messages[1]).isEqualTo(messages[0]);
                assertThat(kc.toFloatArray()).as("the K cache after the refusal").isEqualTo(k0);
            }
        } finally {
            be.setThreads(0);
            be.setGemmPath(Backend.GemmPath.AUTO);
        }
    }

    /** Whether the backend now runs its GEMMs on {@code path} (false where that path is not available, e.g. no OpenBLAS). */
    private static boolean usePath(Backend be, Backend.GemmPath path) {
        try {
            be.setGemmPath(path);
            return true;
        } catch (IllegalStateException | IllegalArgumentException e) {
            return false;
        }
    }

    /**
     * Matrices packed by Ops.packPanels (F32: ee_pack_panels, EE_F32_PANELS; BF16: ee_pack_panels_bf16,
     * EE_BF16_PANELS; F16: ee_pack_panels_f16, EE_F16_PANELS) give the plain layer's result up to the order of the f32
     * additions, for every row count up to 16 with out sizes that leave partial panels; linearPanels likewise (also
     * with an odd number of columns); more rows or an integer weight are refused with the op's name.
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void packedMatricesGiveThePlainLayer(Binding binding) {
        Random r = Bindings.random("decoderLayer panels");
        Backend be = CpuLibrary.backend(binding);
        Ops ops = be.ops();
        Dims d = new Dims(48, 4, 2, 12, 70);
        int nSeq = 16, maxLen = 6;
        for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16})
        try (Scope s = Scope.of(be)) {
            Weights w = Weights.random(s, r, d, dtype, true);
            Weights p = w.packed(ops, s);
            Tensor inv = invFreq(s, d.headDim());
            for (int rows = 1; rows <= Ops.PANELS_MAX_ROWS; rows++) {
                int[] seq = new int[rows], pos = new int[rows];
                for (int i = 0; i < rows; i++) {
                    seq[i] = i;
                    pos[i] = maxLen - 1 - i % 3;
                }
                float[] x0 = randn(r, rows * d.dim()), k0 = randn(r, nSeq * maxLen * d.kd()), v0 = randn(r, nSeq * maxLen * d.kd());
                Tensor seqT = s.of(seq, rows), posT = s.of(pos, rows);
                float[][] outs = new float[2][];
                for (int f = 0; f < 2; f++) {
                    Tensor x = s.of(x0, rows, d.dim()), out = s.zeros(DType.F32, rows, d.dim());
                    Buffers a = Buffers.of(s, d, rows, x, true, false, false);
                    Tensor kc = s.of(k0, nSeq, maxLen, d.kd()), vc = s.of(v0, nSeq, maxLen, d.kd());
                    Weights m = f == 0 ? w : p;
                    fused(ops, d, m, f == 1, x, out, a, kc, vc, true, seqT, posT, inv, false, 1e-5f, 0.3f);
                    outs[f] = out.toFloatArray();
                }
                for (int i = 0; i < outs[0].length; i++) assertThat(outs[1][i]).as(dtype + " rows " + rows + " element " + i).isCloseTo(outs[0][i], within(1e-4f * (1 + Math.abs(outs[0][i]))));
                Tensor x = s.of(randn(r, rows * d.dim()), rows, d.dim()), y = s.zeros(DType.F32, rows, d.hidden()), yp = s.zeros(DType.F32, rows, d.hidden());
                ops.linear(y, x, w.wGate());
                ops.linearPanels(yp, x, p.wGate());
                float[] want = y.toFloatArray(), got = yp.toFloatArray();
                for (int i = 0; i < want.length; i++) assertThat(got[i]).as(dtype + " linearPanels rows " + rows + " element " + i).isCloseTo(want[i], within(1e-5f * (1 + Math.abs(want[i]))));
            }
            Tensor x17 = s.zeros(DType.F32, 17, d.dim()), y17 = s.zeros(DType.F32, 17, d.hidden());
            assertThatThrownBy(() -> ops.linearPanels(y17, x17, p.wGate())).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("linearPanels");
            Tensor ints = s.of(new int[4 * d.dim()], 4, d.dim());
            assertThatThrownBy(() -> ops.packPanels(ints, s)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("packPanels");
            Tensor odd = s.of(dtype, randn(r, 37 * 7), 37, 7), x = s.of(randn(r, 3 * 7), 3, 7), y = s.zeros(DType.F32, 3, 37), yp = s.zeros(DType.F32, 3, 37);
            ops.linear(y, x, odd);
            ops.linearPanels(yp, x, ops.packPanels(odd, s));
            float[] want = y.toFloatArray(), got = yp.toFloatArray();
            for (int i = 0; i < want.length; i++) assertThat(got[i]).as(dtype + " 7 columns, element " + i).isCloseTo(want[i], within(1e-5f * (1 + Math.abs(want[i]))));
        }
    }

    @ParameterizedTest
    @MethodSource("bindings")
    void denseRowsMatchTheOpsBitForBit(Binding binding) {
        Random r = Bindings.random("decoderLayer dense");
        Backend be = CpuLibrary.backend(binding);
        Dims d = new Dims(32, 4, 2, 8, 90);
        int batch = 2, seqLen = 7, rows = batch * seqLen;
        try (Scope s = Scope.of(be)) {
            Weights w = Weights.random(s, r, d, DType.F32, false);
            int[] seq = new int[rows], pos = new int[rows];
            for (int i = 0; i < rows; i++) {
                seq[i] = i / seqLen;
                pos[i] = i % seqLen;
            }
            Tensor seqT = s.of(seq, rows), posT = s.of(pos, rows), inv = invFreq(s, d.headDim());
            float[] x0 = randn(r, rows * d.dim());
            float[][] outs = new float[2][];
            List<List<float[]>> kept = new java.util.ArrayList<>();
            for (int f = 0; f < 2; f++) {
                Tensor x = s.of(x0, rows, d.dim()), out = s.zeros(DType.F32, rows, d.dim());
                Buffers a = Buffers.of(s, d, rows, x, true, false, true);
                Tensor kc = a.k().reshape(batch, seqLen, d.kd()), vc = a.v().reshape(batch, seqLen, d.kd());
                if (f == 0) unfused(be.ops(), d, w, x, out, a, kc, vc, false, seqT, posT, inv, false, 1e-6f, 0.3f);
                else fused(be.ops(), d, w, x, out, a, kc, vc, false, seqT, posT, inv, false, 1e-6f, 0.3f);
                outs[f] = out.toFloatArray();
                kept.add(a.all().stream().map(Tensor::toFloatArray).toList());
            }
            assertThat(outs[1]).isEqualTo(outs[0]);
            for (int i = 0; i < kept.get(0).size(); i++) assertThat(kept.get(1).get(i)).as("buffer " + i).isEqualTo(kept.get(0).get(i));
            // without a KV write the caches must be the rows' own k and v
            Tensor x = s.of(x0, rows, d.dim());
            Buffers a = Buffers.of(s, d, rows, x, true, false, true);
            Tensor other = s.zeros(DType.F32, batch, seqLen, d.kd());
            assertThatThrownBy(() -> fused(be.ops(), d, w, x, x, a, other, other, false, seqT, posT, inv, false, 1e-6f, 0.3f))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("decoderLayer");
        }
    }

    /**
     * {@link Ops#decoderLayers} over a {@link Ops#layerTable} (ee_decoder_layers_fwd) against {@link Ops#decoderLayer}
     * layer by layer, bit for bit: three layers (biases on one), two rows of two sequences, f32 and bf16, plain and packed
     * matrices, all layers and a later range alone; then the refusals: layers of different shapes (the layer named), a
     * range outside the table, another backend's table, and a table whose cache was closed.
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void layerTablesRunTheLayersOneByOne(Binding binding) {
        Random r = Bindings.random("decoderLayers table");
        Backend be = CpuLibrary.backend(binding);
        Ops ops = be.ops();
        Dims d = new Dims(64, 8, 4, 8, 172);
        int layers = 3, nSeq = 2, maxLen = 12, rows = 2;
        float eps = 1e-5f, scale = (float) (1 / Math.sqrt(d.headDim()));
        for (DType wt : new DType[] {DType.F32, DType.BF16}) {
            for (boolean panels : new boolean[] {false, true}) {
                try (Scope s = Scope.of(be)) {
                    Weights[] w = new Weights[layers];
                    for (int l = 0; l < layers; l++) {
                        Weights plain = Weights.random(s, r, d, wt, l == 1);
                        w[l] = panels ? plain.packed(ops, s) : plain;
                    }
                    float[] x0 = randn(r, rows * d.dim()), c0 = randn(r, layers * 2 * nSeq * maxLen * d.kd());
                    Tensor seqT = s.of(new int[] {0, 1}, rows), posT = s.of(new int[] {5, 9}, rows), inv = invFreq(s, d.headDim());
                    float[][] outs = new float[2][], caches = new float[2][];
                    for (int f = 0; f < 2; f++) {
                        Tensor x = s.of(x0, rows, d.dim()), block = s.of(c0, layers * 2, nSeq, maxLen, d.kd());
                        Buffers a = Buffers.of(s, d, rows, x, true, true, false);
                        List<Tensor[]> table = new java.util.ArrayList<>();
                        for (int l = 0; l < layers; l++) {
                            Tensor kc = block.slice(2 * l, 2 * l + 1).reshape(nSeq, maxLen, d.kd()), vc = block.slice(2 * l + 1, 2 * l + 2).reshape(nSeq, maxLen, d.kd());
                            Weights m = w[l];
                            if (f == 0) {
                                ops.decoderLayer(x, x, a.residual(), a.xn1(), a.inv1(), a.q(), a.k(), a.v(), a.att(), a.lse(), a.xn2(), a.inv2(), a.gate(), a.up(), a.act(),
                                    m.attnNorm(), m.wq(), m.wk(), m.wv(), m.wo(), m.bq(), m.bk(), m.bv(), m.ffnNorm(), m.wGate(), m.wUp(), m.wDown(), panels,
                                    kc, vc, true, seqT, posT, inv, d.heads(), d.kvHeads(), d.headDim(), true, eps, scale);
                            }
                            table.add(m.tableRow(kc, vc));
                        }
                        Ops.LayerTable t = ops.layerTable(table, panels, d.heads(), d.kvHeads(), d.headDim());
                        if (f == 1) {
                            // layer 0 alone, then layers 1..2: a range that starts inside the table
                            layers(ops, t, 0, 1, x, a, seqT, posT, inv, eps, scale);
                            layers(ops, t, 1, layers, x, a, seqT, posT, inv, eps, scale);
                        }
                        outs[f] = x.toFloatArray();
                        caches[f] = block.toFloatArray();
                        if (f == 1) {
                            assertThat(t.toString()).contains("3 layers").contains("dim 64");
                            assertThatThrownBy(() -> layers(ops, t, 2, 4, x, a, seqT, posT, inv, eps, scale)).isInstanceOf(IllegalArgumentException.class)
                                .hasMessageContaining("decoderLayers").hasMessageContaining("[2, 4)");
                            Backend other = CpuLibrary.backend(binding == Binding.FFM && Bindings.available().contains(Binding.JNA) ? Binding.JNA : binding);
                            if (other != be) {
                                assertThatThrownBy(() -> layers(other.ops(), t, 0, 1, x, a, seqT, posT, inv, eps, scale)).isInstanceOf(IllegalArgumentException.class)
                                    .hasMessageContaining("the table was made by");
                            }
                            // a layer of another shape is refused, naming it
                            List<Tensor[]> mixed = new java.util.ArrayList<>(table);
                            Tensor[] wide = mixed.get(2).clone();
                            wide[12] = s.zeros(DType.F32, nSeq + 1, maxLen, d.kd());
                            wide[13] = s.zeros(DType.F32, nSeq + 1, maxLen, d.kd());
                            mixed.set(2, wide);
                            assertThatThrownBy(() -> ops.layerTable(mixed, panels, d.heads(), d.kvHeads(), d.headDim())).isInstanceOf(IllegalArgumentException.class)
                                .hasMessageContaining("layer 2");
                            Tensor[] badQ = table.get(1).clone();
                            badQ[1] = badQ[2];
                            assertThatThrownBy(() -> ops.layerTable(List.of(table.get(0), badQ), panels, d.heads(), d.kvHeads(), d.headDim()))
                                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("layerTable (layer 1)").hasMessageContaining("matrices must be");
                        }
                    }
                    String what = wt + (panels ? " packed" : " plain");
                    assertThat(outs[1]).as(what + " out").isEqualTo(outs[0]);
                    assertThat(caches[1]).as(what + " caches").isEqualTo(caches[0]);
                }
            }
        }
        // a table outliving its cache fails instead of reading freed memory
        try (Scope s = Scope.of(be)) {
            Weights w = Weights.random(s, r, d, DType.F32, false);
            Scope cacheScope = Scope.of(be);
            Tensor kc = cacheScope.zeros(DType.F32, nSeq, maxLen, d.kd()), vc = cacheScope.zeros(DType.F32, nSeq, maxLen, d.kd());
            Ops.LayerTable t = ops.layerTable(List.<Tensor[]>of(w.tableRow(kc, vc)), false, d.heads(), d.kvHeads(), d.headDim());
            cacheScope.close();
            Tensor x = s.zeros(DType.F32, rows, d.dim());
            Buffers a = Buffers.of(s, d, rows, x, true, true, false);
            assertThatThrownBy(() -> layers(ops, t, 0, 1, x, a, s.of(new int[] {0, 1}, rows), s.of(new int[] {0, 0}, rows), invFreq(s, d.headDim()), eps, scale))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("used after it was closed");
        }
    }

    /**
     * {@link Ops#feedForward} (ee_feed_forward_fwd) against rmsnorm, linear (gate, up), swiglu, copy and gemm one by one,
     * bit for bit (f32 and bf16, 1 and 5 rows, out apart from h or in place, act aliasing gate or not, inv2 kept or
     * not); packed matrices give the plain result up to the order of additions; a wrong shape is refused by name.
     */
    @ParameterizedTest
    @MethodSource("bindings")
    void feedForwardMatchesTheOpsBitForBit(Binding binding) {
        Random r = Bindings.random("feedForward");
        Backend be = CpuLibrary.backend(binding);
        Ops ops = be.ops();
        Dims d = new Dims(96, 6, 6, 16, 256);
        float eps = 1e-5f;
        for (DType wt : new DType[] {DType.F32, DType.BF16}) {
            for (int variant = 0; variant < 4; variant++) {
                boolean inPlace = (variant & 1) != 0, keep = (variant & 2) != 0;
                for (int rows : new int[] {1, 5}) {
                    try (Scope s = Scope.of(be)) {
                        Weights w = Weights.random(s, r, d, wt, false);
                        float[] h0 = randn(r, rows * d.dim());
                        float[][] outs = new float[3][];
                        List<List<float[]>> kept = new java.util.ArrayList<>();
                        for (int f = 0; f < 3; f++) {
                            Tensor h = s.of(h0, rows, d.dim()), out = inPlace ? h : s.zeros(DType.F32, rows, d.dim());
                            Buffers a = Buffers.of(s, d, rows, h, true, !keep, keep);
                            if (f == 0) {
                                unfusedFeedForward(ops, w, h, out, a, eps);
                            } else {
                                Weights m = f == 1 ? w : w.packed(ops, s);
                                ops.feedForward(h, out, a.xn2(), a.inv2(), a.gate(), a.up(), a.act(), m.ffnNorm(), m.wGate(), m.wUp(), m.wDown(), f == 2, eps);
                            }
                            outs[f] = out.toFloatArray();
                            kept.add(java.util.stream.Stream.of(a.xn2(), a.inv2(), a.gate(), a.up(), a.act()).filter(t -> t != null).map(Tensor::toFloatArray).toList());
                        }
                        String what = wt + " rows " + rows + (inPlace ? " in place" : "") + (keep ? " inv2 kept" : "");
                        assertThat(outs[1]).as(what).isEqualTo(outs[0]);
                        for (int i = 0; i < kept.get(0).size(); i++) assertThat(kept.get(1).get(i)).as(what + " buffer " + i).isEqualTo(kept.get(0).get(i));
                        for (int i = 0; i < outs[0].length; i++) {
                            assertThat(outs[2][i]).as(what + " packed, element " + i).isCloseTo(outs[0][i], within(1e-4f * (1 + Math.abs(outs[0][i]))));
                        }
                    }
                }
            }
        }
        try (Scope s = Scope.of(be)) {
            Weights w = Weights.random(s, r, d, DType.F32, false);
            Tensor h = s.zeros(DType.F32, 2, d.dim());
            Buffers a = Buffers.of(s, d, 2, h, true, false, false);
            assertThatThrownBy(() -> ops.feedForward(h, h, a.xn2(), null, a.gate(), a.up(), a.act(), w.ffnNorm(), w.wUp(), w.wGate(), w.wGate(), false, eps))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("feedForward").hasMessageContaining("down [dim, hidden]");
        }
    }
}
