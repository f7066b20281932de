package dev.eetune.tokenizer;

import ai.djl.engine.EngineException;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.MissingNode;
import dev.eetune.model.io.JsonFiles;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A Hugging Face {@code tokenizer.json}, run by the Rust tokenizers library through DJL (its native library ships
 * in the DJL jar for linux/macOS/Windows and is extracted to {@code ~/.djl.ai}; nothing is downloaded).
 *
 * <p>Special tokens: BOS and EOS come from {@code tokenizer_config.json} beside the file when it names them, else
 * from the post-processor template (the special token before / after the text), else from the special added tokens
 * with a well-known name ({@code <s>}, {@code <|begin_of_text|>}, ...). {@link #encode} adds what the template adds,
 * except that {@code add_bos_token} / {@code add_eos_token} in tokenizer_config.json win when present, because
 * transformers' Llama tokenizers rebuild their template from those flags.
 *
 * <p>Holds a native handle: close it when done (an unclosed one is freed when garbage-collected).
 */
public final class HfTokenizer implements Tokenizer, AutoCloseable {
    private static final List<String> BOS_NAMES = List.of("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>");
    private static final List<String> EOS_NAMES = List.of("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>");

    static {
        // DJL picks a CUDA build of the native library when it sees a GPU and then downloads it from publish.djl.ai,
        // which fails (or stalls) offline. Tokenizing runs on the CPU anyway, so use the CPU build from the jar
        // unless the user chose a flavor.
        if (System.getenv("RUST_FLAVOR") == null && System.getProperty("RUST_FLAVOR") == null) System.setProperty("RUST_FLAVOR", "cpu");
    }

    private final Path file;
    private final HuggingFaceTokenizer tokenizer;
    private final int bos, eos, vocabSize;
    /** Whether encode adds BOS / EOS itself (tokenizer_config.json flags) instead of running the template. */
    private final boolean manualSpecials, addBos, addEos;

    private HfTokenizer(Path file, HuggingFaceTokenizer tokenizer, int bos, int eos, int vocabSize, boolean manualSpecials, boolean addBos, boolean addEos) {
        this.file = file;
        this.tokenizer = tokenizer;
        this.bos = bos;
        this.eos = eos;
        this.vocabSize = vocabSize;
        this.manualSpecials = manualSpecials;
        this.addBos = addBos;
        this.addEos = addEos;
    }

    /** Loads {@code tokenizer.json} (and reads {@code tokenizer_config.json} beside it if present). */
    public static HfTokenizer load(Path tokenizerJson) {
        JsonNode root = JsonFiles.readObject(tokenizerJson, "tokenizer");
        if (!root.path("model").isObject()) throw new IllegalArgumentException(tokenizerJson + ": no \"model\" object; not a Hugging Face tokenizer.json");
        Vocabulary vocab = Vocabulary.of(tokenizerJson, root);
        checkTemplates(tokenizerJson, root.path("post_processor"), vocab);
        checkMerges(tokenizerJson, root.path("model"));

        Path configFile = tokenizerJson.resolveSibling("tokenizer_config.json");
        JsonNode config = Files.isRegularFile(configFile) ? JsonFiles.readObject(configFile, "tokenizer config") : MissingNode.getInstance();
        JsonNode template = template(root.path("post_processor"));
        int bos = specialId(vocab, config, configFile, "bos_token", template, true, BOS_NAMES);
        int eos = specialId(vocab, config, configFile, "eos_token", template, false, EOS_NAMES);
        boolean manual = config.has("add_bos_token") || config.has("add_eos_token");
        // transformers' LlamaTokenizerFast defaults: add_bos_token true, add_eos_token false
        boolean addBos = manual && config.path("add_bos_token").asBoolean(true);
        boolean addEos = manual && config.path("add_eos_token").asBoolean(false);
        if (addBos && bos < 0) throw new IllegalArgumentException(configFile + ": add_bos_token is true but no BOS token is known (set bos_token)");
        if (addEos && eos < 0) throw new IllegalArgumentException(configFile + ": add_eos_token is true but no EOS token is known (set eos_token)");

        HuggingFaceTokenizer tokenizer;
        try {
            // DJL truncates to 512 tokens and pads unless told not to
            tokenizer = HuggingFaceTokenizer.newInstance(tokenizerJson, Map.of("addSpecialTokens", "true", "truncation", "false", "padding", "false"));
        } catch (LinkageError | EngineException e) {
            throw new IllegalStateException("cannot load the native Hugging Face tokenizers library (DJL) for " + tokenizerJson + " on "
                + System.getProperty("os.name") + "/" + System.getProperty("os.arch") + ": " + e
                + ". DJL extracts it from the ai.djl.huggingface:tokenizers jar into ~/.djl.ai/tokenizers (override with DJL_CACHE_DIR)", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + tokenizerJson, e);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(tokenizerJson + ": the tokenizers library rejected the file: " + e.getMessage(), e);
        }
        return new HfTokenizer(tokenizerJson, tokenizer, bos, eos, vocab.size(), manual, addBos, addEos);
    }

    @Override
    public int[] encode(String text) {
        long[] ids = tokenizer.encode(text, !manualSpecials, false).getIds();
        int[] out = new int[ids.length + (addBos ? 1 : 0) + (addEos ? 1 : 0)];
        int n = 0;
        if (addBos) out[n++] = bos;
        for (long id : ids) out[n++] = Math.toIntExact(id);
        if (addEos) out[n] = eos;
        return out;
    }

    @Override
    public String decode(int[] ids) {
        return tokenizer.decode(Arrays.stream(ids).filter(id -> checked(id) != bos && id != eos).asLongStream().toArray(), false);
    }

    /**
     * Decoders may strip or merge across tokens (SentencePiece's leading space, byte-level pieces), so a token's text
     * is what it adds to the decoding of the previous token.
     */
    @Override
    public String decodeToken(int previous, int token) {
        if (checked(token) == bos || token == eos) return "";
        String alone = tokenizer.decode(new long[] {token}, false);
        if (previous < 0 || checked(previous) == bos || previous == eos) return alone;
        String before = tokenizer.decode(new long[] {previous}, false);
        String both = tokenizer.decode(new long[] {previous, token}, false);
        return both.startsWith(before) ? both.substring(before.length()) : alone;
    }

    private int checked(int id) {
        if (id < 0 || id >= vocabSize) throw new IllegalArgumentException("token id " + id + " is out of range [0, " + vocabSize + ") for " + file);
        return id;
    }

    @Override
    public int bos() { return bos; }

    @Override
    public int eos() { return eos; }

    @Override
    public int vocabSize() { return vocabSize; }

    @Override
    public void close() { tokenizer.close(); }

    @Override
    public String toString() { return "HfTokenizer[" + file + ", " + vocabSize + " tokens, bos " + bos + ", eos " + eos + "]"; }

    /**
     * Every special token a TemplateProcessing post-processor (possibly inside a Sequence) puts around the text must
     * be defined by it with ids of the vocabulary, one token per id: the tokenizers library panics on an undefined
     * one when encoding, which aborts the JVM.
     */
    private static void checkTemplates(Path file, JsonNode processor, Vocabulary vocab) {
        for (JsonNode p : processor.path("processors")) checkTemplates(file, p, vocab);
        if (!"TemplateProcessing".equals(processor.path("type").asText())) return;
        JsonNode specials = processor.path("special_tokens");
        for (String part : new String[] {"single", "pair"}) {
            JsonNode pieces = processor.path(part);
            if (!pieces.isMissingNode() && !pieces.isArray()) throw new IllegalArgumentException(file + ": post_processor template '" + part + "' must be an array, got " + pieces);
            for (JsonNode piece : pieces) {
                if (!piece.has("SpecialToken")) continue;
                String name = piece.path("SpecialToken").path("id").asText();
                JsonNode special = specials.path(name), ids = special.path("ids");
                boolean ok = ids.isArray() && special.path("tokens").isArray() && special.path("tokens").size() == ids.size();
                for (JsonNode id : ids) ok &= id.canConvertToInt() && id.asInt() >= 0 && id.asInt() < vocab.size();
                if (!ok) throw new IllegalArgumentException(file + ": post_processor template '" + part + "' uses special token '" + name + "', which its special_tokens do not define with ids of the vocabulary: " + special);
            }
        }
    }

    /**
     * With a {@code continuing_subword_prefix}, the second token of every BPE merge must start with it: the tokenizers
     * library cuts the prefix off it unchecked, and panics (aborting the JVM) on a shorter token.
     */
    private static void checkMerges(Path file, JsonNode model) {
        JsonNode prefix = model.path("continuing_subword_prefix");
        if (!"BPE".equals(model.path("type").asText()) || !prefix.isTextual() || prefix.asText().isEmpty()) return;
        for (JsonNode merge : model.path("merges")) {
            String second = merge.isArray() ? merge.path(1).asText() : merge.asText().substring(merge.asText().indexOf(' ') + 1);
            if (!second.startsWith(prefix.asText())) {
                throw new IllegalArgumentException(file + ": BPE merge " + merge + " does not continue with the continuing_subword_prefix '" + prefix.asText() + "'");
            }
        }
    }

    /** The TemplateProcessing post-processor (possibly inside a Sequence), or a missing node. */
    private static JsonNode template(JsonNode processor) {
        if ("TemplateProcessing".equals(processor.path("type").asText())) return processor;
        if ("Sequence".equals(processor.path("type").asText())) {
            for (JsonNode p : processor.path("processors")) {
                JsonNode t = template(p);
                if (!t.isMissingNode()) return t;
            }
        }
        return MissingNode.getInstance();
    }

    private static int specialId(Vocabulary vocab, JsonNode config, Path configFile, String field, JsonNode template, boolean leading, List<String> names) {
        JsonNode named = config.path(field);
        String content = named.isObject() ? named.path("content").asText(null) : named.isTextual() ? named.asText() : null;
        if (content != null) {
            Integer id = vocab.id(content);
            if (id == null) id = addedTokenDecoderId(config, content);
            if (id == null) throw new IllegalArgumentException(configFile + ": " + field + " '" + content + "' is not a token of the tokenizer");
            return id;
        }
        int fromTemplate = templateSpecial(template, leading);
        if (fromTemplate >= 0) return fromTemplate;
        for (String name : names) {
            Integer id = vocab.specialId(name);
            if (id != null) return id;
        }
        return -1;
    }

    /** tokenizer_config.json may list added tokens as {"added_tokens_decoder": {"id": {"content": ...}}}. */
    private static Integer addedTokenDecoderId(JsonNode config, String content) {
        for (Map.Entry<String, JsonNode> e : config.path("added_tokens_decoder").properties()) {
            if (content.equals(e.getValue().path("content").asText())) return Integer.parseInt(e.getKey());
        }
        return null;
    }

    /** The id of the special token the template puts before ({@code leading}) or after the text, else -1. */
    private static int templateSpecial(JsonNode template, boolean leading) {
        JsonNode single = template.path("single");
        int seq = -1;
        for (int i = 0; i < single.size(); i++) if (single.get(i).has("Sequence")) seq = i;
        if (seq < 0) return -1;
        int at = leading ? seq - 1 : seq + 1;
        if (at < 0 || at >= single.size()) return -1;
        String name = single.get(at).path("SpecialToken").path("id").asText(null);
        JsonNode ids = name == null ? null : template.path("special_tokens").path(name).path("ids");
        return ids != null && ids.size() == 1 ? ids.get(0).asInt() : -1;
    }

    /** Token text to id over the model's vocabulary and the added tokens, and the vocabulary size. */
    private static final class Vocabulary {
        private final Map<String, Integer> ids = new HashMap<>();
        private final Map<String, Integer> special = new HashMap<>();
        private int size;

        static Vocabulary of(Path file, JsonNode root) {
            Vocabulary v = new Vocabulary();
            for (JsonNode t : root.path("added_tokens")) { // first: they are authoritative for special tokens
                v.add(file, t.path("content").asText(), t.path("id"));
                if (t.path("special").asBoolean(false)) v.special.put(t.path("content").asText(), t.path("id").asInt());
            }
            JsonNode model = root.path("model"), vocab = model.path("vocab");
            if (vocab.isObject()) { // BPE, WordLevel, WordPiece: {"piece": id}
                for (Map.Entry<String, JsonNode> e : vocab.properties()) {
                    v.add(file, e.getKey(), e.getValue());
                }
            } else if (vocab.isArray()) { // Unigram: [["piece", score], ...]
                for (int i = 0; i < vocab.size(); i++) v.add(file, vocab.get(i).path(0).asText(), new IntNode(i));
            } else {
                throw new IllegalArgumentException(file + ": model.vocab is missing (model type '" + model.path("type").asText() + "')");
            }
            if (v.size == 0) throw new IllegalArgumentException(file + ": the vocabulary is empty");
            return v;
        }

        private void add(Path file, String piece, JsonNode id) {
            if (!id.canConvertToInt() || id.asInt() < 0) throw new IllegalArgumentException(file + ": token '" + piece + "' has invalid id " + id);
            ids.putIfAbsent(piece, id.asInt());
            size = Math.max(size, id.asInt() + 1);
        }

        Integer id(String piece) { return ids.get(piece); }

        Integer specialId(String piece) { return special.get(piece); }

        int size() { return size; }
    }
}
