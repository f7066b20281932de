package dev.eetune.cli;

import dev.eetune.backend.Backend;
import dev.eetune.cli.report.HtmlReport;
import dev.eetune.cli.report.LossCurves;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.dist.Parallelism;
import dev.eetune.dist.ProcessGroup;
import dev.eetune.dist.ProcessGroups;
import dev.eetune.eval.ExitEvaluator;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.GateTrainer;
import dev.eetune.train.Checkpoint;
import dev.eetune.train.LrSchedule;
import dev.eetune.train.StepReport;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;
import dev.eetune.train.TuningListener;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code ee tune}: EE-Tuning of exit heads on a frozen backbone, with checkpoints, resume and a final evaluation. */
@Command(name = "tune", mixinStandardHelpOptions = true, description = "Tune early-exit heads with the backbone frozen.")
final class TuneCommand implements Callable<Integer> {
    @Mixin ModelOptions model;
    @Mixin DataOptions dataOpts;

    @Option(names = "--exits", required = true, split = ",", paramLabel = "LAYER", description = "Layers that carry exit heads, 1-based (an exit after layer L), e.g. 2,4.")
    List<Integer> exits;

    @Option(names = "--arch", defaultValue = "mlp", description = "Exit head architecture: embedding | norm | mlp | layer.")
    String arch;

    @Option(names = "--init", defaultValue = "copy", description = "Head initialisation: copy (from the backbone's final norm / layer) | random.")
    String init;

