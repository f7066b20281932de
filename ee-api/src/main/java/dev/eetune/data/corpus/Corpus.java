package dev.eetune.data.corpus;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * A source of training documents, read lazily: a corpus larger than memory streams through in segments of at most
 * {@link #DEFAULT_SEGMENT_CHARS} characters, so not even one document has to fit in memory.
 *
 * <p>What a document is:
 * <ul>
 *   <li>a text file: the text between {@link #DOCUMENT_MARKER}s, or the whole file when it has none (a long file
 *       without markers is one long document, streamed in segments cut at line boundaries: boundaries the data does
 *       not mark are not invented);</li>
 *   <li>a {@code .jsonl} file: the string field {@code "text"} of each non-blank line;</li>
 *   <li>a directory: each regular file below it (recursively, in order of the '/'-separated relative path, so the
 *       order is the same everywhere), read as above by its extension;</li>
 *   <li>a {@code .zip} file: each file entry, in order of the entry name, read as above by its extension.</li>
 * </ul>
 * A document's leading and trailing newlines are dropped, and documents with no text left are skipped. Text must be
 * UTF-8. Directories and zip files may be filtered with a glob (see {@link #open(Path, String)}).
 */
public interface Corpus {
    /** Ends a document in a text file (GPT-2's end-of-text token, as TinyStories and many dumps use it). */
    String DOCUMENT_MARKER = "<|endoftext|>";
    /** The default segment size: 64 Ki characters. */
    int DEFAULT_SEGMENT_CHARS = 64 * 1024;

    /**
     * The corpus at {@code path}: a directory, a {@code .zip} file, a {@code .jsonl} file or a text file.
     *
     * @param glob for a directory or zip file, which files to read, or null for all: {@code *} matches within a
     *     path element, {@code **} across elements, {@code ?} one character, {@code {a,b}} either; a glob without '/'
     *     matches the file name at any depth ({@code *.java}), others the relative path
     *     ({@code java.base/java/util/**}, {@code **}{@code /*.java}).
     */
    static Corpus open(Path path, String glob) { return open(path, glob, DEFAULT_SEGMENT_CHARS); }

    /** {@link #open(Path, String)} with segments of at most {@code maxSegmentChars} characters (at least 2). */
    static Corpus open(Path path, String glob, int maxSegmentChars) {
        if (maxSegmentChars < 2) throw new IllegalArgumentException("maxSegmentChars must be at least 2, got " + maxSegmentChars);
        Glob filter = glob == null ? null : Glob.of(glob);
        if (Files.isDirectory(path)) return new DirectoryCorpus(path, filter, maxSegmentChars);
        if (!Files.isRegularFile(path)) throw new IllegalArgumentException("no corpus at " + path + ": not a file or directory");
        if (path.getFileName().toString().endsWith(".zip")) return new ZipCorpus(path, filter, maxSegmentChars);
        if (filter != null) throw new IllegalArgumentException("the glob '" + glob + "' applies to directories and zip files, but " + path + " is a single file");
        return new FileCorpus(path, maxSegmentChars);
    }

    /**
     * The corpus's segments in order, read as the stream is consumed. Close the stream (try-with-resources) to close
     * the files; each call reads the corpus again from the start.
     */
    Stream<Segment> segments();

    /** Whole documents in order: the segments of each document joined, so one document at a time is in memory. */
    default Stream<String> documents() {
        Stream<Segment> segments = segments();
        Iterator<String> documents = new DocumentJoiner(segments.iterator());
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(documents, Spliterator.ORDERED | Spliterator.NONNULL), false)
            .onClose(segments::close);
    }

    /**
     * Identifies what {@link #segments()} would return without reading it: the kind of corpus, the sizes and
     * modification times of its files, the glob and the segment size. A token cache built from this corpus is reused
     * only while the stamp is unchanged.
     */
    String stamp();

    /**
     * About how many bytes {@link #segments()} reads, for progress displays: the files' sizes (for a zip, the matching
     * entries' uncompressed sizes); 0 when unknown. Markers, blank lines and JSON syntax count here but not as text.
     */
    default long bytes() { return 0; }
}
