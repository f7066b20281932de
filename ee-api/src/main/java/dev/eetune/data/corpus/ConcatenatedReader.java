package dev.eetune.data.corpus;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Iterator;
import java.util.NoSuchElementException;

/** The segments of several files in order, opening each only when the one before it is used up. */
final class ConcatenatedReader implements SegmentReader {

    /** A file of the corpus: its name (for error messages and the reader choice) and how to open it. */
    record Source(String name, Opener opener) {}

    @FunctionalInterface
    interface Opener {
        InputStream open() throws IOException;
    }

    private final String name;
    private final Iterator<Source> sources;
    private final int maxChars;
    /** What the sources are read from (a zip file), closed last; null when there is nothing to close. */
    private final Closeable container;
    private SegmentReader current;

    ConcatenatedReader(String name, Iterator<Source> sources, int maxChars, Closeable container) {
        this.name = name;
        this.sources = sources;
        this.maxChars = maxChars;
        this.container = container;
    }

    @Override
    public boolean hasNext() {
        while (current == null || !current.hasNext()) {
            if (current != null) {
                current.close();
                current = null;
            }
            if (!sources.hasNext()) return false;
            Source source = sources.next();
            try {
                current = SegmentReader.open(source.name(), source.opener().open(), maxChars);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot open " + source.name(), e);
            }
        }
        return true;
    }

    @Override
    public Segment next() {
        if (!hasNext()) throw new NoSuchElementException("no more segments in " + name);
        return current.next();
    }

    @Override
    public void close() {
        try {
            if (current != null) current.close();
        } finally {
            current = null;
            if (container != null) SegmentReader.close(name, container);
        }
    }
}
