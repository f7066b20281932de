package dev.eetune.data.corpus;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/** One text or JSON-lines file. */
record FileCorpus(Path file, int maxSegmentChars) implements Corpus {
    @Override
    public Stream<Segment> segments() {
        var source = new ConcatenatedReader.Source(file.toString(), () -> Files.newInputStream(file));
        return new ConcatenatedReader(file.toString(), List.of(source).iterator(), maxSegmentChars, null).stream();
    }

    @Override
    public String stamp() {
        try {
            return "file size=" + Files.size(file) + " mtime=" + Files.getLastModifiedTime(file) + " segment=" + maxSegmentChars;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the size and modification time of " + file, e);
        }
    }

    @Override
    public long bytes() {
        try {
            return Files.size(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the size of " + file, e);
        }
    }

    @Override
    public String toString() { return "corpus " + file; }
}
