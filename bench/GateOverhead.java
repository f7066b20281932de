// Where the early-exit decode's time goes at batch 1 (docs/exit-gates.md, "The wall-clock bound at batch 1"), in one
// warm JVM, one thread unless -Dthreads says otherwise (the CPU times are the calling thread's): (1) per-token wall and CPU time of the full model, of the gate scored at every calibrated exit
// but never exiting (tau 0.999999: the decision's pure overhead) and of the calibrated thresholds, rounds of the three
// interleaved, median [range], the median [range] of each repeat's full-model time over the policy's, and the share of
// tokens decoded as ee_exit_steps' two-thread pipeline (-Dthreads=2 and up); (2) native calls per 1,024 tokens of each (KernelProfile); (3) the CPU time of one
// backbone layer over 1, 2 and 3 rows, which is what an exit saves (a call) and what its deferred row costs (a row).
// A plain Java program (`java -cp ee.jar bench/GateOverhead.java`), not JShell: the same FFM binding `ee` uses.
// Run by bench/gates.sh OUT overhead; -D properties: model, heads (folder with heads.safetensors and thresholds.json),
// tokenizer, threads (default 1), rounds (prompt sets per timing, default 20), repeats (default 5), layerIters (default 20000), batch (prompts
// decoded together, default 1: the 8 prompts in 8 / batch calls), tokens (new tokens per prompt, default 128; up to the
// model's context less the longest prompt: at later positions a layer's attention costs more beside the heads).
import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.backend.KernelProfile;
import dev.eetune.eval.ThresholdCalibration;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.tokenizer.Tokenizer;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

public class GateOverhead {
    static final ThreadMXBean THREAD = ManagementFactory.getThreadMXBean();

    public static void main(String[] args) {
        Locale.setDefault(Locale.ROOT);
        Backend be = Backends.cpu();
        int threads = be.setThreads(Integer.getInteger("threads", 1));
        LlamaModel model = LlamaModel.load(Path.of(System.getProperty("model")), be);
        Path heads = Path.of(System.getProperty("heads"));
        EarlyExitModel exits = EarlyExitModel.load(model, heads.resolve("heads.safetensors"));
        Tokenizer tok = Tokenizer.load(Path.of(System.getProperty("tokenizer")));
        List<int[]> prompts = new ArrayList<>();
        for (String p : "Once upon a time|The little dog|Tom and Lily went|One day, a girl|The sun was|Sam had a red ball|In the park|Mom said".split("[|]")) prompts.add(tok.encode(p));
        EarlyExitPolicy calibrated = ThresholdCalibration.load(heads.resolve("thresholds.json"));
        Map<Integer, Float> never = new TreeMap<>();
        for (int l : calibrated.thresholds().keySet()) if (calibrated.canExit(l)) never.put(l, 0.999999f);
        int batch = Integer.getInteger("batch", 1);
        if (batch < 1 || prompts.size() % batch != 0) throw new IllegalArgumentException("-Dbatch=" + batch + ": must divide the " + prompts.size() + " prompts");
        int newTokens = Integer.getInteger("tokens", 128), maxLen = newTokens + prompts.stream().mapToInt(p -> p.length).max().orElseThrow();
        if (newTokens < 1 || maxLen > model.config().maxSeqLen())
            throw new IllegalArgumentException("-Dtokens=" + newTokens + ": 1 to " + (model.config().maxSeqLen() - maxLen + newTokens) + " (the model's context less the longest prompt)");
        Map<String, EarlyExitGenerator> decoders = new LinkedHashMap<>();
        decoders.put("full model", new EarlyExitGenerator(model, null, EarlyExitPolicy.none(), batch, maxLen));
        decoders.put(calibrated.confidence().label() + " scored, never exits", new EarlyExitGenerator(model, exits, new EarlyExitPolicy(never, false, calibrated.confidence()), batch, maxLen));
        decoders.put(calibrated.confidence().label() + " calibrated " + calibrated.thresholds(), new EarlyExitGenerator(model, exits, calibrated, batch, maxLen));
        GenerationConfig cfg = GenerationConfig.greedy(newTokens, Set.of());
        int rounds = Integer.getInteger("rounds", 20), repeats = Integer.getInteger("repeats", 5);
        Map<String, List<double[]>> times = new LinkedHashMap<>();
        Map<String, String> kernels = new LinkedHashMap<>();
        for (int rep = -2; rep < repeats; rep++) { // two warm-up rounds: the JIT compiles the decode loop
            for (Map.Entry<String, EarlyExitGenerator> e : decoders.entrySet()) {
                long w0 = System.nanoTime(), c0 = THREAD.getCurrentThreadCpuTime(), p0 = be.exitPipelineSteps(), tokens = 0;
                for (int r = 0; r < rounds; r++) tokens += decode(e.getValue(), prompts, cfg, batch);
                if (rep >= 0)
                    times.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(new double[] {(System.nanoTime() - w0) / 1e3 / tokens, (THREAD.getCurrentThreadCpuTime() - c0) / 1e3 / tokens,
                        (double) (be.exitPipelineSteps() - p0) / tokens});
                if (rep == -1) {
                    try (KernelProfile kp = be.ops().profile()) {
                        long n = decode(e.getValue(), prompts, cfg, batch);
                        kernels.put(e.getKey(), n + " tokens: " + kp.summary().replaceAll("(?m)^(\\S+)\\s+\\S+ s\\s+(\\d+) calls.*$", "$1 $2").replace("\n", ", "));
                    }
                }
            }
        }
        List<double[]> full = times.get("full model");
        double fullWall = median(full, 0), fullCpu = median(full, 1);
        // cpu: the calling thread's (a pipelined decode also keeps a second thread busy); pipelined: the tokens decoded as
        // ee_exit_steps' two-thread pipeline (Backend.exitPipelineSteps), median over the repeats
        System.out.printf("%-50s %24s %24s %7s %7s %15s %9s  %s%n", "policy (batch " + batch + ", " + threads + " thread(s), 8 prompts x " + newTokens + " tokens)", "wall us/token",
            "caller cpu us/token", "wall x", "cpu x", "paired wall x", "pipelined", "layers/token, tokens per exit layer (last prompt)");
        for (Map.Entry<String, List<double[]>> e : times.entrySet()) {
            EarlyExitGenerator.Stats st = decoders.get(e.getKey()).lastStats();
            // the machine's speed drifts between phases seconds long: the ratio of each repeat's adjacent timings is steadier
            List<double[]> paired = new ArrayList<>();
            for (int i = 0; i < e.getValue().size(); i++) paired.add(new double[] {full.get(i)[0] / e.getValue().get(i)[0]});
            System.out.printf("%-50s %8.1f [%6.1f-%6.1f] %8.1f [%6.1f-%6.1f] %6.3fx %6.3fx %6.3fx [%.2f-%.2f] %8.0f%%  %.2f %s%n", e.getKey(), median(e.getValue(), 0), min(e.getValue(), 0),
                max(e.getValue(), 0), median(e.getValue(), 1), min(e.getValue(), 1), max(e.getValue(), 1), fullWall / median(e.getValue(), 0), fullCpu / median(e.getValue(), 1),
                median(paired, 0), min(paired, 0), max(paired, 0), 100 * median(e.getValue(), 2), st.layersPerToken(), Arrays.toString(st.exitCounts()));
        }
        System.out.println("native calls per policy (one prompt set, KernelProfile):");
        kernels.forEach((k, v) -> System.out.println("  " + k + ": " + v));
        layerByRows(model, be, repeats);
    }

