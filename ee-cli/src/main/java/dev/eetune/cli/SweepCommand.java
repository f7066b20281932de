package dev.eetune.cli;

import dev.eetune.cli.report.HtmlReport;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.eval.ThresholdCalibration;
import dev.eetune.eval.ThresholdSweep;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.infer.ConfidenceMethod;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code ee sweep}: speed and quality of early-exit and self-speculative decoding over confidence thresholds. */
@Command(name = "sweep", mixinStandardHelpOptions = true, description = "Measure early-exit speed / quality over thresholds.")
final class SweepCommand implements Callable<Integer> {
    @Mixin ModelOptions model;

    @Option(names = "--heads", required = true, description = "heads.safetensors, or the folder `ee tune --out` wrote.") Path heads;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Source source;

    static final class Source {
        @Option(names = "--prompts", description = "A file with one prompt per line.") Path prompts;
        @Option(names = "--data", description = "A corpus: prompts are BOS + --prompt-tokens tokens from evenly spaced places in its last 2%%.") Path data;
    }

    @Option(names = "--glob", description = "Files to read from a directory or zip corpus.") String glob;
    @Option(names = "--cache-dir", description = "Token file cache (default: ~/.cache/eetune).") Path cacheDir;

    @Option(names = "--prompt-count", defaultValue = "8", description = "Prompts taken from --data.") int promptCount;
    @Option(names = "--prompt-tokens", defaultValue = "16", description = "Tokens per prompt taken from --data.") int promptTokens;
    @Option(names = "--thresholds", split = ",", defaultValue = "1.0,0.9,0.8,0.6,0.4,0.2", description = "Confidence thresholds to measure (>= 1: no early exit, the baseline).") List<Float> thresholds;
    @Option(names = "--max-tokens", defaultValue = "64", description = "New tokens per prompt.") int maxTokens;
    @Option(names = "--batch", defaultValue = "1", description = "Prompts decoded together.") int batch;
    @Option(names = "--repeats", defaultValue = "5", description = "Timed rounds; each runs every setting once, round-robin (median and spread reported).") int repeats;
    @Option(names = "--max-warmup-rounds", defaultValue = "8", description = "Untimed rounds at most, until every setting's rate is steady.") int warmupRounds;
    @Option(names = "--draft-exits", split = ",", description = "Exit layers to try as self-speculative drafters.") List<Integer> draftExits;
    @Option(names = "--draft-len", split = ",", defaultValue = "4", description = "Draft lengths k to try.") List<Integer> draftLens;
    @Option(names = "--calibrated", description = "Also time the per-exit thresholds `ee calibrate` saved beside the heads (thresholds.json), as a row 'calibrated'.") boolean calibrated;
    @Option(names = "--confidence", split = ",", defaultValue = "softmax", description = "Confidence methods to compare at each threshold: softmax, gate, saturation, cascade (gate then softmax, both at the threshold).")
    List<String> confidence;
    @Option(names = "--csv", description = "Also write the table as CSV to this file.") Path csv;
    @Option(names = "--json", description = "Also write the result as JSON to this file.") Path json;
    @Option(names = "--quiet", description = "No progress display.") boolean quiet;
    @Option(names = "--report", description = "Write an HTML report with charts (speed-up vs agreement, exit shares, layers per token) into this folder.") Path report;

    /**
     * BOS + {@code length} tokens from {@code count} evenly spaced places in the last 2% of {@code tokens}: held-out
     * text, not document openings (which are often boilerplate such as licence headers).
     */
    static List<int[]> heldOutPrompts(TokenFile tokens, int count, int length, int bos) {
        List<int[]> prompts = new ArrayList<>();
        long span = tokens.size() / 50, start = tokens.size() - span;
        if (span < length) throw new IllegalArgumentException(tokens.path() + ": too few tokens (" + tokens.size() + ") for prompts of " + length + " tokens from its last 2%");
        for (int i = 0; i < count; i++) {
            int[] window = new int[length];
            tokens.read(start + i * (span - length) / Math.max(1, count), window);
            int[] prompt = new int[length + 1];
            prompt[0] = bos;
            System.arraycopy(window, 0, prompt, 1, length);
            prompts.add(prompt);
        }
        return prompts;
    }

