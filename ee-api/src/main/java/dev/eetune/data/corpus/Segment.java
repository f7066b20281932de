package dev.eetune.data.corpus;

import java.util.Objects;

/**
 * A piece of a document as a {@link Corpus} streams it: documents are read in segments of bounded size so that no
 * document has to fit in memory. A document is its first segment ({@code documentStart}) followed by every segment
 * up to the next one that starts a document.
 */
public record Segment(String text, boolean documentStart) {
    public Segment {
        Objects.requireNonNull(text, "text");
    }
}
