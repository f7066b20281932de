package dev.eetune.cli;

import dev.eetune.data.FileTrees;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.stream.Stream;

/**
 * The workload the {@code ee} launcher records its JDK 25 AOT cache on (JEP 483/514/515), hidden from the command list:
 * a tiny byte-level model pretrained for a few steps, `mlp` exit heads with gates tuned on it, and generation from it
 * plain, sampled, with early exits (softmax and gate decisions; one sequence and a batch) and self-speculative, all in a
 * temporary folder on text made here, so it needs nothing but the JDK (1.5 s on a 2-core Zen 4). The last two were
 * added on 2026-12-04: cold stories260K `ee generate --speculative --draft-exit 2`, 6 alternations, 4,013 → 4,482
 * tok/s median (per run pair 1.21×, 0.58..1.49), four prompts with heads 14,319 → 15,270 (1.07×, 0.62..1.69): the
 * cache holds their classes and profiles, not compiled code, so their Java still starts interpreted. Recording the user's first command instead made the cache
 * hold whatever that command loaded: after a first `ee inspect`, stories260K `ee generate` (1 thread, 2-core Zen 4, two
 * rounds of 5 runs) reached its first token in 738 ms median (608..851) from that cache and in 587 ms (488..709) from
 * one recorded on this run; with exit heads 811 (692..1001) against 614 (473..847) ms. After a first plain `ee
 * generate` the two caches were alike (decode 11.9k against 11.2k tok/s median with heads, within this machine's noise).
 */
@Command(name = "aot-training", hidden = true, mixinStandardHelpOptions = true, description = "The launcher's AOT-cache training run (internal).")
final class AotTrainingCommand implements Callable<Integer> {
    @Option(names = "--threads", defaultValue = "0", description = "Threads (0: all cores).")
    int threads;

    @Override
    public Integer call() throws IOException {
        Path dir = Files.createTempDirectory("ee-aot-training");
        try {
            Path corpus = dir.resolve("corpus.txt"), model = dir.resolve("model"), heads = dir.resolve("heads");
            Files.writeString(corpus, corpus());
            String t = String.valueOf(threads);
            run("pretrain", "--byte-level", "--corpus", corpus.toString(), "--dim", "64", "--layers", "4", "--attention-heads", "4", "--seq-len", "64",
                "--batch", "4", "--steps", "4", "--threads", t, "--quiet", "--out", model.toString());
            run("tune", "--model", model.toString(), "--data", corpus.toString(), "--exits", "1,2", "--arch", "mlp", "--steps", "4", "--seq-len", "64", "--batch", "4",
                "--gates", "--gate-windows", "8", "--threads", t, "--quiet", "--out", heads.toString());
            List<String> generate = List.of("generate", "--model", model.toString(), "--prompt", "the early exit", "--max-tokens", "96", "--threads", t, "--quiet");
            run(generate);
            run(concat(generate, "--temperature", "0.8"));
            run(concat(generate, "--heads", heads.toString(), "--threshold", "0.005"));
            run(concat(generate, "--heads", heads.toString(), "--confidence", "gate", "--threshold", "0.3"));
            run(concat(generate, "--heads", heads.toString(), "--speculative"));
            run(concat(generate, "--heads", heads.toString(), "--prompt", "a layer", "--prompt", "the gate")); // a batch: its early-exit passes go step by step
            return Main.OK;
        } finally {
            FileTrees.delete(dir);
        }
    }

    private static void run(String... args) { run(List.of(args)); }

    private static void run(List<String> args) {
        int rc = Main.run(args.toArray(String[]::new));
        if (rc != Main.OK) throw new IllegalStateException("ee " + String.join(" ", args) + " exited with " + rc);
    }

    private static List<String> concat(List<String> a, String... more) { return Stream.concat(a.stream(), Stream.of(more)).toList(); }

    /** ~40 KB of varied sentences: enough windows for the splits, the gates' windows and a few steps. */
    private static String corpus() {
        String[] subjects = {"the model", "an exit head", "the gate", "a layer", "the cache", "each token"};
        String[] verbs = {"reads", "skips", "writes", "scores", "keeps", "decodes"};
        String[] objects = {"the hidden state", "its logits", "the next position", "every row", "the threshold", "a softmax"};
        StringBuilder sb = new StringBuilder();
        for (int i = 0; sb.length() < 40_000; i++)
            sb.append(subjects[i % 6]).append(' ').append(verbs[(i / 6) % 6]).append(' ').append(objects[(i / 36 + i) % 6]).append(i % 7 == 6 ? ".\n" : ". ");
        return sb.toString();
    }
}
