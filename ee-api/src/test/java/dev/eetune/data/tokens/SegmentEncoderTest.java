package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Segment;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.tokenizer.Llama2cTokenizer;
import dev.eetune.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SegmentEncoderTest {
    @Test
    void llama2cContinuationsHaveNoBosAndNoDummyPrefix() {
        Llama2cTokenizer tok = Llama2cTokenizer.load(TestData.stories260KTokenizer());
        SegmentEncoder encoder = SegmentEncoder.of(tok);

        int[] start = encoder.encode(new Segment("Once upon", true)), rest = encoder.encode(new Segment(" a time", false));

        assertThat(start).containsExactly(tok.encode("Once upon"));
        assertThat(concat(start, rest)).containsExactly(tok.encode("Once upon a time")); // [1, 403, 407, 261, 378]
    }

    @Test
    void otherTokenizersLoseTheBosAndEosTheyAddExceptBosAtADocumentStart() {
        SegmentEncoder encoder = SegmentEncoder.of(new AddsEos());

        assertThat(encoder.encode(new Segment("ab", true))).containsExactly(ByteTokenizer.BOS, 'a', 'b');
        assertThat(encoder.encode(new Segment("cd", false))).containsExactly('c', 'd');
    }

    @Test
    void tokenizerWithoutBosIsRejected() {
        Tokenizer noBos = new AddsEos() {
            @Override
            public int bos() { return -1; }
        };

        assertThatThrownBy(() -> SegmentEncoder.of(noBos)).hasMessageContaining("no BOS");
    }

    @Test
    void fingerprintFollowsWhatTheTokenizerDoes() {
        String llama = SegmentEncoder.of(Llama2cTokenizer.load(TestData.stories260KTokenizer())).fingerprint();

        assertThat(SegmentEncoder.of(Llama2cTokenizer.load(TestData.stories260KTokenizer())).fingerprint()).isEqualTo(llama);
        assertThat(llama).startsWith("Llama2cTokenizer vocab=512 bos=1 eos=2 ");
        assertThat(SegmentEncoder.of(new ByteTokenizer()).fingerprint()).isNotEqualTo(SegmentEncoder.of(new AddsEos()).fingerprint());
    }

    private static int[] concat(int[] a, int[] b) {
        int[] ab = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, ab, a.length, b.length);
        return ab;
    }

    /** Bytes with BOS and EOS around them, as a Hugging Face tokenizer with add_eos_token does. */
    private static class AddsEos implements Tokenizer {
        private final ByteTokenizer bytes = new ByteTokenizer();

        @Override
        public int[] encode(String text) {
            int[] ids = Arrays.copyOf(bytes.encode(text), text.length() + 2);
            ids[ids.length - 1] = ByteTokenizer.EOS;
            return ids;
        }

        @Override
        public String decode(int[] ids) { return bytes.decode(ids); }

        @Override
        public String decodeToken(int previous, int token) { return bytes.decodeToken(previous, token); }

        @Override
        public int bos() { return ByteTokenizer.BOS; }

        @Override
        public int eos() { return ByteTokenizer.EOS; }

        @Override
        public int vocabSize() { return ByteTokenizer.VOCAB_SIZE; }
    }
}
