package dev.eetune.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Tiny tokenizer.json files built here (no downloads), run through DJL's native tokenizers library. */
class HfTokenizerTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    @Test
    void llamaStyleSentencePieceBpeAddsBosAndDecodesLikeLlama2c() throws IOException {
        Path file = write(dir.resolve("tokenizer.json"), llamaStyle());
        try (HfTokenizer tok = HfTokenizer.load(file)) {
            assertThat(tok.bos()).isEqualTo(1);
            assertThat(tok.eos()).isEqualTo(2);
            assertThat(tok.vocabSize()).isEqualTo(LLAMA_VOCAB.size());
            int[] ids = tok.encode("the cat sat");
            assertThat(ids).containsExactly(1, id("▁the"), id("▁cat"), id("▁s"), id("at"));
            assertThat(tok.decode(ids)).isEqualTo("the cat sat");
            StringBuilder streamed = new StringBuilder();
            for (int i = 1; i < ids.length; i++) streamed.append(tok.decodeToken(ids[i - 1], ids[i]));
            assertThat(streamed).hasToString("the cat sat");
            assertThat(tok.decodeToken(1, id("▁cat"))).isEqualTo("cat");
            assertThat(tok.decodeToken(id("▁the"), id("▁cat"))).isEqualTo(" cat");
            assertThat(tok.decodeToken(id("▁cat"), 2)).isEmpty();

            String emoji = "the 😀 cat";
            assertThat(tok.decode(tok.encode(emoji))).isEqualTo(emoji); // byte fallback both ways
            assertThatThrownBy(() -> tok.decode(new int[] {LLAMA_VOCAB.size()})).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(String.valueOf(LLAMA_VOCAB.size()));
        }
    }

    @Test
    void longTextsAreNotTruncated() throws IOException {
        try (HfTokenizer tok = HfTokenizer.load(write(dir.resolve("tokenizer.json"), llamaStyle()))) {
            String text = "the cat sat ".repeat(400).strip();
            int[] ids = tok.encode(text);
            assertThat(ids.length).isGreaterThan(1500); // DJL would cut at 512 by default
            assertThat(tok.decode(ids)).isEqualTo(text);
        }
    }

    @Test
    void byteLevelBpeWithoutBosTakesEosFromTokenizerConfig() throws IOException {
        Path file = write(dir.resolve("tokenizer.json"), byteLevel());
        write(dir.resolve("tokenizer_config.json"), JSON.createObjectNode().putNull("bos_token").put("eos_token", "<|endoftext|>"));
        try (HfTokenizer tok = (HfTokenizer) Tokenizer.load(dir)) {
            assertThat(tok.bos()).isEqualTo(-1);
            assertThat(tok.eos()).isEqualTo(258);
            String text = "hello world, naïve café 😀 你好";
            int[] ids = tok.encode(text);
            assertThat(ids[0]).isNotEqualTo(258);
            assertThat(ids).contains(256, 257); // the merges "he" and "Ġw"
            assertThat(tok.decode(ids)).isEqualTo(text);
            int[] withEos = java.util.Arrays.copyOf(ids, ids.length + 1);
            withEos[ids.length] = 258;
            assertThat(tok.decode(withEos)).isEqualTo(text);
            StringBuilder streamed = new StringBuilder();
            int[] ascii = tok.encode("hello world");
            for (int i = 0; i < ascii.length; i++) streamed.append(tok.decodeToken(i == 0 ? -1 : ascii[i - 1], ascii[i]));
            assertThat(streamed).hasToString("hello world");
        }
    }

    @Test
    void addBosTokenFlagInTokenizerConfigWinsOverTheTemplate() throws IOException {
        Path file = write(dir.resolve("tokenizer.json"), llamaStyle());
        write(dir.resolve("tokenizer_config.json"), JSON.createObjectNode().put("add_bos_token", false).put("add_eos_token", true)
            .set("bos_token", JSON.createObjectNode().put("content", "<s>")));
        try (HfTokenizer tok = HfTokenizer.load(file)) {
            assertThat(tok.bos()).isEqualTo(1);
            assertThat(tok.encode("the cat")).containsExactly(id("▁the"), id("▁cat"), 2);
        }
    }

    @Test
    void unknownSpecialTokenInConfigAndBrokenFilesAreClearErrors() throws IOException {
        Path file = write(dir.resolve("tokenizer.json"), llamaStyle());
        Path config = write(dir.resolve("tokenizer_config.json"), JSON.createObjectNode().put("eos_token", "<|nope|>"));
        assertThatThrownBy(() -> HfTokenizer.load(file)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(config.toString()).hasMessageContaining("eos_token").hasMessageContaining("<|nope|>");

        Path notJson = Files.writeString(dir.resolve("broken.json"), "{\"model\": ");
        assertThatThrownBy(() -> Tokenizer.load(notJson)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(notJson.toString());

        ObjectNode badModel = llamaStyle();
        ((ObjectNode) badModel.get("model")).put("type", "NoSuchModel");
        Path rejected = write(dir.resolve("other").resolve("tokenizer.json"), badModel);
        assertThatThrownBy(() -> HfTokenizer.load(rejected)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(rejected.toString());
    }

    // ---- tokenizer.json builders ----

    private static final Map<String, Integer> LLAMA_VOCAB = new LinkedHashMap<>();
    private static final List<String> LLAMA_MERGES = new ArrayList<>();

    static {
        LLAMA_VOCAB.put("<unk>", 0);
        LLAMA_VOCAB.put("<s>", 1);
        LLAMA_VOCAB.put("</s>", 2);
        for (int b = 0; b < 256; b++) LLAMA_VOCAB.put(String.format(Locale.ROOT, "<0x%02X>", b), 3 + b);
        for (char c : "▁abcdefghijklmnopqrstuvwxyz".toCharArray()) LLAMA_VOCAB.put(String.valueOf(c), LLAMA_VOCAB.size());
        for (String m : List.of("▁ t", "h e", "▁t he", "▁ c", "a t", "▁c at", "▁ s")) {
            LLAMA_MERGES.add(m);
            LLAMA_VOCAB.put(m.replace(" ", ""), LLAMA_VOCAB.size());
        }
    }

    private static int id(String piece) { return LLAMA_VOCAB.get(piece); }

    /** Like Llama 2's tokenizer.json: ▁ for spaces, BPE with byte fallback, "<s> $A" template. */
    static ObjectNode llamaStyle() {
        ObjectNode root = JSON.createObjectNode().put("version", "1.0").putNull("truncation").putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (String s : List.of("<unk>", "<s>", "</s>")) added.add(addedToken(LLAMA_VOCAB.get(s), s));
        ObjectNode normalizer = root.putObject("normalizer").put("type", "Sequence");
        normalizer.putArray("normalizers")
            .add(JSON.createObjectNode().put("type", "Prepend").put("prepend", "▁"))
            .add(JSON.createObjectNode().put("type", "Replace").put("content", "▁").set("pattern", JSON.createObjectNode().put("String", " ")));
        root.putNull("pre_tokenizer");
        ObjectNode post = root.putObject("post_processor").put("type", "TemplateProcessing");
        post.putArray("single").add(special("<s>")).add(sequence("A"));
        post.putArray("pair").add(special("<s>")).add(sequence("A")).add(special("<s>")).add(sequence("B"));
        ObjectNode bos = post.putObject("special_tokens").putObject("<s>").put("id", "<s>");
        bos.putArray("ids").add(1);
        bos.putArray("tokens").add("<s>");
        ObjectNode decoder = root.putObject("decoder").put("type", "Sequence");
        decoder.putArray("decoders")
            .add(JSON.createObjectNode().put("type", "Replace").put("content", " ").set("pattern", JSON.createObjectNode().put("String", "▁")))
            .add(JSON.createObjectNode().put("type", "ByteFallback"))
            .add(JSON.createObjectNode().put("type", "Fuse"))
            .add(JSON.createObjectNode().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0));
        ObjectNode model = root.putObject("model").put("type", "BPE").putNull("dropout").put("unk_token", "<unk>")
            .putNull("continuing_subword_prefix").putNull("end_of_word_suffix").put("fuse_unk", true).put("byte_fallback", true);
        ObjectNode vocab = model.putObject("vocab");
        LLAMA_VOCAB.forEach(vocab::put);
        ArrayNode merges = model.putArray("merges");
        LLAMA_MERGES.forEach(merges::add);
        return root;
    }

    /** Like GPT-2 / Qwen2: byte-level BPE over GPT-2's byte-to-unicode alphabet, no BOS, <|endoftext|> added. */
    private static ObjectNode byteLevel() {
        ObjectNode root = JSON.createObjectNode().put("version", "1.0").putNull("truncation").putNull("padding");
        root.putArray("added_tokens").add(addedToken(258, "<|endoftext|>"));
        root.putNull("normalizer");
        root.putObject("pre_tokenizer").put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true).put("use_regex", true);
        root.putObject("post_processor").put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", false).put("use_regex", false);
        root.putObject("decoder").put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true).put("use_regex", true);
        ObjectNode model = root.putObject("model").put("type", "BPE").putNull("dropout").putNull("unk_token")
            .putNull("continuing_subword_prefix").putNull("end_of_word_suffix").put("fuse_unk", false).put("byte_fallback", false);
        ObjectNode vocab = model.putObject("vocab");
        char[] alphabet = gpt2ByteAlphabet();
        for (int b = 0; b < 256; b++) vocab.put(String.valueOf(alphabet[b]), b);
        vocab.put("he", 256);
        vocab.put("\u0120w", 257); // "Ġw": space + w
        model.putArray("merges").add("h e").add("\u0120 w");
        return root;
    }

    /** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to 256 + n. */
    private static char[] gpt2ByteAlphabet() {
        char[] map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char) b : (char) (256 + n++);
        }
        return map;
    }

    private static ObjectNode addedToken(int id, String content) {
        return JSON.createObjectNode().put("id", id).put("content", content).put("single_word", false).put("lstrip", false)
            .put("rstrip", false).put("normalized", false).put("special", true);
    }

    private static ObjectNode special(String id) {
        ObjectNode n = JSON.createObjectNode();
        n.putObject("SpecialToken").put("id", id).put("type_id", 0);
        return n;
    }

    private static ObjectNode sequence(String id) {
        ObjectNode n = JSON.createObjectNode();
        n.putObject("Sequence").put("id", id).put("type_id", 0);
        return n;
    }

    private static Path write(Path file, ObjectNode json) throws IOException {
        Files.createDirectories(file.getParent());
        return Files.writeString(file, JSON.writeValueAsString(json));
    }
}
