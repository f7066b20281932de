package dev.eetune.bench;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.Generator;
import dev.eetune.model.HfCheckpointWriter;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The side-by-side decode table of issue 10 (work | peer | eetune | ratio): eetune's figures measured in this run,
 * a peer's (llama2.c's {@code run.c}) given on the command line or in a file. It builds and runs nothing of the peer's;
 * it writes the random-weight llama2.c checkpoints both sides decode and prints the peer commands to run on them.
 *
 * <pre>
 *   # 1. checkpoints (llama2.c legacy format, N(0, 0.02) weights): DIR/m15.bin (dim 288, 6 layers, 6 heads, ffn 768,
 *   #    vocab 32000, seq 256), DIR/m110.bin (dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000, seq 1024), and their
 *   #    bf16 and f16 Hugging Face copies DIR/m15-bf16/, DIR/m110-bf16/, DIR/m15-f16/, DIR/m110-f16/; prints the run.c commands
 *   java -cp ee-bench/target/ee-bench.jar dev.eetune.bench.PeerReport write DIR
 *   # 2. the table: cold `ee generate` runs (alternating works, --repeats each) and warm in-process decode
 *   java --enable-native-access=ALL-UNNAMED -cp ee-bench/target/ee-bench.jar dev.eetune.bench.PeerReport measure DIR \
 *       --tokenizer tokenizer.bin --stories ../shared/data/stories260K --peer 15M-f32-cold=580 --peer 110M-f32-cold=79 \
 *       --peer stories260K-cold=13000 [--peer-file peer.txt] [--threads 2] [--repeats 3] [--busy] [--works a,b]
 * </pre>
 * Works (their names are the peer keys): {@code stories260K-cold} (1 thread), {@code 15M-f32-cold},
 * {@code 110M-f32-cold}, {@code 15M-bf16-cold}, {@code 110M-bf16-cold}, {@code 15M-f16-cold}, {@code 110M-f16-cold}
 * (cold: one {@code ./ee generate --timing} process per repeat, 256 greedy tokens, its decode tok/s), and
 * {@code stories260K-warm} (1 thread), {@code 15M-f32-warm}, {@code 15M-bf16-warm}, {@code 15M-f16-warm},
 * {@code 110M-f32-warm}, {@code 110M-bf16-warm}, {@code 110M-f16-warm}, and each warm work at batch 8 ({@code 15M-f32-warm-b8} ... {@code 110M-f16-warm-b8}) (warm: in this
 * JVM, after warm-up calls (3, and 2 s), tokens/s over all sequences). A peer file holds lines {@code work tok/s}. With
 * {@code --busy} every work is also measured while a competing process spins 2 threads, and the table adds the
 * loaded / quiet ratio (the issue's target: ≥ 0.4). Ratios of one eetune figure to another (loaded / quiet, and
 * below the table bf16 / f32 and f16 / f32 at 110M and batch 8 / batch 1 at 15M and 110M where both works ran) are taken within each repeat
 * and given as median (min..max) of those: see {@link #pairedRatio}.
 */
public final class PeerReport {
    static final int NEW_TOKENS = 256;
    static final String PROMPT = "Once upon a time";

    private PeerReport() {}

    /** A llama2.c shape (kv heads = heads, shared classifier). */
    record Shape(String name, int dim, int hidden, int layers, int heads, int vocab, int seqLen) {}

    static final Shape M15 = new Shape("m15", 288, 768, 6, 6, 32000, 256);
    static final Shape M110 = new Shape("m110", 768, 2048, 12, 12, 32000, 1024);

    /** One measured line of the table. */
    record Work(String name, String model, boolean cold, int batch, int threads) {}

    public static void main(String[] args) throws Exception {
        if (args.length >= 2 && args[0].equals("write")) {
            write(Path.of(args[1]));
            return;
        }
        if (args.length >= 2 && args[0].equals("measure")) {
            measure(Path.of(args[1]), Arrays.copyOfRange(args, 2, args.length));
            return;
        }
        if (args.length == 1 && args[0].equals("busy")) { // the competing process of --busy
            busy();
            return;
        }
        throw new IllegalArgumentException("usage: PeerReport write DIR | PeerReport measure DIR --tokenizer FILE [--stories DIR] [--peer work=tok/s]... "
            + "[--peer-file FILE] [--threads N] [--repeats N] [--busy] [--works a,b] [--ee PATH] (see the class javadoc)");
    }

    // ---- checkpoints ---------------------------------------------------------------------------------------------

    static void write(Path dir) throws IOException {
        Files.createDirectories(dir);
        Backend backend = Backends.cpu();
        for (Shape s : List.of(M15, M110)) {
            Path bin = dir.resolve(s.name() + ".bin");
            writeLlama2c(bin, s, 1);
            Path bf16 = dir.resolve(s.name() + "-bf16"), f16 = dir.resolve(s.name() + "-f16");
            try (LlamaModel m = LlamaModel.load(bin, backend)) {
                HfCheckpointWriter.write(m, bf16, DType.BF16);
                HfCheckpointWriter.write(m, f16, DType.F16);
            }
            System.out.printf(Locale.ROOT, "wrote %s, %s and %s%n", bin, bf16, f16);
        }
        System.out.println("peer commands (tokenizer.bin from the llama2.c repository; unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE first):");
        for (Shape s : List.of(M15, M110)) {
            System.out.printf(Locale.ROOT, "  OMP_NUM_THREADS=2 ./run %s -z tokenizer.bin -t 0 -n %d -i \"%s\"   # the 'achieved tok/s' line%n",
                dir.resolve(s.name() + ".bin"), NEW_TOKENS, PROMPT);
        }
        System.out.printf(Locale.ROOT, "  OMP_NUM_THREADS=1 ./run stories260K.bin -z tok512.bin -t 0 -n %d -i \"%s\"%n", NEW_TOKENS, PROMPT);
    }

    /** A llama2.c legacy checkpoint with N(0, 0.02) matrices and unit norms (the RoPE tables, unused by both sides, zero). */
    static void writeLlama2c(Path file, Shape s, long seed) throws IOException {
        SplittableRandom r = new SplittableRandom(seed);
        int headDim = s.dim() / s.heads();
        long d = s.dim(), h = s.hidden(), l = s.layers();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer head = ByteBuffer.allocate(28).order(ByteOrder.LITTLE_ENDIAN);
            for (int v : new int[] {s.dim(), s.hidden(), s.layers(), s.heads(), s.heads(), s.vocab(), s.seqLen()}) head.putInt(v);
            ch.write(head.flip());
            // in llama2.c's order: embedding, attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm, RoPE tables
            long[][] parts = {{s.vocab() * d, 1}, {l * d, 0}, {l * d * d, 1}, {l * d * d, 1}, {l * d * d, 1}, {l * d * d, 1}, {l * d, 0},
                {l * h * d, 1}, {l * d * h, 1}, {l * h * d, 1}, {d, 0}, {(long) s.seqLen() * headDim, 2}};
            ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
            for (long[] p : parts) {
                for (long i = 0; i < p[0]; i++) {
                    buf.putFloat(p[1] == 1 ? (float) (nextGaussian(r) * 0.02) : p[1] == 0 ? 1f : 0f);
                    if (!buf.hasRemaining()) {
                        ch.write(buf.flip());
                        buf.clear();
                    }
                }
            }
            ch.write(buf.flip());
        }
    }

    private static double nextGaussian(SplittableRandom r) { // Box-Muller: SplittableRandom has no nextGaussian on JDK 17
        return Math.sqrt(-2 * Math.log(1 - r.nextDouble())) * Math.cos(2 * Math.PI * r.nextDouble());
    }

    // ---- measurement ---------------------------------------------------------------------------------------------

    static void measure(Path dir, String[] args) throws Exception {
        Map<String, Double> peer = new LinkedHashMap<>();
        Path tokenizer = null, stories = BenchSupport.dataDir().resolve("stories260K"), ee = Path.of("ee").toAbsolutePath();
        int threads = 2, repeats = 3;
        boolean busy = false;
        Set<String> only = null;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--tokenizer" -> tokenizer = Path.of(args[++i]);
                case "--stories" -> stories = Path.of(args[++i]);
                case "--ee" -> ee = Path.of(args[++i]);
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--repeats" -> repeats = Integer.parseInt(args[++i]);
                case "--busy" -> busy = true;
                case "--works" -> only = Set.of(args[++i].split(","));
                case "--peer" -> putPeer(peer, args[++i], "=", "--peer");
                case "--peer-file" -> {
                    Path f = Path.of(args[++i]);
                    for (String line : Files.readAllLines(f)) if (!line.isBlank() && !line.startsWith("#")) putPeer(peer, line.trim(), "\\s+", f.toString());
                }
                default -> throw new IllegalArgumentException("unknown argument '" + a + "' (see the PeerReport javadoc)");
            }
        }
        if (tokenizer == null) throw new IllegalArgumentException("--tokenizer FILE (llama2.c's tokenizer.bin for vocab 32000) is required");
        if (!Files.isExecutable(ee)) throw new IllegalArgumentException("no ee launcher at " + ee + " (run from the repository root or pass --ee PATH)");
        List<Work> works = new ArrayList<>();
        works.add(new Work("stories260K-cold", stories.resolve("stories260K.bin").toString(), true, 1, 1));
        works.add(new Work("stories260K-warm", stories.resolve("stories260K.bin").toString(), false, 1, 1));
        for (String m : List.of("15M", "110M")) {
            String base = dir.resolve("m" + m.replace("M", "")).toString();
            works.add(new Work(m + "-f32-cold", base + ".bin", true, 1, threads));
            for (String dt : List.of("bf16", "f16")) works.add(new Work(m + "-" + dt + "-cold", base + "-" + dt, true, 1, threads));
        }
        for (int batch : new int[] {1, 8}) {
            for (String m : List.of("15M", "110M")) {
                String base = dir.resolve("m" + m.replace("M", "")).toString();
                for (String dt : List.of("f32", "bf16", "f16"))
                    works.add(new Work(m + "-" + dt + "-warm" + (batch > 1 ? "-b" + batch : ""), dt.equals("f32") ? base + ".bin" : base + "-" + dt, false, batch, threads));
            }
        }
        if (only != null) {
            Set<String> names = only;
            works.removeIf(w -> !names.contains(w.name()));
        }
        for (String k : peer.keySet()) {
            if (works.stream().noneMatch(w -> w.name().equals(k))) System.out.println("# note: peer figure for '" + k + "', which this run does not measure");
        }
        Map<String, List<Double>> quiet = new LinkedHashMap<>(), loaded = new LinkedHashMap<>();
        Measurer m = new Measurer(ee, tokenizer);
        // alternate: every repeat runs every work once (quiet, then loaded with --busy), so drifts hit all works alike
        for (int r = 0; r < repeats; r++) {
            for (Work w : works) {
                quiet.computeIfAbsent(w.name(), k -> new ArrayList<>()).add(m.run(w));
                if (busy) {
                    Process load = startBusy();
                    try {
                        loaded.computeIfAbsent(w.name(), k -> new ArrayList<>()).add(m.run(w));
                    } finally {
                        load.destroy();
                        load.waitFor();
                    }
                }
            }
            System.out.println("# repeat " + (r + 1) + " of " + repeats + " done");
        }
        m.close();
        System.out.println();
        System.out.printf(Locale.ROOT, "Greedy decode, %d new tokens, tokens/s (median (min..max) of %d alternating repeats); %s; %d threads (stories260K: 1)%n",
            NEW_TOKENS, repeats, Backends.cpu().describe(), threads);
        String head = String.format(Locale.ROOT, "| %-18s | %10s | %-26s | %-6s |%s%n", "work", "peer", "eetune", "ratio", busy ? " busy 2-thread load       | loaded/quiet      |" : "");
        System.out.print(head);
        System.out.println("|" + "-".repeat(20) + "|" + "-".repeat(12) + "|" + "-".repeat(28) + "|" + "-".repeat(8) + "|" + (busy ? "-".repeat(26) + "|" + "-".repeat(19) + "|" : ""));
        for (Work w : works) {
            BenchSupport.Spread q = BenchSupport.Spread.of(quiet.get(w.name()));
            Double p = peer.get(w.name());
            String ratio = p == null ? "—" : String.format(Locale.ROOT, "%.2f×", q.median() / p);
            String row = String.format(Locale.ROOT, "| %-18s | %10s | %-26s | %-6s |", w.name(), p == null ? "—" : String.format(Locale.ROOT, "%.1f", p), q.format("%.1f"), ratio);
            if (busy) {
                BenchSupport.Spread b = BenchSupport.Spread.of(loaded.get(w.name()));
                row += String.format(Locale.ROOT, " %-24s | %-17s |", b.format("%.1f"), pairedRatio(loaded.get(w.name()), quiet.get(w.name())).format("%.2f"));
            }
            System.out.println(row);
        }
        printPairedRatios(quiet);
    }

    /**
     * Ratio of two works measured in the same repeats, repeat by repeat: median (min..max). On a machine whose speed
     * drifts (a shared VM's memory bandwidth can change 1.5x within minutes) the two works of one repeat run in the same
     * round of the alternation, so their ratio is steadier than the ratio of the two medians.
     */
    static BenchSupport.Spread pairedRatio(List<Double> numerator, List<Double> denominator) {
        List<Double> r = new ArrayList<>();
        for (int i = 0; i < Math.min(numerator.size(), denominator.size()); i++) r.add(numerator.get(i) / denominator.get(i));
        return BenchSupport.Spread.of(r);
    }

    /** The issue's own-speed targets, each from works this run measured: bf16 over f32 at 110M, batch 8 over 1 at 15M. */
    private static void printPairedRatios(Map<String, List<Double>> quiet) {
        List<String[]> pairs = new ArrayList<>();
        for (String kind : List.of("cold", "warm")) pairs.add(new String[] {"110M-bf16-" + kind, "110M-f32-" + kind, "bf16 / f32 at 110M, " + kind + " (target >= 1.8)"});
        for (String kind : List.of("cold", "warm")) pairs.add(new String[] {"110M-f16-" + kind, "110M-f32-" + kind, "f16 / f32 at 110M, " + kind});
        for (String m : List.of("15M", "110M")) {
            for (String dt : List.of("f32", "bf16", "f16"))
                pairs.add(new String[] {m + "-" + dt + "-warm-b8", m + "-" + dt + "-warm", "batch 8 / batch 1 at " + m + " " + dt + ", warm" + (m.equals("15M") ? " (target >= 5)" : "")});
        }
        boolean header = false;
        for (String[] p : pairs) {
            if (!quiet.containsKey(p[0]) || !quiet.containsKey(p[1])) continue;
            if (!header) {
                System.out.println();
                System.out.println("Ratios within each repeat (both works measured in the same round of the alternation), median (min..max):");
                header = true;
            }
            System.out.printf(Locale.ROOT, "  %-52s %s%n", p[2] + ":", pairedRatio(quiet.get(p[0]), quiet.get(p[1])).format("%.2f"));
        }
    }

    private static void putPeer(Map<String, Double> peer, String entry, String sep, String where) {
        String[] kv = entry.split(sep);
        if (kv.length != 2) throw new IllegalArgumentException(where + ": expected 'work" + (sep.equals("=") ? "=" : " ") + "tok/s', got '" + entry + "'");
        try {
            peer.put(kv[0], Double.parseDouble(kv[1]));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(where + ": '" + kv[1] + "' is not a tokens/s figure (in '" + entry + "')");
        }
    }

    /** Cold works as `ee generate` processes, warm ones in this JVM (models loaded once, kept for the next repeat). */
    static final class Measurer implements AutoCloseable {
        private static final Pattern DECODE = Pattern.compile("decode ([0-9.]+) tok/s");
        private final Path ee, tokenizer;
        private final Backend backend = Backends.cpu();
        private final Map<String, LlamaModel> models = new LinkedHashMap<>();

        Measurer(Path ee, Path tokenizer) {
            this.ee = ee;
            this.tokenizer = tokenizer;
        }

        double run(Work w) throws IOException, InterruptedException {
            return w.cold() ? cold(w) : warm(w);
        }

        private double cold(Work w) throws IOException, InterruptedException {
            List<String> cmd = new ArrayList<>(List.of(ee.toString(), "generate", "--model", w.model(), "--prompt", PROMPT, "--max-tokens", String.valueOf(NEW_TOKENS),
                "--threads", String.valueOf(w.threads()), "--timing"));
            if (!w.name().startsWith("stories260K")) cmd.addAll(List.of("--tokenizer", tokenizer.toString()));
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD);
            pb.environment().remove("OPENBLAS_CORETYPE");
            pb.environment().remove("OPENBLAS_L2_SIZE");
            Process p = pb.start();
            String err = new String(p.getErrorStream().readAllBytes());
            int rc = p.waitFor();
            Matcher mm = DECODE.matcher(err);
            if (rc != 0 || !mm.find()) throw new IllegalStateException(String.join(" ", cmd) + " failed (exit " + rc + "):\n" + err);
            System.out.println("# " + w.name() + ": " + err.lines().filter(l -> l.contains("tok/s")).reduce((a, b) -> a + " | " + b).orElse(""));
            return Double.parseDouble(mm.group(1));
        }

        private double warm(Work w) {
            LlamaModel model = models.computeIfAbsent(w.model(), f -> LlamaModel.load(Path.of(f), backend));
            backend.setThreads(w.threads());
            List<int[]> prompts = new ArrayList<>();
            SplittableRandom r = new SplittableRandom(7);
            for (int s = 0; s < w.batch(); s++) prompts.add(new int[] {1, 3 + r.nextInt(model.config().vocabSize() - 3), 3 + r.nextInt(model.config().vocabSize() - 3)});
            int newTokens = Math.min(NEW_TOKENS, model.config().maxSeqLen() - 3); // run.c's -n also counts the prompt within the context
            try (Generator g = new Generator(model, w.batch(), 3 + newTokens)) {
                GenerationConfig cfg = GenerationConfig.greedy(newTokens, Set.of());
                // warm-up (JIT and caches): 3 runs, and 2 s for small models, whose runs are too short for C2 to finish
                long warmUntil = System.nanoTime() + 2_000_000_000L;
                for (int i = 0; i < 3 || System.nanoTime() < warmUntil; i++) g.generate(prompts, cfg, null);
                g.generate(prompts, cfg, null);
                double tokS = g.lastStats().decodeTokensPerSecond();
                System.out.printf(Locale.ROOT, "# %s: %.1f tok/s%n", w.name(), tokS);
                return tokS;
            }
        }

        @Override
        public void close() { models.values().forEach(LlamaModel::close); }
    }

    // ---- the competing load of --busy ----------------------------------------------------------------------------

    private static Process startBusy() throws IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), PeerReport.class.getName(), "busy")
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try {
            Thread.sleep(300); // let it start spinning before the measurement
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return p;
    }

    /**
     * Two threads spinning on arithmetic until the process is destroyed, or until the report that started it is gone
     * (killed, so that its finally never ran): the load must not outlive the measurement.
     */
    private static void busy() throws InterruptedException {
        ProcessHandle.current().parent().ifPresent(report -> report.onExit().thenRun(() -> System.exit(0)));
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Thread t = new Thread(() -> {
                double x = 1;
                while (!Thread.currentThread().isInterrupted()) x = x * 1.0000001 + 1e-9;
                if (x == 42) System.out.print(""); // keeps x alive
            }, "busy-" + i);
            t.start();
            ts.add(t);
        }
        for (Thread t : ts) t.join();
    }
}
