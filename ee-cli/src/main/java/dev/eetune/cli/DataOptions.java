package dev.eetune.cli;

import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where training / validation text comes from and how it becomes token windows. */
final class DataOptions {
    @Option(names = "--data", required = true, description = "Training corpus: text file (<|endoftext|> separates documents), .jsonl (\"text\"), directory or .zip.")
    Path data;

    @Option(names = "--glob", description = "Files to read from a directory or zip corpus (e.g. '*.java').")
    String glob;

    @Option(names = "--val-data", description = "Validation corpus (default: the last --val-fraction of --data).")
    Path valData;

    @Option(names = "--val-fraction", defaultValue = "0.05", description = "Held-out share when --val-data is absent.")
    double valFraction;

    @Option(names = "--cache-dir", description = "Where token files are cached (default: OUT/data or ~/.cache/eetune).")
    Path cacheDir;

    /** Training and validation windows of {@code seqLen} tokens. */
    PackedSequences.Split windows(Tokenizer tok, int seqLen, Path defaultCache, boolean quiet) {
        Path cache = cacheDir != null ? cacheDir : defaultCache;
        PackedSequences train = PackedSequences.of(tokens(data, glob, tok, cache, quiet), seqLen, true);
        if (valData == null) return train.split(valFraction);
        return new PackedSequences.Split(train, PackedSequences.of(tokens(valData, null, tok, cache, quiet), seqLen, true));
    }

    /** The tokens of {@code corpus}, from the cache in {@code cacheDir} or tokenized with a progress display. */
    static TokenFile tokens(Path corpus, String glob, Tokenizer tok, Path cacheDir, boolean quiet) {
        if (!Files.exists(corpus)) throw new IllegalArgumentException("no corpus at " + corpus);
        String name = corpus.toAbsolutePath().normalize().toString().replaceAll("[^A-Za-z0-9._-]", "_") + (glob == null ? "" : "_" + glob.replaceAll("[^A-Za-z0-9._-]", "_"));
        if (name.length() > 150) name = name.substring(name.length() - 150);
        try (Progress progress = Progress.transientStep("tokenizing " + corpus.getFileName(), "bytes", quiet)) {
            return TokenFile.openOrBuild(Corpus.open(corpus, glob), tok, cacheDir.resolve(name + ".tokens"), Runtime.getRuntime().availableProcessors(), progress);
        }
    }

    static Path userCache() { return Path.of(System.getProperty("user.home"), ".cache", "eetune"); }
}
