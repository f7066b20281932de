package dev.eetune.data.corpus;

import dev.eetune.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

public class CorpusTest {
    @TempDir
    Path dir;

    @Test
    void textFileSplitsOnMarkersTrimsNewlinesAndSkipsEmptyDocuments() throws IOException {
        Path f = write("stories.txt", "\n\nA story.\nLine two.\n<|endoftext|>\nSecond.\r\n<|endoftext|>\n\n<|endoftext|>\nThird inline<|endoftext|>Fourth\n\n");

        assertThat(documents(Corpus.open(f, null))).containsExactly("A story.\nLine two.", "Second.", "Third inline", "Fourth");
    }

    @Test
    void longDocumentsStreamInBoundedSegmentsThatJoinBackToTheDocuments() throws IOException {
        // documents longer than a segment and a file longer than the read buffer, so markers straddle reads
        Random random = new Random(1);
        List<String> docs = new ArrayList<>();
        for (int d = 0; d < 40; d++) docs.add(randomText(random, 200 + random.nextInt(3000)));
        Path f = write("long.txt", String.join("\n<|endoftext|>\n", docs) + "\n<|endoftext|>\n");
        Corpus corpus = Corpus.open(f, null, 100);

        List<Segment> segments = segments(corpus);
        assertThat(segments).allSatisfy(s -> assertThat(s.text()).hasSizeBetween(1, 100));
        assertThat(segments.stream().filter(Segment::documentStart).count()).isEqualTo(docs.size());
        assertThat(documents(corpus)).containsExactlyElementsOf(docs);
    }

    @Test
    void fileWithoutMarkersIsOneDocumentCutBeforeNewlinesElseSpaces() throws IOException {
        String text = "First line of text.\nSecond line, a bit longer than the first.\n\nA paragraph after a blank line.\n"
            + "x".repeat(40) + " " + "y".repeat(50) + "\nend";
        Path f = write("plain.txt", text);

        List<Segment> segments = segments(Corpus.open(f, null, 64));
        assertThat(segments.get(0).documentStart()).isTrue();
        assertThat(segments.subList(1, segments.size())).allSatisfy(s -> {
            assertThat(s.documentStart()).isFalse();
            assertThat(s.text()).matches("(?s)[\n ].*"); // cut before the newlines or the space, never inside a word
        });
        assertThat(segments).allSatisfy(s -> assertThat(s.text().length()).isLessThanOrEqualTo(64));
        assertThat(segments.stream().map(Segment::text).collect(Collectors.joining())).isEqualTo(text);
    }

    @Test
    void lineWithoutBreaksIsCutAtTheLimitButNeverInsideASurrogatePair() throws IOException {
        String text = "\uD83D\uDE42".repeat(40); // 80 chars of emoji, no spaces or newlines
        Path f = write("emoji.txt", text);

        List<Segment> segments = segments(Corpus.open(f, null, 7));
        assertThat(segments).allSatisfy(s -> assertThat(s.text().length()).isEven().isLessThanOrEqualTo(7));
        assertThat(segments.stream().map(Segment::text).collect(Collectors.joining())).isEqualTo(text);
    }

    @Test
    void jsonlReadsTheTextFieldOfEachLine() throws IOException {
        Path f = write("docs.jsonl", "{\"text\": \"first\\nwith a newline\", \"id\": 1}\n\n{\"text\": \"second\"}\r\n{\"text\": \"\"}\n");

        assertThat(documents(Corpus.open(f, null))).containsExactly("first\nwith a newline", "second");
    }

    @Test
    void jsonlErrorsNameTheFileAndLine() throws IOException {
        Path notJson = write("bad.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": oops}\n");
        Path noText = write("notext.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text field\"}\n");
        Path notString = write("number.jsonl", "{\"text\": 42}\n");

        assertThatThrownBy(() -> documents(Corpus.open(notJson, null))).hasMessageContaining(notJson + ":3").hasMessageContaining("not JSON");
        assertThatThrownBy(() -> documents(Corpus.open(noText, null))).hasMessageContaining(noText + ":2").hasMessageContaining("\"text\"");
        assertThatThrownBy(() -> documents(Corpus.open(notString, null))).hasMessageContaining(notString + ":1");
    }

    @Test
    void directoryReadsRegularFilesRecursivelyInPathOrderFilteredByGlob() throws IOException {
        write("src/b/Second.java", "class Second {}");
        write("src/a/First.java", "class First {}");
        write("Top.java", "class Top {}");
        write("src/a/notes.txt", "one<|endoftext|>two");
        write("src/data.jsonl", "{\"text\": \"json doc\"}");

        assertThat(documents(Corpus.open(dir, "*.java"))).containsExactly("class Top {}", "class First {}", "class Second {}");
        assertThat(documents(Corpus.open(dir, "**/*.java"))).containsExactly("class Top {}", "class First {}", "class Second {}");
        assertThat(documents(Corpus.open(dir, "src/a/**"))).containsExactly("class First {}", "one", "two");
        assertThat(documents(Corpus.open(dir, null))).containsExactly("class Top {}", "class First {}", "one", "two", "class Second {}", "json doc");
        assertThat(Corpus.open(dir, "*.java").bytes()).isEqualTo("class Top {}".length() + "class First {}".length() + "class Second {}".length());
        assertThat(Corpus.open(dir.resolve("src/a/notes.txt"), null).bytes()).isEqualTo("one<|endoftext|>two".length());
    }

