package dev.eetune.cli;

import dev.eetune.exit.EarlyExitModel;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.DType;
import dev.eetune.tokenizer.Tokenizer;
import dev.eetune.train.GateTrainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code ee gates}: trains the exits' confidence gates on held-out text and saves them with the heads. */
@Command(name = "gates", mixinStandardHelpOptions = true, description = "Train learned confidence gates for tuned exit heads (saved into the heads file).")
final class GatesCommand implements Callable<Integer> {
    @Mixin ModelOptions model;
    @Mixin HeldOutText text;

    @Option(names = "--heads", required = true, description = "heads.safetensors, or the folder `ee tune --out` wrote (the gates are written into it).") Path heads;
    @Option(names = "--windows", defaultValue = "64", description = "Windows of --data to train on, from its start.") int windows;
    @Option(names = "--gate-hidden", defaultValue = "" + GateTrainer.Settings.DEFAULT_HIDDEN,
        description = "Hidden units of each gate's one hidden layer (0: a linear gate); docs/exit-gates.md compares them.") int hidden;
    @Option(names = "--epochs", defaultValue = "30", description = "Passes over the recorded hidden states.") int epochs;
    @Option(names = "--lr", defaultValue = "1e-2", description = "AdamW learning rate of the gates.") float lr;
    @Option(names = "--weight-decay", defaultValue = "0", description = "AdamW weight decay of the gates.") float weightDecay;
    @Option(names = "--seed", defaultValue = "1234", description = "Seed of the gates' initial weights and sample order.") long seed;

    @Override
    public Integer call() {
        OptionChecks.atLeast("--windows", windows, 1);
        GateTrainer.Settings settings = new GateTrainer.Settings(hidden, epochs, 256, lr, weightDecay, seed); // checked before any work
        Path file = EvalCommand.headsFile(heads);
        try (LlamaModel backbone = model.loadModel(text.quiet); EarlyExitModel ee = EarlyExitModel.load(backbone, file)) {
            Tokenizer tok = model.loadTokenizer(backbone.config().vocabSize());
            List<int[]> seqs = text.windows(tok, backbone.config().maxSeqLen(), 0, windows);
            GateTrainer.Report r = GateTrainer.train(ee, seqs, settings);
            ee.save(file, DType.F32);
            System.out.println(r.toTable());
            System.out.println("gates written into " + file);
            CalibrateCommand.noteOutdatedThresholds(file);
        }
        return 0;
    }
}
