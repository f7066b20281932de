package dev.eetune.cli;

import dev.eetune.data.tokens.TokenFile;
import dev.eetune.eval.ThresholdSweep;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.infer.ConfidenceMethod;
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
        @Option(names = "--data", description = "A corpus: prompts are BOS + --prompt-tokens tokens from evenly spaced places in its last 2%.") Path data;
    }

    @Option(names = "--glob", description = "Files to read from a directory or zip corpus.") String glob;
    @Option(names = "--cache-dir", description = "Token file cache (default: ~/.cache/eetune).") Path cacheDir;

    @Option(names = "--prompt-count", defaultValue = "8", description = "Prompts taken from --data (default: ${DEFAULT-VALUE}).") int promptCount;
    @Option(names = "--prompt-tokens", defaultValue = "16", description = "Tokens per prompt taken from --data (default: ${DEFAULT-VALUE}).") int promptTokens;
    @Option(names = "--thresholds", split = ",", defaultValue = "1.0,0.9,0.8,0.6,0.4,0.2") List<Float> thresholds;
    @Option(names = "--max-tokens", defaultValue = "64", description = "New tokens per prompt.") int maxTokens;
    @Option(names = "--batch", defaultValue = "1") int batch;
    @Option(names = "--repeats", defaultValue = "5", description = "Timed runs per setting (median reported).") int repeats;
    @Option(names = "--draft-exits", split = ",", description = "Exit layers to try as self-speculative drafters.") List<Integer> draftExits;
    @Option(names = "--draft-len", split = ",", defaultValue = "4", description = "Draft lengths k to try.") List<Integer> draftLens;
    @Option(names = "--confidence", split = ",", defaultValue = "softmax", description = "Confidence methods to compare at each threshold: softmax, gate, saturation (default: ${DEFAULT-VALUE}).")
    List<String> confidence;
    @Option(names = "--csv") Path csv;
    @Option(names = "--json") Path json;

    @Override
    public Integer call() throws IOException {
        try (LlamaModel backbone = model.loadModel(); EarlyExitModel ee = EarlyExitModel.load(backbone, EvalCommand.headsFile(heads))) {
            Tokenizer tok = model.loadTokenizer(backbone.config().vocabSize());
            List<int[]> prompts = new ArrayList<>();
            if (source.prompts != null) {
                for (String line : Files.readAllLines(source.prompts, StandardCharsets.UTF_8)) if (!line.isBlank()) prompts.add(tok.encode(line.strip()));
            } else { // held-out text, not document openings (which are often boilerplate such as licence headers)
                TokenFile tokens = DataOptions.tokens(source.data, glob, tok, cacheDir != null ? cacheDir : DataOptions.userCache());
                long span = tokens.size() / 50, start = tokens.size() - span;
                for (int i = 0; i < promptCount; i++) {
                    int[] window = new int[promptTokens];
                    tokens.read(start + i * (span - promptTokens) / Math.max(1, promptCount), window);
                    int[] prompt = new int[promptTokens + 1];
                    prompt[0] = tok.bos();
                    System.arraycopy(window, 0, prompt, 1, promptTokens);
                    prompts.add(prompt);
                }
            }
            if (prompts.isEmpty()) throw new IllegalArgumentException("no prompts found");
            float[] taus = new float[thresholds.size()];
            for (int i = 0; i < taus.length; i++) taus[i] = thresholds.get(i);
            System.err.println(ee + "\nsweeping " + prompts.size() + " prompts x " + maxTokens + " tokens, batch " + batch + ", " + repeats + " repeats");
            ThresholdSweep.Result r = ThresholdSweep.run(ee, prompts, new ThresholdSweep.Settings(taus, maxTokens, batch, repeats,
                draftExits == null ? new int[0] : draftExits.stream().mapToInt(Integer::intValue).toArray(), draftLens.stream().mapToInt(Integer::intValue).toArray(),
                confidence.stream().map(ConfidenceMethod::parse).distinct().toList()));
            System.out.println(r.toTable());
            if (csv != null) Files.writeString(csv, r.toCsv());
            if (json != null) Files.writeString(json, r.toJson());
        }
        return 0;
    }
}
