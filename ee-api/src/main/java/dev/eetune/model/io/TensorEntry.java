package dev.eetune.model.io;

import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;

import java.nio.file.Path;
import java.util.Map;

/**
 * Where one tensor of a safetensors file lies: {@code byteLength} bytes (= elements x dtype size, little-endian,
 * row-major) from the absolute {@code fileOffset} of {@code file}.
 */
public record TensorEntry(String name, DType dtype, Shape shape, long fileOffset, long byteLength, Path file) {
    /** The entry called {@code name} in {@code entries}; fails naming {@code source} when there is none. */
    static TensorEntry find(Map<String, TensorEntry> entries, String name, Path source) {
        TensorEntry e = entries.get(name);
        if (e == null) throw new IllegalArgumentException(source + ": no tensor '" + name + "'");
        return e;
    }

    @Override
    public String toString() { return name + " " + dtype + shape + " @ " + file.getFileName() + "[" + fileOffset + ", +" + byteLength + ")"; }
}
