package dev.eetune.cli;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;

/** Options shared by commands that load a model. */
final class ModelOptions {
    @Option(names = "--model", required = true, description = "A Hugging Face directory (config.json + safetensors) or a llama2.c .bin file.")
    Path model;

    @Option(names = "--tokenizer", description = "tokenizer.json, llama2.c tokenizer.bin, or 'byte' (default: found beside the model).")
    Path tokenizer;

    @Option(names = "--backend", defaultValue = "cpu", description = "Backend: cpu or cuda.")
    String backend;

    @Option(names = "--threads", defaultValue = "0", converter = ThreadCount.class, description = "Worker threads (0 = all cores).")
    int threads;

    Backend backend() {
        Backend b = Backends.get(backend);
        if (threads > 0) b.setThreads(threads);
        return b;
    }

    /** The model, with a progress display while its files are mapped or copied to the device. */
    LlamaModel loadModel(boolean quiet) {
        if (!Files.exists(model)) throw new IllegalArgumentException("--model " + model + ": no such file or directory");
        try (Progress progress = Progress.transientStep("loading " + model.getFileName(), "bytes", quiet)) {
            return LlamaModel.load(model, backend(), progress);
        }
    }

    /** The tokenizer given, or the one beside the model: tokenizer.json, tokenizer.bin, or llama2.c's tok{vocab}.bin. */
    Tokenizer loadTokenizer(int vocabSize) { return tokenizer(model, tokenizer, vocabSize); }

    /** {@code tokenizer} if given ('byte': bytes as tokens), else the one beside {@code model}. */
    static Tokenizer tokenizer(Path model, Path tokenizer, int vocabSize) {
        if (tokenizer != null) return tokenizer.toString().equals("byte") ? new ByteTokenizer() : Tokenizer.load(tokenizer);
        Path dir = Files.isDirectory(model) ? model : model.toAbsolutePath().getParent();
        for (String name : new String[] {"tokenizer.json", "tokenizer.bin", "tok" + vocabSize + ".bin", ByteTokenizer.MARKER_FILE}) {
            Path p = dir.resolve(name);
            if (Files.isRegularFile(p)) return Tokenizer.load(p);
        }
        throw new IllegalArgumentException("no tokenizer found beside " + model + " (looked for tokenizer.json, tokenizer.bin, tok" + vocabSize + ".bin in " + dir + "); pass --tokenizer");
    }
}
