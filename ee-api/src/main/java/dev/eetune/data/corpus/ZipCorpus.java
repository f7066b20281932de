package dev.eetune.data.corpus;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/** Every file entry of a zip file that matches the glob, in order of the entry name. */
record ZipCorpus(Path zip, Glob glob, int maxSegmentChars) implements Corpus {
    @Override
    public Stream<Segment> segments() {
        ZipFile file;
        try {
            file = new ZipFile(zip.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open zip file " + zip, e);
        }
        List<ZipEntry> entries;
        try {
            entries = entries(file);
        } catch (RuntimeException e) {
            SegmentReader.close(zip.toString(), file);
            throw e;
        }
        var sources = entries.stream()
            .map(e -> new ConcatenatedReader.Source(zip + "!/" + e.getName(), () -> file.getInputStream(e)))
            .iterator();
        return new ConcatenatedReader(zip.toString(), sources, maxSegmentChars, file).stream();
    }

    /** The matching file entries, in order of the entry name. */
    private List<ZipEntry> entries(ZipFile file) {
        return Collections.list(file.entries()).stream()
            .filter(e -> !e.isDirectory() && (glob == null || glob.matches(e.getName())))
            .sorted(Comparator.comparing(ZipEntry::getName))
            .collect(Collectors.toList());
    }

    /** The matching entries' uncompressed sizes (an entry that does not record its size counts 0). */
    @Override
    public long bytes() {
        try (ZipFile file = new ZipFile(zip.toFile())) {
            return entries(file).stream().mapToLong(e -> Math.max(0, e.getSize())).sum();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open zip file " + zip, e);
        }
    }

    @Override
    public String stamp() {
        try {
            return "zip size=" + Files.size(zip) + " mtime=" + Files.getLastModifiedTime(zip) + " glob=" + glob + " segment=" + maxSegmentChars;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the size and modification time of " + zip, e);
        }
    }

    @Override
    public String toString() { return "corpus " + zip + (glob == null ? "" : " (" + glob + ")"); }
}
