package dev.eetune.model.io;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Collects tensors and metadata, then writes one {@code .safetensors} file: tensors in name order, the header JSON
 * padded with spaces to a multiple of 8 bytes (so the data is 8-byte aligned). Tensor data is not copied by
 * {@code put}: buffers and arrays are read, and streamed to disk in small chunks, by {@link #write}, so they must
 * not change in between. The file is written under a temporary name in the same directory and renamed into place,
 * so readers never see a partial file.
 */
public final class SafetensorsWriter {
    private static final int CHUNK_ELEMENTS = 1 << 16;

    private final Map<String, Pending> tensors = new TreeMap<>();
    private final Map<String, String> metadata = new TreeMap<>();

    @FunctionalInterface
    private interface Source {
        void writeTo(FileChannel out) throws IOException;
    }

    private record Pending(DType dtype, Shape shape, long bytes, Source source) {}

    /** Adds a tensor whose little-endian bytes are {@code data}'s remaining bytes. */
    public SafetensorsWriter put(String name, DType dtype, Shape shape, ByteBuffer data) {
        long bytes = shape.size() * dtype.bytes();
        if (data.remaining() != bytes) {
            throw new IllegalArgumentException("tensor '" + name + "': " + dtype + shape + " needs " + bytes + " bytes, the buffer holds " + data.remaining());
        }
        ByteBuffer view = data.duplicate();
        return add(name, new Pending(dtype, shape, bytes, out -> {
            ByteBuffer b = view.duplicate();
            while (b.hasRemaining()) out.write(b);
        }));
    }

    /** Adds a tensor of floats, stored as {@code dtype} (F32, or rounded to nearest-even BF16 / F16). */
    public SafetensorsWriter put(String name, float[] values, Shape shape, DType dtype) {
        if (!dtype.isFloat()) throw new IllegalArgumentException("tensor '" + name + "': cannot store floats as " + dtype);
        if (values.length != shape.size()) throw new IllegalArgumentException("tensor '" + name + "': " + values.length + " values do not fill shape " + shape);
        return add(name, new Pending(dtype, shape, (long) values.length * dtype.bytes(), out -> {
            ByteBuffer b = ByteBuffer.allocate(CHUNK_ELEMENTS * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
            for (int from = 0; from < values.length; from += CHUNK_ELEMENTS) {
                b.clear();
                for (int i = from, to = Math.min(values.length, from + CHUNK_ELEMENTS); i < to; i++) {
                    switch (dtype) {
                        case F32 -> b.putFloat(values[i]);
                        case BF16 -> b.putShort(DType.floatToBf16(values[i]));
                        case F16 -> b.putShort(DType.floatToF16(values[i]));
                        default -> throw new AssertionError(dtype);
                    }
                }
                b.flip();
                while (b.hasRemaining()) out.write(b);
            }
        }));
    }

    /** Adds a {@code __metadata__} entry. */
    public SafetensorsWriter metadata(String key, String value) {
        metadata.put(Objects.requireNonNull(key, "metadata key"), Objects.requireNonNull(value, "metadata value for " + key));
        return this;
    }

    private SafetensorsWriter add(String name, Pending p) {
        if (name == null || name.isEmpty()) throw new IllegalArgumentException("a tensor needs a non-empty name");
        if (name.equals("__metadata__")) throw new IllegalArgumentException("'__metadata__' is reserved and cannot name a tensor");
        if (tensors.putIfAbsent(name, p) != null) throw new IllegalArgumentException("tensor '" + name + "' was already added");
        return this;
    }

    /** Writes the file atomically (replacing an existing one); on failure nothing is left behind. */
    public void write(Path file) {
        Path target = file.toAbsolutePath();
        Path tmp = null;
        try {
            Files.createDirectories(target.getParent());
            // not Files.createTempFile: its 0600 permissions would stick to the checkpoint
            Path candidate = target.resolveSibling("." + target.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
            try (FileChannel out = FileChannel.open(candidate, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                tmp = candidate;
                byte[] header = header();
                ByteBuffer head = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
                head.putLong(header.length).put(header).flip();
                while (head.hasRemaining()) out.write(head);
                for (Map.Entry<String, Pending> e : tensors.entrySet()) {
                    long before = out.position();
                    e.getValue().source().writeTo(out);
                    if (out.position() - before != e.getValue().bytes()) {
                        throw new IllegalStateException("tensor '" + e.getKey() + "' wrote " + (out.position() - before) + " bytes instead of " + e.getValue().bytes());
                    }
                }
                out.force(true);
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            tmp = null;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write safetensors file " + target, e);
        } finally {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // the original failure is what matters
                }
            }
        }
    }

    private byte[] header() throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode root = json.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode m = root.putObject("__metadata__");
            metadata.forEach(m::put);
        }
        long offset = 0;
        for (Map.Entry<String, Pending> e : tensors.entrySet()) {
            Pending p = e.getValue();
            ObjectNode t = root.putObject(e.getKey());
            t.put("dtype", p.dtype().name());
            var shape = t.putArray("shape");
            for (int d : p.shape().dims()) shape.add(d);
            t.putArray("data_offsets").add(offset).add(offset + p.bytes());
            offset += p.bytes();
        }
        byte[] h = json.writeValueAsBytes(root);
        int padded = (h.length + 7) & ~7;
        byte[] out = Arrays.copyOf(h, padded);
        Arrays.fill(out, h.length, padded, (byte) ' ');
        return out;
    }
}
