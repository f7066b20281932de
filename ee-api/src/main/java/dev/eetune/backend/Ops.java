package dev.eetune.backend;

import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

/**
 * The validated op set of a backend. Every method checks devices, dtypes and shapes in Java and throws
 * {@link IllegalArgumentException} naming the op and the shapes before the native call; a native failure becomes an
 * {@link IllegalStateException} carrying the library's message. Tensors of rank > 2 are read as
 * [product of leading dims, last dim] ("rows x cols").
 *
 * <p>No method reads tensor contents back to the host: indices (token ids, sequence ids, positions, row indices,
 * targets) are checked by the kernels, which fail with a message naming the kernel, row, value and bound, e.g.
 * {@code ee_kv_write: row 3 has seq 7, outside the cache's 2 sequences}. The CPU backend fails the op's own call;
 * the CUDA backend, whose kernels run asynchronously, fails its next synchronizing call (a read to the host or
 * {@code synchronize()}).
 */
public final class Ops {
    private final Backend backend;
    private volatile Kernels k;
    private KernelProfile profile;

    Ops(Backend backend) {
        this.backend = backend;
        this.k = backend.kernels();
    }

    /** Starts timing every kernel call made through these ops until the returned profile is closed. */
    public synchronized KernelProfile profile() {
        if (profile != null) throw new IllegalStateException("a kernel profile is already open on " + backend.name());
        profile = new KernelProfile(this);
        k = profile.wrap(backend.kernels());
        return profile;
    }

    synchronized void stopProfiling(KernelProfile p) {
        if (profile != p) return;
        profile = null;
        k = backend.kernels();
    }

    // ---- memory and elementwise ----------------------------------------------------------------------------

    public void copy(Tensor dst, Tensor src) {
        mine("copy", dst, src);
        if (dst.byteSize() != src.byteSize()) fail("copy", "sizes differ", dst, src);
        check("copy", k.ee_copy(dst.address(), src.address(), src.byteSize(), 0));
    }

    public void zero(Tensor t) {
        mine("zero", t);
        check("zero", k.ee_fill_bytes(t.address(), 0, t.byteSize()));
    }

    /** dst = src converted to dst's dtype (F32/BF16/F16). */
    public void cast(Tensor dst, Tensor src) {
        mine("cast", dst, src);
        if (!dst.dtype().isFloat() || !src.dtype().isFloat()) fail("cast", "float dtypes only", dst, src);
        if (dst.size() != src.size()) fail("cast", "sizes differ", dst, src);
        check("cast", k.ee_cast(dst.address(), dst.dtype().code(), src.address(), src.dtype().code(), src.size()));
    }

    /** out = a + b (elementwise; out may be a or b). */
    public void add(Tensor out, Tensor a, Tensor b) {
        f32("add", out, a, b);
        sameSize("add", out, a, b);
        check("add", k.ee_add(out.address(), a.address(), b.address(), out.size()));
    }

    /** out = a + alpha * b. */
    public void axpby(Tensor out, Tensor a, float alpha, Tensor b) {
        f32("axpby", out, a, b);
        sameSize("axpby", out, a, b);
        check("axpby", k.ee_axpby(out.address(), a.address(), alpha, b.address(), out.size()));
    }

    /** x[r, :] += bias. */
    public void addBias(Tensor x, Tensor bias) {
        f32("addBias", x, bias);
        if (bias.size() != cols(x)) fail("addBias", "bias length must equal the last dim of x", x, bias);
        check("addBias", k.ee_add_bias(x.address(), bias.address(), rows(x), cols(x)));
    }

    public void scale(Tensor x, float s) {
        f32("scale", x);
        check("scale", k.ee_scale(x.address(), s, x.size()));
    }

    /** Sum of squares, accumulated in double. */
    public double sumSquares(Tensor x) {
        f32("sumSquares", x);
        return k.ee_sum_squares(x.address(), x.size());
    }

    // ---- embedding -----------------------------------------------------------------------------------------

    /** out[r] = table[ids[r]]; table [vocab, dim] in any float dtype, out [n, dim] F32; ids in [0, vocab). */
    public void embedding(Tensor out, Tensor table, Tensor ids) {
        mine("embedding", out, table, ids);
        f32("embedding", out);
        i32("embedding", ids);
        if (!table.dtype().isFloat() || table.rank() != 2) fail("embedding", "table must be a float [vocab, dim] matrix", table);
        if (rows(out) != ids.size() || cols(out) != table.dim(1)) fail("embedding", "out must be [ids, dim]", out, table, ids);
        check("embedding", k.ee_embedding_fwd(out.address(), table.address(), table.dtype().code(), ids.address(), (int) ids.size(), table.dim(1), table.dim(0)));
    }

    /** dtable[ids[r]] += dout[r]; ids in [0, vocab). */
    public void embeddingBackward(Tensor dtable, Tensor dout, Tensor ids) {
        f32("embeddingBackward", dtable, dout);
        i32("embeddingBackward", ids);
        if (dtable.rank() != 2 || rows(dout) != ids.size() || cols(dout) != dtable.dim(1)) fail("embeddingBackward", "shapes disagree", dtable, dout, ids);
        check("embeddingBackward", k.ee_embedding_bwd(dtable.address(), dout.address(), ids.address(), (int) ids.size(), dtable.dim(1), dtable.dim(0)));
    }

    // ---- RMSNorm -------------------------------------------------------------------------------------------

    /** out = x / rms(x) * w per row; invRms (may be null) receives 1/rms per row. */
    public void rmsnorm(Tensor out, Tensor invRms, Tensor x, Tensor w, float eps) {
        f32("rmsnorm", out, x, w);
        sameSize("rmsnorm", out, x);
        if (w.size() != cols(x)) fail("rmsnorm", "weight length must equal the last dim of x", x, w);
        if (invRms != null) {
            f32("rmsnorm", invRms);
            if (invRms.size() != rows(x)) fail("rmsnorm", "invRms needs one value per row", x, invRms);
        }
        check("rmsnorm", k.ee_rmsnorm_fwd(out.address(), addr(invRms), x.address(), w.address(), rows(x), cols(x), eps));
    }

