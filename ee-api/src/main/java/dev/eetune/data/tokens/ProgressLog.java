package dev.eetune.data.tokens;

import org.slf4j.Logger;

import java.util.Locale;
import java.util.concurrent.TimeUnit;

/** Logs the progress of a long tokenization at INFO, at most once per interval, and a summary at the end. */
final class ProgressLog {
    private static final long INTERVAL_NANOS = TimeUnit.SECONDS.toNanos(5);

    private final Logger log;
    private final String what;
    private final long start = System.nanoTime();
    private long lastLog = start;

    ProgressLog(Logger log, String what) {
        this.log = log;
        this.what = what;
    }

    void update(long bytes, long tokens) {
        long now = System.nanoTime();
        if (now - lastLog < INTERVAL_NANOS || !log.isInfoEnabled()) return;
        lastLog = now;
        log.info("{}: {}", what, summary(bytes, tokens, now));
    }

    void done(long bytes, long tokens, long documents) {
        if (log.isInfoEnabled()) log.info("{}: done, {}, {} documents", what, summary(bytes, tokens, System.nanoTime()), documents);
    }

    private String summary(long bytes, long tokens, long now) {
        double seconds = Math.max(1e-9, (now - start) / 1e9), mb = bytes / 1e6;
        return String.format(Locale.ROOT, "%.1f MB in %.1f s (%.1f MB/s), %,d tokens (%,.0f tokens/s)", mb, seconds, mb / seconds, tokens, tokens / seconds);
    }
}
