package dev.eetune.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BiFunction;

/**
 * Seeded, bounded mutation fuzzing of the parsers of user files. Each execution writes a mutant of a valid seed file
 * and hands it to the parser, which must either accept it (then the target checks what it got) or refuse it with an
 * {@link IllegalArgumentException} naming the file; any other outcome is a failure: another exception, an assertion
 * of the target, a try running past {@link #TRY_SECONDS} (a hang) or allocating more than {@link #TRY_BYTES} (memory
 * sized from a forged number). The run is reproducible from the seed ({@code -Deetune.fuzz.seed}); its length scales
 * with {@code -Deetune.fuzz.scale} and is capped at {@code -Deetune.fuzz.seconds} per target so CI stays short.
 */
public final class Fuzzer {
    /** What a parser may take per try; real parses of these kilobyte inputs take milliseconds and kilobytes. */
    static final int TRY_SECONDS = 20;
    static final long TRY_BYTES = 256L << 20;
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Parses {@code file}; returns normally when accepted (after checking what it got), throws when refused. */
    @FunctionalInterface
    public interface Target {
        void parse(Path file) throws Exception;
    }

    /** A mutant of {@code seed}, drawn with {@code r}. */
    @FunctionalInterface
    public interface Mutation extends BiFunction<byte[], Random, byte[]> {}

    /** What a run did: executions, how many were accepted and refused, and the failures (at most a few kept). */
    public record Report(String target, long seed, int executions, int accepted, int refused, long millis, List<String> failures) {
        @Override
        public String toString() {
            return String.format("fuzz %s: %d executions in %d ms (seed %d): %d accepted, %d refused with an IllegalArgumentException naming the file, %d failures",
                target, executions, millis, seed, accepted, refused, failures.size());
        }
    }

    private Fuzzer() {}

    public static long seed() { return Long.getLong("eetune.fuzz.seed", 20261201L); }