    /** dx (may be null) = d/dx; dw (may be null) += d/dw. */
    public void rmsnormBackward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor invRms) {
        f32("rmsnormBackward", dout, x, w, invRms);
        sameSize("rmsnormBackward", dout, x);
        if (dx != null) { f32("rmsnormBackward", dx); sameSize("rmsnormBackward", dx, x); }
        if (dw != null) { f32("rmsnormBackward", dw); sameSize("rmsnormBackward", dw, w); }
        if (w.size() != cols(x) || invRms.size() != rows(x)) fail("rmsnormBackward", "shapes disagree", x, w, invRms);
        check("rmsnormBackward", k.ee_rmsnorm_bwd(addr(dx), addr(dw), dout.address(), x.address(), w.address(), invRms.address(), rows(x), cols(x)));
    }

    // ---- GEMM ----------------------------------------------------------------------------------------------

    /**
     * c = alpha * op(a) * op(b) + beta * c with a, c F32 matrices and b F32/BF16/F16. beta = 0 ignores c's contents.
     */
    public void gemm(boolean transA, boolean transB, float alpha, Tensor a, Tensor b, float beta, Tensor c) {
        mine("gemm", a, b, c);
        f32("gemm", a, c);
        if (!b.dtype().isFloat()) fail("gemm", "b must be F32, BF16 or F16", b);
        int ar = rows(a), ac = cols(a), br = rows(b), bc = cols(b);
        int m = transA ? ac : ar, ka = transA ? ar : ac;
        int kb = transB ? bc : br, n = transB ? br : bc;
        if (ka != kb || rows(c) != m || cols(c) != n) {
            throw new IllegalArgumentException("gemm: op(a) " + m + "x" + ka + " times op(b) " + kb + "x" + n + " into c " + c.shape()
                + " (a " + a.shape() + (transA ? "^T" : "") + ", b " + b.shape() + (transB ? "^T" : "") + ")");
        }
        check("gemm", k.ee_gemm(transA ? 1 : 0, transB ? 1 : 0, m, n, ka, alpha, a.address(), ac, b.address(), b.dtype().code(), bc, beta, c.address(), cols(c)));
    }

    /** y = x w^T: a linear layer with weight w [out, in]. */
    public void linear(Tensor y, Tensor x, Tensor w) { gemm(false, true, 1f, x, w, 0f, y); }

    /**
     * The weight w [out, in] (F32, F16 or BF16) packed for small-batch decode (ee_pack_panels, ee_pack_panels_f16,
     * ee_pack_panels_bf16): a new tensor of w's dtype in {@code scope} of shape [out rounded up to {@link #PANEL_ROWS},
     * in], for {@link #linearPanels} and {@link #decoderLayer} with {@code panels}. The same memory again as w.
     */
    public Tensor packPanels(Tensor w, Scope scope) {
        mine("packPanels", w);
        packable("packPanels", w);
        Tensor packed = scope.allocate(w.dtype(), panelRows(w.dim(0)), w.dim(1));
        pack("packPanels", packed, w);
        return packed;
    }

    /** Packs w again into {@code packed}, which {@link #packPanels} made from a weight of w's shape and dtype (w has changed since). */
    public void repackPanels(Tensor packed, Tensor w) {
        mine("repackPanels", packed, w);
        packable("repackPanels", w);
        if (!matrix(packed, panelRows(w.dim(0)), w.dim(1)) || packed.dtype() != w.dtype()) {
            fail("repackPanels", "packed [out rounded up to " + PANEL_ROWS + ", in] of w's dtype from w [out, in]", packed, w);
        }
        pack("repackPanels", packed, w);
    }

    /** What ee_pack_panels, ee_pack_panels_f16 and ee_pack_panels_bf16 take: a matrix [out, in], F32, F16 or BF16. */
    private void packable(String op, Tensor w) {
        if (w.rank() != 2) fail(op, "the weight must be a matrix [out, in]", w);
        if (!w.dtype().isFloat()) fail(op, "the weight must be F32, F16 or BF16", w);
    }

    private void pack(String op, Tensor packed, Tensor w) {
        int n = w.dim(0), in = w.dim(1);
        check(op, switch (w.dtype()) {
            case BF16 -> k.ee_pack_panels_bf16(packed.address(), w.address(), n, in, in);
            case F16 -> k.ee_pack_panels_f16(packed.address(), w.address(), n, in, in);
            default -> k.ee_pack_panels(packed.address(), w.address(), n, in, in);
        });
    }

    /** Weight rows per panel of {@link #packPanels} (EE_PANEL_ROWS), and the most rows a packed GEMM takes. */
    public static final int PANEL_ROWS = 32, PANELS_MAX_ROWS = 16;

    private static int panelRows(long out) { return Math.toIntExact((out + PANEL_ROWS - 1) / PANEL_ROWS * PANEL_ROWS); }

    /** y [rows, out] = x [rows, in] w^T with w as {@link #packPanels} returned it (at most {@link #PANELS_MAX_ROWS} rows). */
    public void linearPanels(Tensor y, Tensor x, Tensor packed) {
        mine("linearPanels", y, x, packed);
        f32("linearPanels", y, x);
        int rows = rows(x), in = cols(x), out = cols(y);
        if (rows(y) != rows || rows > PANELS_MAX_ROWS || !matrix(packed, panelRows(out), in) || !packed.dtype().isFloat()) {
            fail("linearPanels", "y [rows, out] = x [rows, in] times a packed F32, F16 or BF16 [out rounded up to " + PANEL_ROWS + ", in], rows <= " + PANELS_MAX_ROWS, y, x, packed);
        }
        check("linearPanels", k.ee_gemm(0, 1, rows, out, in, 1f, x.address(), in, packed.address(), panelsDtype(packed.dtype()), in, 0f, y.address(), out));
    }

    /**
     * An 8-bit copy of the F32 weight w [out, in] (ee_pack_panels_i8) in {@code scope}, a quarter of w's bytes, for
     * scores that only have to lie near the products: {@code resid} and {@code norm} (F32 [out], each may be null)
     * receive each row's ||w_j - scale_j q_j|| and ||w_j||, rounded up (+inf for a row with a value that is not finite).
     */
    public Int8Panels packInt8Panels(Tensor w, Tensor resid, Tensor norm, Scope scope) {
        mine("packInt8Panels", w);
        f32("packInt8Panels", w);
        if (w.rank() != 2) fail("packInt8Panels", "the weight must be a matrix [out, in]", w);
        Int8Panels packed = new Int8Panels(scope.allocate(DType.I32, Math.toIntExact(k.ee_panels_i8_bytes(w.dim(0), w.dim(1)) / Integer.BYTES)), w.dim(0), w.dim(1));
        repackInt8Panels(packed, resid, norm, w);
        return packed;
    }

    /** Packs w again into {@code packed}, which {@link #packInt8Panels} made from a weight of w's shape (w has changed since). */
    public void repackInt8Panels(Int8Panels packed, Tensor resid, Tensor norm, Tensor w) {
        mine("repackInt8Panels", w, packed.bytes());
        f32("repackInt8Panels", w);
        if (!matrix(w, packed.out(), packed.in())) fail("repackInt8Panels", "w [" + packed.out() + ", " + packed.in() + "] as " + packed + " was made from", w);
        for (Tensor t : new Tensor[] {resid, norm}) {
            if (t == null) continue;
            mine("repackInt8Panels", t);
            f32("repackInt8Panels", t);
            if (t.size() != packed.out()) fail("repackInt8Panels", "one residual and one norm per row of w", t, w);
        }
        check("packInt8Panels", k.ee_pack_panels_i8(packed.bytes().address(), addr(resid), addr(norm), w.address(), packed.out(), packed.in(), packed.in()));
    }

    /** y [rows, out] = x [rows, in] times an {@link Int8Panels} copy's rows (scores near x w^T, see there; at most {@link #PANELS_MAX_ROWS} rows). */
    public void linearPanels(Tensor y, Tensor x, Int8Panels w) {
        mine("linearPanels", y, x, w.bytes());
        f32("linearPanels", y, x);
        int rows = rows(x);
        if (rows(y) != rows || rows > PANELS_MAX_ROWS || cols(x) != w.in() || cols(y) != w.out()) {
            fail("linearPanels", "y [rows, " + w.out() + "] = x [rows, " + w.in() + "] times " + w + ", rows <= " + PANELS_MAX_ROWS, y, x);
        }
        check("linearPanels", k.ee_gemm(0, 1, rows, w.out(), w.in(), 1f, x.address(), w.in(), w.bytes().address(), I8_PANELS, w.in(), 0f, y.address(), w.out()));
    }

    /** EE_I8_PANELS */
    private static final int I8_PANELS = 6;

    /** EE_F32_PANELS (4), EE_BF16_PANELS (5) or EE_F16_PANELS (7): the ee_gemm dtype of a matrix packed from F32, BF16 or F16 */
    private static int panelsDtype(DType packed) {
        return switch (packed) {
            case BF16 -> 5;
            case F16 -> 7;
            default -> 4;
        };
    }

    // ---- RoPE and attention --------------------------------------------------------------------------------

    /** Rotates x [rows, nHeads * headDim] in place; row r at position pos[r]; inverse = the backward. */
    public void rope(Tensor x, Tensor pos, Tensor invFreq, int nHeads, int headDim, boolean interleaved, boolean inverse) {
        f32("rope", x, invFreq);
        i32("rope", pos);
        if (headDim % 2 != 0 || cols(x) != nHeads * headDim || pos.size() != rows(x) || invFreq.size() != headDim / 2) {
            throw new IllegalArgumentException("rope: x " + x.shape() + ", pos " + pos.shape() + ", invFreq " + invFreq.shape()
                + " do not fit " + nHeads + " heads of (even) size " + headDim);
        }
        check("rope", k.ee_rope(x.address(), pos.address(), invFreq.address(), rows(x), nHeads, headDim, interleaved ? 1 : 0, inverse ? 1 : 0));
    }

    /**
     * Causal GQA attention of packed rows against a cache [nSeq, maxLen, nKv * headDim]; row r is sequence
     * rowSeq[r] (in [0, nSeq)) at position rowPos[r] (in [0, maxLen)) and attends to positions 0..rowPos[r].
     * lse (may be null): [rows, nHeads].
     */
    public void attention(Tensor out, Tensor lse, Tensor q, Tensor kCache, Tensor vCache, Tensor rowSeq, Tensor rowPos,
                          int nHeads, int nKvHeads, int headDim, float scale) {
        f32("attention", out, q, kCache, vCache);
        i32("attention", rowSeq, rowPos);
        int rows = rows(q);
        if (nKvHeads <= 0 || nHeads % nKvHeads != 0) throw new IllegalArgumentException("attention: " + nHeads + " query heads are not a multiple of " + nKvHeads + " KV heads");
        if (cols(q) != nHeads * headDim || !out.shape().equals(q.shape()) || rowSeq.size() != rows || rowPos.size() != rows) {
            fail("attention", "q/out must be [rows, heads*headDim] with one seq and pos per row", out, q, rowSeq, rowPos);
        }
        if (kCache.rank() != 3 || !kCache.shape().equals(vCache.shape()) || kCache.dim(2) != nKvHeads * headDim) {
            fail("attention", "caches must be [nSeq, maxLen, kvHeads*headDim]", kCache, vCache);
        }
        if (lse != null) { f32("attention", lse); if (lse.size() != (long) rows * nHeads) fail("attention", "lse must be [rows, heads]", lse); }
        check("attention", k.ee_attention_fwd(out.address(), addr(lse), q.address(), kCache.address(), vCache.address(),
            rowSeq.address(), rowPos.address(), rows, nHeads, nKvHeads, headDim, kCache.dim(0), kCache.dim(1), scale));
    }

    /** Backward of causal attention over dense batches [batch, seq, ...]: writes dq, accumulates dk and dv. */
    public void attentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor out, Tensor lse, Tensor q, Tensor kk, Tensor v,
                                  int batch, int seq, int nHeads, int nKvHeads, int headDim, float scale) {
        f32("attentionBackward", dq, dk, dv, dout, out, lse, q, kk, v);
        long rows = (long) batch * seq;
        if (nKvHeads <= 0 || nHeads % nKvHeads != 0 || q.size() != rows * nHeads * headDim || kk.size() != rows * nKvHeads * headDim
            || v.size() != kk.size() || dq.size() != q.size() || dout.size() != q.size() || out.size() != q.size()
            || dk.size() != kk.size() || dv.size() != kk.size() || lse.size() != rows * nHeads) {
            fail("attentionBackward", "shapes do not fit batch " + batch + " x seq " + seq + ", heads " + nHeads + "/" + nKvHeads + " of " + headDim, q, kk, v, lse);
        }
        check("attentionBackward", k.ee_attention_bwd(dq.address(), dk.address(), dv.address(), dout.address(), out.address(), lse.address(),
            q.address(), kk.address(), v.address(), batch, seq, nHeads, nKvHeads, headDim, scale));
    }

    /** cache[rowSeq[r], rowPos[r], :] = src[r, :], with the cache [nSeq, maxLen, width]. */
    public void kvWrite(Tensor cache, Tensor src, Tensor rowSeq, Tensor rowPos) {
        f32("kvWrite", cache, src);
        i32("kvWrite", rowSeq, rowPos);
        if (cache.rank() != 3 || cols(src) != cache.dim(2) || rowSeq.size() != rows(src) || rowPos.size() != rows(src)) {
            fail("kvWrite", "src [rows, width] into cache [nSeq, maxLen, width]", cache, src, rowSeq, rowPos);
        }
        check("kvWrite", k.ee_kv_write(cache.address(), src.address(), rowSeq.address(), rowPos.address(), rows(src), cols(src), cache.dim(0), cache.dim(1)));
    }

    /** dst[r] = src[idx[r]], idx in [0, rows of src). */
    public void gatherRows(Tensor dst, Tensor src, Tensor idx) {
        f32("gatherRows", dst, src);
        i32("gatherRows", idx);
        if (cols(dst) != cols(src) || rows(dst) != idx.size()) fail("gatherRows", "dst must be [idx, width of src]", dst, src, idx);
        check("gatherRows", k.ee_gather_rows(dst.address(), src.address(), idx.address(), rows(dst), cols(dst), rows(src)));
    }

    // ---- SwiGLU --------------------------------------------------------------------------------------------

    /** out = silu(gate) * up. */
    public void swiglu(Tensor out, Tensor gate, Tensor up) {
        f32("swiglu", out, gate, up);
        sameSize("swiglu", out, gate, up);
        check("swiglu", k.ee_swiglu_fwd(out.address(), gate.address(), up.address(), out.size()));
    }

    public void swigluBackward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) {
        f32("swigluBackward", dgate, dup, dout, gate, up);
        sameSize("swigluBackward", dgate, dup, dout, gate, up);
        check("swigluBackward", k.ee_swiglu_bwd(dgate.address(), dup.address(), dout.address(), gate.address(), up.address(), dout.size()));
    }

    // ---- a whole decoder layer ---------------------------------------------------------------------------------

    /**
     * One Llama decoder layer in one native call: the same ops, order and bits as calling {@link #rmsnorm},
     * {@link #linear} (q, k, v), {@link #addBias} (when bq is not null: bk and bv too), {@link #rope} (q, k),
     * {@link #kvWrite} (when {@code writeKv}), {@link #attention}, residual = x (unless the same tensor), residual +=
     * att wo^T, rmsnorm, linear (gate, up), {@link #swiglu}, out = residual (unless the same tensor), out += act
     * wDown^T one by one (see ee_decoder_layer_fwd). x, out, residual, xn1, xn2 [rows, dim]; q, att [rows, heads *
     * headDim]; k, v [rows, kvHeads * headDim]; gate, up, act [rows, hidden]; inv1, inv2 [rows], lse [rows, heads]
     * and the biases may be null. Without {@code writeKv} the rows are dense and the caches are k and v themselves,
     * viewed as [batch, seqLen, kvHeads * headDim]. The matrices share one dtype; everything else is F32. With
     * {@code panels} the seven matrices are {@link #packPanels}'s copies (at most {@link #PANELS_MAX_ROWS} rows).
     */
    public void decoderLayer(Tensor x, Tensor out, Tensor residual, Tensor xn1, Tensor inv1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor lse,
                             Tensor xn2, Tensor inv2, Tensor gate, Tensor up, Tensor act,
                             Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo, Tensor bq, Tensor bk, Tensor bv,
                             Tensor ffnNorm, Tensor wGate, Tensor wUp, Tensor wDown, boolean panels,
                             Tensor kCache, Tensor vCache, boolean writeKv, Tensor rowSeq, Tensor rowPos, Tensor invFreq,
                             int nHeads, int nKvHeads, int headDim, boolean interleaved, float eps, float scale) {
        String op = "decoderLayer";
        LayerShape shape = layerShape(op, attnNorm, wq, wk, wv, wo, bq, bk, bv, ffnNorm, wGate, wUp, wDown, panels, kCache, vCache, nHeads, nKvHeads, headDim);
        checkActivations(op, shape, x, out, residual, xn1, inv1, q, k, v, att, lse, xn2, inv2, gate, up, act, rowSeq, rowPos, invFreq);
        if (!writeKv && (kCache.address() != k.address() || vCache.address() != v.address())) {
            throw new IllegalArgumentException(op + ": without a KV write the caches must be the rows' own k and v (dense rows)");
        }
        check(op, this.k.ee_decoder_layer_fwd(x.address(), out.address(), residual.address(), xn1.address(), addr(inv1), q.address(), k.address(), v.address(),
            att.address(), addr(lse), xn2.address(), addr(inv2), gate.address(), up.address(), act.address(), attnNorm.address(), wq.address(), wk.address(),
            wv.address(), wo.address(), addr(bq), addr(bk), addr(bv), ffnNorm.address(), wGate.address(), wUp.address(), wDown.address(), shape.wDtype(),
            kCache.address(), vCache.address(), writeKv ? 1 : 0, kCache.dim(0), kCache.dim(1), rowSeq.address(), rowPos.address(), invFreq.address(),
            rows(x), shape.dim(), nHeads, nKvHeads, headDim, shape.hidden(), interleaved ? 1 : 0, eps, scale));
    }

    /**
     * A decoder layer's second half in one native call (ee_feed_forward_fwd): the same ops, order and bits as
     * {@link #rmsnorm} (xn2, inv2 of h with ffnNorm), {@link #linear} (gate, up), {@link #swiglu}, out = h (unless the
     * same tensor), out += act wDown^T. h, out, xn2 [rows, dim]; gate, up, act [rows, hidden] (act may be gate);
     * inv2 [rows] may be null. The matrices share one dtype ({@code panels}: {@link #packPanels}'s copies, at most
     * {@link #PANELS_MAX_ROWS} rows); everything else is F32.
     */
    public void feedForward(Tensor h, Tensor out, Tensor xn2, Tensor inv2, Tensor gate, Tensor up, Tensor act, Tensor ffnNorm, Tensor wGate, Tensor wUp, Tensor wDown,
                            boolean panels, float eps) {
        String op = "feedForward";
        f32(op, h);
        DType wt = wGate.dtype();
        int rows = rows(h), dim = cols(h), hidden = feedForwardShape(op, wt, ffnNorm, wGate, wUp, wDown, panels, dim);
        if (panels && rows > PANELS_MAX_ROWS) fail(op, "packed matrices take at most " + PANELS_MAX_ROWS + " rows", h);
        checkFeedForwardActivations(op, h, rows, dim, hidden, out, xn2, inv2, gate, up, act);
        check(op, k.ee_feed_forward_fwd(h.address(), out.address(), xn2.address(), addr(inv2), gate.address(), up.address(), act.address(), ffnNorm.address(),
            wGate.address(), wUp.address(), wDown.address(), panels ? panelsDtype(wt) : wt.code(), rows, dim, hidden, eps));
    }

    /**
     * Decoder layers [from, to) of a {@link #layerTable} in one native call (ee_decoder_layers_fwd): the same bits as
     * {@link #decoderLayer} for each in turn with {@code writeKv}, the first reading x and every later one out (out may
     * be x); the scratch activations are shared. Only the activations are checked here: the table's weights and
     * caches were checked when it was made. {@code residual} is left holding the last layer's x + attn(x).
     */
    public void decoderLayers(LayerTable table, int from, int to, Tensor x, Tensor out, Tensor residual, Tensor xn1, Tensor inv1, Tensor q, Tensor k, Tensor v,
                              Tensor att, Tensor lse, Tensor xn2, Tensor inv2, Tensor gate, Tensor up, Tensor act, Tensor rowSeq, Tensor rowPos, Tensor invFreq,
                              boolean interleaved, float eps, float scale) {
        String op = "decoderLayers";
        if (table.ops != this) throw new IllegalArgumentException(op + ": the table was made by another backend's ops (" + table.ops.backend.describe() + "), not this one's (" + backend.describe() + ")");
        if (from < 0 || to > table.layers() || from > to) throw new IllegalArgumentException(op + ": layers [" + from + ", " + to + ") outside the table's " + table.layers());
        table.checkOpen(from, to);
        LayerShape shape = table.shape;
        checkActivations(op, shape, x, out, residual, xn1, inv1, q, k, v, att, lse, xn2, inv2, gate, up, act, rowSeq, rowPos, invFreq);
        check(op, this.k.ee_decoder_layers_fwd(table.address, from, to - from, x.address(), out.address(), residual.address(), xn1.address(), addr(inv1),
            q.address(), k.address(), v.address(), att.address(), addr(lse), xn2.address(), addr(inv2), gate.address(), up.address(), act.address(),
            shape.wDtype(), 1, shape.sequences(), shape.maxLen(), rowSeq.address(), rowPos.address(), invFreq.address(), rows(x), shape.dim(),
            shape.nHeads(), shape.nKvHeads(), shape.headDim(), shape.hidden(), interleaved ? 1 : 0, eps, scale));
    }

    /**
     * Decode steps of {@code rows} sequences, a run of them in one native call (ee_decode_steps): step t embeds
     * {@code firstIds} (t = 0) or the previous step's tokens, runs all of the table's layers writing K/V at
     * {@code rowPos[t]} (one {@code rowSeq} for every step), and writes {@code outIds[t]}: the next tokens from
     * {@code classifier}'s logits of {@code finalNorm}'s norm of the result, the argmax (lowest index on ties) where
     * {@code uniforms} is null, else sampled as {@link #sampleTopP} does with {@code uniforms[t]}. The same bits as
     * {@link #embedding}, {@link #decoderLayers}, {@link #rmsnorm}, {@link #linear} (or {@link #linearPanels} with
     * {@code packedClassifier}) and {@link #argmax} or {@link #sampleTopP} one after another, without the calls, checks
     * and views per step. The arguments are checked and laid out here once, for any number of runs of up to outIds'
     * size / rows steps ({@link DecodeStepsCall#run}); the caller writes firstIds, rowSeq, rowPos and the uniforms
     * before each run.
     *
     * @param firstIds I32 [rows]; outIds and rowPos: I32 [steps, rows] for the most steps a run takes; rowSeq: I32 [rows]
     * @param uniforms F32 [steps, rows] as outIds, or null for greedy decoding (then temperature and topP are not read)
     * @param normed F32 [rows, dim] and logits F32 [rows, vocab]: scratch, as the activations are
     */
    public DecodeStepsCall prepareDecodeSteps(LayerTable table, Tensor embedding, Tensor finalNorm, Tensor classifier, boolean packedClassifier, Tensor firstIds,
                                              Tensor outIds, Tensor x, Tensor residual, Tensor xn1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor xn2, Tensor gate,
                                              Tensor up, Tensor act, Tensor normed, Tensor logits, Tensor rowSeq, Tensor rowPos, Tensor invFreq, boolean interleaved,
                                              float eps, float scale, Tensor uniforms, float temperature, float topP) {
        String op = "decodeSteps";
        int rows = rows(x);
        long room = outIds.size();
        if (firstIds.size() != rows || room % rows != 0 || rowPos.size() != room) {
            fail(op, "firstIds must be [rows], outIds and rowPos [steps, rows]", x, firstIds, outIds, rowPos);
        }
        if (uniforms != null && uniforms.size() != room) fail(op, "uniforms must be [steps, rows] as outIds", x, outIds, uniforms);
        if (normed.size() != (long) rows * cols(x) || logits.size() != (long) rows * embedding.dim(0)) fail(op, "normed must be [rows, dim] and logits [rows, vocab]", normed, logits);
        java.nio.ByteBuffer plan = decodePlan(op, table, embedding, finalNorm, classifier, packedClassifier, firstIds, outIds, x, residual, xn1, q, k, v, att, xn2, gate, up, act,
            normed, logits, rowSeq, rowPos, invFreq, interleaved, eps, scale, uniforms, temperature, topP, rows);
        return new DecodeStepsCall(rows, (int) (room / rows), new LayerTable[] {table}, held(embedding, finalNorm, classifier, firstIds, outIds, x, residual, xn1, q, k, v,
            att, xn2, gate, up, act, normed, logits, rowSeq, rowPos, invFreq, uniforms), plan);
    }

    /**
     * A native call prepared once for many runs (the chunks of a generation): the tensors and layer tables its host
     * tables point into, checked to be open again on each run so that a run after any was closed fails instead of
     * reading freed memory. Not thread-safe: one caller's, like the scratch tensors it writes.
     */
    public abstract class PreparedCall {
        private final LayerTable[] tables;
        private final Tensor[] tensors;

        private PreparedCall(LayerTable[] tables, Tensor[] tensors) {
            this.tables = tables;
            this.tensors = tensors;
        }

        /** Whether every tensor and layer table this call points into is still open (else a run fails: prepare another). */
        public boolean isOpen() {
            for (Tensor t : tensors) if (t.isClosed()) return false;
            for (LayerTable t : tables) if (!t.isOpen()) return false;
            return true;
        }

        void checkOpen() {
            for (LayerTable t : tables) t.checkOpen(0, t.layers());
            for (Tensor t : tensors) t.address(); // throws once closed
        }

        int tensorCount() { return tensors.length; }
    }

    private static Tensor[] held(Tensor... ts) {
        return java.util.Arrays.stream(ts).filter(java.util.Objects::nonNull).toArray(Tensor[]::new);
    }

    /** An ee_decode_steps call prepared by {@link #prepareDecodeSteps}. */
    public final class DecodeStepsCall extends PreparedCall {
        private final int rows, maxSteps;
        private final java.nio.ByteBuffer plan;

        private DecodeStepsCall(int rows, int maxSteps, LayerTable[] tables, Tensor[] tensors, java.nio.ByteBuffer plan) {
            super(tables, tensors);
            this.rows = rows;
            this.maxSteps = maxSteps;
            this.plan = plan;
        }

        /** The rows (sequences) each step feeds. */
        public int rows() { return rows; }

        /** The most steps a run may take. */
        public int maxSteps() { return maxSteps; }

        /** Runs {@code steps} steps (at most {@link #maxSteps}) as {@link #prepareDecodeSteps} describes. */
        public void run(int steps) {
            if (steps < 0 || steps > maxSteps) throw new IllegalArgumentException("decodeSteps: " + steps + " steps, this call holds 0.." + maxSteps);
            checkOpen();
            try {
                check("decodeSteps", k.ee_decode_steps(backend.host().address(plan), steps));
            } finally {
                java.lang.ref.Reference.reachabilityFence(this); // its host tables, which the library reads
            }
        }

        @Override
        public String toString() { return "DecodeStepsCall[" + rows + " rows, up to " + maxSteps + " steps, " + tensorCount() + " tensors, " + backend.name() + "]"; }
    }

    /**
     * ee_decode_steps' plan (also ee_exit_steps'): one host table of the call's arguments in the header's order, so that
     * the downcall is (plan, steps); the arguments checked once here. rows = x's rows; the classifier is read for
     * {@code classifierRows} rows at a time; rowPos is checked as I32 only (its shape is the caller's: [steps, rows] for
     * decodeSteps, [rows] for exitSteps).
     */
    private java.nio.ByteBuffer decodePlan(String op, LayerTable table, Tensor embedding, Tensor finalNorm, Tensor classifier, boolean packedClassifier, Tensor firstIds,
                                           Tensor outIds, Tensor x, Tensor residual, Tensor xn1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor xn2, Tensor gate,
                                           Tensor up, Tensor act, Tensor normed, Tensor logits, Tensor rowSeq, Tensor rowPos, Tensor invFreq, boolean interleaved,
                                           float eps, float scale, Tensor uniforms, float temperature, float topP, int classifierRows) {
        if (table.ops != this) throw new IllegalArgumentException(op + ": the table was made by another backend's ops (" + table.ops.backend.describe() + "), not this one's (" + backend.describe() + ")");
        table.checkOpen(0, table.layers());
        LayerShape shape = table.shape;
        mine(op, embedding, finalNorm, classifier, firstIds, outIds, normed, logits, rowPos);
        // rowSeq stands in for the positions of one pass: rowPos is the caller's to check
        checkActivations(op, shape, x, x, residual, xn1, null, q, k, v, att, null, xn2, null, gate, up, act, rowSeq, rowSeq, invFreq);
        int rows = rows(x), dim = shape.dim();
        i32(op, firstIds, outIds, rowPos);
        f32(op, finalNorm, normed, logits);
        if (!embedding.dtype().isFloat() || !matrix(embedding, embedding.dim(0), dim)) fail(op, "the embedding must be a float [vocab, dim] matrix", embedding);
        int vocab = embedding.dim(0);
        if (finalNorm.size() != dim) fail(op, "finalNorm must be [dim]", finalNorm);
        checkClassifier(op, classifier, packedClassifier, classifierRows, vocab, dim);
        if (normed.size() < dim || logits.size() < vocab) fail(op, "normed must hold a row of dim values and logits one of vocab", normed, logits); // the callers check the rows
        if (uniforms != null) {
            mine(op, uniforms);
            f32(op, uniforms);
            positive(op, temperature);
            if (!(topP > 0)) throw new IllegalArgumentException(op + ": top_p must be > 0, got " + topP);
        }
        long[] fields = {table.address, table.layers(), embedding.address(), embedding.dtype().code(), finalNorm.address(), classifier.address(),
            packedClassifier ? panelsDtype(classifier.dtype()) : classifier.dtype().code(), vocab, firstIds.address(), outIds.address(), x.address(), residual.address(),
            xn1.address(), q.address(), k.address(), v.address(), att.address(), xn2.address(), gate.address(), up.address(), act.address(), normed.address(), logits.address(),
            shape.wDtype(), shape.sequences(), shape.maxLen(), rowSeq.address(), rowPos.address(), invFreq.address(), rows, dim, shape.nHeads(), shape.nKvHeads(),
            shape.headDim(), shape.hidden(), interleaved ? 1 : 0, Float.floatToRawIntBits(eps), Float.floatToRawIntBits(scale), addr(uniforms),
            Float.floatToRawIntBits(temperature), Float.floatToRawIntBits(topP)};
        return longs(fields);
    }

    /** A classifier [vocab, dim] as {@code rows} final rows read it: plain, or packed panels. */
    private void checkClassifier(String op, Tensor classifier, boolean packed, int rows, int vocab, int dim) {
        boolean ok = packed ? rows <= PANELS_MAX_ROWS && matrix(classifier, panelRows(vocab), dim) && classifier.dtype().isFloat()
            : classifier.dtype().isFloat() && matrix(classifier, vocab, dim);
        if (!ok) fail(op, "the classifier must be " + (packed ? "packed panels of " : "") + "[vocab, dim], vocab " + vocab + ", dim " + dim, classifier);
    }

    /** A direct buffer of int64s in native order, whose address the library reads as a host table. */
    private static java.nio.ByteBuffer longs(long[] values) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocateDirect(values.length * Long.BYTES).order(java.nio.ByteOrder.nativeOrder());
        for (int i = 0; i < values.length; i++) b.putLong(i * Long.BYTES, values[i]);
        return b;
    }

    /** How an exit of {@link #prepareExitSteps} decides (eetune.h's EE_EXIT_SOFTMAX, EE_EXIT_GATE, EE_EXIT_CASCADE). */
    public enum ExitMethod { SOFTMAX, GATE, CASCADE }

    /**
     * One exit of {@link #prepareExitSteps}, after backbone layer {@code layer} (1-based): its head (an embedding head has no
     * norm, a norm head no MLP; an mlp head reads the layer's attention residual through {@code ffnNorm} and its own
     * SwiGLU projections), its LM head [vocab, dim] and temperature, its gate (w1 and b1 null for a linear gate; all
     * null with softmax decisions), the threshold and, for a cascade, the softmax confirmation; with softmax decisions
     * optionally an 8-bit screen of the LM head and its scores' radius ({@code model.ScoreScreen}; null: none): the
     * head's logits are computed only where the screen's bound on the largest probability, times {@code screenMargin},
     * reaches the threshold; optionally the LM head packed in panels ({@link #packPanels}; null: none), which a head
     * over k rows reads where k final rows read the classifier packed.
     */
    public record ExitStep(int layer, Tensor headNorm, Tensor ffnNorm, Tensor wGate, Tensor wUp, Tensor wDown, Tensor lmHead, float temperature, Tensor gateW1,
                           Tensor gateB1, Tensor gateW, Tensor gateB, float gateEps, float tau, float confirm, Int8Panels screen, Tensor radius, float screenMargin,
                           Tensor lmHeadPacked) {
        int kind() { return headNorm == null ? 0 : wGate == null ? 1 : 2; }

        /** This exit with the head's screen (see the record's description). */
        public ExitStep screened(Int8Panels screen, Tensor radius, float screenMargin) {
            return new ExitStep(layer, headNorm, ffnNorm, wGate, wUp, wDown, lmHead, temperature, gateW1, gateB1, gateW, gateB, gateEps, tau, confirm, screen, radius, screenMargin,
                lmHeadPacked);
        }

        /** This exit reading its LM head's packed copy where the rows read panels (see the record's description). */
        public ExitStep packed(Tensor lmHeadPacked) {
            return new ExitStep(layer, headNorm, ffnNorm, wGate, wUp, wDown, lmHead, temperature, gateW1, gateB1, gateW, gateB, gateEps, tau, confirm, screen, radius, screenMargin,
                lmHeadPacked);
        }
    }

    /**
     * What a pass of some number of rows reads in {@link #prepareExitSteps}: the layer table, and the classifier of the
     * final rows (plain, or packed panels where the rows read panels).
     */
    public record PassTables(LayerTable layers, Tensor classifier, boolean packedClassifier) {}

    /**
     * Early-exit decode steps of up to firstIds' size sequences together, a run of them in one native call
     * (ee_exit_steps): the passes of {@code dev.eetune.infer.EarlyExitGenerator} for sequences whose exits keep no cache
     * of their own, step after step (docs/exact-kv-recomputation.md). {@code passesByRows[r]} is what a pass of r rows
     * reads (r = 1 .. capacity, capacity = x's rows); a run's {@code state} is {steps run, its sequences n, -, then per
     * sequence {cache slot, complete length, length, layers done per position ...}} and is updated, state[0] being the
     * steps run (fewer than a run's {@code steps} where a pass would exceed capacity rows); {@code record} receives
     * {@link #EXIT_RECORD} values per step and sequence it may hold (eetune.h). {@code states} [sequences * maxLen, dim] are every
     * cache slot's kept hidden states; pos and rowSeq I32 [capacity], score F32 [max_seq + 1], chosen I32 [max_seq], pre
     * and z F32 [max_seq, dim] scratch; outIds and uniforms (null: greedy) [steps * max_seq] for the most steps a run
     * takes; normed and logits at least [max_seq, dim] and [max_seq, vocab]. The arguments are checked and laid out in
     * host tables here once, for any number of runs ({@link ExitStepsCall#run}); the caller writes firstIds (and the
     * uniforms) before each run. (Made per chunk, on a cold JVM this Java ran interpreted: ~0.1-0.2 ms a chunk, and the
     * layer tables' lookups up to 2.7 ms on the first one, against a stories260K step's ~25 us.)
     */
    public ExitStepsCall prepareExitSteps(PassTables[] passesByRows, Tensor embedding, Tensor finalNorm, Tensor firstIds, Tensor outIds, Tensor x, Tensor residual,
                                          Tensor xn1, Tensor q, Tensor k, Tensor v, Tensor att, Tensor xn2, Tensor gate, Tensor up, Tensor act, Tensor normed,
                                          Tensor logits, Tensor rowSeq, Tensor pos, Tensor invFreq, boolean interleaved, float eps, float scale, Tensor uniforms,
                                          float temperature, float topP, ExitMethod method, java.util.List<ExitStep> exits, Tensor states, Tensor score, Tensor chosen,
                                          Tensor pre, Tensor z) {
        String op = "exitSteps";
        int capacity = rows(x);
        if (capacity > EXIT_MAX_ROWS) throw new IllegalArgumentException(op + ": passes of " + capacity + " rows, at most " + EXIT_MAX_ROWS);
        if (passesByRows.length != capacity + 1) throw new IllegalArgumentException(op + ": " + passesByRows.length + " tables for passes of 0 .. " + capacity + " rows");
        java.util.List<LayerTable> distinct = new java.util.ArrayList<>();
        LayerTable first = passesByRows[1].layers();
        for (int r = 1; r <= capacity; r++) {
            LayerTable t = passesByRows[r].layers();
            if (r > 1 && t == passesByRows[r - 1].layers()) continue; // checked
            if (t.ops != this) throw new IllegalArgumentException(op + ": the table for " + r + " rows was made by another backend's ops");
            if (!t.shape.sameModel(first.shape)) throw new IllegalArgumentException(op + ": the table for " + r + " rows is " + t.shape + ", for 1 row " + first.shape);
            t.checkOpen(0, t.layers());
            if (t.layers() != first.layers()) throw new IllegalArgumentException(op + ": the table for " + r + " rows has " + t.layers() + " layers, not " + first.layers());
            if (!distinct.contains(t)) distinct.add(t);
        }
        LayerShape shape = first.shape;
        int dim = shape.dim(), layers = first.layers(), maxLen = shape.maxLen(), maxSeq = (int) firstIds.size(), vocab = embedding.dim(0);
        if (maxSeq < 1 || maxSeq > capacity || outIds.size() % maxSeq != 0 || pos.size() != capacity || rowSeq.size() != capacity
            || (uniforms != null && uniforms.size() != outIds.size())) {
            fail(op, "firstIds must be [max_seq] (1 .. capacity), outIds and uniforms [steps * max_seq], pos and rowSeq [capacity]", x, firstIds, outIds, pos, rowSeq);
        }
        int maxSteps = (int) (outIds.size() / maxSeq);
        mine(op, states, score, chosen, pre, z);
        if (normed.size() < (long) maxSeq * dim || logits.size() < (long) maxSeq * vocab) fail(op, "normed must hold [max_seq, dim] and logits [max_seq, vocab]", normed, logits);
        f32(op, states, score, pre, z);
        i32(op, chosen);
        if (!matrix(states, shape.sequences() * maxLen, dim) || score.size() < maxSeq + 1 || chosen.size() < maxSeq || pre.size() < (long) maxSeq * dim
            || z.size() < (long) maxSeq * dim) {
            fail(op, "states must be [sequences * max_len, dim], score [max_seq + 1], chosen [max_seq], pre and z [max_seq, dim]", states, score, chosen, pre, z);
        }
        if (exits.size() > 30) throw new IllegalArgumentException(op + ": " + exits.size() + " exits, at most 30");
        // the activations checked against the widest pass's table, each pass's classifier for its final rows
        java.nio.ByteBuffer plan = decodePlan(op, passesByRows[capacity].layers(), embedding, finalNorm, passesByRows[1].classifier(), passesByRows[1].packedClassifier(),
            firstIds, outIds, x, residual, xn1, q, k, v, att, xn2, gate, up, act, normed, logits, rowSeq, pos, invFreq, interleaved, eps, scale, uniforms, temperature, topP, 1);
        long[] tables = new long[4 * (capacity + 1)];
        java.util.List<Tensor> held = new java.util.ArrayList<>(java.util.Arrays.asList(embedding, finalNorm, firstIds, outIds, x, residual, xn1, q, k, v, att, xn2,
            gate, up, act, normed, logits, rowSeq, pos, invFreq, uniforms, states, score, chosen, pre, z));
        for (int r = 1; r <= capacity; r++) {
            PassTables p = passesByRows[r];
            if (r <= maxSeq) { // final rows: at most one per sequence
                mine(op, p.classifier());
                checkClassifier(op + " (" + r + " final rows)", p.classifier(), p.packedClassifier(), r, vocab, dim);
                if (!held.contains(p.classifier())) held.add(p.classifier());
            }
            tables[4 * r] = p.layers().address;
            tables[4 * r + 1] = p.layers().shape.wDtype();
            tables[4 * r + 2] = p.classifier().address();
            tables[4 * r + 3] = p.packedClassifier() ? panelsDtype(p.classifier().dtype()) : p.classifier().dtype().code();
        }
        java.nio.ByteBuffer tableBuf = longs(tables);
        int stride = maxSeq * EXIT_RECORD;
        java.nio.ByteBuffer stateBuf = ints(new int[3 + maxSeq * (3 + maxLen)]), recordBuf = ints(new int[maxSteps * stride]), posHost = ints(new int[capacity]),
            seqHost = ints(new int[capacity]), scoreHost = ints(new int[maxSeq]), zHost = ints(new int[dim]);
        long[] fields = new long[EXIT_PLAN_HEADER + exits.size() * EXIT_PLAN_FIELDS];
        long[] header = {exits.size(), method.ordinal(), maxSeq, capacity, backend.host().address(tableBuf), backend.host().address(stateBuf), states.address(),
            backend.host().address(recordBuf), pos.address(), backend.host().address(posHost), backend.host().address(seqHost), score.address(),
            backend.host().address(scoreHost), chosen.address(), pre.address(), z.address(), backend.host().address(zHost)};
        System.arraycopy(header, 0, fields, 0, EXIT_PLAN_HEADER);
        int before = 0;
        for (int i = 0; i < exits.size(); i++) {
            ExitStep e = exits.get(i);
            if (e.layer() <= before || e.layer() >= layers) throw new IllegalArgumentException(op + ": exit after layer " + e.layer() + ": exits must be in increasing layer order within 1.." + (layers - 1));
            before = e.layer();
            String at = op + " (exit after layer " + e.layer() + ")";
            mine(at, e.headNorm(), e.ffnNorm(), e.wGate(), e.wUp(), e.wDown(), e.lmHead(), e.gateW1(), e.gateB1(), e.gateW(), e.gateB());
            if (!e.lmHead().dtype().isFloat() || !matrix(e.lmHead(), vocab, dim)) fail(at, "the LM head must be a float [vocab, dim] matrix", e.lmHead());
            positive(at, e.temperature());
            if (e.headNorm() != null) {
                f32(at, e.headNorm());
                if (e.headNorm().size() != dim) fail(at, "the head's norm must be [dim]", e.headNorm());
            }
            int hidden = 0;
            if (e.wGate() != null) {
                if (e.headNorm() == null || e.ffnNorm() == null || e.wUp() == null || e.wDown() == null) throw new IllegalArgumentException(at + ": an MLP head needs its norm, the layer's ffn norm and three projections");
                f32(at, e.ffnNorm());
                hidden = e.wGate().dim(0);
                if (e.ffnNorm().size() != dim || !e.wGate().dtype().isFloat() || e.wUp().dtype() != e.wGate().dtype() || e.wDown().dtype() != e.wGate().dtype()
                    || !matrix(e.wGate(), hidden, dim) || !matrix(e.wUp(), hidden, dim) || !matrix(e.wDown(), dim, hidden)) {
                    fail(at, "an MLP head needs ffnNorm [dim], w_gate and w_up [hidden, dim], w_down [dim, hidden] of one float dtype", e.ffnNorm(), e.wGate(), e.wUp(), e.wDown());
                }
            }
            if (method != ExitMethod.SOFTMAX) {
                if (e.gateW() == null) throw new IllegalArgumentException(at + ": " + method + " decisions need a gate");
                checkGate(at, dim, e.gateW1(), e.gateB1(), e.gateW(), e.gateB(), null);
            }
            if (e.screen() != null) {
                if (method != ExitMethod.SOFTMAX) throw new IllegalArgumentException(at + ": a head's screen serves softmax decisions only, not " + method);
                if (maxSeq > 1) throw new IllegalArgumentException(at + ": a head's screen serves runs of one sequence, not " + maxSeq);
                mine(at, e.screen().bytes(), e.radius());
                if (e.screen().out() != vocab || e.screen().in() != dim) throw new IllegalArgumentException(at + ": the screen is " + e.screen() + ", the head [" + vocab + ", " + dim + "]");
                f32(at, e.radius());
                if (e.radius().size() != vocab) fail(at, "the screen's radius must be [vocab]", e.radius());
                positive(at, e.screenMargin());
            }
            if (e.lmHeadPacked() != null) {
                mine(at, e.lmHeadPacked());
                checkClassifier(at + ": its packed LM head", e.lmHeadPacked(), true, 1, vocab, dim);
                if (e.lmHead().dtype() != DType.F32 || e.lmHeadPacked().dtype() != DType.F32) fail(at, "a packed LM head serves an F32 one", e.lmHead(), e.lmHeadPacked());
            }
            long[] f = {e.layer(), e.kind(), addr(e.headNorm()), addr(e.ffnNorm()), addr(e.wGate()), addr(e.wUp()), addr(e.wDown()), e.wGate() == null ? 0 : e.wGate().dtype().code(),
                hidden, e.lmHead().address(), e.lmHead().dtype().code(), Float.floatToRawIntBits(e.temperature()), addr(e.gateW1()), addr(e.gateB1()), addr(e.gateW()),
                addr(e.gateB()), e.gateW1() == null ? 0 : e.gateW1().dim(0), Float.floatToRawIntBits(e.gateEps()), Float.floatToRawIntBits(e.tau()),
                Float.floatToRawIntBits(e.confirm()), e.screen() == null ? 0 : e.screen().bytes().address(), addr(e.radius()), Float.floatToRawIntBits(e.screenMargin()),
                addr(e.lmHeadPacked())};
            System.arraycopy(f, 0, fields, EXIT_PLAN_HEADER + i * EXIT_PLAN_FIELDS, EXIT_PLAN_FIELDS);
            held.addAll(java.util.Arrays.asList(e.headNorm(), e.ffnNorm(), e.wGate(), e.wUp(), e.wDown(), e.lmHead(), e.gateW1(), e.gateB1(), e.gateW(), e.gateB(), e.radius(),
                e.screen() == null ? null : e.screen().bytes(), e.lmHeadPacked()));
        }
        return new ExitStepsCall(maxSeq, maxSteps, maxLen, shape.sequences(), stride, distinct.toArray(new LayerTable[0]), held(held.toArray(new Tensor[0])), plan,
            longs(fields), new java.nio.ByteBuffer[] {tableBuf, posHost, seqHost, scoreHost, zHost}, stateBuf, recordBuf);
    }

    /** An ee_exit_steps call prepared by {@link #prepareExitSteps}. */
    public final class ExitStepsCall extends PreparedCall {
        private final int maxSeq, maxSteps, maxLen, slots, stride;
        private final java.nio.ByteBuffer plan, exitPlan, stateBuf, recordBuf;
        @SuppressWarnings("unused") // held: the plan points at them
        private final java.nio.ByteBuffer[] hostScratch;

        private ExitStepsCall(int maxSeq, int maxSteps, int maxLen, int slots, int stride, LayerTable[] tables, Tensor[] tensors, java.nio.ByteBuffer plan,
                              java.nio.ByteBuffer exitPlan, java.nio.ByteBuffer[] hostScratch, java.nio.ByteBuffer stateBuf, java.nio.ByteBuffer recordBuf) {
            super(tables, tensors);
            this.maxSeq = maxSeq;
            this.maxSteps = maxSteps;
            this.maxLen = maxLen;
            this.slots = slots;
            this.stride = stride;
            this.plan = plan;
            this.exitPlan = exitPlan;
            this.hostScratch = hostScratch;
            this.stateBuf = stateBuf;
            this.recordBuf = recordBuf;
        }

        /** The most sequences a run takes (firstIds' size). */
        public int maxSequences() { return maxSeq; }

        /** The most steps a run may take. */
        public int maxSteps() { return maxSteps; }

        /** Values per step in a run's record: {@link #EXIT_RECORD} per sequence it may hold. */
        public int recordStride() { return stride; }

        /** Values in a run's state: 3, then 3 + max_len per sequence. */
        public int stateSize() { return 3 + maxSeq * (3 + maxLen); }

        /**
         * Runs {@code steps} steps (at most {@link #maxSteps}) of the {@code state[1]} sequences its blocks describe, as
         * {@link #prepareExitSteps} says, updating {@code state} and writing {@code record}.
         */
        public void run(int steps, int[] state, int[] record) {
            String op = "exitSteps";
            if (steps < 0 || steps > maxSteps) throw new IllegalArgumentException(op + ": " + steps + " steps, this call holds 0.." + maxSteps);
            if (state.length != stateSize() || record.length < steps * stride) {
                throw new IllegalArgumentException(op + ": state must hold 3 + " + maxSeq + " x (3 + max_len) = " + stateSize() + " values, record " + stride + " per step");
            }
            int n = state[1];
            if (n < 1 || n > maxSeq) throw new IllegalArgumentException(op + ": " + n + " sequences, this call holds 1.." + maxSeq);
            for (int i = 0; i < n; i++) {
                int slot = state[3 + i * (3 + maxLen)];
                if (slot < 0 || slot >= slots) throw new IllegalArgumentException(op + ": sequence " + i + " in cache slot " + slot + ", the cache has " + slots);
            }
            checkOpen();
            stateBuf.asIntBuffer().put(state);
            try {
                check(op, k.ee_exit_steps(backend.host().address(plan), backend.host().address(exitPlan), steps));
                stateBuf.asIntBuffer().get(state);
                recordBuf.asIntBuffer().get(record, 0, steps * stride);
            } finally {
                java.lang.ref.Reference.reachabilityFence(this); // its host tables, which the library reads
            }
        }

        @Override
        public String toString() { return "ExitStepsCall[up to " + maxSeq + " sequences, " + maxSteps + " steps, " + tensorCount() + " tensors, " + backend.name() + "]"; }
    }

    /** eetune.h's EE_EXIT_PLAN_HEADER, EE_EXIT_PLAN_FIELDS and EE_EXIT_MAX_ROWS. */
    private static final int EXIT_PLAN_HEADER = 17, EXIT_PLAN_FIELDS = 24;
    public static final int EXIT_MAX_ROWS = 256;
    /**
     * Values per step and sequence in {@link #prepareExitSteps}' record (eetune.h's EE_EXIT_RECORD): exit layer, complete
     * length after the step, its rows x layers, heads run or decided by their screen on its row (bit per exit), gates
     * scored (bit per exit), screens that decided (bit per exit).
     */
    public static final int EXIT_RECORD = 6;

    /** A direct buffer of int32s in native order holding {@code values}. */
    private static java.nio.ByteBuffer ints(int[] values) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocateDirect(Math.max(1, values.length) * Integer.BYTES).order(java.nio.ByteOrder.nativeOrder());
        b.asIntBuffer().put(values);
        return b;
    }

    /**
     * Checks decoder layers' weights and K/V caches once, for {@link #decoderLayers}: each element of {@code layers} is
     * one layer's {attnNorm, wq, wk, wv, wo, bq, bk, bv, ffnNorm, wGate, wUp, wDown, kCache, vCache} (the biases may be
     * null), as {@link #decoderLayer} takes them, all layers of one shape. The table holds the addresses in host memory
     * (ee_decoder_layers_fwd reads them there on every backend) and the tensors, so a call after any of them was closed
     * fails instead of reading freed memory.
     */
    public LayerTable layerTable(java.util.List<Tensor[]> layers, boolean panels, int nHeads, int nKvHeads, int headDim) {
        String op = "layerTable";
        if (layers.isEmpty()) throw new IllegalArgumentException(op + ": no layers");
        LayerShape shape = null;
        long[] addresses = new long[layers.size() * LayerTable.COLS];
        for (int l = 0; l < layers.size(); l++) {
            Tensor[] t = layers.get(l);
            if (t.length != LayerTable.COLS) throw new IllegalArgumentException(op + ": layer " + l + " has " + t.length + " tensors, not " + LayerTable.COLS);
            LayerShape s = layerShape(op + " (layer " + l + ")", t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], panels, t[12], t[13], nHeads, nKvHeads, headDim);
            if (shape != null && !s.equals(shape)) throw new IllegalArgumentException(op + ": layer " + l + " is " + s + ", layer 0 " + shape);
            shape = s;
            for (int c = 0; c < LayerTable.COLS; c++) addresses[l * LayerTable.COLS + c] = addr(t[c]);
        }
        java.nio.ByteBuffer table = longs(addresses);
        return new LayerTable(this, shape, layers.toArray(new Tensor[0][]), table, backend.host().address(table));
    }

    /** What {@link #layerTable} checked: the layers' common shape and matrix dtype code (packed codes for panels). */
    record LayerShape(int dim, int hidden, int nHeads, int nKvHeads, int headDim, int wDtype, int sequences, int maxLen) {
        /** The same layers over the same caches, plain or packed. */
        boolean sameModel(LayerShape o) {
            return dim == o.dim && hidden == o.hidden && nHeads == o.nHeads && nKvHeads == o.nKvHeads && headDim == o.headDim && sequences == o.sequences && maxLen == o.maxLen;
        }
    }

    /**
     * Decoder layers' weights and caches checked once ({@link Ops#layerTable}), for {@link Ops#decoderLayers}. Holds
     * the tensors and a host table of their addresses; a call after one of them was closed fails. Immutable, but every
     * call writes the caches it names: one thread at a time, as for the caches themselves.
     */
    public static final class LayerTable {
        /** Tensors per layer (EE_LAYER_TABLE_COLS). */
        public static final int COLS = 14;
        private final Ops ops;
        private final LayerShape shape;
        private final Tensor[][] tensors;
        private final java.nio.ByteBuffer table; // referenced: its memory lives as long as the table
        private final long address;

        private LayerTable(Ops ops, LayerShape shape, Tensor[][] tensors, java.nio.ByteBuffer table, long address) {
            this.ops = ops;
            this.shape = shape;
            this.tensors = tensors;
            this.table = table;
            this.address = address;
        }

        public int layers() { return tensors.length; }

        private void checkOpen(int from, int to) {
            for (int l = from; l < to; l++) for (Tensor t : tensors[l]) if (t != null) t.address(); // throws once closed
        }

        private boolean isOpen() {
            for (Tensor[] layer : tensors) for (Tensor t : layer) if (t != null && t.isClosed()) return false;
            return true;
        }

        @Override
        public String toString() {
            return "LayerTable[" + tensors.length + " layers, dim " + shape.dim() + ", hidden " + shape.hidden() + ", heads " + shape.nHeads() + "/" + shape.nKvHeads()
                + " of " + shape.headDim() + ", caches " + shape.sequences() + " x " + shape.maxLen() + ", " + ops.backend.name() + ", " + table.capacity() + " table bytes]";
        }
    }

    private LayerShape layerShape(String op, Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo, Tensor bq, Tensor bk, Tensor bv, Tensor ffnNorm, Tensor wGate,
                                  Tensor wUp, Tensor wDown, boolean panels, Tensor kCache, Tensor vCache, int nHeads, int nKvHeads, int headDim) {
        f32(op, attnNorm, kCache, vCache);
        DType wt = wq.dtype();
        if (!wt.isFloat()) fail(op, "matrices must be F32, BF16 or F16", wq);
        typed(op, wt, wk, wv, wo);
        if (panels && !wt.isFloat()) fail(op, "packed matrices are F32, F16 or BF16", wq);
        if (nHeads <= 0 || nKvHeads <= 0 || headDim <= 0 || headDim % 2 != 0 || nHeads % nKvHeads != 0) {
            throw new IllegalArgumentException(op + ": " + nHeads + " query heads, " + nKvHeads + " KV heads of size " + headDim + " (even, heads a multiple of KV heads)");
        }
        int dim = wq.rank() == 2 ? wq.dim(1) : -1;
        long qd = (long) nHeads * headDim, kd = (long) nKvHeads * headDim;
        long qo = panels ? panelRows(qd) : qd, ko = panels ? panelRows(kd) : kd, dout = panels ? panelRows(dim) : dim;
        if (!matrix(wq, qo, dim) || !matrix(wk, ko, dim) || !matrix(wv, ko, dim) || !matrix(wo, dout, qd)) {
            fail(op, "matrices must be q [heads*headDim, dim], k and v [kvHeads*headDim, dim], o [dim, heads*headDim]"
                + (panels ? " (packed: out rounded up to " + PANEL_ROWS + ")" : ""), wq, wk, wv, wo);
        }
        if (attnNorm.size() != dim) fail(op, "norms must be [dim]", wq, attnNorm);
        int hidden = feedForwardShape(op, wt, ffnNorm, wGate, wUp, wDown, panels, dim);
        if (bq != null || bk != null || bv != null) {
            if (bq == null || bk == null || bv == null) throw new IllegalArgumentException(op + ": q, k and v biases come together");
            f32(op, bq, bk, bv);
            if (bq.size() != qd || bk.size() != kd || bv.size() != kd) fail(op, "biases must be [heads*headDim], [kvHeads*headDim], [kvHeads*headDim]", bq, bk, bv);
        }
        if (kCache.rank() != 3 || !kCache.shape().equals(vCache.shape()) || kCache.dim(2) != kd) fail(op, "caches must be [nSeq, maxLen, kvHeads*headDim]", kCache, vCache);
        return new LayerShape(dim, hidden, nHeads, nKvHeads, headDim, panels ? panelsDtype(wt) : wt.code(), kCache.dim(0), kCache.dim(1));
    }

    /**
     * The feed-forward weights of {@link #feedForward} and of a layer: gate and up [hidden, dim], down [dim, hidden] in
     * {@code wt} (packed: out rounded up to {@link #PANEL_ROWS}), ffnNorm [dim]. Returns hidden.
     */
    private int feedForwardShape(String op, DType wt, Tensor ffnNorm, Tensor wGate, Tensor wUp, Tensor wDown, boolean panels, int dim) {
        f32(op, ffnNorm);
        if (!wt.isFloat()) fail(op, "matrices must be F32, BF16 or F16", wGate);
        typed(op, wt, wGate, wUp, wDown);
        if (panels && !wt.isFloat()) fail(op, "packed matrices are F32, F16 or BF16", wGate);
        int hidden = wDown.rank() == 2 ? wDown.dim(1) : -1;
        // packed matrices ([out rounded up to PANEL_ROWS, in]) have as many rows as their panels hold
        long ho = panels ? panelRows(hidden) : hidden, dout = panels ? panelRows(dim) : dim;
        if (!matrix(wGate, ho, dim) || !matrix(wUp, ho, dim) || !matrix(wDown, dout, hidden) || ffnNorm.size() != dim) {
            fail(op, "gate and up must be [hidden, dim], down [dim, hidden]" + (panels ? " (packed: out rounded up to " + PANEL_ROWS + ")" : "") + ", ffnNorm [dim], dim " + dim,
                wGate, wUp, wDown, ffnNorm);
        }
        return hidden;
    }

    private void checkActivations(String op, LayerShape shape, Tensor x, Tensor out, Tensor residual, Tensor xn1, Tensor inv1, Tensor q, Tensor k, Tensor v, Tensor att,
                                  Tensor lse, Tensor xn2, Tensor inv2, Tensor gate, Tensor up, Tensor act, Tensor rowSeq, Tensor rowPos, Tensor invFreq) {
        f32(op, x, residual, xn1, q, k, v, att, invFreq);
        i32(op, rowSeq, rowPos);
        int rows = rows(x), dim = shape.dim(), hidden = shape.hidden();
        if (cols(x) != dim) fail(op, "x must be [rows, dim] with the layers' dim " + dim, x);
        if (shape.wDtype() >= 4 && rows > PANELS_MAX_ROWS) fail(op, "packed matrices take at most " + PANELS_MAX_ROWS + " rows", x);
        long qd = (long) shape.nHeads() * shape.headDim(), kd = (long) shape.nKvHeads() * shape.headDim();
        if (invFreq.size() != shape.headDim() / 2) fail(op, "invFreq must be [headDim / 2]", x, invFreq);
        long rd = (long) rows * dim;
        if (residual.size() != rd || xn1.size() != rd || q.size() != rows * qd || att.size() != rows * qd || k.size() != rows * kd || v.size() != rows * kd
            || rowSeq.size() != rows || rowPos.size() != rows) {
            fail(op, "activations must be [rows, dim], [rows, heads*headDim] or [rows, kvHeads*headDim], with one seq and pos per row",
                x, residual, xn1, q, k, v, att, rowSeq, rowPos);
        }
        checkFeedForwardActivations(op, x, rows, dim, hidden, out, xn2, inv2, gate, up, act);
        if (inv1 != null) { f32(op, inv1); if (inv1.size() != rows) fail(op, "inv1 needs one value per row", x, inv1); }
        if (lse != null) { f32(op, lse); if (lse.size() != (long) rows * shape.nHeads()) fail(op, "lse must be [rows, heads]", lse); }
    }

    /** The buffers of a layer's second half: out, xn2 [rows, dim]; gate, up, act [rows, hidden]; inv2 [rows] or null. */
    private void checkFeedForwardActivations(String op, Tensor in, int rows, int dim, int hidden, Tensor out, Tensor xn2, Tensor inv2, Tensor gate, Tensor up, Tensor act) {
        f32(op, out, xn2, gate, up, act);
        long rd = (long) rows * dim, rh = (long) rows * hidden;
        if (out.size() != rd || xn2.size() != rd || gate.size() != rh || up.size() != rh || act.size() != rh) {
            fail(op, "out and xn2 must be [rows, dim], gate, up and act [rows, hidden]", in, out, xn2, gate, up, act);
        }
        if (inv2 != null) { f32(op, inv2); if (inv2.size() != rows) fail(op, "inv2 needs one value per row", in, inv2); }
    }

    private static boolean matrix(Tensor w, long outDim, long inDim) { return w.rank() == 2 && w.dim(0) == outDim && w.dim(1) == inDim; }

    // ---- exit gates -------------------------------------------------------------------------------------------

    /**
     * score [rows] = an exit gate's P(agreement) for the rows of hidden [rows, dim] (the native header's
     * ee_gate_score): rmsnorm without a weight, then w · relu(w1 f + b1) + b with w1 [units, dim], b1 [units], w [1,
     * units], or w · f + b for a linear gate (w1 and b1 null, w [1, dim]); b [1]. NaN for a row that is not finite.
     */
    public void gateScore(Tensor score, Tensor hidden, Tensor w1, Tensor b1, Tensor w, Tensor b, float eps) {
        f32("gateScore", score, hidden);
        int rows = rows(hidden), dim = cols(hidden), units = w1 == null ? 0 : w1.dim(0);
        if (score.size() != rows) fail("gateScore", "one score per row", score, hidden);
        checkGate("gateScore", dim, w1, b1, w, b, hidden);
        check("gateScore", k.ee_gate_score(score.address(), hidden.address(), addr(w1), addr(b1), w.address(), b.address(), rows, dim, units, eps));
    }

    /**
     * A gate's parameters for features of width {@code dim} ({@link #gateScore}): w1 [units, dim] and b1 [units] (both
     * null: linear), w [units or dim], b [1]; {@code features} (may be null) is named in the error with them.
     */
    private void checkGate(String op, int dim, Tensor w1, Tensor b1, Tensor w, Tensor b, Tensor features) {
        f32(op, w, b);
        int units = w1 == null ? 0 : w1.dim(0);
        if ((w1 == null) != (b1 == null)) throw new IllegalArgumentException(op + ": w1 and b1 are both given (an MLP gate) or both null (a linear gate)");
        if (w1 != null) {
            f32(op, w1, b1);
            if (!matrix(w1, units, dim) || b1.size() != units) fail(op, "w1 must be [units, dim] and b1 [units]", withFirst(features, w1, b1));
        }
        if (w.size() != (units == 0 ? dim : units) || b.size() != 1) fail(op, "w must hold one weight per " + (units == 0 ? "feature" : "hidden unit") + " and b one value", withFirst(features, w, b));
    }

    /** {@code first} (when not null) and then {@code rest}, for an error message. */
    private static Tensor[] withFirst(Tensor first, Tensor... rest) {
        if (first == null) return rest;
        Tensor[] all = new Tensor[rest.length + 1];
        all[0] = first;
        System.arraycopy(rest, 0, all, 1, rest.length);
        return all;
    }

    // ---- softmax, argmax, sampling ---------------------------------------------------------------------------

    public void softmax(Tensor out, Tensor x, float temperature) {
        f32("softmax", out, x);
        sameSize("softmax", out, x);
        positive("softmax", temperature);
        check("softmax", k.ee_softmax(out.address(), x.address(), rows(x), cols(x), temperature));
    }

    /** idx[r] = argmax of logits[r]; maxProb (may be null) = max softmax probability at this temperature. */
    public void argmax(Tensor idx, Tensor maxProb, Tensor logits, float temperature) {
        f32("argmax", logits);
        i32("argmax", idx);
        positive("argmax", temperature);
        if (idx.size() != rows(logits)) fail("argmax", "one index per row", idx, logits);
        if (maxProb != null) { f32("argmax", maxProb); if (maxProb.size() != rows(logits)) fail("argmax", "one max-prob per row", maxProb, logits); }
        check("argmax", k.ee_argmax(idx.address(), addr(maxProb), logits.address(), rows(logits), cols(logits), temperature));
    }

    /**
     * Where each row's argmax can be, from scores [rows, n] that lie within radius[j] * scale[r] (+ 1e-30) of values
     * f the caller can compute exactly (the native header's ee_argmax_candidates): groups [rows, maxGroups] (I32)
     * receives, in increasing order, the groups of {@code group} consecutive indices that hold a j with score_j +
     * B_j &ge; max_l (score_l - B_l), and counts [rows] (I32) their number; -1 where they are more than maxGroups or
     * an input of the row is not finite. Used by greedy decode's screened classifier ({@code LlamaModel.greedyTokens}).
     */
    public void argmaxCandidates(Tensor groups, Tensor counts, Tensor scores, Tensor radius, Tensor scale, int group) {
        f32("argmaxCandidates", scores, radius, scale);
        i32("argmaxCandidates", groups, counts);
        int rows = rows(scores), n = cols(scores);
        if (groups.rank() != 2 || groups.dim(0) != rows || counts.size() != rows || radius.size() != n || scale.size() != rows || group <= 0) {
            fail("argmaxCandidates", "groups [rows, max groups], counts [rows], radius [n] and scale [rows] for scores [rows, n], and a positive group (" + group + ")",
                groups, counts, scores, radius, scale);
        }
        check("argmaxCandidates", k.ee_argmax_candidates(groups.address(), counts.address(), scores.address(), n, radius.address(), scale.address(), rows, n, group,
            groups.dim(1)));
    }

    /**
     * upper [rows] = a bound on the largest softmax probability at this temperature of any values within radius[j] *
     * scale[r] (+ 1e-30) of scores [rows, n] (the native header's ee_max_prob_upper; +inf where an input of the row is
     * not finite): a row whose bound is below a confidence threshold cannot pass it. Used by screened softmax exits
     * ({@code EarlyExitGenerator}).
     */
    public void maxProbUpper(Tensor upper, Tensor scores, Tensor radius, Tensor scale, float temperature) {
        f32("maxProbUpper", upper, scores, radius, scale);
        positive("maxProbUpper", temperature);
        int rows = rows(scores), n = cols(scores);
        if (upper.size() != rows || radius.size() != n || scale.size() != rows) {
            fail("maxProbUpper", "upper [rows], radius [n] and scale [rows] for scores [rows, n]", upper, scores, radius, scale);
        }
        check("maxProbUpper", k.ee_max_prob_upper(upper.address(), scores.address(), n, radius.address(), scale.address(), rows, n, temperature));
    }

    /** Top-p sampling with caller-supplied uniforms in [0, 1), one per row. */
    public void sampleTopP(Tensor out, Tensor logits, Tensor uniforms, float temperature, float topP) {
        f32("sampleTopP", logits, uniforms);
        i32("sampleTopP", out);
        positive("sampleTopP", temperature);
        if (!(topP > 0)) throw new IllegalArgumentException("sampleTopP: top_p must be > 0, got " + topP);
        if (out.size() != rows(logits) || uniforms.size() != rows(logits)) fail("sampleTopP", "one output and one uniform per row", out, logits, uniforms);
        check("sampleTopP", k.ee_sample_top_p(out.address(), logits.address(), uniforms.address(), rows(logits), cols(logits), temperature, topP));
    }

    // ---- fused linear + cross-entropy --------------------------------------------------------------------------

    /**
     * Cross-entropy of x w^T / temperature, each logit computed once and never all of them held (row blocks whose
     * logits fit a bounded scratch, see the native header). loss [rows]; targets [rows] (below vocab; negative =
     * ignored). gradWeight (null = no backward) scales each row's gradient; dx (may be null) is written, dw (may be
     * null, F32 [vocab, dim]) accumulated. argmax / maxProb (may be null) per row.
     */
    public void linearCrossEntropy(Tensor loss, Tensor dx, Tensor dw, Tensor argmax, Tensor maxProb, Tensor x, Tensor w,
                                   Tensor targets, Tensor gradWeight, float temperature) {
        linearCrossEntropy(loss, dx, dw, argmax, maxProb, x, w, targets, gradWeight, 0, temperature);
    }

    /** {@link #linearCrossEntropy(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, float)} with at
     *  most {@code rowBlock} rows per block (> 0; the scratch bound still applies): tests use it to force several blocks. */
    public void linearCrossEntropy(Tensor loss, Tensor dx, Tensor dw, Tensor argmax, Tensor maxProb, Tensor x, Tensor w,
                                   Tensor targets, Tensor gradWeight, int rowBlock, float temperature) {
        f32("linearCrossEntropy", loss, x);
        i32("linearCrossEntropy", targets);
        mine("linearCrossEntropy", w);
        positive("linearCrossEntropy", temperature);
        int rows = rows(x), dim = cols(x);
        if (w.rank() != 2 || w.dim(1) != dim || !w.dtype().isFloat()) fail("linearCrossEntropy", "w must be a float [vocab, dim] matrix", x, w);
        if (loss.size() != rows || targets.size() != rows) fail("linearCrossEntropy", "loss and targets need one value per row", x, loss, targets);
        if (gradWeight != null) { f32("linearCrossEntropy", gradWeight); if (gradWeight.size() != rows) fail("linearCrossEntropy", "gradWeight needs one value per row", x, gradWeight); }
        if (dx != null) { f32("linearCrossEntropy", dx); sameSize("linearCrossEntropy", dx, x); }
        if (dw != null) { f32("linearCrossEntropy", dw); if (dw.size() != w.size()) fail("linearCrossEntropy", "dw must match w", dw, w); }
        if (argmax != null) { i32("linearCrossEntropy", argmax); if (argmax.size() != rows) fail("linearCrossEntropy", "argmax needs one value per row", argmax); }
        if (maxProb != null) { f32("linearCrossEntropy", maxProb); if (maxProb.size() != rows) fail("linearCrossEntropy", "maxProb needs one value per row", maxProb); }
        if (rowBlock < 0) throw new IllegalArgumentException("linearCrossEntropy: rowBlock must be >= 0 (0 = as many rows as the scratch holds), got " + rowBlock);
        check("linearCrossEntropy", k.ee_linear_cross_entropy(loss.address(), addr(dx), addr(dw), addr(argmax), addr(maxProb), x.address(), w.address(),
            w.dtype().code(), targets.address(), addr(gradWeight), rows, dim, w.dim(0), rowBlock, temperature));
    }

    // ---- optimizer -------------------------------------------------------------------------------------------

    /** One AdamW step (see the native header for the exact update). */
    public void adamw(Tensor p, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay,
                      float bias1, float bias2, float gradScale) {
        f32("adamw", p, g, m, v);
        sameSize("adamw", p, g, m, v);
        check("adamw", k.ee_adamw(p.address(), g.address(), m.address(), v.address(), p.size(), lr, beta1, beta2, eps, weightDecay, bias1, bias2, gradScale));
    }

    // ---- validation helpers ------------------------------------------------------------------------------------

    /** Rows of a tensor read as a matrix: the product of all but the last dimension. */
    public static int rows(Tensor t) {
        long n = 1;
        for (int i = 0; i < t.rank() - 1; i++) n *= t.dim(i);
        return Math.toIntExact(n);
    }

    /** The last dimension (1 for a scalar). */
    public static int cols(Tensor t) { return t.rank() == 0 ? 1 : t.dim(t.rank() - 1); }

    private static long addr(Tensor t) { return t == null ? 0 : t.address(); }

    /** Every tensor given (nulls are the callers' to refuse) is on this backend. */
    private void mine(String op, Tensor... ts) {
        for (Tensor t : ts) {
            if (t != null && t.backend() != backend) throw new IllegalArgumentException(op + ": tensor " + t.dtype() + t.shape() + " is on " + t.backend().name() + ", not " + backend.name());
        }
    }

    private void f32(String op, Tensor... ts) { typed(op, DType.F32, ts); }

    private void i32(String op, Tensor... ts) { typed(op, DType.I32, ts); }

    private void typed(String op, DType dt, Tensor... ts) {
        mine(op, ts);
        for (Tensor t : ts) if (t.dtype() != dt) throw new IllegalArgumentException(op + ": expected " + dt + ", got " + t.dtype() + t.shape());
    }

    private static void sameSize(String op, Tensor... ts) {
        for (Tensor t : ts) if (t.size() != ts[0].size()) fail(op, "element counts differ", ts);
    }

    private static void positive(String op, float temperature) {
        if (!(temperature > 0) || Float.isInfinite(temperature)) throw new IllegalArgumentException(op + ": temperature must be positive and finite, got " + temperature);
    }

    private static void fail(String op, String why, Tensor... ts) {
        StringBuilder sb = new StringBuilder(op).append(": ").append(why).append(" (");
        for (int i = 0; i < ts.length; i++) sb.append(i > 0 ? ", " : "").append(ts[i].dtype()).append(ts[i].shape());
        throw new IllegalArgumentException(sb.append(')').toString());
    }

    private void check(String op, int rc) {
        if (rc != 0) throw new IllegalStateException(op + " failed in the " + backend.name() + " backend: " + backend.lastError());
    }
}
