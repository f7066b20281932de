package dev.eetune.cli;

import dev.eetune.backend.Backend;
import dev.eetune.cli.report.LossCurves;
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

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Pretraining a small Llama from scratch, as {@code ee pretrain} and {@code ee demo} run it: a budget of minutes or
 * steps, validation every {@code evalEverySeconds}, progress, the loss curve, and a Hugging Face checkpoint at the end.
 */
final class Pretraining {
    private Pretraining() {}

    /** The architecture and optimisation of a run; {@code minutes} or {@code steps} (exactly one non-null) is the budget. */
    record Settings(int dim, int layers, int attentionHeads, int kvHeads, Integer hidden, int seqLen, int batch, float lr, int warmup, float weightDecay, float clip,
                    int[] exits, double exitWeight, long seed, double valFraction, int evalEverySeconds, Double minutes, Integer steps) {
        /** Checks every setting by its `ee pretrain` option, before the corpus is read */
        Settings {
            OptionChecks.atLeast("--dim", dim, 1);
            OptionChecks.atLeast("--layers", layers, 1);
            OptionChecks.atLeast("--attention-heads", attentionHeads, 1);
            OptionChecks.atLeast("--kv-heads", kvHeads, 1);
            if (hidden != null) OptionChecks.atLeast("--hidden", hidden, 1);
            OptionChecks.atLeast("--seq-len", seqLen, 2);
            OptionChecks.atLeast("--batch", batch, 1);
            OptionChecks.finite("--lr", lr, true);
            OptionChecks.atLeast("--warmup", warmup, 0);
            OptionChecks.finite("--weight-decay", weightDecay, false);
            OptionChecks.finite("--clip", clip, false);
            OptionChecks.finite("--exit-weight", exitWeight, false);
            OptionChecks.atLeast("--eval-every", evalEverySeconds, 1);
            OptionChecks.fraction("--val-fraction", valFraction);
            if (minutes != null) OptionChecks.finite("--minutes", minutes, true);
            if (steps != null) OptionChecks.atLeast("--steps", steps, 1);
            if (dim % attentionHeads != 0) throw new IllegalArgumentException("--dim " + dim + " must be a multiple of --attention-heads " + attentionHeads);
            if (attentionHeads % kvHeads != 0) throw new IllegalArgumentException("--attention-heads " + attentionHeads + " must be a multiple of --kv-heads " + kvHeads);
            OptionChecks.exitLayers(Arrays.stream(exits).boxed().toList(), layers);
        }

        LlamaConfig config(int vocab) {
            LlamaConfig standard = LlamaConfig.llama(dim, layers, attentionHeads, vocab, Math.max(seqLen, 512));
            return LlamaConfig.llama(dim, hidden != null ? hidden : standard.hiddenDim(), layers, attentionHeads, kvHeads, vocab, standard.maxSeqLen());
        }
    }

    /** Training steps before the steady rate is counted: they pay the JIT's compilation (a peer's warm-up steps). */
    static final int WARMUP_STEPS = 3;

    /**
     * What a run ended with: the final validation loss, the unigram baseline, the mean rate over the whole run
     * (validation and warm-up included), the rate of the training steps after the first {@link #WARMUP_STEPS} alone
     * (NaN when there were none: what a benchmark peer that times only warm steps reports), and the loss curves.
     */
    record Outcome(double validationLoss, double unigram, double tokensPerSecond, double stepTokensPerSecond, int steps, LossCurves curves) {
        String summary() {
            String steady = Double.isNaN(stepTokensPerSecond) ? "" : String.format(Locale.ROOT, " (training steps after the first %d: %.0f tokens/s)", WARMUP_STEPS, stepTokensPerSecond);
            return String.format(Locale.ROOT, "final validation loss %.4f nats/token (unigram baseline %.4f: a model that ignores context); %d steps, %.0f tokens/s%s",
                validationLoss, unigram, steps, tokensPerSecond, steady);
        }
    }

