package dev.eetune.cli;

import dev.eetune.dist.ProcessGroups;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The {@code ee} command line. The conventions every command shares are applied here, to the whole command tree, so
 * a command added later inherits them: defaults shown in {@code --help}, {@code --version} from the build, one-line
 * errors and the exit codes {@link #OK}, {@link #FAILURE}, {@link #USAGE} (listed in every {@code --help}).
 */
@Command(name = "ee", mixinStandardHelpOptions = true,
    description = "Early-exit LLMs on the JVM: load, tune exit heads, generate, evaluate, benchmark.",
    subcommands = {DemoCommand.class, GenerateCommand.class, InspectCommand.class, TuneCommand.class, EvalCommand.class, PretrainCommand.class, SweepCommand.class, GatesCommand.class, CalibrateCommand.class, AotTrainingCommand.class, CommandLine.HelpCommand.class})
public final class Main {
    /** The command did what was asked. */
    public static final int OK = 0;
    /** The command failed while running: a missing or bad file, a model that does not fit, a native error. */
    public static final int FAILURE = 1;
    /** The command line is wrong: an unknown option, a missing or malformed value, options that exclude each other. */
    public static final int USAGE = 2;

    private static final Map<String, String> EXIT_CODES = exitCodes();

    public static void main(String[] args) {
        // under a launcher only rank 0 logs information: the other ranks would repeat it
        String level = ProcessGroups.launcherRank(System.getenv()) == 0 ? "info" : "warn";
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", level);
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        System.exit(run(args));
    }

    /** Runs one command; returns its exit code ({@link #OK}, {@link #FAILURE} or {@link #USAGE}). Used by {@link #main} and by tests. */
    public static int run(String... args) {
        return commandLine().execute(args);
    }

    /** The {@code ee} command tree with the shared conventions applied to every command in it. */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        applyConventions(cl);
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            // a user error (bad file, bad value) is one clear line, not a stack trace
            cmd.getErr().println(cmd.getCommandSpec().qualifiedName() + ": " + (ex.getMessage() == null ? ex.toString() : ex.getMessage()));
            if (System.getenv("EE_DEBUG") != null) ex.printStackTrace(cmd.getErr());
            return FAILURE;
        });
        cl.setParameterExceptionHandler((ex, args) -> {
            // the mistake and where to look, not the whole usage text (which would push the mistake off the screen)
            CommandLine cmd = ex.getCommandLine();
            String name = cmd.getCommandSpec().qualifiedName(); // "ee" or "ee generate"
            cmd.getErr().println(name + ": " + ex.getMessage());
            CommandLine.UnmatchedArgumentException.printSuggestions(ex, cmd.getErr());
            cmd.getErr().println("Try '" + name + " --help' for the options.");
            return USAGE;
        });
        return cl;
    }

    /**
     * A usage error found after parsing (options that exclude or need each other): exit code {@link #USAGE} and the
     * same one-line message as a parse error.
     */
    static ParameterException usage(CommandSpec spec, String message) {
        return new ParameterException(spec.commandLine(), message);
    }

    private static void applyConventions(CommandLine cl) {
        CommandSpec spec = cl.getCommandSpec();
        spec.usageMessage().showDefaultValues(true);
        spec.usageMessage().exitCodeListHeading("%nExit codes:%n");
        spec.usageMessage().exitCodeList(EXIT_CODES);
        spec.versionProvider(new BuildVersion());
        spec.exitCodeOnInvalidInput(USAGE);
        spec.exitCodeOnExecutionException(FAILURE);
        for (CommandLine sub : cl.getSubcommands().values()) applyConventions(sub);
    }

    private static Map<String, String> exitCodes() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put(Integer.toString(OK), "success");
        m.put(Integer.toString(FAILURE), "the command failed while running (a missing or bad file, a model that does not fit, a native error)");
        m.put(Integer.toString(USAGE), "usage error (an unknown option, a missing or malformed value, options that exclude each other)");
        return m;
    }
}
