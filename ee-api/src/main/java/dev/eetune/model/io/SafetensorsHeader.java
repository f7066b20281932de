package dev.eetune.model.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The header of a {@code .safetensors} file: a little-endian uint64 N, N bytes of JSON
 * {@code {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}}, then the data, whose
 * offsets are relative to byte 8 + N. Only the header is read; every entry is checked against the file size.
 */
public final class SafetensorsHeader {
    /** The safetensors library refuses headers over 100 MB; so do we, rather than allocate whatever a corrupt file says. */
    private static final long MAX_HEADER_BYTES = 100_000_000L;
    /** Far above any model's tensors; stops a forged shape of millions of dimensions from costing memory and time. */
    private static final int MAX_RANK = 16;
    private static final ObjectMapper JSON = new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    private final Path file;
    private final long fileSize, dataOffset;
    private final Map<String, String> metadata;
    private final Map<String, TensorEntry> tensors;

    private SafetensorsHeader(Path file, long fileSize, long dataOffset, Map<String, String> metadata, Map<String, TensorEntry> tensors) {
        this.file = file;
        this.fileSize = fileSize;
        this.dataOffset = dataOffset;
        this.metadata = metadata;
        this.tensors = tensors;
    }

    public static SafetensorsHeader read(Path file) {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new IllegalArgumentException(file + ": " + size + " bytes is too short for a safetensors file (8-byte header length missing)");
            long n = readFully(ch, 0, 8).getLong();
            if (n < 2 || n > size - 8 || n > MAX_HEADER_BYTES) {
                throw new IllegalArgumentException(file + ": header length " + n + " is impossible for a file of " + size + " bytes (not a safetensors file, or truncated)");
            }
            ByteBuffer header = readFully(ch, 8, (int) n);
            JsonNode root;
            try {
                root = JSON.readTree(header.array());
            } catch (IOException e) {
                throw new IllegalArgumentException(file + ": the safetensors header is not valid JSON: " + e.getMessage(), e);
            }
            if (root == null || !root.isObject()) throw new IllegalArgumentException(file + ": the safetensors header is not a JSON object");
            return parse(file, size, 8 + n, root);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read safetensors file " + file, e);
        }
    }

    private static ByteBuffer readFully(FileChannel ch, long position, int length) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            if (ch.read(b, position + b.position()) < 0) throw new IOException("unexpected end of file at byte " + (position + b.position()));
        }
        return b.flip();
    }

    private static SafetensorsHeader parse(Path file, long fileSize, long dataOffset, JsonNode root) {
        Map<String, String> metadata = new LinkedHashMap<>();
        List<TensorEntry> entries = new ArrayList<>();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            String name = field.getKey();
            JsonNode v = field.getValue();
            if (name.equals("__metadata__")) {
                if (!v.isObject()) throw new IllegalArgumentException(file + ": __metadata__ must be an object of strings, got " + v);
                for (Map.Entry<String, JsonNode> m : v.properties()) {
                    if (!m.getValue().isTextual()) throw new IllegalArgumentException(file + ": __metadata__ value '" + m.getKey() + "' must be a string, got " + m.getValue());
                    metadata.put(m.getKey(), m.getValue().asText());
                }
            } else {
                entries.add(entry(file, fileSize, dataOffset, name, v));
            }
        }
        entries.sort(Comparator.comparingLong(TensorEntry::fileOffset).thenComparing(TensorEntry::name));
        Map<String, TensorEntry> tensors = new LinkedHashMap<>();
        TensorEntry last = null; // the entry reaching furthest so far: two tensors sharing bytes would alias each other
        for (TensorEntry e : entries) {
            if (last != null && e.byteLength() > 0 && e.fileOffset() < end(last)) {
                throw new IllegalArgumentException(file + ": tensor '" + e.name() + "' at data_offsets " + range(e, dataOffset) + " overlaps tensor '"
                    + last.name() + "' at " + range(last, dataOffset));
            }
            if (last == null || end(e) > end(last)) last = e;
            tensors.put(e.name(), e);
        }
        return new SafetensorsHeader(file, fileSize, dataOffset, Map.copyOf(metadata), tensors);
    }

    private static long end(TensorEntry e) { return e.fileOffset() + e.byteLength(); }

    private static String range(TensorEntry e, long dataOffset) { return "[" + (e.fileOffset() - dataOffset) + ", " + (end(e) - dataOffset) + "]"; }

    private static TensorEntry entry(Path file, long fileSize, long dataOffset, String name, JsonNode v) {
        String where = file + ": tensor '" + name + "'";
        if (!v.isObject()) throw new IllegalArgumentException(where + " must be an object {dtype, shape, data_offsets}, got " + v);
        JsonNode dtypeNode = v.path("dtype"), shapeNode = v.path("shape"), offsets = v.path("data_offsets");
        if (!dtypeNode.isTextual()) throw new IllegalArgumentException(where + " has no dtype string");
        DType dtype;
        try {
            dtype = DType.parse(dtypeNode.asText());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + " has dtype '" + dtypeNode.asText() + "', which is not supported (supported: F32, BF16, F16, I32)", e);
        }
        if (!shapeNode.isArray()) throw new IllegalArgumentException(where + " has no shape array");
        if (shapeNode.size() > MAX_RANK) throw new IllegalArgumentException(where + " has a shape of rank " + shapeNode.size() + " (at most " + MAX_RANK + " supported)");
        int[] dims = new int[shapeNode.size()];
        for (int i = 0; i < dims.length; i++) {
            JsonNode d = shapeNode.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToInt() || d.asInt() < 0) throw new IllegalArgumentException(where + " has invalid shape " + shapeNode);
            dims[i] = d.asInt();
        }
        Shape shape;
        long expected;
        try {
            shape = Shape.of(dims);
            expected = Math.multiplyExact(shape.size(), dtype.bytes());
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException(where + " has shape " + shapeNode + " with too many elements", e);
        }
        if (!offsets.isArray() || offsets.size() != 2 || !offsets.get(0).isIntegralNumber() || !offsets.get(1).isIntegralNumber()
            || !offsets.get(0).canConvertToLong() || !offsets.get(1).canConvertToLong()) {
            throw new IllegalArgumentException(where + " needs data_offsets [begin, end], got " + offsets);
        }
        long begin = offsets.get(0).asLong(), end = offsets.get(1).asLong();
        long dataBytes = fileSize - dataOffset;
        if (begin < 0 || end < begin) throw new IllegalArgumentException(where + " has data_offsets [" + begin + ", " + end + "], which is not a range (0 <= begin <= end)");
        if (end > dataBytes) {
            throw new IllegalArgumentException(where + " has data_offsets [" + begin + ", " + end + "] outside the " + dataBytes + " data bytes of the file");
        }
        if (end - begin != expected) {
            throw new IllegalArgumentException(where + " holds " + (end - begin) + " bytes, but " + dtype + shape + " needs " + expected);
        }
        return new TensorEntry(name, dtype, shape, dataOffset + begin, expected, file);
    }

    public Path file() { return file; }

    /** Absolute offset of the data section (8 + header length). */
    public long dataOffset() { return dataOffset; }

    /** The file's size in bytes when its header was read. */
    public long fileSize() { return fileSize; }

    /** The {@code __metadata__} strings (empty when absent). */
    public Map<String, String> metadata() { return metadata; }

    /** All tensors, in the order of their data in the file. */
    public List<TensorEntry> tensors() { return List.copyOf(tensors.values()); }

    public boolean contains(String name) { return tensors.containsKey(name); }

    /** The tensor called {@code name}; fails naming the file when there is none. */
    public TensorEntry tensor(String name) { return TensorEntry.find(tensors, name, file); }

    @Override
    public String toString() { return "SafetensorsHeader[" + file + ", " + tensors.size() + " tensors]"; }
}
