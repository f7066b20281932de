package dev.eetune.model.io;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Path;

/** Reading the JSON files users hand us, with errors that name the file. */
public final class JsonFiles {
    /**
     * Real config, index and tokenizer files nest a few levels deep. The Rust tokenizers library panics, aborting the
     * JVM, on a tokenizer.json nested past its recursion limit (128), so deeper files are refused here; so is content
     * after the object, which that library would not read the way we do.
     */
    static final int MAX_DEPTH = 64;
    private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
        .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_DEPTH).build()).build())
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    private JsonFiles() {}

    /** The JSON object in {@code file} ({@code what} names it in errors, e.g. "model config"). */
    public static JsonNode readObject(Path file, String what) {
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot parse " + what + " " + file + ": " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) throw new IllegalArgumentException(what + " " + file + ": not a JSON object");
        return root;
    }
}
