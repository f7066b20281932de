package dev.eetune.cli;

import dev.eetune.backend.spi.NativeLibraryLoader;
import dev.eetune.nativelib.MpiGroupProvider;
import dev.eetune.testing.TestData;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * `ee tune --backend cuda` under {@code mpirun} without a GPU: the CUDA backend's distributed path end to end, with
 * libeecuda and libeenccl built on the CUDA emulation ("device" memory is host memory) and a fake NCCL that does NCCL's
 * calls with MPI (native/dist/test/emulated-nccl.sh, fake_nccl.c). What runs is the real code down to the NCCL calls:
 * ProcessGroups.forBackend choosing the NCCL group, NcclGroup (generated binding), the unique id broadcast over MPI,
 * libeenccl's rank-order all-reduce of the heads' device gradients, and device send/recv of a pipeline's hidden
 * states. Runs are compared with one process on the same (emulated) backend: 2 pipeline stages bit for bit (each
 * head's gradient and loss come from one stage, the other adds zeros), 2 data-parallel ranks within 1e-6 relative as
 * in {@link DistributedTuneTest} and for the same reason (two micro-batch sums added instead of one accumulated).
 * The ranks load libeecpu before libeecuda (the MPI group's host buffers) and the reference does not, so on JNA, which
 * opens libraries RTLD_GLOBAL, these comparisons also catch libeecuda's own calls reaching libeecpu's same-named
 * kernels (they did, 2.4e-5 in the heads, until both libraries were linked with -Bsymbolic; see
 * native/test/self_binding.sh). What only a GPU shows (real NCCL, speed) is in native/cuda/device-check.sh. The emulation is slow: 2 steps of 2 micro-batches of 1 x 8 tokens.
 *
 * <p>Skipped only where mpirun or mpicc is absent and CI is not set (CI installs Open MPI, see .ci/run).
 */
class EmulatedNcclTuneTest {
    @TempDir
    static Path shared;
    static Path libraries, reference;

    @TempDir
    Path tmp;

    @BeforeAll
    static void buildEmulatedLibrariesAndTuneOneProcess() throws Exception {
        DistributedTuneTest.requireOnPath("mpirun");
        DistributedTuneTest.requireOnPath("mpicc");
        Path repo = Path.of("").toAbsolutePath().getParent(), script = repo.resolve("native/dist/test/emulated-nccl.sh");
        assertThat(script).as("the repository's native/ beside ee-cli").exists();
        Path cpu = NativeLibraryLoader.load(MpiGroupProvider.class, "eecpu"), dist = NativeLibraryLoader.load(MpiGroupProvider.class, "eedist");
        Path build = shared.resolve("build");
        Files.createDirectories(build);
        Process p = new ProcessBuilder("bash", script.toString(), build.toString(), cpu.toString(), dist.toString()).redirectErrorStream(true)
            .redirectOutput(build.resolve("out.log").toFile()).start();
        assertThat(p.waitFor(15, TimeUnit.MINUTES)).as("building the emulated libraries").isTrue();
        assertThat(p.exitValue()).as("emulated-nccl.sh: %s", Files.readString(build.resolve("out.log"))).isZero();
        libraries = build.resolve("lib");
        reference = shared.resolve("one-process");
        Process one = launch(reference, 0, List.of(), Map.of());
        assertThat(DistributedTuneTest.finish(one, reference, 900)).as("one-process run on the emulated CUDA backend: %s", DistributedTuneTest.log(reference)).isZero();
    }

    @Test
    void twoRanksOnTheCudaBackendSumTheHeadGradientsThroughNcclLikeOneProcess() throws Exception {
        Path out = tmp.resolve("two-ranks");
        Process p = launch(out, 2, List.of(), Map.of());
        assertThat(DistributedTuneTest.finish(p, out, 900)).as("2-rank run: %s", DistributedTuneTest.log(out)).isZero();
        DistributedTuneTest.assertLike(reference, out, 1);
        assertThat(DistributedTuneTest.log(out)).contains("2 data-parallel replica(s)").contains("rank 0 of 2 on").contains("device tensors through NCCL sent");
    }

    @Test
    void twoPipelineStagesOnTheCudaBackendPassHiddenStatesThroughNcclLikeOneProcess() throws Exception {
        Path out = tmp.resolve("pipeline");
        Process p = launch(out, 2, List.of("--pipeline-stages", "2"), Map.of());
        assertThat(DistributedTuneTest.finish(p, out, 900)).as("2-stage run: %s", DistributedTuneTest.log(out)).isZero();
        DistributedTuneTest.assertLike(reference, out, 1, 0); // each head's gradient comes from one stage, plus zeros: exact
        // Each stage copies to the device only the model tensors it uses: its layers, and the MLP weights its other
        // head was initialised from. The one process also evaluated the whole model, so it holds all 5 layers; every
        // other allocation (heads, moments, scratch) is the same in every process.
        int[] h = llama2cHeader(TestData.stories260K());
        long dim = h[0], hidden = h[1], kvDim = (long) h[4] * (h[0] / h[3]);
        long layer = 4 * (2 * dim + 2 * dim * dim + 2 * dim * kvDim + 3 * dim * hidden), mlp = 4 * 3 * dim * hidden;
        assertThat(h[2]).as("stories260K's layers").isEqualTo(5);
        long[] stage = deviceBytes(out), one = deviceBytes(reference);
        assertThat(stage).hasSize(2);
        assertThat(one[0] - stage[0]).as("stage 0 (layers 1-2 and layer 4's MLP) holds less than one process by").isEqualTo(3 * layer - mlp);
        assertThat(one[0] - stage[1]).as("stage 1 (layers 3-4 and layer 2's MLP) holds less than one process by").isEqualTo(3 * layer - mlp);
    }

    @Test
    void aMissingNcclLibraryStopsEveryRankNamingIt() throws Exception {
        Path out = tmp.resolve("no-nccl");
        Process p = launch(out, 2, List.of(), Map.of("EETUNE_NCCL", "/nonexistent/libnccl.so.2"));
        assertThat(DistributedTuneTest.finish(p, out, 900)).isNotZero();
        assertThat(DistributedTuneTest.log(out)).contains("cannot load NCCL, /nonexistent/libnccl.so.2 (from EETUNE_NCCL)").contains("install libnccl2");
        assertThat(out.resolve("losses.csv")).doesNotExist();
    }

    /** Each rank's device memory after tuning, from rank 0's "cuda memory allocated after tuning: rank 0 (stage 0) N bytes; ..." line. */
    private static long[] deviceBytes(Path run) throws IOException {
        Matcher m = Pattern.compile("cuda memory allocated after tuning: (.*)").matcher(DistributedTuneTest.log(run));
        assertThat(m.find()).as("the device memory line in %s", DistributedTuneTest.log(run)).isTrue();
        List<Long> bytes = new ArrayList<>();
        Matcher each = Pattern.compile("rank (\\d+) \\(stage \\d+\\) ([\\d,]+) bytes").matcher(m.group(1));
        while (each.find()) bytes.add(Long.parseLong(each.group(2).replace(",", "")));
        System.out.printf("%s: device bytes per rank %s%n", run.getFileName(), bytes);
        return bytes.stream().mapToLong(Long::longValue).toArray();
    }

    /** The seven int32 of a llama2.c checkpoint's header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len. */
    private static int[] llama2cHeader(Path model) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(model), 0, 28).order(ByteOrder.LITTLE_ENDIAN);
        int[] h = new int[7];
        for (int i = 0; i < 7; i++) h[i] = b.getInt(4 * i);
        return h;
    }

    /** `ee tune --backend cuda` on the emulated libraries: one process when ranks is 0, else under mpirun. */
    private static Process launch(Path out, int ranks, List<String> extra, Map<String, String> env) throws Exception {
        Files.createDirectories(out);
        List<String> cmd = new ArrayList<>(ranks == 0 ? List.of() : DistributedTuneTest.mpirun(ranks));
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-Deetune.binding=" + System.getProperty("eetune.binding", "auto"), "-cp", System.getProperty("java.class.path"), Main.class.getName(),
            "tune", "--backend", "cuda", "--model", TestData.stories260K().toString(), "--data", TestData.tinyStoriesTrain().toString(),
            "--cache-dir", shared.resolve("cache").toString(), "--exits", "2,4", "--arch", "mlp", "--steps", "2", "--batch", "1", "--seq-len", "8",
            "--micro-batches", "2", "--eval-batches", "1", "--threads", "1", "--checkpoint-every", "0", "--quiet",
            "--loss-csv", out.resolve("losses.csv").toString(), "--out", out.toString()));
        cmd.addAll(extra);
        Map<String, String> all = new java.util.HashMap<>(Map.of("EETUNE_NATIVE_PATH", libraries.toString(), "EETUNE_NCCL", libraries.resolve("libnccl_fake.so").toString(),
            "EETUNE_CUBLAS", libraries.resolve("libcublas_fake.so").toString()));
        all.putAll(env);
        return DistributedTuneTest.start(cmd, out, all);
    }
}
