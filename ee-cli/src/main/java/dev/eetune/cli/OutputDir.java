package dev.eetune.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Output folders (and files) of commands, checked before any work starts. */
final class OutputDir {
    private OutputDir() {}

    /** Creates {@code dir} (given as {@code option}) if needed; fails saying why it cannot be created or written. */
    static Path create(Path dir, String option) {
        String what = option + " " + dir + ": ";
        try {
            Files.createDirectories(dir);
        } catch (FileAlreadyExistsException e) {
            throw new IllegalArgumentException(what + e.getFile() + " exists and is not a directory", e);
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException(what + "permission denied creating " + e.getFile(), e);
        } catch (FileSystemException e) { // e.g. "Not a directory" (a file in the path), "Read-only file system"
            throw new IllegalArgumentException(what + "cannot create " + e.getFile() + ": " + e.getReason(), e);
        } catch (IOException e) {
            throw new UncheckedIOException(what + "cannot create the folder: " + e, e);
        }
        if (!Files.isWritable(dir)) throw new IllegalArgumentException(what + "the folder is not writable (permission denied)");
        return dir;
    }

    /**
     * An output file given as {@code option} (null: none), checked before the work whose results it takes: not a
     * folder, in a writable folder that exists; fails saying which.
     */
    static void checkFile(Path file, String option) {
        if (file == null) return;
        Path parent = file.toAbsolutePath().getParent();
        if (Files.isDirectory(file)) throw new IllegalArgumentException(option + " " + file + ": is a folder, not a file");
        if (!Files.isDirectory(parent)) throw new IllegalArgumentException(option + " " + file + ": no folder " + parent);
        if (!Files.isWritable(parent) || Files.exists(file) && !Files.isWritable(file)) throw new IllegalArgumentException(option + " " + file + ": not writable (permission denied)");
    }
}
