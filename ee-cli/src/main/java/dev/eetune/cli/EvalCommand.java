package dev.eetune.cli;

import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.eval.ExitEvaluator;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code ee eval}: per-exit loss, perplexity, accuracy and agreement with the final layer on a corpus. */
@Command(name = "eval", mixinStandardHelpOptions = true, description = "Evaluate tuned exit heads on a corpus.")
final class EvalCommand implements Callable<Integer> {
    @Mixin ModelOptions model;

    @Option(names = "--heads", required = true, description = "heads.safetensors, or the folder `ee tune --out` wrote.")
    Path heads;

    @Option(names = "--data", required = true, description = "Evaluation corpus (all of it is used, up to --batches).")
    Path data;

    @Option(names = "--glob", description = "Files to read from a directory or zip corpus (e.g. '*.java').") String glob;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per evaluation window.") int seqLen;
    @Option(names = "--batch", defaultValue = "4", description = "Windows per batch.") int batch;
    @Option(names = "--batches", defaultValue = "32", description = "At most this many batches.") int batches;
    @Option(names = "--cache-dir", description = "Token file cache (default: ~/.cache/eetune).") Path cacheDir;

    @Option(names = "--quiet", description = "No progress display.") boolean quiet;

    /** Evaluates on up to {@code maxBatches} of {@code data}'s evaluation batches, with progress. */
    static ExitEvaluator.Report evaluate(EarlyExitModel ee, BatchLoader data, int maxBatches, String what, boolean quiet) {
        long total = Math.min(maxBatches, (data.data().size() + data.batchSize() - 1) / data.batchSize());
        try (Progress p = Progress.start(what, "batches", quiet)) {
            return ExitEvaluator.evaluate(ee, data.evaluationBatches(maxBatches), (done, unknown, detail) -> p.update(done, total, detail));
        }
    }

    static Path headsFile(Path p) {
        Path f = Files.isDirectory(p) ? p.resolve("heads.safetensors") : p;
        if (!Files.isRegularFile(f)) throw new IllegalArgumentException("--heads " + p + ": no heads.safetensors there");
        return f;
    }

    @Override
    public Integer call() {
        OptionChecks.atLeast("--seq-len", seqLen, 2);
        OptionChecks.atLeast("--batch", batch, 1);
        OptionChecks.atLeast("--batches", batches, 1);
        try (LlamaModel backbone = model.loadModel(quiet); EarlyExitModel ee = EarlyExitModel.load(backbone, headsFile(heads))) {
            OptionChecks.withinContext("--seq-len", seqLen, backbone.config().maxSeqLen());
            Tokenizer tok = model.loadTokenizer(backbone.config().vocabSize());
            PackedSequences windows = PackedSequences.of(DataOptions.tokens(data, glob, tok, cacheDir != null ? cacheDir : DataOptions.userCache(), quiet), seqLen, true);
            ExitEvaluator.Report r = evaluate(ee, new BatchLoader(windows, batch, 0), batches, "evaluating", quiet);
            System.out.println(ee);
            System.out.println(r.toTable());
        }
        return 0;
    }
}
