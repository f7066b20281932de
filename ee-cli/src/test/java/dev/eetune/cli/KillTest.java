package dev.eetune.cli;

import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.testing.TestData;
import dev.eetune.train.AdamW;
import dev.eetune.train.Checkpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Crash safety of tuning: `ee tune` (checkpointing every step) runs in a child JVM and is killed with SIGKILL
 * ({@link Process#destroyForcibly}, i.e. kill -9) at seeded random moments: during the write of one of the next three
 * checkpoints, a few milliseconds into training, or anywhere in the run (start-up and evaluation included). After
 * every kill the latest checkpoint must load (every check of resume applies) and must not be older than before; the
 * next run resumes from it. Whenever a run gets to the end, its heads and final checkpoint must equal
 * an uninterrupted run's byte for byte; then a new round starts from scratch. The kill schedule is seeded; where a kill
 * lands depends on the machine's speed, so the output lists what each kill hit.
 */
class KillTest {
    static final long SEED = 20261201L;
    static final int KILLS = 24, STEPS = 12;

    @TempDir
    Path tmp;

    @Test
    void killedTuningAlwaysLeavesALoadableCheckpointAndResumesToTheUninterruptedWeightsBitForBit() throws Exception {
        long start = System.nanoTime();
        Path reference = tmp.resolve("reference");
        long t0 = System.nanoTime();
        Process p = start(reference, false);
        assertThat(p.waitFor()).as("uninterrupted run: %s", log(reference)).isZero();
        long referenceNanos = System.nanoTime() - t0;

        Random random = new Random(SEED);
        Map<String, Integer> outcomes = new TreeMap<>();
        int rounds = 0, loads = 0;
        Path out = tmp.resolve("round-0");
        try (LlamaModel model = LlamaModel.load(TestData.stories260K(), Backends.cpu())) {
            for (int kill = 0; kill < KILLS; kill++) {
                Path root = out.resolve("checkpoints");
                int before = latestStep(root);
                p = start(out, before >= 0);
                int mode = random.nextInt(5);
                String hit = mode < 3 ? waitForWrite(p, root, before + 1 + random.nextInt(3), random.nextInt(3))
                    : mode == 3 ? waitInTraining(p, root, random.nextInt(100)) : waitRandomly(p, (long) (random.nextDouble() * referenceNanos));
                if (hit == null) { // the run got to the end before the kill
                    assertThat(p.exitValue()).as("run %d: %s", kill, log(out)).isZero();
                    assertSameBytes(reference, out);
                    outcomes.merge("finished before the kill (then compared and restarted)", 1, Integer::sum);
                    out = tmp.resolve("round-" + ++rounds);
                    continue;
                }
                p.destroyForcibly(); // SIGKILL
                p.waitFor();
                outcomes.merge(hit, 1, Integer::sum);
                int after = latestStep(root);
                assertThat(after).as("kill %d (%s): the latest checkpoint never goes back", kill, hit).isGreaterThanOrEqualTo(before);
                if (after >= 0) {
                    load(model, Checkpoint.latest(root));
                    loads++;
                }
            }
        }
        Process last = start(out, latestStep(out.resolve("checkpoints")) >= 0);
        assertThat(last.waitFor()).as("final run: %s", log(out)).isZero();
        assertSameBytes(reference, out);
        System.out.printf("kill test: seed %d, %d kills (kill -9), %d loads of the latest checkpoint, all loaded; %d rounds to the end, each bit-identical to the "
            + "uninterrupted run (%.1f s); outcomes %s; %.0f s in all%n", SEED, KILLS, loads, rounds + 1, referenceNanos / 1e9, outcomes, (System.nanoTime() - start) / 1e9);
    }

    /** Starts `ee tune` into {@code out} in a child JVM like this one (same classpath, JVM options and binding), output to out.log. */
    private Process start(Path out, boolean resume) throws IOException {
        Files.createDirectories(out);
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-Deetune.binding=" + System.getProperty("eetune.binding", "auto"), "-cp", System.getProperty("java.class.path"), Main.class.getName(),
            "tune", "--model", TestData.stories260K().toString(), "--data", TestData.tinyStoriesTrain().toString(), "--cache-dir", tmp.resolve("cache").toString(),
            "--exits", "2,4", "--arch", "mlp", "--steps", Integer.toString(STEPS), "--batch", "2", "--seq-len", "32", "--eval-batches", "1", "--threads", "1",
            "--checkpoint-every", "1", "--keep-last", "2", "--quiet", "--out", out.toString()));
        if (resume) cmd.addAll(List.of("--resume", out.resolve("checkpoints").toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(out.resolve("out.log").toFile()));
        pb.environment().put("OMP_WAIT_POLICY", "PASSIVE");
        return pb.start();
    }

    /** Waits until the write of checkpoint {@code step} is under way, then {@code extraMillis} more; null when the run ended first. */
    private static String waitForWrite(Process p, Path root, int step, int extraMillis) throws Exception {
        String prefix = String.format("step-%07d.tmp-", step);
        while (p.isAlive()) {
            if (temporaryFolder(root, prefix)) {
                Thread.sleep(extraMillis);
                return temporaryFolder(root, prefix) ? "killed during a checkpoint write" : "killed just after a checkpoint write";
            }
            LockSupport.parkNanos(200_000);
        }
        return null;
    }

    /** Waits until training is under way (a checkpoint is being written), then {@code millis} more; null when the run ended first. */
    private static String waitInTraining(Process p, Path root, int millis) throws Exception {
        while (p.isAlive()) {
            if (temporaryFolder(root, "step-")) return p.waitFor(millis, TimeUnit.MILLISECONDS) ? null : "killed 0-99 ms into training";
            LockSupport.parkNanos(200_000);
        }
        return null;
    }

    /** Waits {@code nanos}; null when the run ended first. */
    private static String waitRandomly(Process p, long nanos) throws Exception {
        return p.waitFor(nanos, TimeUnit.NANOSECONDS) ? null : "killed anywhere in the run";
    }

    /** Whether a checkpoint's temporary folder whose name starts with {@code prefix} exists under {@code root}. */
    private static boolean temporaryFolder(Path root, String prefix) throws IOException {
        if (!Files.isDirectory(root)) return false;
        try (Stream<Path> list = Files.list(root)) {
            return list.map(f -> f.getFileName().toString()).anyMatch(n -> n.startsWith(prefix) && n.contains(".tmp-") && !n.endsWith(".tmp-deleting"));
        } catch (NoSuchFileException e) { // a folder renamed while listing
            return false;
        }
    }

    /** The step of the latest checkpoint under {@code root}, or -1 when there is none. */
    private static int latestStep(Path root) {
        Path dir = Files.isDirectory(root) ? Checkpoint.latest(root) : null;
        return dir == null ? -1 : Checkpoint.readState(dir).step();
    }

    /** Loads the checkpoint into heads like the run's, with every check resume makes on heads, moments and state. */
    private static void load(LlamaModel model, Path dir) {
        List<ExitSpec> exits = List.of(new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY), new ExitSpec(4, ExitArchitecture.MLP, ExitInit.COPY));
        try (EarlyExitModel ee = EarlyExitModel.attach(model, exits, 0); AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            Checkpoint.restore(dir, Checkpoint.readState(dir), ee, opt);
        }
    }

    /** The final heads and the final checkpoint's files of {@code out} equal those of {@code reference}, byte for byte. */
    private static void assertSameBytes(Path reference, Path out) throws IOException {
        String last = String.format("checkpoints/step-%07d/", STEPS);
        for (String f : new String[] {"heads.safetensors", last + "heads.safetensors", last + "optimizer.safetensors", last + "state.json"}) {
            assertThat(Files.readAllBytes(out.resolve(f))).as("%s of %s", f, out).isEqualTo(Files.readAllBytes(reference.resolve(f)));
        }
    }

    private static String log(Path out) throws IOException {
        Path f = out.resolve("out.log");
        return Files.exists(f) ? Files.readString(f) : "(no output)";
    }
}
