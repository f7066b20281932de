package dev.eetune.cli;

import dev.eetune.dist.ProcessGroups;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code ee} command line. */
@Command(name = "ee", mixinStandardHelpOptions = true, version = "eetune 0.1.0",
    description = "Early-exit LLMs on the JVM: load, tune exit heads, generate, evaluate, benchmark.",
    subcommands = {GenerateCommand.class, InspectCommand.class, TuneCommand.class, EvalCommand.class, PretrainCommand.class, SweepCommand.class, CommandLine.HelpCommand.class})
public final class Main {
    public static void main(String[] args) {
        // under a launcher only rank 0 logs information: the other ranks would repeat it
        String level = ProcessGroups.launcherRank(System.getenv()) == 0 ? "info" : "warn";
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", level);
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        System.exit(run(args));
    }

    /** Runs one command; returns its exit code (0 = success). Used by {@link #main} and by tests. */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            // a user error (bad file, bad value) is one clear line, not a stack trace
            cmd.getErr().println("ee " + cmd.getCommandName() + ": " + (ex.getMessage() == null ? ex.toString() : ex.getMessage()));
            if (System.getenv("EE_DEBUG") != null) ex.printStackTrace(cmd.getErr());
            return 1;
        });
        return cl.execute(args);
    }
}
