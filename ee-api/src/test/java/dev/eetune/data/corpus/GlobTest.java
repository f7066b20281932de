package dev.eetune.data.corpus;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class GlobTest {
    @Test
    void patternWithoutSlashMatchesTheFileNameAtAnyDepth() {
        Glob java = Glob.of("*.java");

        assertThat(java.matches("A.java")).isTrue();
        assertThat(java.matches("java.base/java/util/List.java")).isTrue();
        assertThat(java.matches("java.base/java/util/List.class")).isFalse();
        assertThat(Glob.of("?.txt").matches("dir/a.txt")).isTrue();
        assertThat(Glob.of("?.txt").matches("dir/ab.txt")).isFalse();
    }

    @Test
    void patternWithSlashMatchesTheRelativePath() {
        Glob util = Glob.of("java.base/java/util/**");

        assertThat(util.matches("java.base/java/util/List.java")).isTrue();
        assertThat(util.matches("java.base/java/util/concurrent/Future.java")).isTrue();
        assertThat(util.matches("java.base/java/io/File.java")).isFalse();
        assertThat(Glob.of("src/*.java").matches("src/A.java")).isTrue();
        assertThat(Glob.of("src/*.java").matches("src/sub/A.java")).isFalse();
        assertThat(Glob.of("src/**/*.java").matches("src/A.java")).isTrue();
        assertThat(Glob.of("src/**/*.java").matches("src/a/b/A.java")).isTrue();
    }

    @Test
    void leadingDoubleStarAlsoMatchesTopLevelAndBracesGiveAlternatives() {
        assertThat(Glob.of("**/*.java").matches("A.java")).isTrue();
        assertThat(Glob.of("**/*.java").matches("a/b/A.java")).isTrue();
        Glob texts = Glob.of("*.{txt,md}");
        assertThat(texts.matches("notes/a.md")).isTrue();
        assertThat(texts.matches("a.txt")).isTrue();
        assertThat(texts.matches("a.java")).isFalse();
        assertThat(Glob.of("a+b(c).txt").matches("a+b(c).txt")).isTrue(); // regex characters are literal
    }
}
