package dev.eetune.tokenizer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Text to token ids and back. Implementations are immutable and thread-safe unless they say otherwise. */
public interface Tokenizer {

    /** The ids of {@code text}, starting with {@link #bos()} when the tokenizer uses one. */
    int[] encode(String text);

    /** The text of {@code ids}; BOS and EOS are skipped. Bytes split over several tokens are joined before decoding. */
    String decode(int[] ids);

    /**
     * The text of one token for streaming output, given the token before it ({@code -1} at the start): after BOS
     * the leading space of a SentencePiece piece is dropped (llama2.c's rule), and BOS/EOS give "". A token that
     * is only part of a multi-byte character cannot be shown alone and gives U+FFFD; decode whole arrays with
     * {@link #decode} when the exact text matters.
     */
    String decodeToken(int previous, int token);

    /** The beginning-of-sequence id, or -1 when there is none. */
    int bos();

    /** The end-of-sequence id, or -1 when there is none. */
    int eos();

    /** One more than the largest id this tokenizer can produce. */
    int vocabSize();

    /**
     * The ids that end a generated text: {@link #eos()}, and whatever else the tokenizer's models use to end a
     * document. Generation stops at them by default ({@code ee generate}, {@code GenerationConfig.greedy(n, tok.stopTokens())}).
     */
    default java.util.Set<Integer> stopTokens() { return eos() >= 0 ? java.util.Set.of(eos()) : java.util.Set.of(); }

    /**
     * Loads the tokenizer at {@code path}: a Hugging Face {@code tokenizer.json}, a llama2.c {@code tokenizer.bin},
     * or a directory holding one of them (tokenizer.json is preferred); a file named {@value ByteTokenizer#MARKER_FILE}
     * (written beside byte-level models) means {@link ByteTokenizer}.
     */
    static Tokenizer load(Path path) {
        if (Files.isDirectory(path)) {
            Path json = path.resolve("tokenizer.json"), bin = path.resolve("tokenizer.bin");
            if (Files.isRegularFile(json)) return HfTokenizer.load(json);
            if (Files.isRegularFile(bin)) return Llama2cTokenizer.load(bin);
            if (Files.isRegularFile(path.resolve(ByteTokenizer.MARKER_FILE))) return new ByteTokenizer();
            throw new IllegalArgumentException("no tokenizer in directory " + path + ": expected tokenizer.json (Hugging Face) or tokenizer.bin (llama2.c)"
                + (Files.isRegularFile(path.resolve("tokenizer.model")) ? "; tokenizer.model (SentencePiece protobuf) is not supported, use the model's tokenizer.json" : ""));
        }
        if (!Files.isRegularFile(path)) throw new IllegalArgumentException("no tokenizer at " + path + ": not a file or directory");
        if (path.getFileName().toString().equals(ByteTokenizer.MARKER_FILE)) return new ByteTokenizer();
        if (path.getFileName().toString().endsWith(".json")) return HfTokenizer.load(path);
        if (path.getFileName().toString().endsWith(".model")) {
            throw new IllegalArgumentException(path + ": SentencePiece .model files are not supported; use the model's tokenizer.json or a llama2.c tokenizer.bin");
        }
        if (startsWithJsonObject(path)) return HfTokenizer.load(path);
        return Llama2cTokenizer.load(path);
    }

    private static boolean startsWithJsonObject(Path file) {
        try (var in = Files.newInputStream(file)) {
            int b;
            do b = in.read(); while (b == ' ' || b == '\t' || b == '\n' || b == '\r');
            return b == '{';
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read tokenizer " + file, e);
        }
    }
}
