package dev.eetune.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.FileTrees;
import dev.eetune.data.batch.DataPosition;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.model.io.JsonFiles;
import dev.eetune.model.io.SafetensorsHeader;
import dev.eetune.model.io.TensorEntry;
import dev.eetune.nn.TensorFiles;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A tuning checkpoint: heads (F32), AdamW moments, and {@code state.json} (step, optimizer step count, data
 * position, the exits and the data it was written for), in {@code ROOT/step-NNNNNNN/}. Written to a temporary
 * folder and renamed, then {@code ROOT/latest} is replaced atomically, so a crash never leaves a half-written
 * checkpoint where resume would look; what a crash leaves behind ({@code step-N.tmp-*}) is deleted by the next write
 * or resume. Checkpoints whose heads or moments are not finite are never written.
 *
 * <p>Everything read back is checked: {@link #readState} the fields of {@code state.json}, {@link #restore} the
 * tensors (names, shapes, finite values, non-negative second moments, step counts that agree). Errors are
 * {@link IllegalArgumentException}s naming the file, the field and what differs.
 */
public final class Checkpoint {
    private static final ObjectMapper JSON = new ObjectMapper();
    static final String FORMAT = "eetune-tuning-checkpoint";
    static final int VERSION = 1;
    private static final Pattern STEP_DIR = Pattern.compile("step-(\\d{7})");
    /** Leftovers of an interrupted write or delete: a checkpoint's temporary folder or a temporary pointer file. */
    private static final Pattern STALE = Pattern.compile("step-\\d{7}\\.tmp-.*|latest.*\\.tmp");
    /** Values checked per host copy, so that a large head is never copied to the heap whole. */
    private static final int CHECK_CHUNK = 1 << 20;

    /** What resume needs besides tensors, and what the checkpoint must agree with. */
    public record State(int step, int optimizerSteps, DataPosition position, Data data, List<String> exits) {
        public State {
            exits = List.copyOf(exits);
        }
    }

    /**
     * The training data a checkpoint was written for: the loader's seed and batch size, the windows' length and
     * count, and a SHA-256 of their tokens ({@link dev.eetune.data.batch.PackedSequences#sha256}).
     */
    public record Data(long seed, int batchSize, int seqLen, long windows, String sha256) {
        /** The fingerprint of {@code loader}'s data (hashes every training token: compute it once per run). */
        public static Data of(BatchLoader loader) {
            return new Data(loader.seed(), loader.batchSize(), loader.data().seqLen(), loader.data().size(), loader.data().sha256());
        }

        /** What differs between the checkpoint's data ({@code this}, read from {@code file}) and the run's, or null. */
        String difference(Path file, Data run) {
            if (seed != run.seed) return file + ": data.seed is " + seed + ", this run's data seed is " + run.seed;
            if (batchSize != run.batchSize) return file + ": data.batch_size is " + batchSize + ", this run's batch size is " + run.batchSize;
            if (seqLen != run.seqLen) return file + ": data.seq_len is " + seqLen + ", this run's sequence length is " + run.seqLen;
            if (windows != run.windows || !sha256.equals(run.sha256)) {
                return file + ": written for other training data: data.windows " + windows + ", data.sha256 " + sha256 + "; this run's data has " + run.windows
                    + " windows, sha256 " + run.sha256;
            }
            return null;
        }
    }

    private Checkpoint() {}

    /** The exits of {@code model} as a checkpoint records them: spec and temperature, in layer order. */
    static List<String> exits(EarlyExitModel model) {
        return model.heads().stream().map(h -> h.spec() + " T=" + h.temperature()).toList();
    }

    /**
     * Writes a checkpoint of {@code model}, {@code opt} and {@code state} under {@code root}, makes it the latest and
     * then deletes all but the newest {@code keepLast} checkpoints (0: keep all), never the one written nor
     * {@code keep} (the one a run resumed from; may be null). Refuses (IllegalStateException) when a head or moment
     * holds a non-finite value: a diverged run must not replace the last good checkpoint.
     */
    public static Path write(Path root, EarlyExitModel model, AdamW opt, State state, int keepLast, Path keep) {
        String name = String.format("step-%07d", state.step());
        String bad = firstBadValue(model, opt);
        if (bad != null) throw new IllegalStateException("refusing to write checkpoint " + root.resolve(name) + ": " + bad);
        Map<String, Tensor> moments = moments(opt);
        try {
            Files.createDirectories(root);
            deleteStale(root);
            Path tmp = Files.createTempDirectory(root, name + ".tmp-");
            model.save(tmp.resolve("heads.safetensors"), DType.F32);
            TensorFiles.write(tmp.resolve("optimizer.safetensors"), moments, DType.F32, Map.of("adamw_steps", Integer.toString(opt.steps())));
            Files.writeString(tmp.resolve("state.json"), toJson(state), StandardCharsets.UTF_8);
            Path dir = root.resolve(name);
            if (Files.exists(dir)) FileTrees.delete(moveAside(dir)); // written again: a crash came before `latest` moved on, or a resume from an older one
            Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
            Path latestTmp = Files.createTempFile(root, "latest", ".tmp");
            Files.writeString(latestTmp, name, StandardCharsets.UTF_8);
            Files.move(latestTmp, root.resolve("latest"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            if (keepLast > 0) deleteOld(root, keepLast, dir, keep);
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write checkpoint under " + root + ": " + e, e);
        }
    }

    /** The newest complete checkpoint under {@code root} (or {@code root} itself if it is one), or null. */
    public static Path latest(Path root) {
        if (Files.isRegularFile(root.resolve("state.json"))) return root;
        Path pointer = root.resolve("latest");
        try {
            if (!Files.isRegularFile(pointer)) return null;
            String name = Files.readString(pointer, StandardCharsets.UTF_8).trim();
            if (!STEP_DIR.matcher(name).matches()) throw new IllegalArgumentException(pointer + " names '" + name + "', not a checkpoint folder step-NNNNNNN");
            Path dir = root.resolve(name);
            if (!Files.isRegularFile(dir.resolve("state.json"))) throw new IllegalArgumentException(pointer + " names " + dir + ", which is not a complete checkpoint");
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + pointer, e);
        }
    }

    /** Reads and checks {@code dir/state.json}: every field present, typed and in range, the step matching the folder name. */
    public static State readState(Path dir) {
        Path file = dir.resolve("state.json");
        JsonNode s = JsonFiles.readObject(file, "checkpoint state");
        String format = text(file, s, "format");
        if (!format.equals(FORMAT)) throw new IllegalArgumentException(file + ": field 'format' is '" + format + "', expected '" + FORMAT + "'");
        long version = integer(file, s, "version", 0, Integer.MAX_VALUE);
        if (version != VERSION) throw new IllegalArgumentException(file + ": field 'version' is " + version + ", this build reads version " + VERSION);
        int step = (int) integer(file, s, "step", 0, Integer.MAX_VALUE);
        Matcher m = STEP_DIR.matcher(dir.getFileName() == null ? "" : dir.getFileName().toString());
        if (m.matches() && Integer.parseInt(m.group(1)) != step) throw new IllegalArgumentException(file + ": field 'step' is " + step + ", but the folder is " + dir.getFileName());
        int optimizerSteps = (int) integer(file, s, "optimizer_steps", 0, step);
        JsonNode p = object(file, s, "data_position");
        DataPosition position = new DataPosition(integer(file, p, "data_position.epoch", 0, Long.MAX_VALUE), integer(file, p, "data_position.index", 0, Long.MAX_VALUE));
        JsonNode d = object(file, s, "data");
        Data data = new Data(integer(file, d, "data.seed", Long.MIN_VALUE, Long.MAX_VALUE), (int) integer(file, d, "data.batch_size", 1, Integer.MAX_VALUE),
            (int) integer(file, d, "data.seq_len", 1, Integer.MAX_VALUE), integer(file, d, "data.windows", 1, Long.MAX_VALUE), text(file, d, "data.sha256"));
        if (position.index() >= data.windows()) {
            throw new IllegalArgumentException(file + ": field 'data_position.index' is " + position.index() + ", but the data has only " + data.windows() + " windows");
        }
        JsonNode e = s.path("exits");
        if (!e.isArray() || e.isEmpty()) throw new IllegalArgumentException(file + ": field 'exits' must be a non-empty array of exit descriptions, got " + describe(e));
        List<String> exits = new ArrayList<>();
        for (JsonNode x : e) {
            if (!x.isTextual()) throw new IllegalArgumentException(file + ": field 'exits' must hold strings, got " + x);
            exits.add(x.asText());
        }
        return new State(step, optimizerSteps, position, data, exits);
    }

    /**
     * Checks that the checkpoint in {@code dir} (whose {@link #readState state} is {@code state}) was written for
     * {@code model}'s exits, then loads its heads and optimizer moments into {@code model} and {@code opt} and checks
     * them (finite, second moments >= 0, step counts that agree). After a failure while loading tensors the heads and
     * moments are partly overwritten: do not train on.
     */
    public static void restore(Path dir, State state, EarlyExitModel model, AdamW opt) {
        Path stateFile = dir.resolve("state.json"), headsFile = dir.resolve("heads.safetensors"), optFile = dir.resolve("optimizer.safetensors");
        List<String> exits = exits(model);
        if (!state.exits().equals(exits)) throw new IllegalArgumentException(stateFile + ": written for exits " + state.exits() + ", this run has exits " + exits);
        Map<String, Tensor> heads = model.valuesByName(), moments = moments(opt);
        SafetensorsHeader optHeader = requireExactly(optFile, moments.keySet());
        String adamwSteps = optHeader.metadata().get("adamw_steps");
        if (!Integer.toString(state.optimizerSteps()).equals(adamwSteps)) {
            throw new IllegalArgumentException(optFile + ": metadata 'adamw_steps' is " + adamwSteps + ", but " + stateFile + " has optimizer_steps " + state.optimizerSteps());
        }
        requireExactly(headsFile, heads.keySet());
        TensorFiles.readInto(headsFile, heads);
        TensorFiles.readInto(optFile, moments);
        String bad = firstBadValue(heads);
        if (bad != null) throw new IllegalArgumentException(headsFile + ": " + bad);
        bad = firstBadValue(moments);
        if (bad != null) throw new IllegalArgumentException(optFile + ": " + bad);
        boolean allZero = true;
        for (Tensor t : moments.values()) allZero &= t.backend().ops().sumSquares(t) == 0;
        if (state.optimizerSteps() == 0 && !allZero) {
            throw new IllegalArgumentException(optFile + ": moments are non-zero, but " + stateFile + " has optimizer_steps 0 (no update was ever made)");
        }
        opt.restoreSteps(state.optimizerSteps());
    }

    /**
     * Deletes what an interrupted write left in {@code root} ({@code step-N.tmp-*} folders, temporary pointer files).
     * Only one run may write to a root at a time.
     */
    public static void deleteStale(Path root) {
        try (Stream<Path> list = Files.list(root)) {
            for (Path p : list.filter(p -> STALE.matcher(p.getFileName().toString()).matches()).toList()) FileTrees.delete(p);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete stale temporary checkpoint files in " + root + ": " + e, e);
        }
    }

    /** The root a checkpoint folder {@code dir} belongs to, or null when its name is not step-NNNNNNN. */
    static Path rootOf(Path dir) {
        Path name = dir.toAbsolutePath().normalize().getFileName();
        return name != null && STEP_DIR.matcher(name.toString()).matches() ? dir.toAbsolutePath().normalize().getParent() : null;
    }

    private static String toJson(State state) throws IOException {
        ObjectNode s = JSON.createObjectNode();
        s.put("format", FORMAT).put("version", VERSION).put("step", state.step()).put("optimizer_steps", state.optimizerSteps());
        s.putObject("data_position").put("epoch", state.position().epoch()).put("index", state.position().index());
        Data d = state.data();
        s.putObject("data").put("seed", d.seed()).put("batch_size", d.batchSize()).put("seq_len", d.seqLen()).put("windows", d.windows()).put("sha256", d.sha256());
        state.exits().forEach(s.putArray("exits")::add);
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(s);
    }

    /** The optimizer's moments by their names in a checkpoint: m.PARAM and v.PARAM. */
    static Map<String, Tensor> moments(AdamW opt) {
        Map<String, Tensor> moments = new LinkedHashMap<>();
        opt.state().forEach((p, mv) -> {
            moments.put("m." + p, mv[0]);
            moments.put("v." + p, mv[1]);
        });
        return moments;
    }

    /** The header of {@code file}, which must hold exactly the tensors {@code names}: a subset would load silently. */
    private static SafetensorsHeader requireExactly(Path file, Set<String> names) {
        SafetensorsHeader h = SafetensorsHeader.read(file);
        Set<String> extra = new TreeSet<>(), missing = new TreeSet<>(names);
        for (TensorEntry t : h.tensors()) if (!missing.remove(t.name())) extra.add(t.name());
        if (!extra.isEmpty() || !missing.isEmpty()) {
            throw new IllegalArgumentException(file + ": tensors differ from this run's exits: " + (missing.isEmpty() ? "" : "missing " + missing + " ")
                + (extra.isEmpty() ? "" : "unexpected " + extra));
        }
        return h;
    }

    /**
     * Describes the first head parameter or optimizer moment that holds a non-finite value (or a negative second
     * moment), or returns null when all are fine: only such a state is written.
     */
    static String firstBadValue(EarlyExitModel model, AdamW opt) {
        String bad = firstBadValue(model.valuesByName());
        if (bad != null) return "head " + bad;
        bad = firstBadValue(moments(opt));
        return bad == null ? null : "optimizer " + bad;
    }

    /** The first non-finite value of {@code tensors}, or the first negative second moment ("v.*"), described; or null. */
    private static String firstBadValue(Map<String, Tensor> tensors) {
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            String bad = TensorFiles.firstNonFinite(e.getKey(), e.getValue());
            if (bad != null) return bad;
        }
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            if (!e.getKey().startsWith("v.")) continue;
            Tensor t = e.getValue();
            long rowSize = t.size() / Math.max(1, t.dim(0));
            int perChunk = (int) Math.max(1, CHECK_CHUNK / Math.max(1, rowSize));
            for (int r = 0; r < t.dim(0); r += perChunk) {
                float[] v = t.slice(r, Math.min(t.dim(0), r + perChunk)).toFloatArray();
                for (int i = 0; i < v.length; i++) {
                    if (v[i] < 0) return "tensor '" + e.getKey() + "' holds " + v[i] + " at element " + (r * rowSize + i) + " (a second moment: must be >= 0)";
                }
            }
        }
        return null;
    }

    private static long integer(Path file, JsonNode node, String field, long min, long max) {
        JsonNode v = node.path(field.substring(field.lastIndexOf('.') + 1));
        if (!v.isIntegralNumber() || !v.canConvertToLong()) throw new IllegalArgumentException(file + ": field '" + field + "' must be an integer, got " + describe(v));
        long x = v.asLong();
        if (x < min || x > max) throw new IllegalArgumentException(file + ": field '" + field + "' is " + x + ", must be in [" + min + ", " + max + "]");
        return x;
    }

    private static String text(Path file, JsonNode node, String field) {
        JsonNode v = node.path(field.substring(field.lastIndexOf('.') + 1));
        if (!v.isTextual()) throw new IllegalArgumentException(file + ": field '" + field + "' must be a string, got " + describe(v));
        return v.asText();
    }

    private static JsonNode object(Path file, JsonNode node, String field) {
        JsonNode v = node.path(field);
        if (!v.isObject()) throw new IllegalArgumentException(file + ": field '" + field + "' must be an object, got " + describe(v));
        return v;
    }

    private static String describe(JsonNode v) { return v.isMissingNode() ? "nothing (the field is missing)" : v.toString(); }

    /** Deletes the oldest complete checkpoints beyond the newest {@code keepLast}, sparing {@code written} and {@code keep}. */
    private static void deleteOld(Path root, int keepLast, Path written, Path keep) throws IOException {
        List<Path> complete;
        try (Stream<Path> list = Files.list(root)) {
            complete = list.filter(p -> STEP_DIR.matcher(p.getFileName().toString()).matches() && Files.isRegularFile(p.resolve("state.json")))
                .sorted(Comparator.comparing((Path p) -> p.getFileName().toString()).reversed()).toList();
        }
        Path spare = keep == null ? null : keep.toAbsolutePath().normalize();
        for (Path p : complete.subList(Math.min(keepLast, complete.size()), complete.size())) {
            if (p.equals(written) || p.toAbsolutePath().normalize().equals(spare)) continue;
            FileTrees.delete(moveAside(p));
        }
    }

    /** Renames a checkpoint folder to a stale name first, so that a crash while deleting it leaves only what {@link #deleteStale} removes. */
    private static Path moveAside(Path dir) throws IOException {
        Path aside = dir.resolveSibling(dir.getFileName() + ".tmp-deleting");
        if (Files.exists(aside)) FileTrees.delete(aside);
        return Files.move(dir, aside, StandardCopyOption.ATOMIC_MOVE);
    }

}
