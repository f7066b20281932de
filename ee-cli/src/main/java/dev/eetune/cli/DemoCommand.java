package dev.eetune.cli;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.cli.report.HtmlReport;
import dev.eetune.cli.report.LossCurves;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.eval.ExitEvaluator;
import dev.eetune.eval.ThresholdSweep;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;

/**
 * {@code ee demo}: the whole story on a machine with nothing but a JDK, offline. Pretrains a small byte-level Llama on
 * the JDK's own Java sources (lib/src.zip), EE-tunes exit heads on it, evaluates them, sweeps thresholds and
 * generates a sample showing where each token exited; or does the same on a given checkpoint ({@code --model
 * --data}). The defaults are sized to finish in about ten minutes on two cores.
 */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
    description = {"Pretrain a small byte-level Llama on the JDK's own Java sources, tune early-exit heads on it, evaluate, sweep thresholds and generate",
        "with early exits; offline, about ten minutes on two cores. With --model and --data: the same steps on your checkpoint (no pretraining)."})
final class DemoCommand implements Callable<Integer> {
    /** The JDK's sources read by default: a few MB of java.util, enough for the minutes of pretraining. */
    static final String DEFAULT_GLOB = "java.base/java/util/*.java";

    @Option(names = "--minutes", defaultValue = "4", description = "Pretraining budget in minutes.") double minutes;
    @Option(names = "--corpus", description = "Text to pretrain on: text file, .jsonl, directory or .zip (default: the running JDK's lib/src.zip).") Path corpus;
    @Option(names = "--glob", description = "Files to read from a directory or zip corpus (default with src.zip: " + DEFAULT_GLOB + ").") String glob;
    @Option(names = "--model", description = "Skip pretraining: use this checkpoint (Hugging Face folder or llama2.c .bin); needs --data.") Path model;
    @Option(names = "--data", description = "With --model: the text to tune and evaluate on.") Path data;
    @Option(names = "--exits", split = ",", description = "Layers that carry exit heads (default: 2,4 of the demo's 8 layers; with --model: a quarter and half of its depth).") List<Integer> exits;
    @Option(names = "--arch", defaultValue = "norm", description = "Exit head architecture: embedding | norm | mlp | layer (norm: the cheapest to evaluate).") String arch;
    @Option(names = "--tune-steps", defaultValue = "300", description = "EE-Tuning steps.") int tuneSteps;
    @Option(names = "--thresholds", split = ",", defaultValue = "1.0,0.95,0.9,0.8,0.6", description = "Confidence thresholds to sweep.") List<Float> thresholds;
    @Option(names = "--repeats", defaultValue = "5", description = "Timed sweep rounds.") int repeats;
    @Option(names = "--prompt-count", defaultValue = "8", description = "Held-out prompts the sweep decodes.") int promptCount;
    @Option(names = "--max-tokens", defaultValue = "96", description = "New tokens per prompt in the sweep.") int maxTokens;
    @Option(names = "--out", description = "Where the demo keeps its backbone, heads and token files (default: ee-demo in the temporary folder).") Path out;
    @Option(names = "--report", description = "Write an HTML report with charts into this folder.") Path report;
    @Option(names = "--threads", defaultValue = "0", converter = ThreadCount.class, description = "Worker threads (0 = all cores).") int threads;
    @Option(names = "--seed", defaultValue = "1", description = "Seed of initialisation and data order.") long seed;
    @Option(names = "--quiet", description = "No progress display.") boolean quiet;

    /** The demo's backbone: 8 layers of dim 128 with exit losses at layers 2 and 4, trained on 256-byte windows. */
    static Pretraining.Settings backbone(double minutes, long seed) {
        return new Pretraining.Settings(128, 8, 4, 4, null, 256, 8, 3e-3f, 30, 0.1f, 1f, new int[] {2, 4}, 0.25, seed, 0.02, 60, minutes, null);
    }

