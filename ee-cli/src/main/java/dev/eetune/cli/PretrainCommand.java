package dev.eetune.cli;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.eval.ExitEvaluator;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.model.HfCheckpointWriter;
import dev.eetune.model.LlamaConfig;
import dev.eetune.tensor.DType;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.LrSchedule;
import dev.eetune.train.Pretrainer;
import dev.eetune.train.StepReport;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
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
    @Option(names = "--attention-heads", defaultValue = "4", description = "Attention heads (dim must be a multiple).") int attentionHeads;
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

    @Override
    public Integer call() throws IOException {
        if (byteLevel == (tokenizer != null)) throw Main.usage(spec, "give exactly one of --tokenizer PATH and --byte-level");
        Tokenizer tok = byteLevel ? new ByteTokenizer() : Tokenizer.load(tokenizer);
        Backend backend = Backends.cpu();
        if (threads > 0) backend.setThreads(threads);
        OutputDir.create(out, "--out");
        TokenFile tokens = DataOptions.tokens(corpus, glob, tok, out.resolve("data"));
        PackedSequences.Split windows = PackedSequences.of(tokens, seqLen, true).split(valFraction);
        int h = hidden != null ? hidden : (int) (Math.ceil(8.0 * dim / 3 / 32) * 32);
        LlamaConfig cfg = new LlamaConfig(dim, h, layers, attentionHeads, kvHeads != null ? kvHeads : attentionHeads, dim / attentionHeads, tok.vocabSize(), Math.max(seqLen, 512),
            1e-5f, 10000f, null, false, false, false, LlamaConfig.LLAMA).validate();
        double unigram = unigramEntropy(tokens, tok.vocabSize());
        int[] exitLayers = exits == null ? new int[0] : exits.stream().mapToInt(Integer::intValue).toArray();
        try (Pretrainer p = new Pretrainer(cfg, backend, seed, 0.02f, exitLayers, exitWeight);
             AdamW opt = new AdamW(p.parameters(), 0.9f, 0.95f, 1e-8f, weightDecay)) {
            System.err.printf(Locale.ROOT, "pretraining %,d parameters (dim %d, %d layers, %d heads, hidden %d, vocab %d) on %,d tokens (%s); unigram baseline %.4f nats/token%n",
                p.parameterCount(), dim, layers, attentionHeads, h, tok.vocabSize(), tokens.size(), corpus.getFileName(), unigram);
            BatchLoader train = new BatchLoader(windows.train(), batch, seed), val = new BatchLoader(windows.validation(), batch, seed);
            LrSchedule schedule = LrSchedule.cosine(lr, warmup, budget.steps != null ? budget.steps : Integer.MAX_VALUE, lr / 10);
            StringBuilder curve = new StringBuilder("step,seconds,tokens,train_loss,val_loss\n");
            long start = System.nanoTime(), tokensSeen = 0, lastEval = 0;
            double budgetSeconds = budget.minutes != null ? budget.minutes * 60 : Double.POSITIVE_INFINITY;
            double valLoss = Double.NaN, trainEma = Double.NaN;
            for (int step = 0; ; step++) {
                double elapsed = (System.nanoTime() - start) / 1e9;
                boolean done = budget.steps != null ? step >= budget.steps : elapsed >= budgetSeconds;
                if (done || step == 0 || elapsed - lastEval >= evalEvery) {
                    valLoss = validate(p, val, 8);
                    lastEval = (long) elapsed;
                    curve.append(String.format(Locale.ROOT, "%d,%.1f,%d,%.4f,%.4f%n", step, elapsed, tokensSeen, trainEma, valLoss));
                    System.err.printf(Locale.ROOT, "step %d | %.0fs | train %.4f | val %.4f nats/token (unigram %.4f) | %.0f tok/s%n", step, elapsed, trainEma, valLoss,
                        unigram, tokensSeen / Math.max(elapsed, 1e-9));
                }
                if (done) break;
                float rate = budget.steps != null ? schedule.at(step) : schedule.at(step, elapsed / budgetSeconds);
                StepReport r = p.trainStep(train, opt, step, rate, clip, 1);
                tokensSeen += r.tokens();
                if (!r.skipped()) trainEma = Double.isNaN(trainEma) ? r.exitLosses()[0] : 0.9 * trainEma + 0.1 * r.exitLosses()[0];
            }
            HfCheckpointWriter.write(p.model(), out, DType.F32);
            if (byteLevel) Files.writeString(out.resolve(ByteTokenizer.MARKER_FILE), "byte-level tokenizer: ids 0..255 are bytes, 256 = BOS, 257 = EOS\n");
            else if (!Files.isDirectory(tokenizer)) Files.copy(tokenizer, out.resolve(tokenizer.getFileName().toString().endsWith(".json") ? "tokenizer.json" : "tokenizer.bin"),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            Files.writeString(out.resolve("loss_curve.csv"), curve);
            System.out.printf(Locale.ROOT, "final validation loss %.4f nats/token (unigram baseline %.4f); %.0f tokens/s; checkpoint in %s%n", valLoss, unigram,
                tokensSeen / ((System.nanoTime() - start) / 1e9), out);
        }
        return 0;
    }

    /** Mean CE of the final layer over up to {@code batches} validation batches. */
    private static double validate(Pretrainer p, BatchLoader val, int batches) {
        try (EarlyExitModel noExits = EarlyExitModel.attach(p.model(), List.of(), 0)) {
            return ExitEvaluator.evaluate(noExits, val.evaluationBatches(batches)).finalLayer().loss();
        }
    }

    /** Entropy (nats) of the training tokens' unigram distribution: the loss of a model that ignores context. */
    static double unigramEntropy(TokenFile tokens, int vocab) {
        long[] counts = new long[vocab];
        int[] buf = new int[1 << 16];
        for (long i = 0; i < tokens.size(); i += buf.length) {
            int n = (int) Math.min(buf.length, tokens.size() - i);
            tokens.read(i, buf, 0, n);
            for (int k = 0; k < n; k++) counts[buf[k]]++;
        }
        double h = 0, total = tokens.size();
        for (long c : counts) if (c > 0) h -= c / total * Math.log(c / total);
        return h;
    }
}
