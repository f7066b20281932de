package dev.eetune;

import dev.eetune.testing.Fuzzer;
import org.junit.jupiter.params.provider.Arguments;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The table of a nasty-file corpus's README.md ({@code | `file` | parser | what it forges | `expected message` |}),
 * as test arguments (file, parser, forges, expected, path). Every file of the folder must have its line (else it would
 * silently not run), except those under {@code outside/}, which cases try to reach.
 */
public final class NastyCases {
    private NastyCases() {}

    /** The cases of the corpus in the test resource folder {@code folder} of {@code test}'s module. */
    public static List<Arguments> read(Class<?> test, String folder, Set<String> parsers) throws IOException, URISyntaxException {
        Path dir = Path.of(test.getResource("/" + folder + "/README.md").toURI()).getParent();
        List<Arguments> out = new ArrayList<>();
        List<String> listed = new ArrayList<>();
        for (String line : Files.readAllLines(dir.resolve("README.md"))) {
            if (!line.startsWith("| `")) continue;
            String[] cells = line.split("\\|");
            String file = strip(cells[1]), parser = cells[2].strip(), forges = cells[3].strip(), expected = strip(cells[4]);
            if (!parsers.contains(parser)) throw new IllegalStateException("README.md: unknown parser '" + parser + "' for " + file);
            Path path = dir.resolve(file);
            if (!Files.isRegularFile(path)) throw new IllegalStateException("README.md lists " + file + ", which is not in " + dir);
            listed.add(file);
            out.add(Arguments.of(file, parser, forges, expected, path));
        }
        try (var files = Files.walk(dir)) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                String rel = dir.relativize(f).toString();
                if (!rel.equals("README.md") && !listed.contains(rel) && !rel.startsWith("outside/")) throw new IllegalStateException(folder + "/" + rel + " has no line in " + folder + "/README.md");
            }
        }
        return out;
    }

    /** {@code parser} refuses {@code path} (which forges {@code forges}) with a message naming it and containing {@code expected}. */
    public static void assertRefused(Fuzzer.Target parser, Path path, String forges, String expected) {
        assertThatThrownBy(() -> parser.parse(path)).as(forges).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining(path.toString()).hasMessageContaining(expected);
    }

    private static String strip(String cell) { return cell.strip().replaceAll("^`|`$", ""); }
}