    @Test
    void zipReadsFileEntriesInNameOrderFilteredByGlob() throws IOException {
        Path zip = dir.resolve("sources.zip");
        try (ZipOutputStream out = new ZipOutputStream(Files.newOutputStream(zip))) {
            putEntry(out, "mod/pkg/util/Zeta.java", "class Zeta {}");
            out.putNextEntry(new ZipEntry("mod/pkg/util/"));
            putEntry(out, "mod/pkg/util/Alpha.java", "class Alpha {}");
            putEntry(out, "mod/pkg/Main.java", "class Main {}");
            putEntry(out, "mod/README", "read me");
        }

        assertThat(documents(Corpus.open(zip, "*.java"))).containsExactly("class Main {}", "class Alpha {}", "class Zeta {}");
        assertThat(documents(Corpus.open(zip, "mod/pkg/util/**"))).containsExactly("class Alpha {}", "class Zeta {}");
        assertThat(documents(Corpus.open(zip, null))).containsExactly("read me", "class Main {}", "class Alpha {}", "class Zeta {}");
        // the matching entries' uncompressed sizes, for progress displays
        assertThat(Corpus.open(zip, "mod/pkg/util/**").bytes()).isEqualTo("class Alpha {}".length() + "class Zeta {}".length());
        assertThat(Corpus.open(zip, null).bytes()).isEqualTo("read me".length() + "class Main {}".length() + "class Alpha {}".length() + "class Zeta {}".length());
    }

    @Test
    void jdkSourcesZipFilteredToOnePackage() {
        Corpus util = Corpus.open(TestData.jdkSourcesZip(), "java.base/java/util/*.java");

        List<String> docs = documents(util);
        assertThat(docs).hasSizeGreaterThan(50);
        assertThat(docs).anySatisfy(d -> assertThat(d).contains("public class ArrayList<E>"));
    }

    @Test
    void invalidUtf8FailsNamingTheFile() throws IOException {
        Path f = dir.resolve("binary.txt");
        Files.write(f, new byte[] {'o', 'k', (byte) 0xC3, (byte) 0x28, 'x'});

        assertThatThrownBy(() -> documents(Corpus.open(f, null))).isInstanceOf(UncheckedIOException.class)
            .hasMessageContaining(f.toString()).hasMessageContaining("UTF-8");
    }

    @Test
    void globOnASingleFileOrAMissingPathIsRejected() throws IOException {
        Path f = write("one.txt", "text");

        assertThatThrownBy(() -> Corpus.open(f, "*.txt")).hasMessageContaining(f.toString()).hasMessageContaining("glob");
        assertThatThrownBy(() -> Corpus.open(dir.resolve("missing"), null)).hasMessageContaining("missing");
        assertThatThrownBy(() -> Corpus.open(dir, "{unclosed")).hasMessageContaining("{unclosed");
    }

    @Test
    void stampChangesWithTheFilesContentAndListing() throws IOException {
        Path f = write("a.txt", "alpha");
        Corpus file = Corpus.open(f, null), directory = Corpus.open(dir, "*.txt");
        String fileStamp = file.stamp(), dirStamp = directory.stamp();

        assertThat(file.stamp()).isEqualTo(fileStamp);
        assertThat(Corpus.open(f, null, 100).stamp()).isNotEqualTo(fileStamp);
        Files.setLastModifiedTime(f, FileTime.fromMillis(Files.getLastModifiedTime(f).toMillis() - 60_000));
        assertThat(file.stamp()).isNotEqualTo(fileStamp);
        assertThat(directory.stamp()).isNotEqualTo(dirStamp);
        String touched = directory.stamp();
        write("b.txt", "beta");
        assertThat(directory.stamp()).isNotEqualTo(touched);
    }

    private Path write(String relative, String text) throws IOException {
        Path f = dir.resolve(relative);
        Files.createDirectories(f.getParent());
        return Files.writeString(f, text);
    }

    private static void putEntry(ZipOutputStream out, String name, String text) throws IOException {
        out.putNextEntry(new ZipEntry(name));
        out.write(text.getBytes(StandardCharsets.UTF_8));
        out.closeEntry();
    }

    static List<String> documents(Corpus corpus) {
        try (Stream<String> docs = corpus.documents()) {
            return docs.collect(Collectors.toList());
        }
    }

    static List<Segment> segments(Corpus corpus) {
        try (Stream<Segment> segments = corpus.segments()) {
            return segments.collect(Collectors.toList());
        }
    }

    /**
     * Words and lines of random letters: text with spaces and newlines where a splitter may cut (public: the
     * token-file and batch tests use it too).
     */
    public static String randomText(Random random, int chars) {
        StringBuilder sb = new StringBuilder(chars);
        sb.append((char) ('A' + random.nextInt(26)));
        while (sb.length() < chars) {
            int r = random.nextInt(12);
            sb.append(r == 0 ? '\n' : r < 3 ? ' ' : (char) ('a' + random.nextInt(26)));
        }
        sb.setCharAt(sb.length() - 1, '.');
        return sb.toString();
    }
}
