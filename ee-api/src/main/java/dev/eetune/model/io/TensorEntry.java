package dev.eetune.model.io;

import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;

import java.nio.file.Path;

/**
 * Where one tensor of a safetensors file lies: {@code byteLength} bytes (= elements x dtype size, little-endian,
 * row-major) from the absolute {@code fileOffset} of {@code file}.
 */
public record TensorEntry(String name, DType dtype, Shape shape, long fileOffset, long byteLength, Path file) {
    @Override
    public String toString() { return name + " " + dtype + shape + " @ " + file.getFileName() + "[" + fileOffset + ", +" + byteLength + ")"; }
}
