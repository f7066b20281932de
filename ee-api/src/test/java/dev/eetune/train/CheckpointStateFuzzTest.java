package dev.eetune.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * {@link Checkpoint#readState} on hand-made and mutated {@code state.json} files: every input either reads as a state
 * within the documented ranges or fails with an IllegalArgumentException naming the file. Inputs are bytes (each char
 * of a test string is one byte, so invalid UTF-8 is among them). Seeded (so a failure reproduces) and bounded in
 * executions and time.
 */
class CheckpointStateFuzzTest {
    static final long SEED = 0x5EEDL;
    static final int MAX_EXECUTIONS = 20_000;
    static final long MAX_MILLIS = 10_000;

    static final String VALID = """
        {
          "format" : "eetune-tuning-checkpoint",
          "version" : 1,
          "step" : 10,
          "optimizer_steps" : 9,
          "data_position" : { "epoch" : 1, "index" : 7 },
          "data" : { "seed" : 42, "batch_size" : 2, "seq_len" : 32, "windows" : 100, "sha256" : "0123456789abcdef" },
          "exits" : [ "mlp@2(copy) T=1.0", "layer@4(copy) T=1.0" ]
        }
        """;

    /** Values a field might be edited to: wrong types, out of range, huge, empty, nested. */
    static final List<String> NASTY_VALUES = List.of("-1", "0", "1", "2147483648", "-2147483649", "9223372036854775808", "1e400", "1.5", "NaN", "\"10\"",
        "null", "true", "[]", "{}", "[1]", "\"\"", "\"step-0000010\"", "{\"epoch\":-1,\"index\":0}", "{\"epoch\":0,\"index\":100}", "[\"\"]", "[[]]");

    /** Whole files written by hand: not JSON, not an object, deep nesting, a byte-order mark, invalid UTF-8, duplicates, truncation. */
    static final List<String> HAND_MADE = List.of("", " ", "null", "[]", "\"state\"", "{", "}", "{}", "\u00EF\u00BB\u00BF" + VALID, "[".repeat(100_000),
        "{\"a\":".repeat(5_000), VALID.replace("\"step\" : 10", "\"step\" : 10, \"step\" : -5"), VALID.substring(0, VALID.length() / 2),
        VALID.replace("10", "1" + "0".repeat(400)), VALID.replace("\"exits\" : [ \"mlp@2(copy) T=1.0\", \"layer@4(copy) T=1.0\" ]", "\"exits\" : [ ]"),
        VALID.replace("\"index\" : 7", "\"index\" : 100"), VALID.replace("\"optimizer_steps\" : 9", "\"optimizer_steps\" : 11"), "\0\0\0\0", "{\"format\":\"\u00ED\u00A0\u0080\"}", "\u00C3\u0028");

    @TempDir
    Path tmp;

    @Test
    void theValidFileReadsBack() throws IOException {
        Checkpoint.State s = Checkpoint.readState(write(VALID));
        assertThat(s.step()).isEqualTo(10);
        assertThat(s.optimizerSteps()).isEqualTo(9);
        assertThat(s.position().epoch()).isEqualTo(1);
        assertThat(s.position().index()).isEqualTo(7);
        assertThat(s.data()).isEqualTo(new Checkpoint.Data(42, 2, 32, 100, "0123456789abcdef"));
        assertThat(s.exits()).containsExactly("mlp@2(copy) T=1.0", "layer@4(copy) T=1.0");
    }

    @Test
    void aMissingFieldIsNamed() throws IOException {
        Path dir = write(VALID.replace("\"optimizer_steps\" : 9,", ""));
        assertThatThrownBy(() -> Checkpoint.readState(dir)).isInstanceOf(IllegalArgumentException.class)
            .hasMessage(dir.resolve("state.json") + ": field 'optimizer_steps' must be an integer, got nothing (the field is missing)");
    }

    @Test
    void theLatestPointerNamesOnlyACompleteStepFolderOfItsRoot() throws IOException {
        Path dir = write(VALID), pointer = tmp.resolve("latest");
        Files.writeString(pointer, "step-0000010\n");
        assertThat(Checkpoint.latest(tmp)).isEqualTo(dir);
        for (String name : new String[] {"", "../step-0000010", "/etc", "step-0000010/..", "step-0000010/../../x", "step-10", "step-0000011"}) {
            Files.writeString(pointer, name);
            assertThatThrownBy(() -> Checkpoint.latest(tmp)).as(name).isInstanceOf(IllegalArgumentException.class).hasMessageStartingWith(pointer + " names ");
        }
    }

    @Test
    void everyHandMadeAndMutatedFileReadsWithinRangeOrFailsNamingTheFile() throws IOException {
        Random r = new Random(SEED);
        Map<String, Integer> outcomes = new TreeMap<>();
        for (String text : HAND_MADE) check(text, outcomes);
        long start = System.nanoTime();
        int executions = 0;
        while (executions < MAX_EXECUTIONS && (System.nanoTime() - start) / 1_000_000 < MAX_MILLIS) {
            check(mutate(VALID, r), outcomes);
            executions++;
        }
        System.out.printf("checkpoint state fuzz: seed %d, %d hand-made files, %d mutations; outcomes %s%n", SEED, HAND_MADE.size(), executions, outcomes);
        assertThat(outcomes.keySet()).contains("read", "refused");
    }

    /** Reads {@code text} as a checkpoint's state.json; counts the outcome, failing on anything undocumented. */
    private void check(String text, Map<String, Integer> outcomes) throws IOException {
        Path dir = write(text);
        Path file = dir.resolve("state.json");
        Checkpoint.State s;
        try {
            s = Checkpoint.readState(dir);
        } catch (IllegalArgumentException e) {
            assertThat(e.getMessage()).as("input: %s", text).contains(file.toString());
            outcomes.merge("refused", 1, Integer::sum);
            return;
        }
        assertThat(s.step()).as("input: %s", text).isEqualTo(10); // the folder's name
        assertThat(s.optimizerSteps()).as("input: %s", text).isBetween(0, s.step());
        assertThat(s.position().index()).as("input: %s", text).isBetween(0L, s.data().windows() - 1);
        assertThat(s.data().batchSize()).as("input: %s", text).isPositive();
        assertThat(s.data().seqLen()).as("input: %s", text).isPositive();
        assertThat(s.exits()).as("input: %s", text).isNotEmpty();
        outcomes.merge("read", 1, Integer::sum);
    }

    private Path write(String text) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("step-0000010"));
        Files.writeString(dir.resolve("state.json"), text, StandardCharsets.ISO_8859_1); // chars are bytes: invalid UTF-8 gets through
        return dir;
    }

    /** One to three edits: a field's value replaced by a nasty one, a field removed, bytes flipped, inserted, or cut. */
    static String mutate(String text, Random r) {
        int edits = 1 + r.nextInt(3);
        for (int e = 0; e < edits; e++) {
            switch (r.nextInt(5)) {
                case 0, 1 -> { // replace a value: from after a ':' up to the next ',' or line end
                    int colon = nth(text, ':', r);
                    if (colon < 0) break;
                    int end = colon + 1;
                    while (end < text.length() && text.charAt(end) != ',' && text.charAt(end) != '\n') end++;
                    text = text.substring(0, colon + 1) + " " + NASTY_VALUES.get(r.nextInt(NASTY_VALUES.size())) + text.substring(end);
                }
                case 2 -> { // remove a line (a field)
                    String[] lines = text.split("\n", -1);
                    int drop = r.nextInt(lines.length);
                    StringBuilder sb = new StringBuilder();
                    for (int i = 0; i < lines.length; i++) if (i != drop) sb.append(lines[i]).append('\n');
                    text = sb.toString();
                }
                case 3 -> { // replace a byte by any byte
                    if (text.isEmpty()) break;
                    char[] c = text.toCharArray();
                    c[r.nextInt(c.length)] = (char) r.nextInt(256);
                    text = new String(c);
                }
                default -> { // cut or duplicate a range
                    if (text.isEmpty()) break;
                    int a = r.nextInt(text.length()), b = a + r.nextInt(Math.min(40, text.length() - a) + 1);
                    text = r.nextBoolean() ? text.substring(0, a) + text.substring(b) : text.substring(0, b) + text.substring(a);
                }
            }
        }
        return text;
    }

    /** The index of a random occurrence of {@code c}, or -1. */
    private static int nth(String text, char c, Random r) {
        int count = (int) text.chars().filter(x -> x == c).count();
        if (count == 0) return -1;
        int k = r.nextInt(count), i = -1;
        for (int j = 0; j <= k; j++) i = text.indexOf(c, i + 1);
        return i;
    }
}
