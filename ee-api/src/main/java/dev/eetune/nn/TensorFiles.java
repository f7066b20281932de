package dev.eetune.nn;

import dev.eetune.backend.Backend;
import dev.eetune.backend.MappedFile;
import dev.eetune.model.io.SafetensorsHeader;
import dev.eetune.model.io.SafetensorsWriter;
import dev.eetune.model.io.TensorEntry;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.nio.file.Path;
import java.util.Map;

/** Named tensors to and from safetensors files (heads, optimizer state), written atomically. */
public final class TensorFiles {
    private TensorFiles() {}

    /** Writes {@code tensors} (stored as {@code dtype}) with {@code metadata}. */
    public static void write(Path file, Map<String, Tensor> tensors, DType dtype, Map<String, String> metadata) {
        SafetensorsWriter w = new SafetensorsWriter();
        tensors.forEach((name, t) -> {
            if (t.dtype() == dtype && t.device().isHost()) w.put(name, dtype, t.shape(), t.backend().host().view(t.address(), t.byteSize()));
            else w.put(name, t.toFloatArray(), t.shape(), dtype);
        });
        metadata.forEach(w::metadata);
        w.write(file);
    }

    /**
     * Fills each tensor of {@code into} from the same-named tensor in {@code file} (shapes must match; dtypes convert).
     * A NaN or infinity in a float tensor is refused, naming the tensor and the first such element: no trained
     * weight or optimizer state is ever non-finite, and one would silently poison every result computed from it.
     */
    public static void readInto(Path file, Map<String, Tensor> into) {
        SafetensorsHeader header = SafetensorsHeader.read(file);
        if (into.isEmpty()) return;
        Backend be = into.values().iterator().next().backend();
        try (Scope scope = Scope.of(be, file.toString())) {
            MappedFile mapped = scope.track(be.map(file));
            into.forEach((name, dst) -> {
                if (!header.contains(name)) throw new IllegalArgumentException(file + ": tensor '" + name + "' is missing");
                TensorEntry t = header.tensor(name);
                if (!t.shape().equals(dst.shape())) throw new IllegalArgumentException(file + ": tensor '" + name + "' has shape " + t.shape() + ", expected " + dst.shape());
                Tensor stored = scope.wrap(mapped, t.fileOffset(), t.dtype(), t.shape());
                if (t.dtype() == dst.dtype()) dst.copyFrom(stored);
                else be.ops().cast(dst, stored);
                String bad = firstNonFinite(name, dst);
                if (bad != null) throw new IllegalArgumentException(file + ": " + bad);
            });
        }
    }

    /**
     * "tensor 'NAME' holds a non-finite value (NaN at element i)" for the first NaN or infinity of an F32 tensor, or
     * null: one native sum of squares (squares of floats cannot overflow a double sum), a host read only when it fails.
     */
    public static String firstNonFinite(String name, Tensor t) {
        if (t.dtype() != DType.F32 || Double.isFinite(t.backend().ops().sumSquares(t))) return null;
        float[] v = t.toFloatArray();
        int i = 0;
        while (Float.isFinite(v[i])) i++;
        return "tensor '" + name + "' holds a non-finite value (" + v[i] + " at element " + i + ")";
    }
}
