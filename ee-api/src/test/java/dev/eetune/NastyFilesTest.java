package dev.eetune;

import dev.eetune.data.tokens.TokenFile;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.io.SafetensorsHeader;
import dev.eetune.model.io.SafetensorsIndex;
import dev.eetune.testing.Fuzzer;
import dev.eetune.tokenizer.HfTokenizer;
import dev.eetune.tokenizer.Llama2cTokenizer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** The hand-made nasty files of src/test/resources/nasty, each refused as its README line says. */
class NastyFilesTest {
    private static final Map<String, Fuzzer.Target> PARSERS = Map.of(
        "safetensors", SafetensorsHeader::read,
        "index", f -> SafetensorsIndex.open(f.getParent()),
        "config", LlamaConfig::fromHfConfig,
        "tokenizer.bin", Llama2cTokenizer::load,
        "tokenizer.json", f -> {
            try (HfTokenizer tok = HfTokenizer.load(f)) {
                tok.encode("the cat sat");
            }
        },
        "tokens", TokenFile::open);

    static List<Arguments> cases() throws IOException, URISyntaxException { return NastyCases.read(NastyFilesTest.class, "nasty", PARSERS.keySet()); }

    @ParameterizedTest(name = "{0} ({1}): {2}")
    @MethodSource("cases")
    void isRefusedNamingTheFile(String file, String parser, String forges, String expected, Path path) {
        NastyCases.assertRefused(PARSERS.get(parser), path, forges, expected);
    }
}
