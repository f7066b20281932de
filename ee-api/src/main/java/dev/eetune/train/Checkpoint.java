package dev.eetune.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.data.batch.DataPosition;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.nn.TensorFiles;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A tuning checkpoint: heads (F32), AdamW moments, step, data position and the data seed, in
 * {@code ROOT/step-NNNNNNN/}. Written to a temporary folder and renamed, then {@code ROOT/latest} is replaced
 * atomically, so a crash never leaves a half-written checkpoint where resume would look.
 */
public final class Checkpoint {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** What resume needs besides tensors. */
    public record State(int step, DataPosition position, long dataSeed) {}

    private Checkpoint() {}

    public static Path write(Path root, EarlyExitModel model, AdamW opt, State state) {
        try {
            Files.createDirectories(root);
            String name = String.format("step-%07d", state.step());
            Path tmp = Files.createTempDirectory(root, name + ".tmp-");
            model.save(tmp.resolve("heads.safetensors"), DType.F32);
            Map<String, Tensor> moments = new LinkedHashMap<>();
            opt.state().forEach((p, mv) -> {
                moments.put("m." + p, mv[0]);
                moments.put("v." + p, mv[1]);
            });
            TensorFiles.write(tmp.resolve("optimizer.safetensors"), moments, DType.F32, Map.of("adamw_steps", Integer.toString(opt.steps())));
            ObjectNode s = JSON.createObjectNode();
            s.put("step", state.step()).put("optimizer_steps", opt.steps()).put("data_seed", state.dataSeed());
            s.set("data_position", JSON.readTree(state.position().toJson()));
            Files.writeString(tmp.resolve("state.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(s), StandardCharsets.UTF_8);
            Path dir = root.resolve(name);
            if (Files.exists(dir)) deleteTree(dir);
            Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
            Path latestTmp = Files.createTempFile(root, "latest", ".tmp");
            Files.writeString(latestTmp, name, StandardCharsets.UTF_8);
            Files.move(latestTmp, root.resolve("latest"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write checkpoint under " + root, e);
        }
    }

    /** The newest complete checkpoint under {@code root} (or {@code root} itself if it is one), or null. */
    public static Path latest(Path root) {
        if (Files.isRegularFile(root.resolve("state.json"))) return root;
        Path pointer = root.resolve("latest");
        try {
            if (!Files.isRegularFile(pointer)) return null;
            Path dir = root.resolve(Files.readString(pointer, StandardCharsets.UTF_8).trim());
            if (!Files.isRegularFile(dir.resolve("state.json"))) throw new IllegalStateException(pointer + " names " + dir + ", which is not a complete checkpoint");
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + pointer, e);
        }
    }

    /** Loads heads and optimizer moments from {@code dir} into {@code model} and {@code opt}; returns the state. */
    public static State restore(Path dir, EarlyExitModel model, AdamW opt) {
        try {
            JsonNode s = JSON.readTree(dir.resolve("state.json").toFile());
            TensorFiles.readInto(dir.resolve("heads.safetensors"), model.valuesByName());
            Map<String, Tensor> moments = new LinkedHashMap<>();
            opt.state().forEach((p, mv) -> {
                moments.put("m." + p, mv[0]);
                moments.put("v." + p, mv[1]);
            });
            TensorFiles.readInto(dir.resolve("optimizer.safetensors"), moments);
            opt.restoreSteps(s.path("optimizer_steps").asInt());
            return new State(s.path("step").asInt(), DataPosition.fromJson(s.path("data_position").toString()), s.path("data_seed").asLong());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read checkpoint " + dir, e);
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        try (Stream<Path> walk = Files.walk(dir)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
        }
    }
}
