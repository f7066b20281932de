package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.MappedFile;
import dev.eetune.progress.ProgressListener;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Shape;
import dev.eetune.tensor.Tensor;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * llama2.c legacy checkpoints: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means an unshared classifier at the end), then f32 weights grouped by kind across layers.
 * The file is mapped and every weight is a view into it.
 */
final class Llama2cLoader {
    private static final int HEADER_BYTES = 28;

    private Llama2cLoader() {}

    static LlamaModel load(Path file, Backend backend, ProgressListener progress) {
        Scope scope = Scope.of(backend, "model " + file);
        try {
            MappedFile mf = scope.track(backend.map(file));
            progress.update(mf.size(), mf.size(), file.getFileName().toString());
            if (mf.size() < HEADER_BYTES) throw new IllegalArgumentException(file + ": " + mf.size() + " bytes is too short for a llama2.c checkpoint header");
            ByteBuffer h = mf.bytes(0, HEADER_BYTES);
            int magic = h.getInt(0);
            if (magic == 0x616b3432) throw new IllegalArgumentException(file + ": llama2.c export version " + h.getInt(4) + " (magic 'ak42') is not supported; export with the legacy format (version 0)");
            int dim = h.getInt(0), hidden = h.getInt(4), layers = h.getInt(8), heads = h.getInt(12), kvHeads = h.getInt(16), vocab = h.getInt(20), seqLen = h.getInt(24);
            boolean shared = vocab > 0;
            vocab = Math.abs(vocab);
            for (int[] f : new int[][] {{dim, 0}, {hidden, 1}, {layers, 2}, {heads, 3}, {kvHeads, 4}, {vocab, 5}, {seqLen, 6}}) {
                if (f[0] <= 0 || f[0] > 1 << 20) {
                    String[] names = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
                    throw new IllegalArgumentException(file + ": header field " + names[f[1]] + " = " + f[0] + " is not a plausible llama2.c value (is this a llama2.c .bin?)");
                }
            }
            int headDim = dim / heads, kvDim = kvHeads * headDim;
            // validated before the sizes below are multiplied: its bounds keep the products far from overflowing
            LlamaConfig config = new LlamaConfig(dim, hidden, layers, heads, kvHeads, headDim, vocab, seqLen, 1e-5f, 10000f, null,
                shared, false, true, "llama2.c").validate(file);

            long expected = HEADER_BYTES + 4L * ((long) vocab * dim + layers * (2L * dim + (long) dim * dim * 2 + 2L * dim * kvDim + 3L * dim * hidden)
                + dim + (long) seqLen * headDim + (shared ? 0 : (long) vocab * dim));
            if (mf.size() != expected) {
                throw new IllegalArgumentException(file + ": " + mf.size() + " bytes, but a llama2.c checkpoint with this header (dim " + dim + ", hidden " + hidden
                    + ", layers " + layers + ", heads " + heads + "/" + kvHeads + ", vocab " + vocab + (shared ? "" : " unshared") + ", seq_len " + seqLen + ") has " + expected);
            }
            Cursor c = new Cursor(mf, scope, HEADER_BYTES);
            Tensor emb = c.next(vocab, dim);
            Tensor[] attnNorm = c.perLayer(layers, dim);
            Tensor[] wq = c.perLayer(layers, dim, dim);
            Tensor[] wk = c.perLayer(layers, kvDim, dim);
            Tensor[] wv = c.perLayer(layers, kvDim, dim);
            Tensor[] wo = c.perLayer(layers, dim, dim);
            Tensor[] ffnNorm = c.perLayer(layers, dim);
            Tensor[] w1 = c.perLayer(layers, hidden, dim);
            Tensor[] w2 = c.perLayer(layers, dim, hidden);
            Tensor[] w3 = c.perLayer(layers, hidden, dim);
            Tensor finalNorm = c.next(dim);
            c.skip((long) seqLen * headDim * 4); // legacy freq_cis_real / freq_cis_imag: RoPE is computed instead
            Tensor cls = shared ? emb : c.next(vocab, dim);
            List<LayerWeights> lw = new ArrayList<>();
            for (int l = 0; l < layers; l++) {
                lw.add(new LayerWeights(attnNorm[l], wq[l], wk[l], wv[l], wo[l], null, null, null, ffnNorm[l], w1[l], w3[l], w2[l]));
            }
            return new LlamaModel(config, new LlamaWeights(emb, lw, finalNorm, cls), backend, scope, true);
        } catch (RuntimeException e) {
            scope.close();
            throw e;
        }
    }

    /** Walks the file's f32 arrays in order, handing out views. */
    private static final class Cursor {
        private final MappedFile file;
        private final Scope scope;
        private long offset;

        Cursor(MappedFile file, Scope scope, long offset) {
            this.file = file;
            this.scope = scope;
            this.offset = offset;
        }

        Tensor next(int... dims) {
            Shape s = Shape.of(dims);
            long bytes = s.size() * 4;
            Tensor t = scope.wrap(file, offset, DType.F32, s);
            offset += bytes;
            return t;
        }

        Tensor[] perLayer(int layers, int... dims) {
            Tensor[] out = new Tensor[layers];
            for (int l = 0; l < layers; l++) out[l] = next(dims);
            return out;
        }

        void skip(long bytes) { offset += bytes; }
    }
}
