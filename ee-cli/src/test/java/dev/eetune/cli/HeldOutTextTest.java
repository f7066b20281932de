package dev.eetune.cli;

import dev.eetune.tokenizer.ByteTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The held-out windows `ee calibrate` splits: spread over the whole text after the skipped ones, dealt in turn. */
class HeldOutTextTest {
    @Test
    void splitsAreSpreadOverTheTextAndDealtInTurn(@TempDir Path tmp) throws Exception {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 400; i++) text.append((char) ('a' + i % 26)).append((char) ('A' + i / 26 % 26)).append(' ');
        HeldOutText t = new HeldOutText();
        t.data = Files.writeString(tmp.resolve("held-out.txt"), text);
        t.cacheDir = tmp.resolve("cache");
        t.seqLen = 16;
        t.quiet = true;
        ByteTokenizer tok = new ByteTokenizer();
        int all = 0;
        while (true) { // the windows the text holds
            try {
                t.windows(tok, 512, all, 1);
                all++;
            } catch (IllegalArgumentException e) {
                break;
            }
        }
        assertThat(all).isGreaterThan(40);
        List<List<int[]>> splits = t.spread(tok, 512, 4, 5, 2);
        assertThat(splits).hasSize(2).allSatisfy(s -> assertThat(s).hasSize(5));
        long left = all - 4;
        for (int k = 0; k < 10; k++) { // the k-th chosen window: 4 + k x left / 10, to split k mod 2
            int[] want = t.windows(tok, 512, 4 + k * left / 10, 1).get(0);
            assertThat(splits.get(k % 2).get(k / 2)).as("chosen window %d", k).containsExactly(want);
        }
        int from = all - 5; // 5 windows left, 6 asked for
        assertThatThrownBy(() -> t.spread(tok, 512, from, 3, 2)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("--data " + t.data).hasMessageContaining("2 x 3 windows after the first " + from).hasMessageContaining("fewer --windows");
        assertThatThrownBy(() -> t.windows(tok, 15, 0, 1)).as("windows longer than the model's context")
            .hasMessageContaining("--seq-len 16 exceeds the model's context of 15");
    }
}
