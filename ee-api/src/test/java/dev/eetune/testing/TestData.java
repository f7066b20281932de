package dev.eetune.testing;

import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The one way tests reach the shared real data (../shared/data next to the checkout, or -Deetune.data): never
 * copied into the repository. A missing file skips the test with the reason (optional data).
 */
public final class TestData {
    private TestData() {}

    public static Path root() {
        String p = System.getProperty("eetune.data");
        if (p == null || p.isBlank()) p = System.getenv().getOrDefault("EETUNE_DATA", "../shared/data");
        return Path.of(p).toAbsolutePath().normalize();
    }

    /** The file under the data root; skips the calling test (with the path in the reason) when it is missing. */
    public static Path require(String relative) {
        Path f = root().resolve(relative);
        Assumptions.assumeTrue(Files.exists(f), "optional test data missing: " + f + " (set -Deetune.data to the shared data folder)");
        return f;
    }

    public static Path stories260K() { return require("stories260K/stories260K.bin"); }

    public static Path stories260KTokenizer() { return require("stories260K/tok512.bin"); }

    public static Path tinyStoriesTrain() { return require("tinystories/tinystories_train_first2MiB.txt"); }

    public static Path tinyStoriesValid() { return require("tinystories/tinystories_valid_head.txt"); }

    /** The running JDK's sources (lib/src.zip; some JDK packages leave it out); skips the calling test when missing. */
    public static Path jdkSourcesZip() {
        Path f = Path.of(System.getProperty("java.home"), "lib", "src.zip");
        Assumptions.assumeTrue(Files.isRegularFile(f), "the JDK at " + System.getProperty("java.home") + " has no lib/src.zip");
        return f;
    }
}
