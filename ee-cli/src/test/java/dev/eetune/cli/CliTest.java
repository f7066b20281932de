package dev.eetune.cli;

import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.model.LlamaModel;
import dev.eetune.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The `ee` commands end to end on the real stories260K model and TinyStories text. */
class CliTest {
    @TempDir
    Path tmp;

    /** Runs `ee args...`; returns {exit code, stdout, stderr}. */
    static String[] ee(String... args) {
        PrintStream out = System.out, err = System.err;
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
            int code = Main.run(args);
            return new String[] {Integer.toString(code), o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8)};
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
    }

    @Test
    void generateFromBosPrintsTheReferenceStoryAndTiming() {
        String[] r = ee("generate", "--model", TestData.stories260K().toString(), "--prompt", "", "--max-tokens", "60");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).startsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.");
        assertThat(r[2]).contains("tok/s").contains("time to first token");
    }

    @Test
    void timingMeasuresTheFirstTokenFromTheStart() {
        // without EE_LAUNCHED (the `ee` launcher sets it; a test JVM normally lacks it) the JVM's start is the origin,
        // and the first token cannot come later after it than this test has run; with it, the command started before
        // this JVM did (ProcessHandle's start instant, used before, read up to a second early on Linux: its boot time
        // has whole seconds)
        long before = java.lang.management.ManagementFactory.getRuntimeMXBean().getUptime();
        String[] r = ee("generate", "--model", TestData.stories260K().toString(), "--prompt", "", "--max-tokens", "60", "--timing");
        long after = java.lang.management.ManagementFactory.getRuntimeMXBean().getUptime();
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("first token (\\d+) ms after the (JVM|command) started, ([0-9.]+) ms after the call; the (\\d+) tokens after it: [0-9.]+ tok/s").matcher(r[2]);
        assertThat(m.find()).as(r[2]).isTrue();
        if (m.group(2).equals("JVM")) assertThat(Long.parseLong(m.group(1))).isBetween(before, after);
        else assertThat(Long.parseLong(m.group(1))).isGreaterThanOrEqualTo(before);
        assertThat(Double.parseDouble(m.group(3))).isBetween(0.0, (double) (after - before));
        assertThat(m.group(4)).isEqualTo("32");
    }

    @Test
    void launcherStartTimesParseInEitherDecimalMark() {
        assertThat(GenerateCommand.FirstTokens.launched("1764800000.123456")).isEqualTo(1764800000.123456);
        assertThat(GenerateCommand.FirstTokens.launched("1764800000,5")).isEqualTo(1764800000.5);
        assertThat(GenerateCommand.FirstTokens.launched("")).isNull();
        assertThat(GenerateCommand.FirstTokens.launched(null)).isNull();
        assertThat(GenerateCommand.FirstTokens.launched("soon")).isNull();
    }

    @Test
    void generationStopsAtTheEndOfTheStoryByDefault() {
        // stories260K ends a story by emitting BOS (llama2.c's document separator): the text must not run on into a new one
        String[] r = ee("generate", "--model", TestData.stories260K().toString(), "--prompt", "Once upon a time", "--max-tokens", "400");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1].strip()).endsWith("You are a good friend.\"").containsOnlyOnce("Once upon a time");
        assertThat(r[2]).doesNotContain("400 generated");
    }

    @Test
    void hugeMaxTokensAreCutToTheContextNotOverflowed() {
        String[] r = ee("generate", "--model", TestData.stories260K().toString(), "--prompt", "Once upon a time", "--max-tokens", "2147483647");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[2]).contains("--max-tokens 2147483647 cut to 507 by the model's context of 512");
    }

    @Test
    void inspectDescribesTheCheckpoint() {
        String[] r = ee("inspect", "--model", TestData.stories260K().toString());
        assertThat(r[0]).isEqualTo("0");
        assertThat(r[1]).contains("dim 64, hidden 172, layers 5, heads 8 (kv 4").contains("260,032");
    }

    @Test
    void badInputIsOneClearLineNotAStackTrace() throws IOException {
        String[] r = ee("generate", "--model", tmp.resolve("nope.bin").toString(), "--prompt", "x");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("nope.bin").doesNotContain("\tat ");
        Path junk = Files.writeString(tmp.resolve("junk.bin"), "not a model");
        r = ee("inspect", "--model", junk.toString());
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("junk.bin").doesNotContain("\tat ");
        // sweep options are checked by their names before the model loads (a missing heads file would fail later)
        for (String[] bad : new String[][] {{"--max-tokens", "0", "--max-tokens must be >= 1, got 0"}, {"--batch", "-1", "--batch must be >= 1"},
            {"--thresholds", "0.5,NaN", "--thresholds must be >= 0 and finite, got NaN"}, {"--csv", tmp.toString(), "is a folder, not a file"},
            {"--json", tmp.resolve("no/such/folder/s.json").toString(), "no folder"}}) {
            r = ee("sweep", "--model", junk.toString(), "--heads", tmp.resolve("none").toString(), "--prompts", junk.toString(), bad[0], bad[1]);
            assertThat(r[0]).isEqualTo("1");
            assertThat(r[2]).contains(bad[2]).doesNotContain("\tat ");
        }
        for (String[] bad : new String[][] {{"--prompts", "0"}, {"--max-tokens", "0"}, {"--repeats", "0"}, {"--prompt-tokens", "0"}, {"--min-exits", "0"}}) {
            r = ee("calibrate", "--model", junk.toString(), "--heads", tmp.resolve("none").toString(), "--data", junk.toString(), bad[0], bad[1]);
            assertThat(r[0]).isEqualTo("1");
            assertThat(r[2]).contains(bad[0] + " must be >= 1, got 0").doesNotContain("\tat ");
        }
        r = ee("generate", "--model", junk.toString(), "--prompt", "x", "--max-tokens", "-1");
        assertThat(r[2]).contains("--max-tokens must be >= 1, got -1");
        r = ee("generate", "--model", TestData.stories260K().toString(), "--prompt", "Once upon a time ".repeat(200), "--max-tokens", "4");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[1]).as("nothing echoed").isEmpty();
        assertThat(r[2]).contains("--prompt 1 is").contains("no room in the model's context of 512 tokens");
        r = ee("eval", "--model", junk.toString(), "--heads", tmp.resolve("none").toString(), "--data", junk.toString(), "--batches", "0");
        assertThat(r[2]).contains("--batches must be >= 1, got 0");
        r = ee("gates", "--model", junk.toString(), "--heads", tmp.resolve("none").toString(), "--data", junk.toString(), "--weight-decay", "NaN");
        assertThat(r[2]).contains("weight decay must be >= 0 and finite, got NaN");
    }

    @Test
    void tuneThenEvalSweepAndGenerateWithTheHeads() throws IOException {
        Path out = tmp.resolve("heads");
        String model = TestData.stories260K().toString(), data = TestData.tinyStoriesTrain().toString();
        String[] r = ee("tune", "--model", model, "--data", data, "--exits", "2,4", "--arch", "norm", "--steps", "4", "--batch", "2", "--seq-len", "32",
            "--out", out.toString(), "--eval-batches", "2", "--checkpoint-every", "2");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("before tuning").contains("after 4 steps").contains("agreement");
        assertThat(out.resolve("heads.safetensors")).exists();
        assertThat(out.resolve("checkpoints/latest")).exists();
        r = ee("eval", "--model", model, "--heads", out.toString(), "--data", TestData.tinyStoriesValid().toString(), "--batches", "2", "--seq-len", "32",
            "--cache-dir", tmp.resolve("cache").toString());
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("perplexity").contains("final");
        r = ee("eval", "--model", model, "--heads", out.toString(), "--data", TestData.tinyStoriesValid().toString(), "--seq-len", "600");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("--seq-len 600 exceeds the model's context of 512 tokens");
        r = ee("sweep", "--model", model, "--heads", out.toString(), "--data", data, "--max-tokens", "600");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("and --max-tokens 600 exceed the model's context of 512 tokens");
        r = ee("sweep", "--model", model, "--heads", out.toString(), "--data", data, "--prompt-count", "2", "--max-tokens", "8", "--repeats", "1",
            "--thresholds", "1.0,0.5", "--draft-exits", "4", "--csv", tmp.resolve("s.csv").toString(), "--json", tmp.resolve("s.json").toString());
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("early-exit").contains("speculative@4");
        assertThat(tmp.resolve("s.csv")).exists();
        JsonNode json = JsonMapper.builder().disable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build().readTree(tmp.resolve("s.json").toFile()); // strict: no NaN
        assertThat(json.get("rows")).hasSize(4);
        assertThat(json.get("rows").get(0).get("acceptanceRate").isNull()).isTrue();
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "20", "--heads", out.toString(), "--speculative", "--draft-exit", "4");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).startsWith("Once upon a time, there was a little girl named Lily."); // lossless: the full model's greedy text
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "20", "--heads", out.toString(), "--active-exits", "4", "--threshold", "0.5");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).startsWith("Once upon a time");
        assertThat(r[2]).contains("early exit, softmax confidence, thresholds {4=0.5}");
    }

    @Test
    void gatesThenCalibrateThenGenerateAndSweepWithEveryConfidenceMethod() throws IOException {
        Path out = tmp.resolve("gated");
        String model = TestData.stories260K().toString(), valid = TestData.tinyStoriesValid().toString(), cache = tmp.resolve("cache").toString();
        String[] r = tune(out, "--steps", "2");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        r = ee("gates", "--model", model, "--heads", out.toString(), "--data", valid, "--windows", "4", "--seq-len", "32", "--epochs", "2", "--cache-dir", cache);
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("gate loss").contains("gates written into");
        r = ee("sweep", "--model", model, "--heads", out.toString(), "--data", valid, "--prompt-count", "1", "--max-tokens", "4", "--repeats", "1",
            "--thresholds", "1.0", "--calibrated", "--cache-dir", cache);
        assertThat(r[0]).as("--calibrated before any calibration").isNotEqualTo("0");
        assertThat(r[2]).contains("thresholds.json").contains("ee calibrate");
        r = ee("calibrate", "--model", model, "--heads", out.toString(), "--data", valid, "--skip-windows", "4", "--windows", "4", "--seq-len", "32",
            "--agreement", "0.6", "--min-exits", "1", "--prompts", "1", "--max-tokens", "4", "--repeats", "1", "--compare", "--cache-dir", cache);
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("confidence gate").contains("held-out").contains("effective").contains("Llama-3-8B").contains("saturation").contains("cascade").contains("enabled:")
            .contains("held-out wall-clock decode speed-up").contains("wall min..max").contains("all methods in one round-robin");
        assertThat(out.resolve("thresholds.json")).exists();
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "8", "--heads", out.toString());
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[2]).contains("calibrated thresholds from").contains("gate confidence");
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "8", "--heads", out.toString(), "--confidence", "saturation");
        assertThat(r[0]).as("a calibrated method other than the one asked for needs --threshold").isNotEqualTo("0");
        assertThat(r[2]).contains("--threshold");
        r = ee("sweep", "--model", model, "--heads", out.toString(), "--data", valid, "--prompt-count", "1", "--max-tokens", "4", "--repeats", "1",
            "--thresholds", "1.0,0.5", "--confidence", "softmax,gate,saturation", "--json", tmp.resolve("s.json").toString(), "--cache-dir", cache);
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("confidence").contains("saturation");
        assertThat(Files.readString(tmp.resolve("s.json"))).containsPattern("\"confidence\" ?: ?\"gate\"").containsPattern("\"confidence\" ?: ?\"softmax\"");
        // cascade: calibrated (both thresholds saved), used by generate, swept and timed as the calibrated row
        r = ee("calibrate", "--model", model, "--heads", out.toString(), "--data", valid, "--skip-windows", "4", "--windows", "4", "--seq-len", "32",
            "--agreement", "0.6", "--min-exits", "1", "--prompts", "1", "--max-tokens", "4", "--repeats", "1", "--confidence", "cascade", "--cache-dir", cache);
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("confidence cascade");
        assertThat(Files.readString(out.resolve("thresholds.json"))).contains("\"confidence\" : \"cascade\"").contains("confirm_thresholds");
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "8", "--heads", out.toString());
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[2]).contains("cascade confidence");
        r = ee("sweep", "--model", model, "--heads", out.toString(), "--data", valid, "--prompt-count", "1", "--max-tokens", "4", "--repeats", "1",
            "--thresholds", "1.0,0.5", "--confidence", "cascade", "--calibrated", "--json", tmp.resolve("c.json").toString(), "--cache-dir", cache);
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        JsonNode json = JsonMapper.builder().disable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build().readTree(tmp.resolve("c.json").toFile()); // strict: no NaN
        assertThat(json.get("rows")).hasSize(4); // full, cascade at 1.0 and 0.5, calibrated
        JsonNode calibrated = json.get("rows").get(3);
        assertThat(calibrated.get("mode").asText()).isEqualTo("calibrated");
        assertThat(calibrated.get("confidence").asText()).isEqualTo("cascade");
        assertThat(calibrated.get("threshold").isNull()).isTrue();
        // gates trained again: the thresholds beside the heads were calibrated for the old ones and are refused, before any output
        r = ee("gates", "--model", model, "--heads", out.toString(), "--data", valid, "--windows", "4", "--seq-len", "32", "--epochs", "3", "--cache-dir", cache);
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[2]).contains("thresholds.json was calibrated for the heads just replaced").contains("ee calibrate");
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "8", "--heads", out.toString());
        assertThat(r[0]).as("stale thresholds").isNotEqualTo("0");
        assertThat(r[1]).as("nothing generated").isEmpty();
        assertThat(r[2]).contains("thresholds.json").contains("the heads changed").contains("ee calibrate");
        r = ee("sweep", "--model", model, "--heads", out.toString(), "--data", valid, "--prompt-count", "1", "--max-tokens", "4", "--repeats", "1",
            "--thresholds", "1.0", "--calibrated", "--cache-dir", cache);
        assertThat(r[0]).as("stale thresholds").isNotEqualTo("0");
        assertThat(r[2]).contains("the heads changed");
        r = ee("generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "8", "--heads", out.toString(), "--threshold", "0.9", "--confidence", "gate");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
    }

    @Test
    void tuneWithGatesSavesTrainedGatesWithTheHeads() throws IOException {
        Path out = tmp.resolve("tuned-gated");
        String[] r = tune(out, "--steps", "2", "--gate-windows", "0", "--gates");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("--gate-windows must be >= 1");
        r = tune(out, "--steps", "2", "--gates", "--gate-windows", "4", "--gate-hidden", "4");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("gates trained on the validation windows").contains("gate acc");
        try (LlamaModel m = LlamaModel.load(TestData.stories260K(), Backends.cpu()); EarlyExitModel ee = EarlyExitModel.load(m, out.resolve("heads.safetensors"))) {
            assertThat(ee.hasGates()).isTrue();
            assertThat(ee.gate(2).hiddenUnits()).isEqualTo(4);
            assertThat(ee.gate(4).weight().value().toFloatArray()).as("trained, not the init").isNotEqualTo(new float[4]);
        }
        r = ee("generate", "--model", TestData.stories260K().toString(), "--prompt", "Once upon a time", "--max-tokens", "8", "--heads", out.toString(),
            "--confidence", "gate", "--threshold", "0.5");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).startsWith("Once upon a time");
    }

    /**
     * `ee tune` on stories260K, small and quick (norm exits at 2 and 4, batch 2 x 32 tokens, unless {@code more} says
     * otherwise), with the token cache in tmp/cache.
     */
    String[] tune(Path out, String... more) {
        List<String> args = new ArrayList<>(List.of("tune", "--model", TestData.stories260K().toString(), "--exits", "2,4", "--batch", "2", "--eval-batches", "1",
            "--quiet", "--out", out.toString(), "--cache-dir", tmp.resolve("cache").toString()));
        args.addAll(List.of(more));
        String[][] defaults = {{"--arch", "norm"}, {"--seq-len", "32"}, {"--data", TestData.tinyStoriesTrain().toString()}};
        for (String[] d : defaults) if (!args.contains(d[0])) args.addAll(List.of(d));
        return ee(args.toArray(String[]::new));
    }

    @Test
    void tuneRefusesBadArgumentsBeforeAnyWorkSayingWhy() throws IOException {
        Path out = tmp.resolve("out");
        String[] r = tune(out, "--seq-len", "100000");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("ee tune: seq-len 100000 exceeds the model's context of 512");
        assertThat(tmp.resolve("cache")).as("refused before tokenizing").doesNotExist();
        Path file = Files.writeString(tmp.resolve("a-file"), "x");
        r = tune(file);
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("ee tune: --out " + file + ": " + file + " exists and is not a directory");
        r = tune(file.resolve("out"));
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("ee tune: --out " + file.resolve("out") + ": cannot create " + file.resolve("out") + ": Not a directory");
        for (String threads : new String[] {"-1", "2147483647", "many"}) {
            r = tune(out, "--threads", threads);
            assertThat(r[0]).as(threads).isEqualTo("2");
            assertThat(r[2]).as(threads).contains("Invalid value for option '--threads'").contains(threads);
        }
        r = tune(out, "--gates", "--gate-hidden", "-1");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("--gate-hidden must be >= 0, got -1");
        // settings that would have trained on silently (NaN or negative weights, a NaN floor) or failed deep inside
        for (String[] bad : new String[][] {{"--exit-weights", "1,NaN", "exit weight 1 must be >= 0 and finite, got NaN"}, {"--exit-weights", "1,-1", "exit weight 1"},
            {"--exit-weights", "1", "--exit-weights: 1 weight(s) for 2 --exits"}, {"--weight-decay", "-1", "weight decay must be >= 0"},
            {"--min-lr", "NaN", "LR floor NaN"}, {"--decay", "bogus", "expected cosine, linear or constant"}, {"--val-fraction", "2", "--val-fraction must be in (0, 1)"}}) {
            r = tune(out, bad[0], bad[1]);
            assertThat(r[0]).as(bad[0] + " " + bad[1]).isEqualTo("1");
            assertThat(r[2]).as(bad[0] + " " + bad[1]).contains(bad[2]).doesNotContain("\tat ");
        }
        r = tune(out, "--loss-csv", tmp.toString());
        assertThat(r[2]).contains("--loss-csv " + tmp + ": is a folder, not a file");
        assertThat(tmp.resolve("cache")).as("all refused before tokenizing").doesNotExist();
    }

    @Test
    void aDivergingTuneFailsNamingTheStepAndExitsAndTheLastGoodCheckpointStaysLatest() throws IOException {
        Path out = tmp.resolve("diverged");
        String[] r = tune(out, "--steps", "40", "--lr", "1e30", "--warmup", "0", "--decay", "constant", "--checkpoint-every", "1", "--max-nonfinite-steps", "2");
        assertThat(r[0]).as(r[2]).isEqualTo("1");
        assertThat(r[2]).contains("ee tune: tuning diverged: 2 steps in a row").contains(": exit 2: loss NaN")
            .contains("the latest checkpoint is " + out.resolve("checkpoints").resolve(Files.readString(out.resolve("checkpoints/latest")).trim()));
        assertThat(out.resolve("heads.safetensors")).doesNotExist();
    }

    @Test
    void resumeSaysHowTheCheckpointDiffersFromTheCommandLine() throws IOException {
        Path out = tmp.resolve("resumed");
        String[] r = tune(out, "--steps", "4", "--checkpoint-every", "2");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        String ckpt = out.resolve("checkpoints").toString(), state = out.resolve("checkpoints/step-0000004/state.json").toString();
        r = tune(out, "--steps", "3", "--resume", ckpt);
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("ee tune: " + state + ": field 'step' is 4, beyond this run's 3 steps");
        assertThat(r[1]).doesNotContain("after");
        r = tune(out, "--steps", "6", "--arch", "mlp", "--resume", ckpt);
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains(state + ": written for exits [norm@2(copy) T=1.0, norm@4(copy) T=1.0], this run has exits [mlp@2(copy) T=1.0, mlp@4(copy) T=1.0]");
        r = tune(out, "--steps", "6", "--data", TestData.require("tinyshakespeare/input.txt").toString(), "--resume", ckpt);
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains(state + ": written for other training data: data.windows ");
        Files.createDirectories(out.resolve("checkpoints/step-0000005.tmp-123")); // left by a crash
        r = tune(out, "--steps", "6", "--checkpoint-every", "1", "--keep-last", "1", "--resume", out.resolve("checkpoints/step-0000002").toString());
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[2]).contains("resumed at step 2");
        assertThat(r[1]).contains("at step 2 (resumed)").contains("after 6 steps");
        try (var names = Files.list(out.resolve("checkpoints"))) { // the newest and the one resumed from; no leftovers
            assertThat(names.map(f -> f.getFileName().toString()).sorted()).containsExactly("latest", "step-0000002", "step-0000006");
        }
    }

    @Test
    void pretrainWritesACheckpointEveryCommandLoads() throws IOException {
        Path corpus = Files.writeString(tmp.resolve("corpus.txt"), "public class A { int x = 1; }\n".repeat(400));
        Path out = tmp.resolve("byte-model");
        String[] r = ee("pretrain", "--corpus", corpus.toString(), "--byte-level", "--dim", "32", "--layers", "2", "--attention-heads", "2", "--seq-len", "32",
            "--batch", "4", "--steps", "5", "--out", out.toString(), "--val-fraction", "0.1");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("final validation loss")
            .containsPattern("5 steps, [0-9]+ tokens/s \\(training steps after the first 3: [0-9]+ tokens/s\\)"); // steps 3 and 4 timed alone
        assertThat(out.resolve("config.json")).exists();
        assertThat(out.resolve("loss_curve.csv")).exists();
        r = ee("generate", "--model", out.toString(), "--prompt", "public", "--max-tokens", "8");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).startsWith("public");
    }

    /** Every setting is checked by its option before the corpus is read (a NaN --exit-weight had trained on, its loss NaN; --minutes 0 saved an untrained model). */
    @Test
    void pretrainRefusesBadSettingsByName() throws IOException {
        Path corpus = Files.writeString(tmp.resolve("corpus.txt"), "x".repeat(1000));
        for (String[] bad : new String[][] {{"--exit-weight", "NaN", "--exit-weight must be >= 0 and finite, got NaN"}, {"--dim", "0", "--dim must be >= 1, got 0"},
            {"--kv-heads", "3", "--attention-heads 4 must be a multiple of --kv-heads 3"}, {"--val-fraction", "1.5", "--val-fraction must be in (0, 1)"},
            {"--lr", "-1", "--lr must be > 0"}, {"--exits", "9", "--exits: layer 9 must be in 1..7"}}) {
            Path out = tmp.resolve("p" + bad[0]);
            String[] r = ee("pretrain", "--corpus", corpus.toString(), "--byte-level", "--steps", "1", "--out", out.toString(), "--exits", "2", bad[0], bad[1]);
            assertThat(r[0]).as(bad[0]).isEqualTo("1");
            assertThat(r[2]).contains(bad[2]).doesNotContain("\tat ");
            assertThat(out).as("refused before anything was written").doesNotExist();
        }
        String[] r = ee("pretrain", "--corpus", corpus.toString(), "--byte-level", "--minutes", "0", "--out", tmp.resolve("p0").toString());
        assertThat(r[2]).contains("--minutes must be > 0 and finite, got 0.0");
    }
}
