package dev.eetune.data.corpus;

import java.util.Iterator;
import java.util.NoSuchElementException;

/** Whole documents from segments: each document's segments concatenated. */
final class DocumentJoiner implements Iterator<String> {
    private final Iterator<Segment> segments;
    private Segment lookahead;

    DocumentJoiner(Iterator<Segment> segments) { this.segments = segments; }

    @Override
    public boolean hasNext() { return lookahead != null || segments.hasNext(); }

    @Override
    public String next() {
        if (!hasNext()) throw new NoSuchElementException("no more documents");
        Segment first = lookahead != null ? lookahead : segments.next();
        lookahead = null;
        StringBuilder doc = new StringBuilder(first.text());
        while (segments.hasNext()) {
            Segment s = segments.next();
            if (s.documentStart()) {
                lookahead = s;
                break;
            }
            doc.append(s.text());
        }
        return doc.toString();
    }
}
