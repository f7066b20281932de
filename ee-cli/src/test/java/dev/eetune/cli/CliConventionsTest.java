package dev.eetune.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static dev.eetune.cli.CliTest.ee;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * What every command shares (Main applies it to the whole command tree, so commands added later inherit it):
 * described options with their defaults shown, help without picocli warnings, the build's version, exit codes 0/1/2.
 * None of these load a model or the native library.
 */
class CliConventionsTest {
    @TempDir
    Path tmp;

    private static List<CommandLine> allCommands() {
        List<CommandLine> all = new ArrayList<>();
        collect(Main.commandLine(), all);
        return all;
    }

    private static void collect(CommandLine cl, List<CommandLine> into) {
        into.add(cl);
        for (CommandLine sub : cl.getSubcommands().values()) collect(sub, into);
    }

    @Test
    void everyOptionIsDescribedAndShowsItsDefaultOnce() {
        for (CommandLine cl : allCommands()) {
            CommandSpec spec = cl.getCommandSpec();
            assertThat(spec.usageMessage().showDefaultValues()).as(spec.qualifiedName()).isTrue();
            for (OptionSpec o : spec.options()) {
                String what = spec.qualifiedName() + " " + o.longestName();
                assertThat(String.join(" ", o.description())).as(what + ": every option needs a description").isNotBlank();
                // picocli appends "Default: X" to every option with a default (Main); writing ${DEFAULT-VALUE} in the
                // description as well would show it twice
                assertThat(String.join(" ", o.description())).as(what + ": leave the default to picocli's 'Default:' line")
                    .doesNotContain("${DEFAULT-VALUE}");
            }
        }
    }

    @Test
    void helpShowsDefaultsAndExitCodesWithoutPicocliWarnings() {
        for (CommandLine cl : allCommands()) {
            if (cl.getCommandName().equals("help")) continue;
            List<String> args = new ArrayList<>(List.of(cl.getCommandSpec().qualifiedName(" ").split(" ")));
            args.remove(0); // "ee"
            args.add("--help");
            String[] r = ee(args.toArray(String[]::new));
            assertThat(r[0]).as(args.toString()).isEqualTo("0");
            assertThat(r[2]).as(args + ": picocli prints format warnings (e.g. an unescaped % in a description) to stderr").isEmpty();
            assertThat(r[1]).as(args.toString()).contains("Exit codes:").contains("0   success").contains("2   usage error");
        }
        assertThat(ee("generate", "--help")[1]).containsOnlyOnce("Default: 256").contains("--active-exits");
        assertThat(ee("pretrain", "--help")[1]).contains("--attention-heads").doesNotContain("--heads");
    }

    @Test
    void versionComesFromTheBuild() {
        String[] r = ee("--version");
        assertThat(r[0]).isEqualTo("0");
        // build.properties, filled in by Maven from the project version
        assertThat(BuildVersion.version()).matches("\\d+\\.\\d+\\.\\d+(-SNAPSHOT)?");
        assertThat(r[1]).startsWith("eetune " + BuildVersion.version() + "\n").contains("Java " + Runtime.version());
        assertThat(ee("tune", "--version")[1]).startsWith("eetune " + BuildVersion.version());
    }

    @Test
    void exitCodesSayWhetherTheCommandLineOrTheRunFailed() {
        String[] r = ee("generate", "--no-such-option", "--prompt", "x", "--model", "m.bin");
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).contains("ee generate: Unknown option: '--no-such-option'").contains("Try 'ee generate --help'").doesNotContain("Usage:");
        r = ee("generate", "--prompt", "x");
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).contains("Missing required option: '--model=<model>'");
        r = ee("generate", "--model", "m.bin", "--prompt", "x", "--max-tokens", "many");
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).contains("'many' is not an int");
        r = ee("generate", "--model", "m.bin", "--prompt", "x", "--speculative");
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).contains("ee generate: --speculative and --active-exits need --heads");
        r = ee("pretrain", "--corpus", "c.txt", "--out", tmp.toString(), "--steps", "1");
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).contains("give exactly one of --tokenizer PATH and --byte-level");
        r = ee("nosuchcommand");
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).startsWith("ee: Unmatched argument").contains("Try 'ee --help'");
        r = ee();
        assertThat(r[0]).isEqualTo("2");
        assertThat(r[2]).startsWith("ee: Missing required subcommand");
        r = ee("generate", "--model", tmp.resolve("missing.bin").toString(), "--prompt", "x");
        assertThat(r[0]).isEqualTo("1");
        assertThat(r[2]).contains("missing.bin: no such file or directory").doesNotContain("\tat ");
    }
}
