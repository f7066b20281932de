package dev.eetune.cli;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static dev.eetune.cli.CliTest.ee;
import static org.assertj.core.api.Assertions.assertThat;

/** The launcher's AOT-cache training run: every step runs (early exits taken), on nothing but the JDK, and it cleans up. */
class AotTrainingCommandTest {
    @Test
    void trainsGeneratesWithExitsAndLeavesNoFilesBehind() throws IOException {
        long before = trainingFolders();
        String[] r = ee("aot-training", "--threads", "1");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        // the last two generations decide by softmax and by the tuned gates; both must take exits, or the cache would
        // not hold the early-exit path (mean exit layer below the model's 4 layers)
        assertThat(r[2]).containsPattern("softmax confidence.*mean exit layer [0-3]\\.").containsPattern("gate confidence.*mean exit layer [0-3]\\.");
        assertThat(trainingFolders()).as("temporary folders left in java.io.tmpdir").isEqualTo(before);
    }

    private static long trainingFolders() throws IOException {
        try (Stream<Path> s = Files.list(Path.of(System.getProperty("java.io.tmpdir")))) {
            return s.filter(p -> p.getFileName().toString().startsWith("ee-aot-training")).count();
        }
    }
}