    @Option(names = "--steps", defaultValue = "300", description = "Optimizer steps.") int steps;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per training window.") int seqLen;
    @Option(names = "--batch", defaultValue = "4", description = "Windows per micro-batch.") int batch;
    @Option(names = "--micro-batches", description = "Micro-batches per step (gradient accumulation): the global batch is batch x micro-batches, "
        + "shared evenly by the ranks of a distributed run (default: the number of ranks, 1 without a launcher).") Integer microBatches;
    @Option(names = "--pipeline-stages", defaultValue = "1", description = "Distributed runs: pipeline stages (contiguous layer ranges, "
        + "one per rank); the ranks are stages x data-parallel replicas.") int pipelineStages;
    @Option(names = "--dist-timeout", defaultValue = "300", description = "Distributed runs: seconds a rank waits for the others in a collective "
        + "before stopping the run with an error naming the missing ranks.") int distTimeout;
    @Option(names = "--lr", defaultValue = "1e-3", description = "Peak learning rate.") float lr;
    @Option(names = "--min-lr", description = "LR floor (default: lr / 10).") Float minLr;
    @Option(names = "--warmup", description = "LR warm-up steps (default: steps / 20).") Integer warmup;
    @Option(names = "--decay", defaultValue = "cosine", description = "cosine | linear | constant.") String decay;
    @Option(names = "--weight-decay", defaultValue = "0", description = "AdamW weight decay.") float weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "Gradient-norm clipping (0 = none).") float clip;
    @Option(names = "--exit-weights", split = ",", description = "Loss weight per exit (default: all 1).") List<Double> exitWeights;
    @Option(names = "--weight-warmup", defaultValue = "0", description = "Steps over which exit weights ramp up from 0.") int weightWarmup;
    @Option(names = "--confidence-weighting", description = "Weight each token's CE by the exit's detached max probability (EE-LLM).") boolean confidence;
    @Option(names = "--distill", description = "Train each exit on the full model's top token instead of the data's next token "
        + "(self-distillation: exits learn to agree with the final layer, which early exiting at an agreement target needs; one more backbone forward per batch).") boolean distill;
    @Option(names = "--temperature", defaultValue = "1.0", description = "Exit temperature.") float temperature;
    @Option(names = "--seed", defaultValue = "1234", description = "Seed of head initialisation and batch order.") long seed;
    @Option(names = "--out", defaultValue = "ee-heads", description = "Output folder: heads.safetensors, checkpoints/, eval.txt.") Path out;
    @Option(names = "--resume", description = "Checkpoint folder (or a checkpoints root) to continue from.") Path resume;
    @Option(names = "--checkpoint-every", defaultValue = "100", description = "Steps between checkpoints (0 = only at the end).") int checkpointEvery;
    @Option(names = "--keep-last", defaultValue = "" + TunerConfig.DEFAULT_KEEP_LAST,
        description = "Checkpoints to keep, newest first (0 = all); the one resumed from is never deleted.") int keepLast;
    @Option(names = "--max-nonfinite-steps", defaultValue = "" + TunerConfig.DEFAULT_MAX_NON_FINITE_STEPS,
        description = "Stop with an error after this many consecutive steps with a non-finite loss or gradient.") int maxNonFiniteSteps;
    @Option(names = "--eval-batches", defaultValue = "16", description = "Validation batches for the final evaluation.") int evalBatches;
    @Option(names = "--gates", description = "After tuning, also train each exit's confidence gate (as `ee gates` does) on the validation "
        + "windows of --data, which the heads were not tuned on; saved with the heads (docs/exit-gates.md).") boolean gates;
    @Option(names = "--gate-windows", defaultValue = "512", description = "With --gates: validation windows the gates train on (fewer if the split is smaller).") int gateWindows;
    @Option(names = "--gate-hidden", defaultValue = "" + GateTrainer.Settings.DEFAULT_HIDDEN, description = "With --gates: hidden units per gate (0: linear).") int gateHidden;
    @Option(names = "--quiet", description = "No progress display.") boolean quiet;
    @Option(names = "--report", description = "Write an HTML report with charts (loss curves, validation loss per exit) into this folder.") Path report;
    @Option(names = "--loss-csv", description = "Appends every step's number, learning rate, gradient norm and per-exit losses (exact decimal "
        + "values) to this CSV file: the training curve, e.g. to compare runs.") Path lossCsv;
    @Spec CommandSpec spec;

    /**
     * Everything that can be checked without the data (options, --out, the model's context and layers) is checked
     * before tokenizing, and the checkpoint to resume from before evaluating: a bad argument fails in seconds.
     *
     * <p>Under a launcher (mpirun, srun) every rank runs this with the same arguments: data parallel tuning
     * ({@link Parallelism}); rank 0 reports, evaluates and writes. A failure on any rank (a peer that died or hung
     * included) ends the whole run after this rank's error is printed: the others may be waiting for it.
     */
    @Override
    public Integer call() throws IOException {
        if (distTimeout <= 0) throw new IllegalArgumentException("--dist-timeout " + distTimeout + ": must be > 0 seconds");
        ProcessGroup launched = ProcessGroups.join(Duration.ofSeconds(distTimeout));
        Parallelism used;
        try {
            used = tune(new Parallelism(launched, pipelineStages));
        } catch (IOException | RuntimeException e) {
            if (launched.size() > 1) {
                System.err.println("ee tune: " + launched.describe() + ": " + (e.getMessage() == null ? e.toString() : e.getMessage()));
                System.err.flush();
                launched.abort(1);
            }
            throw e;
        }
        ProcessGroup group = used.group();
        if (group.size() > 1 && group.rank() == 0) { // the traffic docs/distributed.md's scaling model starts from
            System.err.printf(Locale.ROOT, "%s sent %,d bytes to the other ranks%n", group.describe(), group.bytesSent());
        }
        group.close();
        return 0;
    }

    /** Tunes; returns the parallelism it used (with the backend's device group, e.g. NCCL on CUDA, once the model is loaded). */
    private Parallelism tune(Parallelism launched) throws IOException {
        Parallelism dp = launched;
        boolean leads = dp.leads();
        if (gates && dp.stages() > 1) throw new IllegalArgumentException("--gates needs every layer on one rank; with --pipeline-stages " + dp.stages() + " train them afterwards with `ee gates`");
        OptionChecks.atLeast("--eval-batches", evalBatches, 1);
        if (exitWeights != null && exitWeights.size() != exits.size()) {
            throw new IllegalArgumentException("--exit-weights: " + exitWeights.size() + " weight(s) for " + exits.size() + " --exits; give one per exit");
        }
        if (dataOpts.valData == null) OptionChecks.fraction("--val-fraction", dataOpts.valFraction);
        if (gates) {
            OptionChecks.atLeast("--gate-windows", gateWindows, 1);
            OptionChecks.atLeast("--gate-hidden", gateHidden, 0); // else refused only when the gates' training starts, after the tuning
        }
        int microBatches = this.microBatches != null ? this.microBatches : dp.replicas();
        ExitArchitecture a = ExitArchitecture.parse(arch);
        ExitInit in = ExitInit.parse(init);
        List<ExitSpec> specs = new ArrayList<>();
        for (int l : exits) specs.add(new ExitSpec(l, a, in));
        LrSchedule schedule = new LrSchedule(lr, warmup != null ? warmup : Math.max(1, steps / 20), steps, LrSchedule.Decay.parse(decay), minLr != null ? minLr : lr / 10);
        TunerConfig cfg = new TunerConfig(steps, batch, seqLen, microBatches, schedule, weightDecay, clip,
            exitWeights == null ? null : exitWeights.stream().mapToDouble(Double::doubleValue).toArray(), weightWarmup, false, confidence, distill,
            checkpointEvery, out.resolve("checkpoints"), 10, maxNonFiniteSteps, keepLast);
        OutputDir.create(out, "--out");
        if (report != null) OutputDir.create(report, "--report");
        OutputDir.checkFile(lossCsv, "--loss-csv"); // after --out: it may go there
        try (LlamaModel backbone = model.loadModel(quiet)) {
            cfg.requireFits(backbone.config());
            dp = launched.forBackend(backbone.backend(), Duration.ofSeconds(distTimeout));
            try (EarlyExitModel ee = EarlyExitModel.attach(backbone, specs, seed, temperature);
                 AdamW opt = AdamW.withDefaults(ee.parameters(), weightDecay)) {
                Tokenizer tok = model.loadTokenizer(backbone.config().vocabSize());
                PackedSequences.Split windows = dataOpts.windows(tok, seqLen, out.resolve("data"), quiet);
                if (leads) System.err.println(ee + (dp.group().size() > 1 ? ", " + dp.replicas() + " data-parallel replica(s) x " + dp.stages() + " pipeline stage(s)" : ""));
                BatchLoader train = new BatchLoader(windows.train(), batch, seed);
                BatchLoader val = new BatchLoader(windows.validation(), batch, seed);
                LossCurves curves = new LossCurves("Tuning loss per exit");
                List<TuningListener> listeners = new ArrayList<>();
                try (Progress progress = Progress.start("tuning", "steps", quiet || !leads)) {
                    listeners.add(progressAndCurves(progress, curves, exits.stream().mapToInt(Integer::intValue).toArray(), steps));
                    if (lossCsv != null && leads) listeners.add(new LossCsv(lossCsv, exits));
                    try (Tuner tuner = new Tuner(ee, cfg, train, opt, listeners)) {
                        tuner.distribute(dp);
                        if (resume != null) {
                            if (!leads) dp.group().barrier(); // rank 0 first: resuming deletes what interrupted writes left
                            tuner.resume(resume);
                            if (leads) dp.group().barrier();
                            if (leads) System.err.println("resumed at step " + tuner.step());
                        }
                        requireSameStart(dp, backbone, ee, train, tuner);
                        if (!leads || dp.stages() > 1) { // rank 0 evaluates and writes; the others only train
                            tuner.run();
                            reportDeviceMemory(dp, backbone.backend());
                            if (leads) { // evaluating would touch every layer: a pipeline stage holds only its own
                                ee.save(out.resolve("heads.safetensors"), DType.F32);
                                System.out.println("heads written to " + out.resolve("heads.safetensors") + " (a pipeline run does not evaluate: use ee eval)");
                                CalibrateCommand.noteOutdatedThresholds(out.resolve("heads.safetensors"));
                            }
                            return dp;
                        }
                        String start = resume == null ? "before tuning (" + init + " init)" : "at step " + tuner.step() + " (resumed)";
                        ExitEvaluator.Report before = EvalCommand.evaluate(ee, val, evalBatches, "evaluating " + start, quiet);
                        tuner.run();
                        reportDeviceMemory(dp, backbone.backend());
                        progress.close();
                        if (gates) {
                            GateTrainer.Report g = GateTrainer.train(ee, validationWindows(windows.validation(), gateWindows),
                                new GateTrainer.Settings(gateHidden, 30, 256, 1e-2f, 0f, seed));
                            System.out.println("gates trained on the validation windows:\n" + g.toTable());
                        }
                        ee.save(out.resolve("heads.safetensors"), DType.F32);
                        ExitEvaluator.Report after = EvalCommand.evaluate(ee, val, evalBatches, "evaluating after tuning", quiet);
                        String table = start + ":\n" + before.toTable() + "\n\nafter " + steps + " steps:\n" + after.toTable() + "\n";
                        Files.writeString(out.resolve("eval.txt"), table);
                        System.out.println(table);
                        System.out.println("heads written to " + out.resolve("heads.safetensors"));
                        CalibrateCommand.noteOutdatedThresholds(out.resolve("heads.safetensors"));
                        if (report != null) {
                            Path html = new HtmlReport("ee tune: " + ee).lossCurves(curves).validationLoss(after).text("Before tuning", table).write(report);
                            System.out.println("report: " + html);
                        }
                        return dp;
                    }
                }
            }
        }
    }

    /**
     * On a device backend, rank 0 prints the backend memory each rank holds after tuning ({@link Backend#liveBytes}):
     * the model tensors copied to the device on first use (a pipeline stage's own layers, and what its heads were
     * initialised from), heads, optimizer moments and scratch. Every rank calls it (a sum over the group).
     */
    private static void reportDeviceMemory(Parallelism dp, Backend backend) {
        if (backend.device().isHost()) return; // the CPU maps the model file: its resident pages are the OS's figure
        ProcessGroup g = dp.group();
        double[] bytes = new double[g.size()];
        bytes[g.rank()] = backend.liveBytes();
        g.allReduceSum(bytes);
        if (!dp.leads()) return;
        StringBuilder line = new StringBuilder(backend.name()).append(" memory allocated after tuning:");
        for (int r = 0; r < bytes.length; r++) {
            line.append(r == 0 ? " " : "; ").append(String.format(Locale.ROOT, "rank %d (stage %d) %,d bytes", r, r % dp.stages(), (long) bytes[r]));
        }
        System.err.println(line);
    }

    /** The first {@code count} windows of the validation split, for the gates' full forward. */
    private List<int[]> validationWindows(PackedSequences validation, int count) {
        if (validation.size() == 0) throw new IllegalArgumentException("--gates: --data " + dataOpts.data + " leaves no validation windows to train the gates on");
        return HeldOutText.sequences(validation, seqLen, 0, (int) Math.min(count, validation.size()));
    }

    /** Ranks started with different arguments, model, data, or (after resume) heads fail here, before any step. */
    private void requireSameStart(Parallelism dp, LlamaModel backbone, EarlyExitModel ee, BatchLoader train, Tuner tuner) {
        if (dp.group().size() == 1) return;
        dp.requireSame("arguments", String.join(" ", spec.commandLine().getParseResult().originalArgs()));
        dp.requireSame("model configuration", backbone.config().toString());
        dp.requireSame("training data", Checkpoint.Data.of(train).toString());
        dp.requireSame("step", Integer.toString(tuner.step()));
        dp.requireSame("heads' weights", ee.parameterSet().parameters().stream().map(p -> p.value()).toList());
    }

    /** Appends one CSV line per step (header when the file is new); each line is flushed, so a killed run keeps its curve. */
    static final class LossCsv implements TuningListener {
        private final Path file;

        LossCsv(Path file, List<Integer> exits) throws IOException {
            this.file = file;
            if (!Files.exists(file)) {
                StringBuilder header = new StringBuilder("step,lr,grad_norm,skipped");
                for (int l : exits) header.append(",loss_exit_").append(l);
                Files.writeString(file, header.append('\n'));
            }
        }

        @Override
        public void onStep(StepReport r) {
            StringBuilder line = new StringBuilder().append(r.step()).append(',').append(r.lr()).append(',').append(r.gradNorm()).append(',').append(r.skipped());
            for (double l : r.exitLosses()) line.append(',').append(l);
            try {
                Files.writeString(file, line.append('\n'), StandardOpenOption.APPEND);
            } catch (IOException e) {
                throw new UncheckedIOException("--loss-csv " + file + ": cannot append: " + e.getMessage(), e);
            }
        }
    }

    /**
     * Shows each step on a {@link Progress} and records every exit's loss for the report's curves; the loss names the
     * exit layers in the order of the model's heads.
     */
    static TuningListener progressAndCurves(Progress progress, LossCurves curves, int[] exitLayers, int totalSteps) {
        return TuningListener.onEachStep(r -> {
            double[] losses = r.exitLosses();
            StringBuilder detail = new StringBuilder(r.skipped() ? "skipped (non-finite loss), " : "").append("loss");
            for (int i = 0; i < losses.length; i++) {
                detail.append(String.format(Locale.ROOT, " @%d %.3f", exitLayers[i], losses[i]));
                if (!r.skipped()) curves.add("exit " + exitLayers[i], r.step(), losses[i]);
            }
            progress.update(r.step(), totalSteps, detail.append(String.format(Locale.ROOT, ", lr %.1e, %,.0f tok/s", r.lr(), r.tokensPerSecond())).toString());
        });
    }
}