    /**
     * Runs {@code executions} (scaled) mutants of {@code seeds} through {@code target}, each written to {@code file};
     * a refusal must name {@code named} (usually the file). Prints and returns the report; the caller asserts that
     * it has no failures. A failing input is kept under {@code target/fuzz-failures/}.
     */
    public static Report run(String name, List<byte[]> seeds, List<Mutation> mutations, int executions, Path file, Path named, Target target) {
        long seed = seed() ^ name.hashCode();
        Random r = new Random(seed);
        int n = (int) Math.max(1, executions * Double.parseDouble(System.getProperty("eetune.fuzz.scale", "1")));
        long budgetNanos = TimeUnit.SECONDS.toNanos(Long.getLong("eetune.fuzz.seconds", 15L));
        List<String> failures = new ArrayList<>();
        int done = 0, accepted = 0, refused = 0;
        long t0 = System.nanoTime();
        ExecutorService worker = Executors.newSingleThreadExecutor(run -> {
            Thread t = new Thread(run, "fuzz-" + name);
            t.setDaemon(true); // a hung try must not keep the test JVM alive
            return t;
        });
        try {
            for (; done < n && System.nanoTime() - t0 < budgetNanos && failures.size() < 5; done++) {
                byte[] input = mutate(seeds.get(r.nextInt(seeds.size())), mutations, r);
                Files.write(file, input);
                Future<Throwable> f = worker.submit(() -> attempt(target, file));
                Throwable outcome;
                try {
                    outcome = f.get(TRY_SECONDS, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    f.cancel(true);
                    failures.add(keep(name, done, input, "still running after " + TRY_SECONDS + " s"));
                    break; // the worker is stuck: no further tries can run
                }
                if (outcome == null) {
                    accepted++;
                } else if (outcome instanceof IllegalArgumentException && outcome.getMessage() != null && outcome.getMessage().contains(named.toString())) {
                    refused++;
                } else {
                    failures.add(keep(name, done, input, stackTrace(outcome)));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException | ExecutionException e) {
            throw new IllegalStateException(e);
        } finally {
            worker.shutdownNow();
        }
        Report report = new Report(name, seed, done, accepted, refused, (System.nanoTime() - t0) / 1_000_000, failures);
        System.out.println(report);
        return report;
    }

    /** One try: null when accepted, else what it threw (an allocation beyond the bound counts as a failure). */
    private static Throwable attempt(Target target, Path file) {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long before = mx.getCurrentThreadAllocatedBytes();
        Throwable outcome = null;
        try {
            target.parse(file);
        } catch (Throwable t) { // OutOfMemoryError and StackOverflowError are findings too
            outcome = t;
        }
        long allocated = mx.getCurrentThreadAllocatedBytes() - before;
        if (allocated > TRY_BYTES) return new AssertionError("allocated " + (allocated >> 20) + " MiB for a " + fileSize(file) + "-byte input", outcome);
        return outcome;
    }

    private static long fileSize(Path file) {
        try {
            return Files.size(file);
        } catch (IOException e) {
            return -1;
        }
    }

    private static String keep(String name, int index, byte[] input, String why) throws IOException {
        Path dir = Files.createDirectories(Path.of("target", "fuzz-failures"));
        Path kept = dir.resolve(name + "-" + index + ".bin");
        Files.write(kept, input);
        return "input " + kept.toAbsolutePath() + ": " + why;
    }

    private static String stackTrace(Throwable t) {
        StringWriter w = new StringWriter();
        t.printStackTrace(new PrintWriter(w));
        return w.toString();
    }

    /** One to three mutations stacked. */
    private static byte[] mutate(byte[] seed, List<Mutation> mutations, Random r) {
        byte[] b = seed;
        for (int k = 1 + r.nextInt(3); k > 0; k--) b = mutations.get(r.nextInt(mutations.size())).apply(b, r);
        return b;
    }

    // ---- byte-level mutations --------------------------------------------------------------------------------------

    private static final long[] INTERESTING = {0, 1, -1, 2, 7, 8, 255, 256, 65535, 65536, 65537, 1 << 20, (1 << 20) + 1, Integer.MAX_VALUE,
        Integer.MIN_VALUE, 1L << 31, 1L << 32, (1L << 32) + 8, 1L << 40, 1L << 62, Long.MAX_VALUE, Long.MIN_VALUE, 0x616b3432};

    /**
     * Bit flips, interesting bytes, little-endian int32 / int64 fields overwritten with interesting numbers, truncation,
     * extension, deleted and duplicated chunks. Half the positions fall in the first {@code hot} bytes, where headers are.
     */
    public static List<Mutation> bytes(int hot) {
        return List.of(
            (b, r) -> {
                byte[] c = copy(b, 1);
                int at = position(c.length, hot, r);
                c[at] ^= (byte) (1 << r.nextInt(8));
                return c;
            },
            (b, r) -> {
                byte[] c = copy(b, 1);
                c[position(c.length, hot, r)] = (byte) new int[] {0, 1, 0x7f, 0x80, 0xff, '"', '{', '[', ',', '-'}[r.nextInt(10)];
                return c;
            },
            (b, r) -> field(b, r, hot, 4),
            (b, r) -> field(b, r, hot, 8),
            (b, r) -> Arrays.copyOf(b, b.length == 0 ? 0 : r.nextInt(b.length)),
            (b, r) -> {
                byte[] c = Arrays.copyOf(b, b.length + 1 + r.nextInt(64));
                for (int i = b.length; i < c.length; i++) c[i] = (byte) r.nextInt(256);
                return c;
            },
            (b, r) -> {
                if (b.length < 2) return b;
                int from = position(b.length, hot, r), len = 1 + r.nextInt(Math.min(64, b.length - from));
                byte[] c = new byte[b.length - len];
                System.arraycopy(b, 0, c, 0, from);
                System.arraycopy(b, from + len, c, from, b.length - from - len);
                return c;
            },
            (b, r) -> {
                if (b.length < 2) return b;
                int from = position(b.length, hot, r), len = 1 + r.nextInt(Math.min(64, b.length - from));
                byte[] c = new byte[b.length + len];
                System.arraycopy(b, 0, c, 0, from + len);
                System.arraycopy(b, from, c, from + len, b.length - from);
                return c;
            });
    }

    private static byte[] field(byte[] b, Random r, int hot, int width) {
        if (b.length < width) return b;
        byte[] c = b.clone();
        int at = Math.min(position(b.length, hot, r) & ~(width - 1), b.length - width);
        long v = r.nextInt(4) == 0 ? r.nextLong() : INTERESTING[r.nextInt(INTERESTING.length)];
        if (r.nextBoolean()) v += r.nextInt(3) - 1;
        ByteBuffer bb = ByteBuffer.wrap(c).order(ByteOrder.LITTLE_ENDIAN);
        if (width == 4) bb.putInt(at, (int) v);
        else bb.putLong(at, v);
        return c;
    }

    private static int position(int length, int hot, Random r) {
        return r.nextBoolean() && hot > 0 ? r.nextInt(Math.min(length, hot)) : r.nextInt(length);
    }

    private static byte[] copy(byte[] b, int atLeast) { return b.length >= atLeast ? b.clone() : new byte[atLeast]; }

    // ---- JSON mutations ----------------------------------------------------------------------------------------------

    /** {@link #mutateJson} on UTF-8 JSON files; input that no longer parses (after stacked byte mutations) is left as is. */
    public static Mutation json() {
        return (b, r) -> {
            JsonNode root;
            try {
                root = JSON.readTree(b);
            } catch (IOException e) {
                return b;
            }
            return root == null ? b : mutateJson(root, r).toString().getBytes(StandardCharsets.UTF_8);
        };
    }

    /**
     * A copy of {@code root} with one value replaced by a wrong type or an extreme number (huge, negative, fractional,
     * beyond double), a path-like or long string, a deep nest or a large array; or a field removed or duplicated
     * under another name.
     */
    public static JsonNode mutateJson(JsonNode root, Random r) {
        JsonNode copy = root.deepCopy();
        List<JsonNode> containers = new ArrayList<>();
        collect(copy, containers);
        if (containers.isEmpty()) return replacement(r);
        JsonNode parent = containers.get(r.nextInt(containers.size()));
        if (parent.isObject()) {
            ObjectNode o = (ObjectNode) parent;
            List<String> keys = new ArrayList<>();
            o.fieldNames().forEachRemaining(keys::add);
            if (keys.isEmpty() || r.nextInt(8) == 0) {
                o.set("x" + r.nextInt(4), replacement(r));
            } else {
                String key = keys.get(r.nextInt(keys.size()));
                switch (r.nextInt(6)) {
                    case 0 -> o.remove(key);
                    case 1 -> o.set(key + (r.nextBoolean() ? "" : "_"), o.get(key).deepCopy()); // the same (or a look-alike) key again
                    default -> o.set(key, replacement(r));
                }
            }
        } else {
            ArrayNode a = (ArrayNode) parent;
            if (a.isEmpty() || r.nextInt(6) == 0) a.add(replacement(r));
            else if (r.nextInt(5) == 0) a.remove(r.nextInt(a.size()));
            else a.set(r.nextInt(a.size()), replacement(r));
        }
        return copy;
    }

    private static void collect(JsonNode n, List<JsonNode> out) {
        if (!n.isContainerNode()) return;
        out.add(n);
        for (Iterator<JsonNode> it = n.elements(); it.hasNext(); ) collect(it.next(), out);
    }

    private static JsonNode replacement(Random r) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        switch (r.nextInt(14)) {
            case 0: return f.numberNode(INTERESTING[r.nextInt(INTERESTING.length)]);
            case 1: return f.numberNode(r.nextInt(2048) - 16);
            case 2: return f.numberNode(new double[] {0.5, -0.0, 1e-45, 1e38, 3.5e38, 1e308, -1e308, Double.MIN_VALUE}[r.nextInt(8)]);
            case 3: return f.numberNode(new BigInteger("18446744073709551617")); // beyond int64
            case 4: return f.textNode(new String[] {"", "F32", "BF16", "I64", "../x.safetensors", "/etc/hostname", "..", "a/b", "NaN", "1", "<s>", "\u0000"}[r.nextInt(12)]);
            case 5: return f.textNode("é".repeat(r.nextInt(5000)));
            case 6: return f.nullNode();
            case 7: return f.booleanNode(r.nextBoolean());
            case 8: return f.arrayNode();
            case 9: return f.objectNode();
            case 10: {
                ArrayNode a = f.arrayNode();
                for (int i = r.nextInt(3000); i > 0; i--) a.add(r.nextInt(3) - 1);
                return a;
            }
            case 11: {
                JsonNode deep = f.numberNode(1);
                for (int i = 0; i < 200; i++) deep = f.arrayNode().add(deep);
                return deep;
            }
            case 12: return f.arrayNode().add(f.numberNode(r.nextInt(64))).add(f.numberNode(INTERESTING[r.nextInt(INTERESTING.length)]));
            default: {
                ObjectNode o = f.objectNode();
                o.put("dtype", "F32").putArray("shape").add(r.nextInt(4));
                o.putArray("data_offsets").add(0).add(4 * r.nextInt(3));
                return o;
            }
        }
    }

    /**
     * Edits the JSON header of a safetensors file with {@code edit} and writes its true length before it, so that the
     * mutant gets past the length check to the fields; the data stays, or loses or gains a few bytes.
     */
    public static Mutation safetensorsHeader(BiFunction<JsonNode, Random, JsonNode> edit) {
        return (b, r) -> {
            if (b.length < 8) return b;
            long n = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
            if (n < 2 || n > b.length - 8) return b;
            JsonNode header;
            try {
                header = JSON.readTree(Arrays.copyOfRange(b, 8, 8 + (int) n));
            } catch (IOException e) {
                return b;
            }
            if (header == null) return b;
            byte[] h = edit.apply(header, r).toString().getBytes(StandardCharsets.UTF_8);
            int data = b.length - 8 - (int) n, keep = Math.max(0, data + (r.nextInt(4) == 0 ? r.nextInt(17) - 8 : 0));
            ByteBuffer out = ByteBuffer.allocate(8 + h.length + keep).order(ByteOrder.LITTLE_ENDIAN).putLong(h.length).put(h);
            out.put(b, 8 + (int) n, Math.min(keep, data));
            return out.array();
        };
    }
}
