package dev.eetune.data.corpus;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/** An open, lazily read source of segments; {@link #close()} releases what it reads from. */
interface SegmentReader extends Iterator<Segment>, AutoCloseable {

    @Override
    void close();

    /** The segments of one file's content: JSON lines when {@code name} ends in ".jsonl", else text. */
    static SegmentReader open(String name, InputStream in, int maxSegmentChars) {
        return name.endsWith(".jsonl") ? new JsonlReader(name, utf8(in), maxSegmentChars) : new TextSplitter(name, utf8(in), true, maxSegmentChars);
    }

    /** A sequential stream over the segments that closes this reader when it is closed. */
    default Stream<Segment> stream() {
        Spliterator<Segment> s = Spliterators.spliteratorUnknownSize(this, Spliterator.ORDERED | Spliterator.NONNULL);
        return StreamSupport.stream(s, false).onClose(this::close);
    }

    /** Strict UTF-8: a corpus with invalid bytes fails, naming the file, instead of training on U+FFFD. */
    private static Reader utf8(InputStream in) {
        return new InputStreamReader(in, StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT));
    }

    /** Closes {@code in}, turning a failure into an unchecked one that names the source. */
    static void close(String name, Closeable in) {
        try {
            in.close();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot close " + name, e);
        }
    }
}
