package dev.eetune.cli;

import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.infer.Decoder;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.SelfSpeculativeDecoder;
import dev.eetune.infer.TokenListener;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.BufferedOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.stream.Collectors;
import java.util.List;
import dev.eetune.eval.ThresholdCalibration;
import dev.eetune.infer.ConfidenceMethod;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code ee generate}: prints prompt + continuation to stdout (streamed for one prompt), timing to stderr. */
@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate text with a model.")
final class GenerateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    ModelOptions opts;

    @Option(names = "--prompt", required = true, description = "Prompt text (repeat for a batch; \"\" starts from BOS alone).")
    List<String> prompts;

    @Option(names = "--max-tokens", defaultValue = "256", description = "New tokens per prompt (cut to what the model's context leaves).")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "Sampling temperature; 0 = greedy.")
    float temperature;

    @Option(names = "--top-p", defaultValue = "0.9", description = "Nucleus sampling mass when temperature > 0.")
    float topP;

    @Option(names = "--seed", defaultValue = "42", description = "Sampling seed.")
    long seed;

    @Option(names = "--heads", description = "Exit heads: heads.safetensors or the folder `ee tune --out` wrote (default: none, no early exit).")
    Path heads;

    @Option(names = "--threshold", description = "Exit when the confidence score reaches this (>= 1: never; default: the thresholds `ee calibrate` saved beside the heads, else 0.8).")
    Float threshold;

    @Option(names = "--confidence", description = "softmax | gate | saturation | cascade (gate, then softmax confirms): how an exit scores confidence (default: the calibrated one, else softmax).")
    String confidence;

    @Option(names = "--active-exits", split = ",", paramLabel = "LAYER", description = "Exit layers allowed to exit, a subset of --heads (default: every head).")
    List<Integer> activeExits;

    @Option(names = "--speculative", description = "Lossless self-speculative decoding with an exit head as drafter.")
    boolean speculative;

    @Option(names = "--draft-exit", description = "Drafting exit layer (default: the shallowest head).")
    Integer draftExit;

    @Option(names = "--draft-len", defaultValue = "4", description = "Drafts per round.")
    int draftLen;

    @Option(names = "--adaptive", description = "Adapt the draft length per sequence.")
    boolean adaptive;

    @Option(names = "--timing", description = "Also print the time to the first token (from the start of the `ee` command, or of the JVM without it, and from the call) and the first 32 tokens' rate.")
    boolean timing;

    @Option(names = "--quiet", description = "No progress display (while the model loads).")
    boolean quiet;

    /** Start-up and warm-up as the user sees them: when the first tokens of sequence 0 arrived. */
    static final class FirstTokens implements TokenListener {
        static final int COUNT = 32;
        final TokenListener inner;
        final long[] at = new long[COUNT + 1];
        int n;

        FirstTokens(TokenListener inner) { this.inner = inner; }

        @Override
        public void onToken(int sequence, int token) {
            if (sequence == 0 && n < at.length) at[n++] = System.nanoTime();
            if (inner != null) inner.onToken(sequence, token);
        }

        String summary(long callStart) {
            if (n == 0) return "timing: no token";
            long ago = System.nanoTime() - at[0]; // how long before now the first token came
            Double launched = launched(System.getenv("EE_LAUNCHED"));
            String since;
            if (launched != null) { // the `ee` launcher's start, from the same wall clock as Instant.now(), in microseconds
                java.time.Instant now = java.time.Instant.now();
                double nowSeconds = now.getEpochSecond() + now.getNano() / 1e9;
                since = String.format(Locale.ROOT, "%.0f ms after the command started", ((nowSeconds - launched) * 1e9 - ago) / 1e6);
            } else { // run without the launcher (java -jar): from the JVM's start
                since = String.format(Locale.ROOT, "%.0f ms after the JVM started", (java.lang.management.ManagementFactory.getRuntimeMXBean().getUptime() * 1e6 - ago) / 1e6);
            }
            String rate = n > 1 ? String.format(Locale.ROOT, "%.1f tok/s", (n - 1) / ((at[n - 1] - at[0]) / 1e9)) : "n/a";
            return String.format(Locale.ROOT, "timing: first token %s, %.1f ms after the call; the %d tokens after it: %s",
                since, (at[0] - callStart) / 1e6, n - 1, rate);
        }

        /**
         * Seconds since the epoch in bash's EPOCHREALTIME form ("1764800000.123456", the locale's decimal mark), or null.
         * Not ProcessHandle's start instant: Linux gives it from the boot time in whole seconds, and on a 2-core VM the
         * first token came 1.3-1.45 s after it in runs that took 0.75-0.85 s in all (once 29 s).
         */
        static Double launched(String epochRealtime) {
            if (epochRealtime == null || !epochRealtime.matches("[0-9]+([.,][0-9]+)?")) return null;
            return Double.valueOf(epochRealtime.replace(',', '.'));
        }
    }

    @Override
    public Integer call() {
        if ((speculative || activeExits != null) && heads == null) throw Main.usage(spec, "--speculative and --active-exits need --heads");
        OptionChecks.atLeast("--max-tokens", maxTokens, 1);
        // System.out behind a buffer, flushed at most every 20 ms while tokens stream and at the end: System.out flushes
        // (a system call) on every write, at stories260K's 150 us a token
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out, 1 << 13), false, StandardCharsets.UTF_8);
        long[] flushed = {System.nanoTime()};
        try (LlamaModel model = opts.loadModel(quiet)) {
            Tokenizer tok = opts.loadTokenizer(model.config().vocabSize());
            List<int[]> ids = new ArrayList<>();
            for (String p : prompts) ids.add(tok.encode(p));
            int longest = ids.stream().mapToInt(a -> a.length).max().orElse(1);
            for (int i = 0; i < ids.size(); i++) {
                if (ids.get(i).length >= model.config().maxSeqLen()) {
                    throw new IllegalArgumentException("--prompt " + (i + 1) + " is " + ids.get(i).length + " tokens: it leaves no room in the model's context of "
                        + model.config().maxSeqLen() + " tokens; shorten it");
                }
            }
            // the caches hold what this run needs, never the whole context (in long: --max-tokens may be huge)
            int maxLen = (int) Math.min(model.config().maxSeqLen(), (long) longest + maxTokens);
            int budget = Math.max(0, maxLen - longest);
            if (budget < maxTokens) System.err.printf(Locale.ROOT, "note: --max-tokens %d cut to %d by the model's context of %d%n", maxTokens, budget, model.config().maxSeqLen());
            GenerationConfig cfg = new GenerationConfig(budget, temperature, temperature == 0 ? 1f : topP, seed, tok.stopTokens());
            boolean stream = ids.size() == 1;
            try (EarlyExitModel ee = heads == null ? null : EarlyExitModel.load(model, EvalCommand.headsFile(heads))) {
                int[] layers = activeExits != null ? activeExits.stream().mapToInt(Integer::intValue).toArray()
                    : ee == null ? new int[0] : ee.heads().stream().mapToInt(h -> h.layer()).toArray();
                EarlyExitPolicy policy = speculative || ee == null ? EarlyExitPolicy.none() : policy(ee, layers);
                int drafter = speculative ? (draftExit != null ? draftExit : ee.heads().get(0).layer()) : 0;
                // the decoder before any output: what it refuses (a stale thresholds file, gates missing) is said first
                try (Decoder decoder = speculative ? new SelfSpeculativeDecoder(ee, drafter, draftLen, adaptive, 0f, ids.size(), maxLen)
                    : new EarlyExitGenerator(model, ee, policy, ids.size(), maxLen)) {
                    int[] prev = new int[ids.size()];
                    for (int i = 0; i < ids.size(); i++) prev[i] = ids.get(i)[ids.get(i).length - 1];
                    if (stream) out.print(tok.decode(ids.get(0)));
                    TokenListener listener = stream ? (s, t) -> {
                        if (!tok.stopTokens().contains(t)) out.print(tok.decodeToken(prev[s], t));
                        prev[s] = t;
                        long now = System.nanoTime();
                        if (now - flushed[0] > 20_000_000L) {
                            out.flush();
                            flushed[0] = now;
                        }
                    } : null;
                    FirstTokens first = timing ? new FirstTokens(listener) : null;
                    if (first != null) listener = first;
                    long callStart = System.nanoTime();
                    List<GenerationResult> results = decoder.generate(ids, cfg, listener);
                    String stats = decoder instanceof SelfSpeculativeDecoder d ? "self-speculative, drafting with exit " + drafter + ": " + d.lastStats()
                        : (ee == null ? "" : "early exit, " + policy.confidence().label() + " confidence, thresholds " + policy.thresholds() + ": ")
                            + ((EarlyExitGenerator) decoder).lastStats();
                    if (stream) out.println();
                    else for (GenerationResult r : results) out.println(tok.decode(r.tokens()));
                    out.flush();
                    System.err.println(model + "\n" + stats);
                    if (first != null) System.err.println(first.summary(callStart));
                }
            }
        } finally {
            out.flush(); // what was generated before a failure
        }
        return 0;
    }

    /**
     * --threshold (default 0.8) at each of {@code layers} with --confidence (default softmax); without --threshold, the
     * calibrated thresholds beside the heads when there are any (restricted to --exits when given).
     */
    private EarlyExitPolicy policy(EarlyExitModel ee, int[] layers) {
        Path headsFile = EvalCommand.headsFile(heads), calibrated = ThresholdCalibration.fileFor(headsFile);
        ConfidenceMethod method = confidence == null ? null : ConfidenceMethod.parse(confidence);
        Optional<EarlyExitPolicy> saved = threshold == null ? ThresholdCalibration.saved(ee, headsFile) : Optional.empty();
        if (saved.isPresent()) {
            EarlyExitPolicy p = saved.get();
            if (method != null && method != p.confidence()) {
                throw new IllegalArgumentException("--confidence " + method.label() + ", but " + calibrated + " holds thresholds for " + p.confidence().label() + " confidence: give --threshold too");
            }
            System.err.println("calibrated thresholds from " + calibrated);
            return p.restrictedTo(Arrays.stream(layers).boxed().collect(Collectors.toSet()));
        }
        return EarlyExitPolicy.global(threshold == null ? 0.8f : threshold, layers).withConfidence(method == null ? ConfidenceMethod.SOFTMAX : method);
    }
}
