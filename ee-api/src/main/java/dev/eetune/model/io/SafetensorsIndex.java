package dev.eetune.model.io;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The tensors of a Hugging Face checkpoint: a single {@code model.safetensors}, or the shards named by the
 * {@code weight_map} of {@code model.safetensors.index.json}. Every tensor of every shard is included (as
 * transformers loads whole shards); a tensor in two shards, a missing shard, or a mapped tensor absent from its
 * shard is an error.
 */
public final class SafetensorsIndex {
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path source;
    private final List<SafetensorsHeader> shards;
    private final Map<String, TensorEntry> tensors;

    private SafetensorsIndex(Path source, List<SafetensorsHeader> shards, Map<String, TensorEntry> tensors) {
        this.source = source;
        this.shards = List.copyOf(shards);
        this.tensors = tensors;
    }

    /**
     * Opens a checkpoint directory (the index is preferred over a single file when both exist), an index file, or
     * one {@code .safetensors} file.
     */
    public static SafetensorsIndex open(Path path) {
        if (Files.isDirectory(path)) {
            Path index = path.resolve(INDEX_FILE), single = path.resolve(SINGLE_FILE);
            if (Files.isRegularFile(index)) return fromIndex(index);
            if (Files.isRegularFile(single)) return fromFile(single);
            throw new IllegalArgumentException("no safetensors checkpoint in " + path + ": expected " + SINGLE_FILE + " or " + INDEX_FILE);
        }
        if (!Files.isRegularFile(path)) throw new IllegalArgumentException("no safetensors checkpoint at " + path + ": not a file or directory");
        return path.getFileName().toString().endsWith(".json") ? fromIndex(path) : fromFile(path);
    }

    private static SafetensorsIndex fromFile(Path file) {
        SafetensorsHeader h = SafetensorsHeader.read(file);
        Map<String, TensorEntry> tensors = new TreeMap<>();
        for (TensorEntry e : h.tensors()) tensors.put(e.name(), e);
        return new SafetensorsIndex(file, List.of(h), tensors);
    }

    private static SafetensorsIndex fromIndex(Path index) {
        JsonNode weightMap = JsonFiles.readObject(index, "safetensors index").get("weight_map");
        if (weightMap == null || !weightMap.isObject() || weightMap.isEmpty()) throw new IllegalArgumentException(index + ": no weight_map object (name -> shard file)");
        Map<String, String> shardOf = new TreeMap<>();
        for (Map.Entry<String, JsonNode> e : weightMap.properties()) {
            if (!e.getValue().isTextual()) throw new IllegalArgumentException(index + ": weight_map entry '" + e.getKey() + "' must name a shard file, got " + e.getValue());
            shardOf.put(e.getKey(), e.getValue().asText());
        }
        List<SafetensorsHeader> shards = new ArrayList<>();
        Map<String, TensorEntry> tensors = new TreeMap<>();
        for (String shardName : new TreeSet<>(shardOf.values())) {
            SafetensorsHeader h = SafetensorsHeader.read(shardInFolder(index, shardName));
            shards.add(h);
            for (TensorEntry e : h.tensors()) {
                TensorEntry other = tensors.put(e.name(), e);
                if (other != null) throw new IllegalArgumentException(index + ": tensor '" + e.name() + "' is in both " + other.file().getFileName() + " and " + shardName);
            }
        }
        for (Map.Entry<String, String> e : shardOf.entrySet()) {
            TensorEntry t = tensors.get(e.getKey());
            if (t == null || !t.file().getFileName().toString().equals(Path.of(e.getValue()).getFileName().toString())) {
                throw new IllegalArgumentException(index + ": weight_map puts tensor '" + e.getKey() + "' in " + e.getValue() + ", but that shard does not hold it");
            }
        }
        return new SafetensorsIndex(index, shards, tensors);
    }

    /**
     * The shard {@code name} of {@code index}: a plain file name (no folders, no {@code ..}, not absolute) naming a
     * regular file whose real path lies in the index's folder, or in the folder the index itself really lies in (the
     * Hugging Face hub cache links every file of a snapshot to {@code ../../blobs/}). Checked before anything is read,
     * and a name that leads outside is refused without saying anything about what is there.
     */
    private static Path shardInFolder(Path index, String name) {
        Path folder = index.toAbsolutePath().getParent(), named;
        try {
            named = Path.of(name);
        } catch (InvalidPathException e) {
            named = null;
        }
        if (named == null || name.isEmpty() || named.isAbsolute() || named.getNameCount() != 1 || name.equals("..") || name.equals(".")) {
            throw new IllegalArgumentException(index + ": weight_map names shard '" + name + "', which is not a file name in the model folder (shards must lie beside the index)");
        }
        Path shard = folder.resolve(named);
        if (!Files.exists(shard, LinkOption.NOFOLLOW_LINKS)) throw new IllegalArgumentException(index + ": shard " + name + " is missing (expected at " + shard + ")");
        Path real;
        try {
            real = shard.toRealPath();
            if (!real.getParent().equals(folder.toRealPath()) && !real.getParent().equals(index.toRealPath().getParent())) real = null;
        } catch (IOException e) {
            real = null; // a dangling link: what it points to is none of our business
        }
        if (real == null) throw new IllegalArgumentException(index + ": shard " + name + " is a link that leads outside the model folder; refusing to read it");
        if (!Files.isRegularFile(real)) throw new IllegalArgumentException(index + ": shard " + name + " is not a regular file");
        return shard;
    }

    /** The file the checkpoint was opened from (the index, or the single safetensors file). */
    public Path source() { return source; }

    /** The safetensors files, each with its metadata. */
    public List<SafetensorsHeader> shards() { return shards; }

    /** All tensors, in name order. */
    public List<TensorEntry> tensors() { return List.copyOf(tensors.values()); }

    public boolean contains(String name) { return tensors.containsKey(name); }

    /** The tensor called {@code name}; fails naming the checkpoint when there is none. */
    public TensorEntry tensor(String name) { return TensorEntry.find(tensors, name, source); }

    @Override
    public String toString() { return "SafetensorsIndex[" + source + ", " + shards.size() + " files, " + tensors.size() + " tensors]"; }
}
