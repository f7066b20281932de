package dev.eetune.cuda;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.backend.MappedFile;
import dev.eetune.backend.Ops;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Shape;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.function.IntConsumer;

import static dev.eetune.backend.Backend.GemmPath.AUTO;
import static dev.eetune.backend.Backend.GemmPath.FALLBACK;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Every CUDA kernel against the CPU backend on fresh random inputs (the seed is printed; -Deetune.seed=N repeats a
 * run), with every output poisoned (NaN / -1) before each call, on several sizes including odd ones. Bounds: f32
 * arithmetic ~1e-6..1e-5 relative (norm-wise), long reductions 1e-4, GEMMs whose f32 operand cuBLAS rounds to bf16
 * 1e-2. Skips, with the reason, where the CUDA backend cannot run.
 */
@Tag("gpu")
class CudaKernelsTest {
    private static Backend cpu;
    private static CudaBackend gpu;
    private static long seed;
    private Random rnd;
    private Scope[] scopes;

    @BeforeAll
    static void requireGpu() {
        if (CudaLibrary.LOADER.unavailableReason() != null) return; // every test skips with the reason (see open())
        gpu = (CudaBackend) Backends.get("cuda");
        cpu = Backends.cpu();
        seed = Long.getLong("eetune.seed", System.nanoTime());
        System.out.println("CudaKernelsTest: seed " + seed + " (-Deetune.seed=" + seed + " repeats it); " + gpu.describe() + " vs " + cpu.describe());
    }

    @BeforeEach
    void open() {
        String why = CudaLibrary.LOADER.unavailableReason();
        Assumptions.assumeTrue(why == null, why);
        rnd = new Random(seed);
        scopes = new Scope[] {Scope.of(cpu), Scope.of(gpu)};
        gpu.setGemmPath(AUTO);
    }

    @AfterEach
    void close() {
        if (scopes == null) return;
        try {
            gpu.setGemmPath(AUTO);
            gpu.synchronize(); // kernel-side errors surface here
        } finally {
            scopes[1].close();
            scopes[0].close();
        }
    }

    // ---- helpers --------------------------------------------------------------------------------------------------

    private static Ops ops(int side) { return (side == 0 ? cpu : gpu).ops(); }

    /** Runs the same call on the CPU (side 0) and the GPU (side 1). */
    private static void both(IntConsumer call) {
        call.accept(0);
        call.accept(1);
    }

