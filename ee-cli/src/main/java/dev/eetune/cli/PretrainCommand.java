package dev.eetune.cli;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.cli.report.HtmlReport;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code ee pretrain}: full-parameter training of a small Llama-architecture model from a corpus (optionally with
 * norm-exit losses), written as a normal Hugging Face checkpoint that every other command loads.
 */
@Command(name = "pretrain", mixinStandardHelpOptions = true, description = "Pretrain a small Llama-architecture model from scratch.")
final class PretrainCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Option(names = "--corpus", required = true, description = "Text file, .jsonl, directory or .zip (e.g. the JDK's lib/src.zip).") Path corpus;
    @Option(names = "--glob", description = "Files to read from a directory or zip (e.g. '*.java').") String glob;
    @Option(names = "--tokenizer", description = "tokenizer.json or llama2.c tokenizer.bin.") Path tokenizer;
    @Option(names = "--byte-level", description = "Bytes as tokens (vocabulary 258).") boolean byteLevel;
    @Option(names = "--dim", defaultValue = "128", description = "Model width.") int dim;
    @Option(names = "--layers", defaultValue = "8", description = "Decoder layers.") int layers;
    @Option(names = "--attention-heads", defaultValue = "4", description = "Attention heads (dim must be a multiple).") int heads;
    @Option(names = "--kv-heads", description = "Key/value heads, grouped-query attention (default: --attention-heads).") Integer kvHeads;
    @Option(names = "--hidden", description = "MLP width (default: 8/3 dim rounded up to a multiple of 32).") Integer hidden;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per training window.") int seqLen;
    @Option(names = "--batch", defaultValue = "8", description = "Windows per step.") int batch;
    @Option(names = "--lr", defaultValue = "3e-3", description = "Peak learning rate (cosine decay to lr / 10).") float lr;
    @Option(names = "--warmup", defaultValue = "30", description = "Learning-rate warm-up steps.") int warmup;
    @Option(names = "--weight-decay", defaultValue = "0.1", description = "AdamW weight decay.") float weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "Gradient-norm clipping (0 = none).") float clip;
    @Option(names = "--exits", split = ",", paramLabel = "LAYER", description = "Layers that carry a norm exit, trained jointly (EE-LLM style; default: none).") List<Integer> exits;
    @Option(names = "--exit-weight", defaultValue = "0.25", description = "Loss weight of each exit relative to the final layer.") double exitWeight;
    @Option(names = "--seed", defaultValue = "1", description = "Seed of the initial weights and batch order.") long seed;
    @Option(names = "--val-fraction", defaultValue = "0.02", description = "Held-out share of the corpus for validation.") double valFraction;
    @Option(names = "--eval-every", defaultValue = "30", description = "Seconds between validation evaluations.") int evalEvery;
    @Option(names = "--threads", defaultValue = "0", converter = ThreadCount.class, description = "Worker threads (0 = all cores).") int threads;
    @Option(names = "--out", required = true, description = "Output folder: the checkpoint (config.json, model.safetensors, tokenizer), loss_curve.csv.") Path out;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Budget budget;

    static final class Budget {
        @Option(names = "--minutes", description = "Train for this many minutes.") Double minutes;
        @Option(names = "--steps", description = "Train for this many steps.") Integer steps;
    }

    @Option(names = "--quiet", description = "No progress display.") boolean quiet;
    @Option(names = "--report", description = "Write an HTML report with charts into this folder.") Path report;

    @Override
    public Integer call() throws IOException {
        if (byteLevel == (tokenizer != null)) throw Main.usage(spec, "give exactly one of --tokenizer PATH and --byte-level");
        Tokenizer tok = byteLevel ? new ByteTokenizer() : Tokenizer.load(tokenizer);
        Backend backend = Backends.cpu();
        if (threads > 0) backend.setThreads(threads);
        Pretraining.Settings st = new Pretraining.Settings(dim, layers, heads, kvHeads != null ? kvHeads : heads, hidden, seqLen, batch, lr, warmup, weightDecay, clip,
            exits == null ? new int[0] : exits.stream().mapToInt(Integer::intValue).toArray(), exitWeight, seed, valFraction, evalEvery, budget.minutes, budget.steps);
        OutputDir.create(out, "--out");
        if (report != null) OutputDir.create(report, "--report");
        TokenFile tokens = DataOptions.tokens(corpus, glob, tok, out.resolve("data"), quiet);
        Pretraining.Outcome o = Pretraining.run(st, tok, tokenizer, tokens, corpus.getFileName().toString(), backend, out, quiet);
        System.out.println(o.summary() + "; checkpoint in " + out);
        if (report != null) {
            Path html = new HtmlReport("ee pretrain: " + corpus.getFileName()).text("Summary", o.summary()).lossCurves(o.curves()).write(report);
            System.out.println("report: " + html);
        }
        return 0;
    }
}