    static long decode(EarlyExitGenerator g, List<int[]> prompts, GenerationConfig cfg, int batch) {
        long tokens = 0;
        for (int i = 0; i < prompts.size(); i += batch) {
            List<int[]> group = prompts.subList(i, i + batch);
            List<dev.eetune.infer.GenerationResult> res = g.generate(group, cfg, null);
            for (int j = 0; j < batch; j++) tokens += res.get(j).tokens().length - group.get(j).length;
        }
        return tokens;
    }

    /** CPU time of embedding + one backbone layer (the middle one) over 1..3 rows of one sequence at positions near 64. */
    static void layerByRows(LlamaModel model, Backend be, int repeats) {
        int iters = Integer.getInteger("layerIters", 20000), pos = 64;
        KvCache cache = new KvCache(model.config(), be, 1, 256);
        Workspace ws = model.newWorkspace();
        Map<Integer, List<double[]>> us = new TreeMap<>();
        try (Scope s = Scope.of(be)) {
            for (int rep = -1; rep < repeats; rep++) {
                for (int rows = 1; rows <= 3; rows++) {
                    int[] seq = new int[rows], positions = new int[rows], tokens = new int[rows];
                    for (int r = 0; r < rows; r++) {
                        positions[r] = pos - r;
                        tokens[r] = 5 + r;
                    }
                    Tensor x = s.allocate(DType.F32, rows, model.config().dim());
                    Workspace.Rows wr = ws.rows(tokens, seq, positions);
                    long c0 = THREAD.getCurrentThreadCpuTime();
                    for (int i = 0; i < iters; i++) {
                        model.embed(x, wr);
                        model.layer(model.config().nLayers() / 2, x, wr, cache, ws, null);
                    }
                    if (rep >= 0) us.computeIfAbsent(rows, k -> new ArrayList<>()).add(new double[] {0, (THREAD.getCurrentThreadCpuTime() - c0) / 1e3 / iters});
                }
            }
        }
        System.out.println("one backbone layer (+ embedding) by rows in the call, cpu us, median [range]:");
        us.forEach((rows, l) -> System.out.printf("  %d row(s): %.2f [%.2f-%.2f]%n", rows, median(l, 1), min(l, 1), max(l, 1)));
        ws.close();
        cache.close();
    }

    static double median(List<double[]> l, int i) {
        double[] v = l.stream().mapToDouble(x -> x[i]).sorted().toArray();
        return v[v.length / 2];
    }

    static double min(List<double[]> l, int i) { return l.stream().mapToDouble(x -> x[i]).min().orElse(0); }

    static double max(List<double[]> l, int i) { return l.stream().mapToDouble(x -> x[i]).max().orElse(0); }
}
