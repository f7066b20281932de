package dev.eetune;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** The hand-made nasty files of src/test/resources/nasty-native, each refused as its README line says. */
class NastyNativeFilesTest {
    static final Backend CPU = Backends.cpu();
    static LlamaModel backbone;
    private static final Map<String, Fuzzer.Target> PARSERS = Map.of(
        "llama2c", f -> LlamaModel.load(f, CPU).close(),
        "heads", f -> EarlyExitModel.load(backbone, f).close());

    @BeforeAll
    static void setUp() { backbone = RandomModels.headBackbone(CPU); }

    @AfterAll
    static void tearDown() { backbone.close(); }

    static List<Arguments> cases() throws IOException, URISyntaxException { return NastyCases.read(NastyNativeFilesTest.class, "nasty-native", PARSERS.keySet()); }

    @ParameterizedTest(name = "{0} ({1}): {2}")
    @MethodSource("cases")
    void isRefusedNamingTheFile(String file, String parser, String forges, String expected, Path path) {
        NastyCases.assertRefused(PARSERS.get(parser), path, forges, expected);
    }
}