    /** Trains on {@code tokens} and writes the checkpoint (config, weights, tokenizer, loss_curve.csv) into {@code out}. */
    static Outcome run(Settings st, Tokenizer tok, Path tokenizerFile, TokenFile tokens, String corpusName, Backend backend, Path out, boolean quiet) throws IOException {
        PackedSequences.Split windows = PackedSequences.of(tokens, st.seqLen(), true).split(st.valFraction());
        LlamaConfig cfg = st.config(tok.vocabSize());
        double unigram = unigramEntropy(tokens, tok.vocabSize());
        LossCurves curves = new LossCurves("Pretraining loss");
        try (Pretrainer p = new Pretrainer(cfg, backend, st.seed(), 0.02f, st.exits(), st.exitWeight());
             AdamW opt = new AdamW(p.parameters(), 0.9f, 0.95f, 1e-8f, st.weightDecay())) {
            System.err.printf(Locale.ROOT, "pretraining %,d parameters (dim %d, %d layers, %d attention heads, hidden %d, vocab %d) on %,d tokens (%s); unigram baseline %.4f nats/token%n",
                p.parameterCount(), st.dim(), st.layers(), st.attentionHeads(), cfg.hiddenDim(), tok.vocabSize(), tokens.size(), corpusName, unigram);
            BatchLoader train = new BatchLoader(windows.train(), st.batch(), st.seed()), val = new BatchLoader(windows.validation(), st.batch(), st.seed());
            LrSchedule schedule = LrSchedule.cosine(st.lr(), st.warmup(), st.steps() != null ? st.steps() : Integer.MAX_VALUE, st.lr() / 10);
            StringBuilder csv = new StringBuilder("step,seconds,tokens,train_loss,val_loss\n");
            long start = System.nanoTime(), tokensSeen = 0, lastEval = 0, steadyNanos = 0, steadyTokens = 0;
            double budgetSeconds = st.minutes() != null ? st.minutes() * 60 : Double.POSITIVE_INFINITY;
            double valLoss = Double.NaN, trainEma = Double.NaN;
            int step = 0;
            try (Progress progress = Progress.start("pretraining", st.steps() != null ? "steps" : "", quiet)) {
                for (; ; step++) {
                    double elapsed = (System.nanoTime() - start) / 1e9;
                    boolean done = st.steps() != null ? step >= st.steps() : elapsed >= budgetSeconds;
                    if (done || step == 0 || elapsed - lastEval >= st.evalEverySeconds()) {
                        valLoss = validate(p, val, 8);
                        lastEval = (long) elapsed;
                        curves.add("validation (final layer)", step, valLoss);
                        csv.append(String.format(Locale.ROOT, "%d,%.1f,%d,%.4f,%.4f%n", step, elapsed, tokensSeen, trainEma, valLoss));
                    }
                    if (st.steps() != null) progress.update(step, st.steps(), status(step, trainEma, valLoss, tokensSeen, elapsed));
                    else progress.update((long) elapsed, (long) budgetSeconds, status(step, trainEma, valLoss, tokensSeen, elapsed));
                    if (done) break;
                    float rate = st.steps() != null ? schedule.at(step) : schedule.at(step, elapsed / budgetSeconds);
                    long stepStart = System.nanoTime();
                    StepReport r = p.trainStep(train, opt, step, rate, st.clip(), 1);
                    if (step >= WARMUP_STEPS) {
                        steadyNanos += System.nanoTime() - stepStart;
                        steadyTokens += r.tokens();
                    }
                    tokensSeen += r.tokens();
                    if (r.skipped()) continue;
                    double[] losses = r.exitLosses();
                    trainEma = Double.isNaN(trainEma) ? losses[0] : 0.9 * trainEma + 0.1 * losses[0];
                    curves.add("train (final layer)", r.step(), losses[0]);
                    for (int i = 1; i < losses.length; i++) curves.add("train (exit " + st.exits()[i - 1] + ")", r.step(), losses[i]);
                }
            }
            HfCheckpointWriter.write(p.model(), out, DType.F32);
            if (tokenizerFile == null) Files.writeString(out.resolve(ByteTokenizer.MARKER_FILE), "byte-level tokenizer: ids 0..255 are bytes, 256 = BOS, 257 = EOS\n");
            else if (!Files.isDirectory(tokenizerFile)) Files.copy(tokenizerFile, out.resolve(tokenizerFile.getFileName().toString().endsWith(".json") ? "tokenizer.json" : "tokenizer.bin"),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            Files.writeString(out.resolve("loss_curve.csv"), csv);
            return new Outcome(valLoss, unigram, tokensSeen / ((System.nanoTime() - start) / 1e9), steadyNanos == 0 ? Double.NaN : steadyTokens / (steadyNanos / 1e9), step, curves);
        }
    }

    private static String status(int step, double train, double val, long tokens, double elapsed) {
        return String.format(Locale.ROOT, "step %d, train %.3f, val %.3f nats/token, %,.0f tok/s", step, train, val, tokens / Math.max(elapsed, 1e-9));
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
