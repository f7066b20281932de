package dev.eetune.data.corpus;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.Reader;
import java.io.StringReader;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.util.NoSuchElementException;

/**
 * JSON lines: each non-blank line is an object whose string field {@code "text"} is one document (split into
 * segments like any text, without marker splitting). One line is held in memory at a time.
 */
final class JsonlReader implements SegmentReader {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String name;
    private final BufferedReader in;
    private final int maxChars;
    private int lineNumber;
    private TextSplitter document;

    JsonlReader(String name, Reader in, int maxChars) {
        this.name = name;
        this.in = new BufferedReader(in);
        this.maxChars = maxChars;
    }

    @Override
    public boolean hasNext() {
        while (document == null || !document.hasNext()) {
            String text = nextText();
            if (text == null) return false;
            document = new TextSplitter(name + ":" + lineNumber, new StringReader(text), false, maxChars);
        }
        return true;
    }

    @Override
    public Segment next() {
        if (!hasNext()) throw new NoSuchElementException("no more segments in " + name);
        return document.next();
    }

    /** The text of the next non-blank line, or null at the end. */
    private String nextText() {
        String line;
        do {
            line = readLine();
            if (line == null) return null;
            lineNumber++;
        } while (line.isBlank());
        JsonNode node;
        try {
            node = JSON.readTree(line);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException(name + ":" + lineNumber + ": not JSON: " + e.getOriginalMessage());
        }
        JsonNode text = node.path("text");
        if (!node.isObject() || !text.isTextual()) {
            throw new IllegalArgumentException(name + ":" + lineNumber + ": expected a JSON object with a string field \"text\", got "
                + abbreviate(line));
        }
        return text.textValue();
    }

    private String readLine() {
        try {
            return in.readLine();
        } catch (CharacterCodingException e) {
            throw new UncheckedIOException(name + " is not valid UTF-8 text after line " + lineNumber + " (" + e.getMessage() + ")", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + name, e);
        }
    }

    private static String abbreviate(String line) {
        return line.length() <= 80 ? line : line.substring(0, 77) + "...";
    }

    @Override
    public void close() { SegmentReader.close(name, in); }
}
