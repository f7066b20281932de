package dev.eetune.cli;

import dev.eetune.progress.ProgressListener;

import java.io.Console;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.util.Locale;

/**
 * The one progress display of the {@code ee} command, on stderr: on a terminal a bar redrawn in place with the rate
 * and the time left; otherwise (a log file, a pipe, CI) a plain line every {@value #LINE_SECONDS} seconds; nothing at
 * all when quiet. Each long step (tokenizing, pretraining, tuning, evaluation, a sweep) opens one and closes it when
 * done, which prints the step's final line. A {@linkplain #transientStep transient} step (loading, tokenizing: their
 * outcome is logged or shown by what follows) leaves no final line: its bar is erased when it closes. Hand-written
 * because it is forty lines and picocli has no such thing.
 */
final class Progress implements ProgressListener, AutoCloseable {
    static final int LINE_SECONDS = 10;
    private static final int BAR = 24;
    private static final long REDRAW_NANOS = 200_000_000L;

    private final String what, unit;
    private final PrintStream err;
    private final boolean quiet, terminal, summary;
    private final long start = System.nanoTime();
    private long lastPrint = start, done, total;
    private String detail = "";
    private int drawn; // width of the bar line on screen (to blank it out)
    private boolean closed;

    /** {@code unit} names what {@code done} counts (the rate is shown per second); "" shows no rate (e.g. when done counts seconds). */
    private Progress(String what, String unit, boolean quiet, boolean terminal, boolean summary, PrintStream err) {
        this.what = what;
        this.unit = unit;
        this.quiet = quiet;
        this.terminal = terminal;
        this.summary = summary;
        this.err = err;
    }

    static Progress start(String what, String unit, boolean quiet) { return new Progress(what, unit, quiet, onTerminal(), true, System.err); }

    /** A step shown while it runs but leaving no final line (its bar is erased when it closes). */
    static Progress transientStep(String what, String unit, boolean quiet) { return new Progress(what, unit, quiet, onTerminal(), false, System.err); }

    /** For tests: a display on {@code err}, as a bar when {@code terminal}. */
    static Progress on(PrintStream err, String what, String unit, boolean terminal, boolean summary) { return new Progress(what, unit, false, terminal, summary, err); }

    /**
     * Whether progress should be a bar: EE_PROGRESS=bar|lines decides if set; else whether the JVM has a terminal
     * (Console.isTerminal on JDK 22+, where System.console() is no longer null when redirected).
     */
    static boolean onTerminal() {
        String forced = System.getenv("EE_PROGRESS");
        if (forced != null) return forced.equalsIgnoreCase("bar");
        Console c = System.console();
        if (c == null) return false;
        try {
            Method isTerminal = Console.class.getMethod("isTerminal");
            return (Boolean) isTerminal.invoke(c);
        } catch (ReflectiveOperationException e) {
            return true; // JDK 17-21: a console exists only on a terminal
        }
    }

    @Override
    public void update(long done, long total, String detail) {
        this.done = done;
        this.total = total;
        this.detail = detail == null ? "" : detail;
        if (quiet) return;
        long now = System.nanoTime();
        if (now - lastPrint < (terminal ? REDRAW_NANOS : LINE_SECONDS * 1_000_000_000L)) return;
        lastPrint = now;
        print(now, false);
    }

    /** Prints the final line (the whole step's time and mean rate), once. */
    @Override
    public void close() {
        if (!quiet && !closed) {
            if (summary) print(System.nanoTime(), true);
            else if (terminal && drawn > 0) erase();
        }
        closed = true;
    }

    private void erase() {
        err.print("\r" + " ".repeat(drawn) + "\r");
        err.flush();
        drawn = 0;
    }

    private void print(long now, boolean last) {
        double seconds = (now - start) / 1e9;
        StringBuilder sb = new StringBuilder(what).append(": ");
        if (terminal && total > 0) {
            int filled = (int) Math.min(BAR, BAR * done / total);
            sb.append('[').append("#".repeat(filled)).append(".".repeat(BAR - filled)).append("] ");
        }
        if (total > 0) sb.append(String.format(Locale.ROOT, "%3.0f%% ", 100.0 * Math.min(done, total) / total));
        if (!unit.isEmpty()) {
            sb.append(String.format(Locale.ROOT, "%,d%s %s", done, total > 0 ? String.format(Locale.ROOT, "/%,d", total) : "", unit));
            sb.append(String.format(Locale.ROOT, " | %s %s/s", rate(done / Math.max(seconds, 1e-9)), unit));
        }
        sb.append(last ? String.format(Locale.ROOT, " | done in %s", duration(seconds))
            : String.format(Locale.ROOT, " | %s%s", duration(seconds), total > 0 && done > 0 ? ", ETA " + duration(seconds * (total - done) / done) : ""));
        if (!detail.isEmpty()) sb.append(" | ").append(detail);
        if (terminal) {
            String line = sb.toString();
            err.print("\r" + line + " ".repeat(Math.max(0, drawn - line.length())) + (last ? "\n" : ""));
            drawn = last ? 0 : line.length();
        } else {
            err.println(sb);
        }
        err.flush();
    }

    private static String rate(double perSecond) {
        return perSecond >= 100 ? String.format(Locale.ROOT, "%,.0f", perSecond) : String.format(Locale.ROOT, "%.2f", perSecond);
    }

    static String duration(double seconds) {
        long s = Math.round(seconds);
        return s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : String.format(Locale.ROOT, "%.1fs", seconds);
    }
}