    private float[] randn(int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) rnd.nextGaussian() * scale;
        return v;
    }

    private float[] uniform(int n, float lo, float hi) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = lo + (hi - lo) * rnd.nextFloat();
        return v;
    }

    private int[] randint(int n, int lo, int hi) {
        int[] v = new int[n];
        for (int i = 0; i < n; i++) v[i] = lo + rnd.nextInt(hi - lo);
        return v;
    }

    private Tensor[] of(DType dt, float[] v, int... dims) {
        return new Tensor[] {scopes[0].of(dt, v, dims), scopes[1].of(dt, v, dims)};
    }

    private Tensor[] of(float[] v, int... dims) { return of(DType.F32, v, dims); }

    private Tensor[] ints(int[] v, int... dims) {
        return new Tensor[] {scopes[0].of(v, dims), scopes[1].of(v, dims)};
    }

    /** Fresh tensors with every byte 0xFF: NaN for floats (bf16 0xFFFF, f32 0xFFFFFFFF), -1 for I32. */
    private Tensor[] poisoned(DType dt, int... dims) {
        Tensor[] t = {scopes[0].allocate(dt, dims), scopes[1].allocate(dt, dims)};
        poison(t);
        return t;
    }

    private static void poison(Tensor[] t) {
        for (Tensor x : t) {
            byte[] ff = new byte[Math.toIntExact(x.byteSize())];
            Arrays.fill(ff, (byte) -1);
            x.backend().write(x.address(), ByteBuffer.wrap(ff));
        }
    }

    /** ||gpu - cpu|| / ||cpu|| <= tol; a NaN (an unwritten element) anywhere fails. */
    private static void close(String what, Tensor[] t, double tol) {
        float[] c = t[0].toFloatArray(), g = t[1].toFloatArray();
        double num = 0, den = 0;
        for (int i = 0; i < c.length; i++) {
            assertThat(Float.isNaN(g[i])).as("%s: element %d is NaN on the GPU (cpu %s) [seed %d]", what, i, c[i], seed).isEqualTo(Float.isNaN(c[i]));
            if (Float.isNaN(c[i])) continue;
            double d = (double) g[i] - c[i];
            num += d * d;
            den += (double) c[i] * c[i];
        }
        double rel = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
        assertThat(rel).as("%s: relative error [seed %d]", what, seed).isLessThanOrEqualTo(tol);
    }

    /** Bitwise equal (floats compared by their bit patterns, widened exactly from 16-bit dtypes). */
    private static void exact(String what, Tensor[] t) {
        if (t[0].dtype() == DType.I32) same(what, t[1].toIntArray(), t[0].toIntArray());
        else same(what, t[1].toFloatArray(), t[0].toFloatArray());
    }

    /** got == want bit for bit (AssertJ's containsExactly is quadratic on large arrays). */
    private static void same(String what, float[] got, float[] want) {
        assertThat(got.length).as("%s: length", what).isEqualTo(want.length);
        for (int i = 0; i < want.length; i++) {
            if (Float.floatToRawIntBits(got[i]) != Float.floatToRawIntBits(want[i])) {
                throw new AssertionError(what + ": element " + i + " is " + got[i] + ", expected " + want[i] + " [seed " + seed + "]");
            }
        }
    }

    private static void same(String what, int[] got, int[] want) {
        assertThat(got.length).as("%s: length", what).isEqualTo(want.length);
        for (int i = 0; i < want.length; i++) {
            if (got[i] != want[i]) throw new AssertionError(what + ": element " + i + " is " + got[i] + ", expected " + want[i] + " [seed " + seed + "]");
        }
    }

    // ---- memory -----------------------------------------------------------------------------------------------------

    @Test
    void copiesRoundTrip() {
        for (int n : new int[] {1, 7, 4099, 1_000_003}) {
            float[] v = randn(n, 1f);
            Tensor t = scopes[1].of(v, n);
            same("f32 round trip n=" + n, t.toFloatArray(), v);
            Tensor h = scopes[1].of(DType.BF16, v, n);
            Tensor hc = scopes[0].of(DType.BF16, v, n);
            same("bf16 round trip n=" + n, h.toFloatArray(), hc.toFloatArray());
            int[] iv = randint(n, -1000, 1000);
            same("i32 round trip n=" + n, scopes[1].of(iv, n).toIntArray(), iv);
            Tensor copy = scopes[1].allocate(DType.F32, n);
            ops(1).copy(copy, t);
            same("device copy n=" + n, copy.toFloatArray(), v);
            // heap buffers through write/read
            ByteBuffer heap = ByteBuffer.allocate(n * 4).order(ByteOrder.nativeOrder());
            heap.asFloatBuffer().put(v);
            gpu.write(copy.address(), heap);
            assertThat(heap.remaining()).isZero();
            ByteBuffer back = ByteBuffer.allocate(n * 4).order(ByteOrder.nativeOrder());
            gpu.read(copy.address(), back);
            back.flip();
            float[] r = new float[n];
            back.asFloatBuffer().get(r);
            same("heap buffers n=" + n, r, v);
        }
        assertThat(scopes[1].zeros(DType.F32, 33).toFloatArray()).containsOnly(0f);
    }

    @Test
    void mapsFilesIntoDeviceMemory(@TempDir Path dir) throws Exception {
        float[] v = randn(1000, 1f);
        ByteBuffer b = ByteBuffer.allocate(16 + 4000).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, 0x1234_5678_9abc_def0L);
        b.position(16);
        b.asFloatBuffer().put(v);
        Path f = dir.resolve("weights.bin");
        Files.write(f, b.array());
        try (Scope mapping = Scope.of(gpu)) {
            MappedFile m = mapping.track(gpu.map(f));
            assertThat(m.size()).isEqualTo(4016);
            assertThat(m.bytes(0, 16).getLong(0)).isEqualTo(0x1234_5678_9abc_def0L); // read from the host mapping
            long before = gpu.liveBytes();
            Tensor t = mapping.wrap(m, 16, DType.F32, Shape.of(10, 100)); // as the loaders do
            assertThat(gpu.liveBytes()).as("device bytes before the tensor is used").isEqualTo(before);
            same("mapped file", t.toFloatArray(), v);
            assertThat(gpu.liveBytes()).as("device bytes once used: its range only").isEqualTo(before + 4000);
            Tensor sum = scopes[1].allocate(DType.F32, 10, 100);
            ops(1).add(sum, t, t); // kernels read it
            float[] twice = sum.toFloatArray();
            for (int i = 0; i < v.length; i++) assertThat(twice[i]).isEqualTo(2 * v[i]);
        }
    }

    // ---- elementwise --------------------------------------------------------------------------------------------------

    @Test
    void castsMatchBitForBit() {
        for (int n : new int[] {1, 8, 4099, 100_003}) {
            float[] v = randn(n, 100f);
            v[0] = Float.NaN;
            if (n > 4) {
                v[1] = Float.POSITIVE_INFINITY;
                v[2] = 1e-8f;    // f16 subnormal
                v[3] = 70000f;   // f16 overflow
                v[4] = -0f;
            }
            Tensor[] src = of(v, n);
            for (DType dt : new DType[] {DType.BF16, DType.F16}) {
                Tensor[] half = poisoned(dt, n);
                both(s -> ops(s).cast(half[s], src[s]));
                exact("cast f32->" + dt + " n=" + n, half);
                Tensor[] back = poisoned(DType.F32, n);
                both(s -> ops(s).cast(back[s], half[s]));
                exact("cast " + dt + "->f32 n=" + n, back);
            }
            Tensor[] bf = of(DType.BF16, v, n), f16 = poisoned(DType.F16, n);
            both(s -> ops(s).cast(f16[s], bf[s]));
            exact("cast bf16->f16 n=" + n, f16);
        }
    }

    @Test
    void elementwiseOps() {
        for (int n : new int[] {1, 7, 4097, 1_000_003}) {
            Tensor[] a = of(randn(n, 1f), n), b = of(randn(n, 1f), n), out = poisoned(DType.F32, n);
            both(s -> ops(s).add(out[s], a[s], b[s]));
            close("add n=" + n, out, 1e-7);
            poison(out);
            both(s -> ops(s).axpby(out[s], a[s], -0.7f, b[s]));
            close("axpby n=" + n, out, 1e-6);
            both(s -> ops(s).scale(out[s], 1.3f));
            close("scale n=" + n, out, 1e-7);
            both(s -> ops(s).axpby(a[s], a[s], 2f, a[s])); // aliasing
            close("axpby aliased n=" + n, a, 1e-7);
            double sc = ops(0).sumSquares(b[0]), sg = ops(1).sumSquares(b[1]);
            assertThat(sg).as("sumSquares n=%d [seed %d]", n, seed).isCloseTo(sc, org.assertj.core.data.Offset.offset(1e-12 * sc + 1e-30));
            Tensor[] dg = poisoned(DType.F32, n), du = poisoned(DType.F32, n);
            both(s -> ops(s).swiglu(out[s], a[s], b[s]));
            close("swiglu n=" + n, out, 1e-6);
            both(s -> ops(s).swigluBackward(dg[s], du[s], out[s], a[s], b[s]));
            close("swiglu dgate n=" + n, dg, 1e-6);
            close("swiglu dup n=" + n, du, 1e-6);
        }
        for (int[] rc : new int[][] {{1, 1}, {7, 37}, {300, 4096}}) {
            Tensor[] x = of(randn(rc[0] * rc[1], 1f), rc[0], rc[1]), bias = of(randn(rc[1], 1f), rc[1]);
            both(s -> ops(s).addBias(x[s], bias[s]));
            close("addBias " + rc[0] + "x" + rc[1], x, 1e-7);
        }
    }

    @Test
    void adamw() {
        for (int n : new int[] {1, 1023, 262_147}) {
            Tensor[] p = of(randn(n, 1f), n), g = of(randn(n, 1f), n), m = of(randn(n, 0.1f), n), v = of(uniform(n, 0f, 0.1f), n);
            for (int step = 1; step <= 3; step++) {
                float b1 = (float) (1 - Math.pow(0.9, step)), b2 = (float) (1 - Math.pow(0.95, step));
                both(s -> ops(s).adamw(p[s], g[s], m[s], v[s], 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, b1, b2, 0.5f));
            }
            close("adamw p n=" + n, p, 1e-6);
            close("adamw m n=" + n, m, 1e-6);
            close("adamw v n=" + n, v, 1e-6);
        }
    }

    // ---- embedding, RMSNorm, RoPE --------------------------------------------------------------------------------------

    @Test
    void embedding() {
        for (int[] c : new int[][] {{50, 33, 17}, {1000, 129, 300}, {32000, 64, 2049}}) {
            int vocab = c[0], dim = c[1], n = c[2];
            float[] table = randn(vocab * dim, 1f);
            Tensor[] ids = ints(randint(n, 0, vocab), n);
            for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                Tensor[] t = of(dt, table, vocab, dim), out = poisoned(DType.F32, n, dim);
                both(s -> ops(s).embedding(out[s], t[s], ids[s]));
                exact("embedding " + dt + " " + n + "x" + dim, out);
            }
            Tensor[] rep = ints(randint(n, 0, Math.max(1, vocab / 8)), n); // many repeated ids
            Tensor[] dtable = of(randn(vocab * dim, 1f), vocab, dim), dout = of(randn(n * dim, 1f), n, dim);
            both(s -> ops(s).embeddingBackward(dtable[s], dout[s], rep[s]));
            close("embeddingBackward " + n + "x" + dim, dtable, 1e-6);
        }
    }

    @Test
    void rmsnorm() {
        for (int[] c : new int[][] {{1, 1000}, {7, 67}, {130, 4096}, {1030, 64}}) {
            int rows = c[0], dim = c[1];
            Tensor[] x = of(randn(rows * dim, 3f), rows, dim), w = of(randn(dim, 1f), dim);
            Tensor[] out = poisoned(DType.F32, rows, dim), inv = poisoned(DType.F32, rows);
            both(s -> ops(s).rmsnorm(out[s], inv[s], x[s], w[s], 1e-5f));
            close("rmsnorm " + rows + "x" + dim, out, 1e-6);
            close("rmsnorm invRms " + rows, inv, 1e-6);
            Tensor[] dout = of(randn(rows * dim, 1f), rows, dim), dx = poisoned(DType.F32, rows, dim), dw = of(randn(dim, 1f), dim);
            both(s -> ops(s).rmsnormBackward(dx[s], dw[s], dout[s], x[s], w[s], inv[s]));
            close("rmsnormBackward dx " + rows + "x" + dim, dx, 1e-5);
            close("rmsnormBackward dw " + dim, dw, 1e-5);
            Tensor[] inPlace = of(x[0].toFloatArray(), rows, dim);
            both(s -> ops(s).rmsnorm(inPlace[s], null, inPlace[s], w[s], 1e-5f));
            close("rmsnorm in place " + rows + "x" + dim, inPlace, 1e-6);
        }
    }

    @Test
    void rope() {
        for (int[] c : new int[][] {{1, 1, 2}, {7, 5, 64}, {33, 4, 128}}) {
            int rows = c[0], heads = c[1], d = c[2];
            float[] inv = new float[d / 2];
            for (int i = 0; i < d / 2; i++) inv[i] = (float) Math.pow(500000.0, -2.0 * i / d);
            Tensor[] freq = of(inv, d / 2), pos = ints(randint(rows, 0, 8192), rows);
            for (boolean interleaved : new boolean[] {false, true}) {
                for (boolean inverse : new boolean[] {false, true}) {
                    Tensor[] x = of(randn(rows * heads * d, 1f), rows, heads * d);
                    both(s -> ops(s).rope(x[s], pos[s], freq[s], heads, d, interleaved, inverse));
                    close("rope " + (interleaved ? "interleaved" : "rotate-half") + (inverse ? " inverse " : " ") + rows + "x" + heads + "x" + d, x, 1e-6);
                }
            }
        }
    }

    // ---- GEMM -------------------------------------------------------------------------------------------------------------

    @Test
    void gemm() {
        int[][] shapes = {{1, 1, 1}, {7, 5, 3}, {37, 53, 129}, {128, 256, 64}, {3, 1000, 257}, {130, 70, 1}};
        for (Backend.GemmPath path : new Backend.GemmPath[] {AUTO, FALLBACK}) {
            gpu.setGemmPath(path);
            for (int[] sh : shapes) {
                int m = sh[0], n = sh[1], k = sh[2];
                for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                    for (int t = 0; t < 4; t++) {
                        boolean ta = (t & 1) != 0, tb = (t & 2) != 0;
                        Tensor[] a = ta ? of(randn(k * m, 1f), k, m) : of(randn(m * k, 1f), m, k);
                        Tensor[] b = tb ? of(dt, randn(n * k, 1f), n, k) : of(dt, randn(k * n, 1f), k, n);
                        double tol = path == FALLBACK || dt == DType.F32 ? 1e-5 : dt == DType.BF16 ? 1e-2 : 2e-3;
                        String what = "gemm path " + path + " " + dt + " " + (ta ? "T" : "N") + (tb ? "T" : "N") + " " + m + "x" + n + "x" + k;
                        Tensor[] c = poisoned(DType.F32, m, n);
                        both(s -> ops(s).gemm(ta, tb, 0.75f, a[s], b[s], 0f, c[s])); // beta 0 ignores the NaN in c
                        close(what + " beta 0", c, tol);
                        Tensor[] c2 = of(randn(m * n, 1f), m, n);
                        both(s -> ops(s).gemm(ta, tb, 1.25f, a[s], b[s], 0.5f, c2[s]));
                        close(what + " beta 0.5", c2, tol);
                    }
                }
            }
        }
    }

    // ---- attention ------------------------------------------------------------------------------------------------------

    @Test
    void attentionForwardAgainstTheCache() {
        // nSeq, maxLen, rows, heads, kvHeads, headDim
        for (int[] c : new int[][] {{2, 70, 9, 8, 2, 32}, {3, 200, 40, 8, 2, 64}, {2, 300, 17, 32, 8, 128}, {1, 90, 5, 6, 6, 80}, {1, 64, 4, 16, 1, 256}}) {
            int nSeq = c[0], maxLen = c[1], rows = c[2], heads = c[3], kv = c[4], d = c[5];
            Tensor[] kc = of(randn(nSeq * maxLen * kv * d, 1f), nSeq, maxLen, kv * d), vc = of(randn(nSeq * maxLen * kv * d, 1f), nSeq, maxLen, kv * d);
            int[] pos = randint(rows, 0, maxLen);
            pos[0] = 0;
            pos[rows - 1] = maxLen - 1;
            Tensor[] seq = ints(randint(rows, 0, nSeq), rows), ps = ints(pos, rows), q = of(randn(rows * heads * d, 1f), rows, heads * d);
            Tensor[] out = poisoned(DType.F32, rows, heads * d), lse = poisoned(DType.F32, rows, heads);
            float scale = (float) (1 / Math.sqrt(d));
            both(s -> ops(s).attention(out[s], lse[s], q[s], kc[s], vc[s], seq[s], ps[s], heads, kv, d, scale));
            String what = "attention rows " + rows + " heads " + heads + "/" + kv + " d " + d + " len " + maxLen;
            close(what + " out", out, 1e-5);
            close(what + " lse", lse, 1e-5);
            // kv_write: distinct cells; then gather_rows in place (idx[r] >= r compacts)
            Tensor[] src = of(randn(rows * kv * d, 1f), rows, kv * d);
            int[] wseq = new int[rows], wpos = new int[rows], idx = new int[rows];
            for (int r = 0; r < rows; r++) {
                wseq[r] = (r / maxLen) % nSeq;
                wpos[r] = r % maxLen;
                idx[r] = Math.min(rows - 1, r + rnd.nextInt(3));
            }
            Tensor[] ws = ints(wseq, rows), wp = ints(wpos, rows), ix = ints(idx, rows);
            both(s -> ops(s).kvWrite(kc[s], src[s], ws[s], wp[s]));
            exact("kvWrite " + rows + " rows", kc);
            both(s -> ops(s).gatherRows(src[s], src[s], ix[s]));
            exact("gatherRows in place " + rows, src);
            Tensor[] dst = poisoned(DType.F32, rows, kv * d);
            both(s -> ops(s).gatherRows(dst[s], src[s], ix[s]));
            exact("gatherRows " + rows, dst);
        }
    }

    /** CUDA kernels cannot fail their launch: an impossible index fails the next synchronizing call, once. */
    @Test
    void impossibleIndicesFailTheNextSynchronizingCall() {
        Scope sc = scopes[1];
        Ops g = gpu.ops();
        Tensor cache = sc.zeros(DType.F32, 2, 5, 4), src = sc.of(randn(12, 1f), 3, 4), posOk = sc.of(new int[] {0, 1, 2}, 3);
        Tensor badSeq = sc.of(new int[] {0, 1, 7}, 3);
        g.kvWrite(cache, src, badSeq, posOk);
        assertThatThrownBy(gpu::synchronize).isInstanceOf(IllegalStateException.class)
            .hasMessageContaining("ee_kv_write: row 2 has seq 7, outside the cache's 2 sequences");
        gpu.synchronize(); // reported once, then clear
        Tensor dst = sc.allocate(DType.F32, 3, 4);
        g.gatherRows(dst, src, sc.of(new int[] {0, 3, 1}, 3));
        assertThatThrownBy(dst::toFloatArray).isInstanceOf(IllegalStateException.class) // a copy to the host reports too
            .hasMessageContaining("ee_gather_rows: row 1 has index 3, outside src's 3 rows");
        g.attention(sc.allocate(DType.F32, 3, 8), null, sc.zeros(DType.F32, 3, 8), cache, cache, sc.of(new int[] {0, 1, 1}, 3), sc.of(new int[] {0, 9, 2}, 3), 2, 1, 4, 0.5f);
        assertThatThrownBy(gpu::synchronize).isInstanceOf(IllegalStateException.class)
            .hasMessageContaining("ee_attention_fwd: row 1 has pos 9, outside the cache's 5 positions");
        Tensor table = sc.zeros(DType.F32, 10, 4);
        g.embedding(sc.allocate(DType.F32, 2, 4), table, sc.of(new int[] {3, 10}, 2));
        assertThatThrownBy(gpu::synchronize).isInstanceOf(IllegalStateException.class)
            .hasMessageContaining("ee_embedding_fwd: row 1 has id 10, outside the table's 10 rows");
        g.linearCrossEntropy(sc.allocate(DType.F32, 3), null, null, null, null, src, table, sc.of(new int[] {-1, 4, 12}, 3), null, 4, 1f);
        assertThatThrownBy(gpu::synchronize).isInstanceOf(IllegalStateException.class)
            .hasMessageContaining("ee_linear_cross_entropy: row 2 has target 12, outside the vocabulary of 10");
    }

    @Test
    void attentionBackward() {
        // batch, seq, heads, kvHeads, headDim
        for (int[] c : new int[][] {{2, 19, 4, 2, 32}, {2, 37, 8, 2, 64}, {1, 70, 4, 4, 128}, {1, 20, 32, 4, 64}}) {
            int batch = c[0], seq = c[1], heads = c[2], kv = c[3], d = c[4], rows = batch * seq;
            float scale = (float) (1 / Math.sqrt(d));
            Tensor[] q = of(randn(rows * heads * d, 1f), rows, heads * d);
            Tensor[] k = of(randn(rows * kv * d, 1f), batch, seq, kv * d), v = of(randn(rows * kv * d, 1f), batch, seq, kv * d);
            int[] sq = new int[rows], ps = new int[rows];
            for (int r = 0; r < rows; r++) {
                sq[r] = r / seq;
                ps[r] = r % seq;
            }
            // the CPU forward's output and lse feed both backward passes, so only the backward is compared
            Tensor[] seqs = ints(sq, rows), pos = ints(ps, rows);
            Tensor outC = scopes[0].allocate(DType.F32, rows, heads * d), lseC = scopes[0].allocate(DType.F32, rows, heads);
            ops(0).attention(outC, lseC, q[0], k[0], v[0], seqs[0], pos[0], heads, kv, d, scale);
            Tensor[] out = of(outC.toFloatArray(), rows, heads * d), lse = of(lseC.toFloatArray(), rows, heads);
            Tensor[] dout = of(randn(rows * heads * d, 1f), rows, heads * d), dq = poisoned(DType.F32, rows, heads * d);
            Tensor[] dk = of(randn(rows * kv * d, 1f), rows, kv * d), dv = of(randn(rows * kv * d, 1f), rows, kv * d);
            both(s -> ops(s).attentionBackward(dq[s], dk[s], dv[s], dout[s], out[s], lse[s], q[s], k[s], v[s], batch, seq, heads, kv, d, scale));
            String what = "attentionBackward b " + batch + " t " + seq + " heads " + heads + "/" + kv + " d " + d;
            close(what + " dq", dq, 1e-4);
            close(what + " dk", dk, 1e-4);
            close(what + " dv", dv, 1e-4);
        }
    }

    // ---- softmax, argmax, sampling -----------------------------------------------------------------------------------------

    @Test
    void softmaxArgmaxAndSampling() {
        for (int[] c : new int[][] {{3, 301}, {7, 1001}, {4, 32000}, {2, 128256}}) {
            int rows = c[0], n = c[1];
            Tensor[] x = of(randn(rows * n, 3f), rows, n), out = poisoned(DType.F32, rows, n);
            both(s -> ops(s).softmax(out[s], x[s], 0.8f));
            close("softmax " + rows + "x" + n, out, 1e-5);
            Tensor[] idx = poisoned(DType.I32, rows), mp = poisoned(DType.F32, rows);
            both(s -> ops(s).argmax(idx[s], mp[s], x[s], 0.8f));
            exact("argmax " + rows + "x" + n, idx);
            close("argmax maxProb " + rows + "x" + n, mp, 1e-5);
            Tensor[] u = of(uniform(rows, 0f, 1f), rows);
            for (float topP : new float[] {0.9f, 0.5f, 1f}) {
                Tensor[] tok = poisoned(DType.I32, rows);
                both(s -> ops(s).sampleTopP(tok[s], x[s], u[s], 0.8f, topP));
                exact("sampleTopP p=" + topP + " " + rows + "x" + n, tok);
            }
        }
    }

    // ---- fused linear + cross-entropy --------------------------------------------------------------------------------------

    @Test
    void linearCrossEntropy() {
        // rows, dim, vocab, rows per block (0 = as many as the scratch holds), weight dtype, GEMM path
        Object[][] cases = {
            {9, 48, 301, 4, DType.F32, AUTO}, {33, 64, 1001, 7, DType.F32, AUTO}, {33, 64, 1001, 7, DType.BF16, FALLBACK},
            {9, 48, 301, 4, DType.BF16, AUTO}, {40, 256, 32001, 16, DType.BF16, AUTO}, {17, 128, 500, 0, DType.F32, AUTO}}; // the last: one block holds every row
        for (Object[] c : cases) {
            int rows = (int) c[0], dim = (int) c[1], vocab = (int) c[2], rowBlock = (int) c[3];
            Backend.GemmPath path = (Backend.GemmPath) c[5];
            DType dt = (DType) c[4];
            gpu.setGemmPath(path);
            int[] tg = randint(rows, 0, vocab);
            tg[0] = -1; // an ignored row
            Tensor[] x = of(randn(rows * dim, 1f), rows, dim), w = of(dt, randn(vocab * dim, 0.05f), vocab, dim), targets = ints(tg, rows);
            Tensor[] gw = of(uniform(rows, 0.1f, 1f), rows), loss = poisoned(DType.F32, rows), dx = poisoned(DType.F32, rows, dim);
            Tensor[] dw = of(randn(vocab * dim, 0.01f), vocab, dim), am = poisoned(DType.I32, rows), mp = poisoned(DType.F32, rows);
            both(s -> ops(s).linearCrossEntropy(loss[s], dx[s], dw[s], am[s], mp[s], x[s], w[s], targets[s], gw[s], rowBlock, 0.7f));
            boolean fp32 = dt == DType.F32 || path == FALLBACK;
            String what = "linearCrossEntropy " + dt + " path " + path + " " + rows + "x" + dim + " V " + vocab + " row block " + rowBlock;
            close(what + " loss", loss, fp32 ? 1e-5 : 1e-2);
            close(what + " dx", dx, fp32 ? 1e-4 : 2e-2);
            close(what + " dw", dw, fp32 ? 1e-4 : 2e-2);
            close(what + " maxProb", mp, fp32 ? 1e-5 : 1e-2);
            if (fp32) exact(what + " argmax", am);
            // forward only: dx and dw untouched
            Tensor[] loss2 = poisoned(DType.F32, rows), dx2 = poisoned(DType.F32, rows, dim);
            both(s -> ops(s).linearCrossEntropy(loss2[s], dx2[s], null, null, null, x[s], w[s], targets[s], null, rowBlock, 0.7f));
            close(what + " loss (no backward)", loss2, fp32 ? 1e-5 : 1e-2);
            assertThat(dx2[1].toFloatArray()).as("dx is left alone without gradient weights").containsOnly(Float.NaN);
        }
    }
}