    @Override
    public Integer call() throws IOException {
        if ((model == null) != (data == null)) throw new IllegalArgumentException("--model and --data go together (or give neither to pretrain the demo's own model)");
        // every option before the minutes of pretraining: what only the pretrained model can tell (its layers) excepted
        Pretraining.Settings pretraining = backbone(minutes, seed);
        OptionChecks.atLeast("--tune-steps", tuneSteps, 1);
        OptionChecks.atLeast("--repeats", repeats, 1);
        OptionChecks.atLeast("--prompt-count", promptCount, 1);
        OptionChecks.atLeast("--max-tokens", maxTokens, 1);
        for (float t : thresholds) OptionChecks.finite("--thresholds", t, false);
        ExitArchitecture a = ExitArchitecture.parse(arch);
        if (model == null && exits != null) OptionChecks.exitLayers(exits, pretraining.layers());
        long t0 = System.nanoTime();
        Path work = OutputDir.create(out != null ? out : Path.of(System.getProperty("java.io.tmpdir"), "ee-demo"), "--out");
        if (report != null) OutputDir.create(report, "--report");
        System.out.println("ee demo: working folder " + work.toAbsolutePath() + (out == null ? " (--out DIR to change)" : ""));
        Backend backend = Backends.cpu();
        if (threads > 0) backend.setThreads(threads);
        HtmlReport html = new HtmlReport(model == null ? "ee demo: early exits on a Llama pretrained on the JDK's sources" : "ee demo: early exits on " + model.getFileName());
        Tokenizer tok;
        TokenFile tokens;
        Path backbonePath;
        if (model == null) {
            Path src = corpus != null ? corpus : jdkSources();
            if (!Files.exists(src)) throw new IllegalArgumentException("--corpus " + src + ": no such file or directory");
            String g = glob != null ? glob : corpus == null ? DEFAULT_GLOB : null;
            tok = new ByteTokenizer();
            tokens = DataOptions.tokens(src, g, tok, work.resolve("data"), quiet);
            backbonePath = work.resolve("backbone");
            OutputDir.create(backbonePath, "--out");
            section("1. Pretraining a byte-level Llama on " + src + (g == null ? "" : " (" + g + ")") + " for " + minutes + " minutes");
            Pretraining.Outcome o = Pretraining.run(pretraining, tok, null, tokens, src.getFileName().toString(), backend, backbonePath, quiet);
            System.out.println(o.summary());
            html.text("Backbone", o.summary()).lossCurves(o.curves());
        } else {
            backbonePath = model;
            tokens = null;
            tok = null;
        }
        try (LlamaModel backboneModel = LlamaModel.load(backbonePath, backend)) {
            if (tok == null) {
                tok = ModelOptions.tokenizer(model, null, backboneModel.config().vocabSize());
                tokens = DataOptions.tokens(data, glob, tok, work.resolve("data"), quiet);
                System.out.println("backbone: " + backboneModel);
            }
            int n = backboneModel.config().nLayers();
            List<Integer> exitLayers = exits != null ? exits : model == null ? List.of(2, 4) : List.of(Math.max(1, n / 4), Math.max(1, n / 2)).stream().distinct().toList();
            List<ExitSpec> specs = exitLayers.stream().map(l -> new ExitSpec(l, a, ExitInit.COPY)).toList();
            int seqLen = Math.min(256, backboneModel.config().maxSeqLen());
            PackedSequences.Split windows = PackedSequences.of(tokens, seqLen, true).split(0.05);
            BatchLoader train = new BatchLoader(windows.train(), 4, seed), val = new BatchLoader(windows.validation(), 4, seed);
            try (EarlyExitModel ee = EarlyExitModel.attach(backboneModel, specs, seed)) {
                section("2. EE-Tuning " + exitLayers.size() + " " + a.label() + " exit heads (layers " + exitLayers + ") for " + tuneSteps + " steps, backbone frozen");
                LossCurves curves = new LossCurves("Tuning loss per exit");
                try (AdamW opt = AdamW.withDefaults(ee.parameters(), 0f);
                     Progress progress = Progress.start("tuning", "steps", quiet);
                     Tuner tuner = new Tuner(ee, TunerConfig.defaults(tuneSteps, 4, seqLen, 1e-3f), train, opt,
                         List.of(TuneCommand.progressAndCurves(progress, curves, exitLayers.stream().mapToInt(Integer::intValue).toArray(), tuneSteps)))) {
                    tuner.run();
                }
                ee.save(work.resolve("heads.safetensors"), DType.F32);
                html.lossCurves(curves);

                section("3. Validation loss per exit (held-out 5%)");
                ExitEvaluator.Report eval = EvalCommand.evaluate(ee, val, 16, "evaluating", quiet);
                System.out.println(eval.toTable());
                html.validationLoss(eval);

                section("4. Threshold sweep: measured speed-up and agreement with the full model");
                List<int[]> prompts = SweepCommand.heldOutPrompts(tokens, promptCount, 32, tok.bos());
                float[] taus = new float[thresholds.size()];
                for (int i = 0; i < taus.length; i++) taus[i] = thresholds.get(i);
                ThresholdSweep.Result sweep = SweepCommand.sweep(ee, prompts, new ThresholdSweep.Settings(taus, maxTokens, 1, repeats, new int[0], new int[0]), quiet);
                System.out.println(sweep.toTable());
                html.sweep(sweep);
                ThresholdSweep.Row best = fastestTrusted(sweep);
                System.out.println(best == null ? "no threshold gave a speed-up distinguishable from noise in this run (see the table's notes)"
                    : String.format(Locale.ROOT, "fastest trusted setting: threshold %.2f, %.2fx (rounds %.2f..%.2f), %.1f%% teacher-forced agreement with the full model",
                        best.threshold(), best.speedup(), best.speedupLow(), best.speedupHigh(), 100 * best.teacherForcedAgreement()));

                float tau = best != null ? best.threshold() : 0.8f;
                section(String.format(Locale.ROOT, "5. A sample with early exits at threshold %.2f", tau));
                String sample = sample(ee, tok, prompts.get(0), tau, exitLayers, n);
                System.out.println(sample);
                html.text(String.format(Locale.ROOT, "Sample at threshold %.2f (digit under each character: the layer it exited at)", tau), sampleWithDigits(ee, tok, prompts.get(0), tau, exitLayers));
            }
        }
        if (report != null) System.out.println("report: " + html.write(report));
        System.out.printf(Locale.ROOT, "%nee demo: done in %s; backbone in %s, heads in %s%n", Progress.duration((System.nanoTime() - t0) / 1e9), backbonePath,
            work.resolve("heads.safetensors"));
        return 0;
    }

