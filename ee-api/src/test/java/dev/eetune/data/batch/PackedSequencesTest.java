package dev.eetune.data.batch;

import dev.eetune.data.tokens.TestTokenizers;
import dev.eetune.data.tokens.TokenFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;

import static dev.eetune.tokenizer.ByteTokenizer.BOS;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class PackedSequencesTest {
    private static final int X = PackedSequences.IGNORED;

    @TempDir
    Path dir;

    @Test
    void windowsOverlapByOneTokenAndTargetsAreTheNextTokens() throws IOException {
        TokenFile tokens = TestTokenizers.byteTokens(dir, "abcdefghij"); // BOS a..j: 11 tokens
        PackedSequences seq = PackedSequences.of(tokens, 3, false);

        assertThat(seq.size()).isEqualTo(3); // floor((11 - 1) / 3)
        assertWindow(seq, 0, new int[] {BOS, 'a', 'b'}, new int[] {'a', 'b', 'c'});
        assertWindow(seq, 1, new int[] {'c', 'd', 'e'}, new int[] {'d', 'e', 'f'});
        assertWindow(seq, 2, new int[] {'f', 'g', 'h'}, new int[] {'g', 'h', 'i'});
        assertThat(seq.start(2)).isEqualTo(6);
        assertThatThrownBy(() -> seq.start(3)).isInstanceOf(IndexOutOfBoundsException.class);
    }

    @Test
    void exactFitUsesTheLastToken() throws IOException {
        TokenFile tokens = TestTokenizers.byteTokens(dir, "abcdef"); // 7 tokens: 2 windows of 3 + the final target
        PackedSequences seq = PackedSequences.of(tokens, 3, false);

        assertThat(seq.size()).isEqualTo(2);
        assertWindow(seq, 1, new int[] {'c', 'd', 'e'}, new int[] {'d', 'e', 'f'});
    }

    @Test
    void bosTargetsAreMaskedOnlyWhenAsked() throws IOException {
        TokenFile tokens = TestTokenizers.byteTokens(dir, "ab<|endoftext|>cd"); // BOS a b BOS c d
        assertWindow(PackedSequences.of(tokens, 5, true), 0, new int[] {BOS, 'a', 'b', BOS, 'c'}, new int[] {'a', 'b', X, 'c', 'd'});
        assertWindow(PackedSequences.of(tokens, 5, false), 0, new int[] {BOS, 'a', 'b', BOS, 'c'}, new int[] {'a', 'b', BOS, 'c', 'd'});
    }

    @Test
    void readWritesAtTheGivenOffsets() throws IOException {
        PackedSequences seq = PackedSequences.of(TestTokenizers.byteTokens(dir, "abcdefghij"), 2, false);
        int[] inputs = new int[6], targets = new int[6];

        seq.read(1, inputs, 2, targets, 4);

        assertThat(inputs).containsExactly(0, 0, 'b', 'c', 0, 0);
        assertThat(targets).containsExactly(0, 0, 0, 0, 'c', 'd');
    }

    @Test
    void splitHoldsOutTheLastWindows() throws IOException {
        PackedSequences seq = PackedSequences.of(TestTokenizers.byteTokens(dir, "abcdefghijklmnopqrst"), 2, true); // 21 tokens, 10 windows

        PackedSequences.Split split = seq.split(0.2);

        assertThat(split.train().size()).isEqualTo(8);
        assertThat(split.validation().size()).isEqualTo(2);
        assertThat(split.validation().start(0)).isEqualTo(seq.start(8));
        assertThat(split.validation().masksBosTargets()).isTrue();
        int[] a = new int[2], b = new int[2], c = new int[2], d = new int[2];
        split.validation().read(1, a, 0, b, 0);
        seq.read(9, c, 0, d, 0);
        assertThat(a).containsExactly(c);
        assertThat(b).containsExactly(d);
        assertThat(seq.split(0.01).validation().size()).isEqualTo(1); // at least one
        assertThat(seq.split(0.99).train().size()).isEqualTo(1); // and at least one left to train on
    }

    @Test
    void rejectsTooFewTokensAndBadArguments() throws IOException {
        TokenFile tokens = TestTokenizers.byteTokens(dir, "ab"); // 3 tokens

        assertThatThrownBy(() -> PackedSequences.of(tokens, 3, false)).hasMessageContaining("3 tokens").hasMessageContaining(tokens.path().toString());
        assertThatThrownBy(() -> PackedSequences.of(tokens, 0, false)).hasMessageContaining("seqLen");
        assertThatThrownBy(() -> PackedSequences.of(tokens, 2, false).split(0.5)).hasMessageContaining("1 window");
        assertThatThrownBy(() -> PackedSequences.of(tokens, 1, false).split(1.0)).hasMessageContaining("heldOutFraction");
    }

    private static void assertWindow(PackedSequences seq, long window, int[] inputs, int[] targets) {
        int[] in = new int[seq.seqLen()], out = new int[seq.seqLen()];
        seq.read(window, in, 0, out, 0);
        assertThat(in).as("inputs of window %d", window).containsExactly(inputs);
        assertThat(out).as("targets of window %d", window).containsExactly(targets);
    }
}
