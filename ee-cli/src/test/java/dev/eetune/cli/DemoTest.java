package dev.eetune.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static dev.eetune.cli.CliTest.ee;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * `ee demo` end to end in miniature (a few seconds of pretraining on a small Java-like corpus the test writes), and its
 * --report page rendered by headless Chromium: every chart loaded, the screenshot not blank, the titles present.
 */
class DemoTest {
    @TempDir
    Path tmp;

    @Test
    void demoRunsEveryStepAndItsReportRendersInHeadlessChromium() throws Exception {
        StringBuilder corpus = new StringBuilder();
        for (int i = 0; i < 300; i++) {
            corpus.append("    /** Returns the ").append(i).append("th element. */\n    public int get").append(i % 17).append("(int index) {\n        return values[index + ")
                .append(i % 5).append("];\n    }\n\n");
        }
        Path text = Files.writeString(tmp.resolve("Corpus.java"), corpus);
        Path report = tmp.resolve("report");
        String[] r = ee("demo", "--corpus", text.toString(), "--minutes", "0.05", "--tune-steps", "3", "--repeats", "1", "--prompt-count", "2", "--max-tokens", "8",
            "--thresholds", "1.0,0.5", "--out", tmp.resolve("work").toString(), "--report", report.toString(), "--quiet");
        assertThat(r[0]).as(r[2]).isEqualTo("0");
        assertThat(r[1]).contains("working folder " + tmp.resolve("work").toAbsolutePath()).contains("final validation loss").contains("unigram baseline")
            .contains("val loss").contains("early-exit").contains("speed-up").contains("exited at").contains("ee demo: done in");
        assertThat(r[2]).as("--quiet: no progress").doesNotContain("pretraining:").doesNotContain("tuning:");
        assertThat(tmp.resolve("work/backbone/config.json")).exists();
        assertThat(tmp.resolve("work/heads.safetensors")).exists();
        assertThat(report.resolve("report.html")).exists();
        rendersInChromium(report.resolve("report.html"), List.of("Pretraining loss", "Tuning loss per exit", "Validation loss per exit", "Speed-up vs agreement over thresholds",
            "Share of tokens per exit", "Layers per token"));
    }

    @Test
    void withoutSourcesTheDemoSaysHowToGetThem() {
        String[] r = ee("demo", "--corpus", tmp.resolve("missing.zip").toString(), "--out", tmp.resolve("w").toString());
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("--corpus " + tmp.resolve("missing.zip") + ": no such file or directory");
        r = ee("demo", "--model", tmp.toString());
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("--model and --data go together");
    }

    /** Options are checked before the minutes of pretraining (these had failed only after it). */
    @Test
    void badOptionsAreRefusedBeforePretraining() {
        for (String[] bad : new String[][] {{"--tune-steps", "0", "--tune-steps must be >= 1"}, {"--thresholds", "-1", "--thresholds must be >= 0"},
            {"--arch", "bogus", "unknown exit architecture 'bogus'"}, {"--exits", "9", "--exits: layer 9 must be in 1..7"}, {"--repeats", "0", "--repeats must be >= 1"}}) {
            Path work = tmp.resolve("bad" + bad[0]);
            String[] r = ee("demo", "--corpus", tmp.resolve("missing.zip").toString(), "--out", work.toString(), bad[0], bad[1]);
            assertThat(r[0]).as(bad[0]).isEqualTo("1");
            assertThat(r[2]).as(bad[0]).contains(bad[2]);
            assertThat(work).as("nothing started").doesNotExist();
        }
    }

    static Path chromium() {
        for (String name : new String[] {"chromium", "chromium-browser", "google-chrome"}) {
            for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
                Path p = Path.of(dir, name);
                if (Files.isExecutable(p)) return p;
            }
        }
        return null;
    }

    /**
     * Opens the page in headless Chromium twice: once to read the DOM after load (with a script, added to a copy of
     * the page, that records each image's natural width), once for a screenshot, which must not be blank.
     */
    static void rendersInChromium(Path html, List<String> titles) throws Exception {
        Path chromium = chromium();
        if (chromium == null) {
            assertThat(System.getenv("CI")).as("CI must have chromium (.ci/run installs it) to check the report renders").isNotEqualTo("true");
            assumeTrue(false, "chromium is not installed (apt-get install chromium): the report's rendering is not checked here");
        }
        Path dir = html.getParent(), probe = dir.resolve("probe.html");
        Files.writeString(probe, Files.readString(html).replace("</body>", "<script>window.addEventListener('load', () => document.body.setAttribute('data-widths',"
            + " [...document.images].map(i => i.complete ? i.naturalWidth : -1).join(',')));</script></body>"));
        String dom = chrome(chromium, dir, "--dump-dom", probe.toUri().toString());
        Matcher m = Pattern.compile("data-widths=\"([^\"]*)\"").matcher(dom);
        assertThat(m.find()).as("the page's load event ran:\n" + dom).isTrue();
        String[] widths = m.group(1).split(",");
        assertThat(widths).as("one image per chart").hasSize(titles.size());
        for (String w : widths) assertThat(Integer.parseInt(w)).as("every chart image loaded (naturalWidth > 0): " + m.group(1)).isPositive();
        for (String t : titles) assertThat(dom).contains(t);

        Path shot = dir.resolve("screenshot.png");
        chrome(chromium, dir, "--screenshot=" + shot, "--window-size=900,3200", html.toUri().toString());
        BufferedImage img = ImageIO.read(shot.toFile());
        assertThat(img).as("screenshot").isNotNull();
        long nonWhite = 0;
        Set<Integer> colours = new HashSet<>();
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                int rgb = img.getRGB(x, y) & 0xFFFFFF;
                if (rgb != 0xFFFFFF) nonWhite++;
                if (colours.size() < 1000) colours.add(rgb);
            }
        }
        assertThat(nonWhite).as("non-white pixels in the screenshot").isGreaterThan((long) img.getWidth() * img.getHeight() / 100);
        assertThat(colours.size()).as("distinct colours (charts, not just text)").isGreaterThan(20);
    }

    private static String chrome(Path chromium, Path dir, String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(chromium.toString(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--user-data-dir=" + dir.resolve("chromium-profile"), "--virtual-time-budget=10000"));
        cmd.addAll(List.of(args));
        Path out = Files.createTempFile(dir, "chromium", ".out");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        if (!p.waitFor(180, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
            throw new AssertionError("chromium did not finish in 180 s: " + cmd);
        }
        assertThat(p.exitValue()).as("chromium exit code: " + cmd).isZero();
        return Files.readString(out);
    }
}