    /** The running JDK's lib/src.zip, or an error saying how to get it. */
    static Path jdkSources() {
        Path home = Path.of(System.getProperty("java.home"));
        Path zip = home.resolve("lib").resolve("src.zip");
        if (Files.isRegularFile(zip)) return zip;
        throw new IllegalArgumentException("this JDK (" + home + ") has no lib/src.zip, the Java sources the demo trains on. Install them (Debian/Ubuntu: "
            + "apt-get install openjdk-" + Runtime.version().feature() + "-source; other JDK builds ship src.zip in their full download) or pass --corpus PATH "
            + "(any text file, .jsonl, directory or .zip).");
    }

    private static void section(String title) { System.out.println("\n== " + title + " =="); }

    /** The early-exit row with the highest median speed-up whose every timed round was faster than the full model. */
    static ThresholdSweep.Row fastestTrusted(ThresholdSweep.Result r) {
        ThresholdSweep.Row best = null;
        for (ThresholdSweep.Row row : r.rows()) {
            if (!row.mode().equals("early-exit") || row.verdict() != ThresholdSweep.Verdict.OK || row.speedupLow() <= 1) continue;
            if (best == null || row.speedup() > best.speedup()) best = row;
        }
        return best;
    }

    private record Generated(int[] prompt, int[] tokens, int[] layers) {}

