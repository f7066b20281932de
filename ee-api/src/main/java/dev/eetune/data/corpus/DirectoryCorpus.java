package dev.eetune.data.corpus;

import dev.eetune.data.Sha256;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/** Every regular file below a directory that matches the glob, in order of the '/'-separated relative path. */
record DirectoryCorpus(Path dir, Glob glob, int maxSegmentChars) implements Corpus {
    /** The matching files as relative '/'-separated names, sorted (only names are listed: contents stream later). */
    private List<String> files() {
        try (Stream<Path> walk = Files.walk(dir)) {
            return walk.filter(Files::isRegularFile)
                .map(this::relativeName)
                .filter(name -> glob == null || glob.matches(name))
                .sorted()
                .collect(Collectors.toList());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list the files of " + dir, e);
        }
    }

    private String relativeName(Path file) {
        return StreamSupport.stream(dir.relativize(file).spliterator(), false).map(Path::toString).collect(Collectors.joining("/"));
    }

    @Override
    public Stream<Segment> segments() {
        var sources = files().stream().map(name -> {
            Path file = dir.resolve(name);
            return new ConcatenatedReader.Source(file.toString(), () -> Files.newInputStream(file));
        }).iterator();
        return new ConcatenatedReader(dir.toString(), sources, maxSegmentChars, null).stream();
    }

    /** Size and modification time of every file, hashed: any added, removed, grown or touched file changes it. */
    @Override
    public String stamp() {
        List<String> files = files();
        MessageDigest sha = Sha256.digest();
        long bytes = 0;
        for (String name : files) {
            Path file = dir.resolve(name);
            try {
                long size = Files.size(file);
                bytes += size;
                sha.update((name + '\0' + size + '\0' + Files.getLastModifiedTime(file) + '\n').getBytes(StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read the size and modification time of " + file, e);
            }
        }
        return "directory files=" + files.size() + " bytes=" + bytes + " listing=" + Sha256.shortHex(sha)
            + " glob=" + glob + " segment=" + maxSegmentChars;
    }

    @Override
    public long bytes() {
        long bytes = 0;
        for (String name : files()) {
            Path file = dir.resolve(name);
            try {
                bytes += Files.size(file);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read the size of " + file, e);
            }
        }
        return bytes;
    }

    @Override
    public String toString() { return "corpus " + dir + (glob == null ? "" : " (" + glob + ")"); }
}
