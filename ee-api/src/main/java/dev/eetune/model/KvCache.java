package dev.eetune.model;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Ops;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.util.HashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * Preallocated keys and values: per layer [sequences, maxLen, kvHeads * headDim]. Positions are written by passes;
 * truncating a sequence is just forgetting positions (slots past a sequence's length are garbage). Thread-safety: one
 * thread at a time (each decoder owns its caches).
 */
public final class KvCache implements AutoCloseable {
    private final Scope scope;
    private final Layer[] layers;
    private final int sequences;
    private final int maxLen;
    /** {@link Ops#layerTable}s pairing these layers with a model's matrices, by what they pair ({@link #layerTable}). */
    private final Map<Object, Ops.LayerTable> tables = new HashMap<>();

    public KvCache(LlamaConfig c, Backend backend, int sequences, int maxLen) {
        this(c, backend, sequences, maxLen, false);
    }

    /**
     * One K and one V buffer shared by every layer: for passes that cover whole sequences from position 0 and never
     * read an earlier layer's cache again (tuning and evaluation), so memory does not grow with depth.
     */
    public static KvCache scratch(LlamaConfig c, Backend backend, int sequences, int maxLen) {
        return new KvCache(c, backend, sequences, maxLen, true);
    }

    private KvCache(LlamaConfig c, Backend backend, int sequences, int maxLen, boolean shared) {
        if (sequences <= 0 || maxLen <= 0) throw new IllegalArgumentException("KvCache: sequences " + sequences + " and maxLen " + maxLen + " must be > 0");
        this.scope = Scope.of(backend);
        this.sequences = sequences;
        this.maxLen = maxLen;
        int kvDim = c.nKvHeads() * c.headDim();
        layers = new Layer[c.nLayers()];
        // One block for all layers' keys and values, not one per layer: decode writes one new row per layer and step,
        // and in a per-layer buffer of a few hundred KiB each row touches a fresh 4 KiB page, a page fault per
        // layer and step (~20 us each in a VM); a block of several MiB is backed by huge pages where the system
        // allows them (ee_alloc), faulted 2 MiB at a time.
        int buffers = shared ? 1 : c.nLayers();
        Tensor block = scope.allocate(DType.F32, 2 * buffers, sequences, maxLen, kvDim);
        for (int l = 0; l < c.nLayers(); l++) {
            layers[l] = shared && l > 0 ? layers[0]
                : new Layer(block.slice(2 * l, 2 * l + 1).reshape(sequences, maxLen, kvDim), block.slice(2 * l + 1, 2 * l + 2).reshape(sequences, maxLen, kvDim));
        }
    }

    /** One layer's keys and values, each [sequences, maxLen, kvHeads * headDim]. */
    public record Layer(Tensor keys, Tensor values) {
        public int sequences() { return keys.dim(0); }

        public int maxLen() { return keys.dim(1); }
    }

    public int sequences() { return sequences; }

    public int maxLen() { return maxLen; }

    public int layers() { return layers.length; }

    /** Layer {@code index}'s cache (0-based). */
    public Layer layer(int index) { return layers[index]; }

    public Tensor keys(int layer) { return layers[layer].keys(); }

    /**
     * The layer table {@code key} names (a model, its plain or packed matrices, a range of layers), made by {@code make}
     * on first use and kept as long as this cache: decode checks a model's weights and this cache once, not per pass.
     */
    public Ops.LayerTable layerTable(Object key, Function<KvCache, Ops.LayerTable> make) { return tables.computeIfAbsent(key, k -> make.apply(this)); }

    public Tensor values(int layer) { return layers[layer].values(); }

    @Override
    public void close() { scope.close(); }

    @Override
    public String toString() { return "KvCache[" + layers.length + " layers, " + sequences + " x " + maxLen + "]"; }
}
