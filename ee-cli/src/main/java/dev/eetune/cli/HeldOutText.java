package dev.eetune.cli;

import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Held-out text for the passes after tuning ({@code ee gates}, {@code ee calibrate}): consecutive windows of
 * --seq-len + 1 tokens of --data. {@code ee gates} reads windows 0 .. --windows - 1 and {@code ee calibrate} by default
 * windows spread over the ones after those, so gates are never calibrated on the text they were trained on.
 */
final class HeldOutText {
    @Option(names = "--data", required = true, description = "Held-out text (not the tuning data): text file, .jsonl, directory or .zip.") Path data;
    @Option(names = "--glob", description = "Files to read from a directory or zip corpus.") String glob;
    @Option(names = "--cache-dir", description = "Token file cache (default: ~/.cache/eetune).") Path cacheDir;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens of context per window.") int seqLen;
    @Option(names = "--quiet", description = "No progress display.") boolean quiet;

    /**
     * Windows {@code from} .. from + count - 1, each seqLen + 1 tokens; fails naming --data when there are fewer, and
     * --seq-len where it exceeds the model's {@code context}.
     */
    List<int[]> windows(Tokenizer tok, int context, long from, int count) {
        PackedSequences w = packed(tok, context);
        needs(w, from + count, "windows " + from + ".." + (from + count - 1));
        return sequences(w, seqLen, from, count);
    }

    /**
     * {@code parts} splits of {@code count} windows each, spread evenly over the windows from {@code from} to the end
     * of --data and dealt in turn (the k-th chosen window goes to split k mod parts): each split samples the whole
     * text, so a split calibrated on and a split checked on come from the same text even where it changes along the
     * file (on TinyStories' validation head, blocks of 128 windows agree 92.0-95.2% under one set of thresholds:
     * docs/exit-gates.md). Fails naming --data when fewer than parts x count windows follow {@code from}, and --seq-len
     * where it exceeds the model's {@code context}.
     */
    List<List<int[]>> spread(Tokenizer tok, int context, long from, int count, int parts) {
        PackedSequences w = packed(tok, context);
        long chosen = (long) count * parts, left = w.size() - from;
        needs(w, from + chosen, parts + " x " + count + " windows after the first " + from + " (fewer --windows, --skip-windows or a shorter --seq-len fit)");
        List<List<int[]>> out = new ArrayList<>();
        for (int i = 0; i < parts; i++) out.add(new ArrayList<>());
        for (long k = 0; k < chosen; k++) out.get((int) (k % parts)).addAll(sequences(w, seqLen, from + k * left / chosen, 1));
        return out;
    }

    private PackedSequences packed(Tokenizer tok, int context) {
        OptionChecks.atLeast("--seq-len", seqLen, 2);
        OptionChecks.withinContext("--seq-len", seqLen, context);
        TokenFile tokens = DataOptions.tokens(data, glob, tok, cacheDir != null ? cacheDir : DataOptions.userCache(), quiet);
        return PackedSequences.of(tokens, seqLen, false);
    }

    private void needs(PackedSequences w, long windows, String what) {
        if (windows > w.size()) throw new IllegalArgumentException("--data " + data + ": " + w.size() + " windows of " + seqLen + " tokens, but " + what + " are needed");
    }

    /** Windows {@code from} .. from + count - 1 of {@code w} as whole sequences of seqLen + 1 tokens (inputs, then the last target). */
    static List<int[]> sequences(PackedSequences w, int seqLen, long from, int count) {
        List<int[]> out = new ArrayList<>();
        int[] in = new int[seqLen], tg = new int[seqLen];
        for (long i = from; i < from + count; i++) {
            w.read(i, in, 0, tg, 0);
            int[] seq = new int[seqLen + 1];
            System.arraycopy(in, 0, seq, 0, seqLen);
            seq[seqLen] = tg[seqLen - 1];
            out.add(seq);
        }
        return out;
    }
}
