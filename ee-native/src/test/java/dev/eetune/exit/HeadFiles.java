package dev.eetune.exit;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.model.io.SafetensorsHeader;
import dev.eetune.model.io.SafetensorsWriter;
import dev.eetune.model.io.TensorEntry;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Shape;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;

/** Test fixture: rewrites an F32 head file with its eetune metadata and its tensors edited. */
final class HeadFiles {
    private static final ObjectMapper JSON = new ObjectMapper();

    private HeadFiles() {}

    static Path rewrite(Path file, Consumer<ObjectNode> editMetadata, Consumer<Map<String, float[]>> editTensors) {
        try {
            SafetensorsHeader h = SafetensorsHeader.read(file);
            ObjectNode meta = (ObjectNode) JSON.readTree(h.metadata().get(EarlyExitModel.METADATA_KEY));
            Map<String, float[]> tensors = new LinkedHashMap<>();
            Map<String, TensorEntry> entries = new LinkedHashMap<>();
            try (FileChannel ch = FileChannel.open(file)) {
                for (TensorEntry e : h.tensors()) {
                    ByteBuffer b = ByteBuffer.allocate((int) e.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
                    ch.read(b, e.fileOffset());
                    float[] v = new float[(int) e.shape().size()];
                    b.flip().asFloatBuffer().get(v);
                    tensors.put(e.name(), v);
                    entries.put(e.name(), e);
                }
            }
            editMetadata.accept(meta);
            editTensors.accept(tensors);
            SafetensorsWriter w = new SafetensorsWriter();
            tensors.forEach((name, v) -> w.put(name, v, entries.containsKey(name) ? entries.get(name).shape() : Shape.of(v.length), DType.F32));
            h.metadata().forEach(w::metadata);
            w.metadata(EarlyExitModel.METADATA_KEY, meta.toString());
            w.write(file);
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
