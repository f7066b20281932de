package dev.eetune.data.corpus;

import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.util.NoSuchElementException;

/**
 * Streams text as segments of at most {@code maxChars} characters, holding only about one segment in memory.
 *
 * <p>With {@code splitOnMarkers}, every {@link Corpus#DOCUMENT_MARKER} ends a document; otherwise all the text is one
 * document. A document's leading and trailing newlines are dropped, and a document with no text left is skipped.
 *
 * <p>A document longer than {@code maxChars} is cut, in order of preference, at the start of its last run of newlines
 * in the second half of the segment, else before its last space there, else at {@code maxChars} (never inside a
 * surrogate pair). The next segment then starts with the newlines or the space: a SentencePiece vocabulary whose
 * pieces hold no newline and no space after their first character (such as llama2.c's) encodes the two parts exactly
 * as it encodes the whole; see {@code dev.eetune.data.tokens.SegmentEncoder}.
 */
final class TextSplitter implements SegmentReader {
    private static final String MARKER = Corpus.DOCUMENT_MARKER;
    private static final int READ_CHARS = 16 * 1024;

    private final String name;
    private final Reader in;
    private final boolean splitOnMarkers;
    private final int maxChars;
    private final StringBuilder pending = new StringBuilder();
    private final char[] readBuffer = new char[READ_CHARS];
    private boolean eof;
    /** Whether a segment of the current document has been returned. */
    private boolean inDocument;
    private Segment next;

    TextSplitter(String name, Reader in, boolean splitOnMarkers, int maxChars) {
        if (maxChars < 2) throw new IllegalArgumentException("maxSegmentChars must be at least 2, got " + maxChars);
        this.name = name;
        this.in = in;
        this.splitOnMarkers = splitOnMarkers;
        this.maxChars = maxChars;
    }

    @Override
    public boolean hasNext() {
        if (next == null) next = advance();
        return next != null;
    }

    @Override
    public Segment next() {
        if (!hasNext()) throw new NoSuchElementException("no more segments in " + name);
        Segment s = next;
        next = null;
        return s;
    }

    private Segment advance() {
        while (true) {
            int marker = splitOnMarkers ? pending.indexOf(MARKER) : -1;
            // once this holds, a marker starting at or before maxChars would already have been found
            boolean settled = eof || !splitOnMarkers || pending.length() >= maxChars + MARKER.length();
            Segment s;
            if (marker >= 0 && marker <= maxChars) {
                s = endDocument(pending.substring(0, marker));
                pending.delete(0, marker + MARKER.length());
            } else if (pending.length() > maxChars && settled) {
                int cut = cutPoint();
                s = emit(pending.substring(0, cut));
                pending.delete(0, cut);
            } else if (eof) {
                if (pending.length() == 0) return null;
                s = endDocument(pending.toString());
                pending.setLength(0);
            } else {
                fill();
                continue;
            }
            if (s != null) return s;
        }
    }

    private Segment endDocument(String text) {
        int end = text.length();
        while (end > 0 && isNewline(text.charAt(end - 1))) end--;
        Segment s = emit(text.substring(0, end));
        inDocument = false;
        return s;
    }

    /** The segment for {@code text}, or null when nothing of it is left to return. */
    private Segment emit(String text) {
        if (!inDocument) {
            int start = 0;
            while (start < text.length() && isNewline(text.charAt(start))) start++;
            text = text.substring(start);
        }
        if (text.isEmpty()) return null;
        Segment s = new Segment(text, !inDocument);
        inDocument = true;
        return s;
    }

    private int cutPoint() {
        int floor = maxChars / 2;
        for (int i = maxChars; i >= floor; i--) {
            if (pending.charAt(i) != '\n') continue;
            int start = i;
            while (start > 0 && isNewline(pending.charAt(start - 1))) start--;
            if (start > 0) return start;
            break;
        }
        for (int i = maxChars; i >= floor; i--) {
            if (pending.charAt(i) == ' ') return i; // i >= floor >= 1: the segment is not empty
        }
        return Character.isHighSurrogate(pending.charAt(maxChars - 1)) ? maxChars - 1 : maxChars;
    }

    private void fill() {
        try {
            int n = in.read(readBuffer);
            if (n < 0) eof = true;
            else pending.append(readBuffer, 0, n);
        } catch (CharacterCodingException e) {
            throw new UncheckedIOException(name + " is not valid UTF-8 text (" + e.getMessage() + ")", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + name, e);
        }
    }

    private static boolean isNewline(char c) { return c == '\n' || c == '\r'; }

    @Override
    public void close() { SegmentReader.close(name, in); }
}
