package dev.eetune.cli;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.assertj.core.api.Assertions.assertThat;

class ProgressTest {
    private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    private final PrintStream err = new PrintStream(bytes, true, StandardCharsets.UTF_8);

    private String printed() { return bytes.toString(StandardCharsets.UTF_8); }

    @Test
    void aStepEndsWithOneLineGivingItsCountAndTime() {
        try (Progress p = Progress.on(err, "tuning", "steps", false, true)) {
            p.update(3, 10, "loss 2.5");
            p.update(10, 10, "loss 2.0");
        }
        String out = printed();
        assertThat(out.lines()).hasSize(1); // not a TTY: no line before LINE_SECONDS have passed, then the final one
        assertThat(out).startsWith("tuning: 100% 10/10 steps").contains("done in").contains("loss 2.0");
    }

    @Test
    void aTransientStepLeavesNothingBehind() {
        try (Progress p = Progress.on(err, "tokenizing x.txt", "bytes", false, false)) {
            p.update(5_000, 10_000, "1,000 tokens");
        }
        assertThat(printed()).isEmpty();
    }

    @Test
    void onATerminalATransientStepsBarIsErasedWhenItCloses() throws InterruptedException {
        try (Progress p = Progress.on(err, "loading m.bin", "bytes", true, false)) {
            Thread.sleep(250); // past the redraw interval, so the bar is drawn
            p.update(50, 100, "");
            assertThat(printed()).contains("[############............]").contains(" 50% ");
        }
        String out = printed();
        String afterBar = out.substring(out.lastIndexOf('\r', out.length() - 2));
        assertThat(afterBar).matches("\r *\r"); // blanked and the cursor back at the start of the line
        assertThat(out).doesNotContain("\n");
    }
}