    /** The thresholds `ee calibrate` saved beside the heads; a clear error when there are none. */
    private EarlyExitPolicy calibratedPolicy(EarlyExitModel ee) {
        Path headsFile = EvalCommand.headsFile(heads);
        return ThresholdCalibration.saved(ee, headsFile).orElseThrow(() -> new IllegalArgumentException(
            "--calibrated: no " + ThresholdCalibration.fileFor(headsFile) + ": run `ee calibrate --heads " + heads + "` first"));
    }

    /** Runs the sweep with progress. */
    static ThresholdSweep.Result sweep(EarlyExitModel ee, List<int[]> prompts, ThresholdSweep.Settings settings, boolean quiet) {
        try (Progress p = Progress.start("sweeping", "runs", quiet)) {
            return ThresholdSweep.run(ee, prompts, settings, p);
        }
    }

    @Override
    public Integer call() throws IOException {
        // the options first, by their names: loading and tokenizing come before the sweep's own checks
        OptionChecks.atLeast("--prompt-count", promptCount, 1);
        OptionChecks.atLeast("--prompt-tokens", promptTokens, 1);
        OptionChecks.atLeast("--max-tokens", maxTokens, 1);
        OptionChecks.atLeast("--batch", batch, 1);
        OptionChecks.atLeast("--repeats", repeats, 1);
        for (float t : thresholds) OptionChecks.finite("--thresholds", t, false);
        OutputDir.checkFile(csv, "--csv");
        OutputDir.checkFile(json, "--json");
        if (report != null) OutputDir.create(report, "--report");
        try (LlamaModel backbone = model.loadModel(quiet); EarlyExitModel ee = EarlyExitModel.load(backbone, EvalCommand.headsFile(heads))) {
            Tokenizer tok = model.loadTokenizer(backbone.config().vocabSize());
            List<ConfidenceMethod> methods = confidence.stream().map(ConfidenceMethod::parse).distinct().toList();
            EarlyExitPolicy calibratedPolicy = calibrated ? calibratedPolicy(ee) : null;
            List<int[]> prompts = new ArrayList<>();
            if (source.prompts != null) {
                for (String line : Files.readAllLines(source.prompts, StandardCharsets.UTF_8)) if (!line.isBlank()) prompts.add(tok.encode(line.strip()));
            } else {
                prompts.addAll(heldOutPrompts(DataOptions.tokens(source.data, glob, tok, cacheDir != null ? cacheDir : DataOptions.userCache(), quiet), promptCount, promptTokens, tok.bos()));
            }
            if (prompts.isEmpty()) throw new IllegalArgumentException("no prompts found");
            int longest = prompts.stream().mapToInt(p -> p.length).max().orElse(0);
            int context = backbone.config().maxSeqLen();
            if ((long) longest + maxTokens > context) {
                throw new IllegalArgumentException("the longest prompt (" + longest + " tokens) and --max-tokens " + maxTokens + " exceed the model's context of " + context
                    + " tokens: fewer --prompt-tokens or --max-tokens");
            }
            float[] taus = new float[thresholds.size()];
            for (int i = 0; i < taus.length; i++) taus[i] = thresholds.get(i);
            System.err.println(ee + "\nsweeping " + prompts.size() + " prompts x " + maxTokens + " tokens, batch " + batch + ", " + repeats + " timed rounds");
            ThresholdSweep.Result r = sweep(ee, prompts, new ThresholdSweep.Settings(taus, maxTokens, batch, repeats,
                draftExits == null ? new int[0] : draftExits.stream().mapToInt(Integer::intValue).toArray(), draftLens.stream().mapToInt(Integer::intValue).toArray(), warmupRounds,
                methods, calibratedPolicy), quiet);
            System.out.println(r.toTable());
            if (csv != null) Files.writeString(csv, r.toCsv());
            if (json != null) Files.writeString(json, r.toJson());
            if (report != null) System.out.println("report: " + new HtmlReport("ee sweep: " + ee).sweep(r).write(report));
        }
        return 0;
    }
}
