package dev.eetune.cli;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every example under examples/ runs headless, as a user would run it, and prints what its {@code // expect: REGEX}
 * comments promise: the JShell notebooks ({@code *.jsh}, through jshell) and the Java programs ({@code *.java},
 * through the source launcher), with the library on the class path.
 */
class ExamplesTest {
    private static final Pattern EXPECT = Pattern.compile("// expect: (.+)$", Pattern.MULTILINE);
    private static final long TIMEOUT_SECONDS = 600;

    static Path examples() { return Path.of(System.getProperty("user.dir")).toAbsolutePath().getParent().resolve("examples"); }

    @TestFactory
    Stream<DynamicTest> everyExampleRunsAndPrintsWhatItPromises() throws IOException {
        List<Path> files;
        try (Stream<Path> s = Files.list(examples())) {
            files = s.filter(p -> p.toString().endsWith(".jsh") || p.toString().endsWith(".java")).sorted().toList();
        }
        assertThat(files).as("examples in " + examples()).isNotEmpty();
        return files.stream().map(f -> DynamicTest.dynamicTest(f.getFileName().toString(), () -> run(f)));
    }

    /** A README code block marked {@code <!-- from examples/F ... -->}: its lines, in order, among F's (expect comments aside). */
    private static final Pattern README_BLOCK = Pattern.compile("<!-- from (examples/\\S+)[^>]*-->\\s*```java\\n(.*?)```", Pattern.DOTALL);

    @Test
    void theReadmesSnippetsAreTakenFromTheExamplesCiRuns() throws IOException {
        Path root = examples().getParent();
        Matcher m = README_BLOCK.matcher(Files.readString(root.resolve("README.md")));
        int blocks = 0;
        while (m.find()) {
            blocks++;
            List<String> file = Files.readAllLines(root.resolve(m.group(1))).stream().map(l -> l.replaceAll("\\s*// expect: .*$", "").strip()).toList();
            int at = 0;
            for (String line : m.group(2).split("\n")) {
                String want = line.strip();
                if (want.isEmpty()) continue;
                while (at < file.size() && !file.get(at).equals(want)) at++;
                assertThat(at).as("README line \"" + want + "\" is not in " + m.group(1) + " (in this order): update the README from the file").isLessThan(file.size());
                at++;
            }
        }
        assertThat(blocks).as("README blocks marked <!-- from examples/... -->").isGreaterThanOrEqualTo(2);
    }

    private static void run(Path file) throws Exception {
        Path sources = Path.of(System.getProperty("java.home"), "lib", "src.zip");
        assumeTrue(Files.isRegularFile(sources), "this JDK has no " + sources + ", the corpus the examples pretrain on (optional data: some"
            + " distribution packages leave it out; a JDK with it, such as the JDK 25 run of CI, runs them)");
        String source = Files.readString(file);
        List<String> expected = new ArrayList<>();
        Matcher m = EXPECT.matcher(source);
        while (m.find()) expected.add(m.group(1).strip());
        assertThat(expected).as(file + " has no '// expect:' lines, so nothing would be checked").isNotEmpty();

        Path bin = Path.of(System.getProperty("java.home"), "bin");
        boolean nativeAccess = Runtime.version().feature() >= 22;
        String binding = "-Deetune.binding=" + System.getProperty("eetune.binding", "auto");
        List<String> cmd = new ArrayList<>();
        if (file.toString().endsWith(".jsh")) {
            cmd.addAll(List.of(bin.resolve("jshell").toString(), "--feedback", "concise", "--class-path", System.getProperty("java.class.path"), "-R" + binding));
            if (nativeAccess) cmd.add("-R--enable-native-access=ALL-UNNAMED");
        } else {
            cmd.addAll(List.of(bin.resolve("java").toString(), "--class-path", System.getProperty("java.class.path"), binding));
            if (nativeAccess) cmd.add("--enable-native-access=ALL-UNNAMED");
        }
        cmd.add(file.toString());
        Path log = Files.createTempFile("example", ".log");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        boolean finished = p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        if (!finished) p.destroyForcibly().waitFor();
        String out = Files.readString(log, StandardCharsets.UTF_8);
        Files.delete(log);
        assertThat(finished).as(file + " did not finish in " + TIMEOUT_SECONDS + " s:\n" + out).isTrue();
        assertThat(p.exitValue()).as(file + " exit code:\n" + out).isZero();
        assertThat(out).as(file + " output").doesNotContain("|  Error").doesNotContain("Exception");
        for (String regex : expected) assertThat(Pattern.compile(regex, Pattern.MULTILINE).matcher(out).find()).as(file + ": expected /" + regex + "/ in:\n" + out).isTrue();
    }
}
