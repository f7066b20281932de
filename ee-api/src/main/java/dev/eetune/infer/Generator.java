package dev.eetune.infer;

import dev.eetune.backend.Ops;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * KV-cached decoding of a batch of prompts (of any lengths) with the full model. Rows of all live sequences are
 * packed into one pass (no padding); each sequence stops on its own. Greedy, or temperature + top-p sampling.
 */
public final class Generator implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(Generator.class);

    private final LlamaModel model;
    private final LlamaConfig config;
    private final int maxBatch;
    private final int maxLen;
    private final KvCache cache;
    private final Workspace ws;
    private final Scope scope;
    private final Tensor lastHidden, normed, logits, chosen, uniforms, lastIdx;
    private Stats stats = new Stats(0, 0, 0, 0, 0);

    /** Timing of the last {@link #generate} call. */
    public record Stats(int sequences, int promptTokens, int generatedTokens, double prefillSeconds, double decodeSeconds) {
        public double decodeTokensPerSecond() { return decodeSeconds > 0 ? (generatedTokens - sequences) / decodeSeconds : 0; }

        @Override
        public String toString() {
            return String.format(java.util.Locale.ROOT, "%d sequences, %d prompt tokens, %d generated; prefill %.1f ms (time to first token), decode %.1f tok/s",
                sequences, promptTokens, generatedTokens, prefillSeconds * 1e3, decodeTokensPerSecond());
        }
    }

    public Generator(LlamaModel model, int maxBatch, int maxLen) {
        this.model = model;
        this.config = model.config();
        if (maxLen > config.maxSeqLen()) throw new IllegalArgumentException("maxLen " + maxLen + " exceeds the model's context of " + config.maxSeqLen());
        this.maxBatch = maxBatch;
        this.maxLen = maxLen;
        this.cache = new KvCache(config, model.backend(), maxBatch, maxLen);
        this.ws = model.newWorkspace();
        this.scope = Scope.of(model.backend());
        lastHidden = scope.allocate(DType.F32, maxBatch, config.dim());
        normed = scope.allocate(DType.F32, maxBatch, config.dim());
        logits = scope.allocate(DType.F32, maxBatch, config.vocabSize());
        chosen = scope.allocate(DType.I32, maxBatch);
        uniforms = scope.allocate(DType.F32, maxBatch);
        lastIdx = scope.allocate(DType.I32, maxBatch);
    }

    public LlamaModel model() { return model; }

    public Stats lastStats() { return stats; }

    /** Generates for each prompt (token ids, non-empty); results in prompt order. */
    public List<GenerationResult> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        int b = prompts.size();
        if (b == 0 || b > maxBatch) throw new IllegalArgumentException(b + " prompts for a generator of batch " + maxBatch);
        int[][] seqs = new int[b][];
        int[] len = new int[b], done = new int[b]; // done: 0 running, 1 stop token, 2 max tokens
        int promptTokens = 0;
        for (int s = 0; s < b; s++) {
            int[] p = prompts.get(s);
            if (p.length == 0) throw new IllegalArgumentException("prompt " + s + " is empty (start with BOS)");
            for (int t : p) if (t < 0 || t >= config.vocabSize()) throw new IllegalArgumentException("prompt " + s + " has token " + t + " outside the vocabulary of " + config.vocabSize());
            if (p.length + cfg.maxNewTokens() > maxLen) throw new IllegalArgumentException("prompt " + s + " (" + p.length + " tokens) + " + cfg.maxNewTokens() + " new tokens exceeds maxLen " + maxLen);
            seqs[s] = Arrays.copyOf(p, p.length + cfg.maxNewTokens());
            len[s] = p.length;
            promptTokens += p.length;
            if (cfg.maxNewTokens() == 0) done[s] = 2;
        }
        int[] fed = new int[b]; // positions < fed[s] have K/V in every layer
        long t0 = System.nanoTime(), tFirst = 0;
        int generated = 0;
        while (true) {
            List<Integer> live = new ArrayList<>();
            for (int s = 0; s < b; s++) if (done[s] == 0) live.add(s);
            if (live.isEmpty()) break;
            int rowCount = 0;
            for (int s : live) rowCount += len[s] - fed[s];
            int[] tok = new int[rowCount], seq = new int[rowCount], pos = new int[rowCount], last = new int[live.size()];
            int r = 0;
            for (int i = 0; i < live.size(); i++) {
                int s = live.get(i);
                for (int p = fed[s]; p < len[s]; p++, r++) {
                    tok[r] = seqs[s][p];
                    seq[r] = s;
                    pos[r] = p;
                }
                last[i] = r - 1;
            }
            Workspace.Rows rows = ws.rows(tok, seq, pos);
            Tensor x = ws.x(rowCount);
            model.embed(x, rows);
            model.layers(x, rows, cache, 0, config.nLayers(), ws, null);
            int n = live.size();
            int[] next = pick(x, last, live, len, cfg);
            for (int i = 0; i < n; i++) {
                int s = live.get(i);
                fed[s] = len[s];
                seqs[s][len[s]++] = next[i];
                generated++;
                if (listener != null) listener.onToken(s, next[i]);
                if (cfg.stopTokens().contains(next[i])) done[s] = 1;
                else if (len[s] - prompts.get(s).length >= cfg.maxNewTokens()) done[s] = 2;
            }
            if (tFirst == 0) tFirst = System.nanoTime();
        }
        long t1 = System.nanoTime();
        stats = new Stats(b, promptTokens, generated, ((tFirst == 0 ? t1 : tFirst) - t0) / 1e9, (t1 - (tFirst == 0 ? t1 : tFirst)) / 1e9);
        log.debug("generate: {}", stats);
        List<GenerationResult> out = new ArrayList<>();
        for (int s = 0; s < b; s++) {
            out.add(new GenerationResult(Arrays.copyOf(seqs[s], len[s]), prompts.get(s).length,
                done[s] == 1 ? GenerationResult.StopReason.STOP_TOKEN : GenerationResult.StopReason.MAX_TOKENS));
        }
        return out;
    }

    /** Chooses the next token of each live sequence from the hidden state of its last row. */
    private int[] pick(Tensor x, int[] lastRows, List<Integer> live, int[] len, GenerationConfig cfg) {
        Ops ops = model.backend().ops();
        int n = lastRows.length;
        Tensor idx = lastIdx.slice(0, n).copyFrom(lastRows);
        Tensor h = lastHidden.slice(0, n), lg = logits.slice(0, n), out = chosen.slice(0, n);
        ops.gatherRows(h, x, idx);
        model.logits(lg, h, normed.slice(0, n));
        if (cfg.isGreedy()) {
            ops.argmax(out, null, lg, 1f);
        } else {
            float[] u = new float[n];
            for (int i = 0; i < n; i++) u[i] = CounterRng.uniform(cfg.seed(), live.get(i), len[live.get(i)], 0);
            ops.sampleTopP(out, lg, uniforms.slice(0, n).copyFrom(u), cfg.temperature(), cfg.topP());
        }
        return out.toIntArray();
    }

    @Override
    public void close() {
        scope.close();
        ws.close();
        cache.close();
    }
}
