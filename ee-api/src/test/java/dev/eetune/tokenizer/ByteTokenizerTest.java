package dev.eetune.tokenizer;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class ByteTokenizerTest {
    private final ByteTokenizer tok = new ByteTokenizer();

    @Test
    void encodesUtf8BytesAfterBos() {
        assertThat(tok.encode("hé")).containsExactly(256, 'h', 0xC3, 0xA9);
        assertThat(tok.encode("")).containsExactly(256);
        assertThat(tok.vocabSize()).isEqualTo(258);
        assertThat(tok.bos()).isEqualTo(256);
        assertThat(tok.eos()).isEqualTo(257);
    }

    @Test
    void decodeSkipsBosAndEosAndJoinsMultiByteCharacters() {
        String code = "int main() { return 0; } // ok ✓ 😀\n";
        int[] ids = tok.encode(code);
        assertThat(tok.decode(ids)).isEqualTo(code);
        int[] withEos = java.util.Arrays.copyOf(ids, ids.length + 1);
        withEos[ids.length] = 257;
        assertThat(tok.decode(withEos)).isEqualTo(code);
        assertThat(tok.decodeToken(256, 'x')).isEqualTo("x");
        assertThat(tok.decodeToken('x', 257)).isEmpty();
        assertThat(tok.decodeToken('x', 0xC3)).isEqualTo("\uFFFD");
    }

    @Test
    void rejectsIdsOutsideTheVocabulary() {
        assertThatThrownBy(() -> tok.decode(new int[] {258})).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("258");
        assertThatThrownBy(() -> tok.decodeToken(0, -1)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("-1");
    }
}