    private static Generated generate(EarlyExitModel ee, int[] prompt, float tau, List<Integer> exitLayers, int newTokens) {
        LlamaModel m = ee.backbone();
        try (EarlyExitGenerator g = new EarlyExitGenerator(m, ee, EarlyExitPolicy.global(tau, exitLayers.stream().mapToInt(Integer::intValue).toArray()), 1,
            prompt.length + newTokens)) {
            GenerationResult r = g.generate(List.of(prompt), GenerationConfig.greedy(newTokens, Set.of()), null).get(0);
            return new Generated(prompt, r.generated(), g.lastExitLayers()[0]);
        }
    }

    /** The sample in colour on a terminal (one colour per exit layer, with a legend), else with a digit line under each line. */
    private static String sample(EarlyExitModel ee, Tokenizer tok, int[] prompt, float tau, List<Integer> exitLayers, int nLayers) {
        if (!Progress.onTerminal() || System.getenv("NO_COLOR") != null) return sampleWithDigits(ee, tok, prompt, tau, exitLayers);
        Generated g = generate(ee, prompt, tau, exitLayers, SAMPLE_TOKENS);
        String[] colours = {"\u001b[32m", "\u001b[36m", "\u001b[33m", "\u001b[35m", "\u001b[34m"};
        StringBuilder legend = new StringBuilder("(prompt in grey; exited at");
        for (int i = 0; i < exitLayers.size(); i++) legend.append(' ').append(colours[i % colours.length]).append("layer ").append(exitLayers.get(i)).append("\u001b[0m");
        legend.append(", final layer ").append(nLayers).append(" uncoloured)\n");
        StringBuilder sb = new StringBuilder(legend).append("\u001b[90m").append(tok.decode(prompt)).append("\u001b[0m");
        int prev = prompt[prompt.length - 1];
        for (int i = 0; i < g.tokens().length; i++) {
            int idx = exitLayers.indexOf(g.layers()[i]);
            String piece = tok.decodeToken(prev, g.tokens()[i]);
            sb.append(idx < 0 ? piece : colours[idx % colours.length] + piece + "\u001b[0m");
            prev = g.tokens()[i];
        }
        return sb.toString();
    }

    static final int SAMPLE_TOKENS = 200;

    /**
     * The prompt, then the generated text line by line, each followed by a line with the layer each character's token
     * exited at (a digit; base 36 past 9; blank under the prompt).
     */
    private static String sampleWithDigits(EarlyExitModel ee, Tokenizer tok, int[] prompt, float tau, List<Integer> exitLayers) {
        Generated g = generate(ee, prompt, tau, exitLayers, SAMPLE_TOKENS);
        StringBuilder text = new StringBuilder(), digits = new StringBuilder(), out = new StringBuilder();
        String shown = tok.decode(prompt).replace('\t', ' ');
        for (String part : shown.split("\n", -1)) {
            if (text.length() > 0 || out.length() > 0) flush(out, text, digits);
            text.append(part);
            digits.append(" ".repeat(part.codePointCount(0, part.length())));
        }
        int prev = prompt[prompt.length - 1];
        for (int i = 0; i < g.tokens().length; i++) {
            String piece = tok.decodeToken(prev, g.tokens()[i]).replace('\t', ' ');
            prev = g.tokens()[i];
            char d = Character.forDigit(g.layers()[i], 36);
            String[] lines = piece.split("\n", -1);
            for (int k = 0; k < lines.length; k++) {
                if (k > 0) flush(out, text, digits);
                text.append(lines[k]);
                digits.append(String.valueOf(d).repeat(lines[k].codePointCount(0, lines[k].length())));
            }
        }
        flush(out, text, digits);
        return "(under each line: the layer each character's token exited at)\n" + out.toString().stripTrailing();
    }

    private static void flush(StringBuilder out, StringBuilder text, StringBuilder digits) {
        out.append(text).append('\n');
        if (!digits.toString().isBlank()) out.append(digits.toString().stripTrailing()).append('\n');
        text.setLength(0);
        digits.setLength(0);
    }
}
