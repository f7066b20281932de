package dev.eetune.data.tokens;

import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.corpus.Segment;
import dev.eetune.progress.ProgressListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * Tokenizes a corpus into a token file. Streaming: one thread reads segments in order and groups them into jobs of
 * about {@link #JOB_CHARS} characters, worker threads encode the jobs, and the jobs' tokens are written in order; at
 * most two jobs per thread are in flight, so memory stays bounded whatever the corpus size.
 *
 * <p>The file is written beside the target under a temporary name and renamed onto it only when complete, so a
 * failure (or a crash) never leaves a partial file under the target name, and an old cache survives a failed rebuild.
 * Two processes building the same file at once each rename a complete file into place.
 */
final class TokenFileWriter {
    private static final Logger LOG = LoggerFactory.getLogger(TokenFileWriter.class);
    private static final int JOB_CHARS = 256 * 1024;
    private static final int WRITE_BUFFER_BYTES = 1 << 20;
    private static final AtomicInteger THREAD_IDS = new AtomicInteger();

    private TokenFileWriter() {}

    /** The tokens of one job, ready to write. */
    private record Encoded(int[] tokens, int length, int documents, long bytes) {}

    static void write(Corpus corpus, String stamp, SegmentEncoder encoder, Path target, int threads, ProgressListener progress) {
        if (threads < 1) throw new IllegalArgumentException("threads must be at least 1, got " + threads);
        Path dir = target.toAbsolutePath().getParent();
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create the directory of " + target, e);
        }
        // not Files.createTempFile: its owner-only permissions would stick to the cache
        Path tmp = dir.resolve(target.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        ExecutorService pool = Executors.newFixedThreadPool(threads, task -> {
            Thread t = new Thread(task, "eetune-tokenize-" + THREAD_IDS.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
        boolean moved = false;
        try {
            TokenFileHeader header = new TokenFileHeader(encoder.vocabSize(), encoder.bos(), 0, 0, encoder.fingerprint(), stamp);
            try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                 Stream<Segment> segments = corpus.segments()) {
                Sink sink = new Sink(out, header, encoder);
                long start = System.nanoTime(), totalBytes = corpus.bytes();
                Deque<Future<Encoded>> inFlight = new ArrayDeque<>();
                Iterator<Segment> it = segments.iterator();
                while (it.hasNext()) {
                    List<Segment> job = nextJob(it);
                    inFlight.add(pool.submit(() -> encode(encoder, job)));
                    if (inFlight.size() >= 2 * threads) {
                        sink.write(await(inFlight.remove()));
                        sink.report(progress, totalBytes);
                    }
                }
                while (!inFlight.isEmpty()) sink.write(await(inFlight.remove()));
                sink.finish();
                sink.report(progress, totalBytes);
                if (LOG.isInfoEnabled()) LOG.info("tokenized {} into {}: {}", corpus, target, summary(sink, System.nanoTime() - start));
            }
            move(tmp, target);
            moved = true;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write token file " + tmp, e);
        } finally {
            pool.shutdownNow();
            if (!moved) deleteQuietly(tmp);
        }
    }

    private static String summary(Sink sink, long nanos) {
        double seconds = Math.max(1e-9, nanos / 1e9), mb = sink.bytes / 1e6;
        return String.format(Locale.ROOT, "%.1f MB in %.1f s (%.1f MB/s), %,d tokens (%,.0f tokens/s), %,d documents",
            mb, seconds, mb / seconds, sink.tokens, sink.tokens / seconds, sink.documents);
    }

    private static List<Segment> nextJob(Iterator<Segment> segments) {
        List<Segment> job = new ArrayList<>();
        long chars = 0;
        while (chars < JOB_CHARS && segments.hasNext()) {
            Segment s = segments.next();
            job.add(s);
            chars += s.text().length();
        }
        return job;
    }

    private static Encoded encode(SegmentEncoder encoder, List<Segment> job) {
        int[] tokens = new int[1024];
        int n = 0, documents = 0;
        long bytes = 0;
        for (Segment s : job) {
            int[] ids = encoder.encode(s);
            if (n + ids.length > tokens.length) tokens = Arrays.copyOf(tokens, Math.max(2 * tokens.length, n + ids.length));
            System.arraycopy(ids, 0, tokens, n, ids.length);
            n += ids.length;
            if (s.documentStart()) documents++;
            bytes += utf8Length(s.text());
        }
        return new Encoded(tokens, n, documents, bytes);
    }

    /** The UTF-8 length of {@code s}, for progress in MB of text without encoding it again. */
    private static long utf8Length(String s) {
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < 0x80) n++;
            else if (c < 0x800) n += 2;
            else if (Character.isHighSurrogate(c)) { n += 4; i++; }
            else n += 3;
        }
        return n;
    }

    private static Encoded await(Future<Encoded> job) {
        try {
            return job.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while tokenizing", e);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException r) throw r;
            if (cause instanceof Error err) throw err;
            throw new IllegalStateException("tokenizing failed: " + cause, cause);
        }
    }

    private static void move(Path tmp, Path target) throws IOException {
        try {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) { // same directory, so only exotic file systems get here
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private static void deleteQuietly(Path tmp) {
        try {
            Files.deleteIfExists(tmp);
        } catch (IOException e) {
            LOG.warn("cannot delete the partial token file {}: {}", tmp, e.toString());
        }
    }

    /** Writes tokens after the header, little-endian, checking each id, and finally the header with the counts. */
    private static final class Sink {
        private final FileChannel out;
        private final TokenFileHeader header;
        private final SegmentEncoder encoder;
        private final ByteBuffer buffer = ByteBuffer.allocateDirect(WRITE_BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        private final boolean wide;
        /** Where the buffer's bytes go in the file. */
        private long position;
        long tokens, documents, bytes;

        Sink(FileChannel out, TokenFileHeader header, SegmentEncoder encoder) throws IOException {
            this.out = out;
            this.header = header;
            this.encoder = encoder;
            this.wide = header.tokenBytes() == 4;
            writeFully(header.toBytes(), 0);
            this.position = header.length();
        }

        /** Bytes of text tokenized so far of {@code totalBytes} (the corpus's size, grown if it was an estimate), tokens as detail. */
        void report(ProgressListener progress, long totalBytes) {
            progress.update(bytes, Math.max(totalBytes, bytes), String.format(Locale.ROOT, "%,d tokens", tokens));
        }

        void write(Encoded job) throws IOException {
            int vocab = header.vocabSize();
            for (int i = 0; i < job.length(); i++) {
                int id = job.tokens()[i];
                if (id < 0 || id >= vocab) throw new IllegalStateException(encoder + " produced token id " + id + ", outside its vocabulary [0, " + vocab + ")");
                if (buffer.remaining() < 4) flush();
                if (wide) buffer.putInt(id);
                else buffer.putShort((short) id);
            }
            tokens += job.length();
            documents += job.documents();
            bytes += job.bytes();
        }

        void finish() throws IOException {
            flush();
            writeFully(header.withCounts(tokens, documents).toBytes(), 0);
            out.force(true);
        }

        private void flush() throws IOException {
            position = writeFully(buffer.flip(), position);
            buffer.clear();
        }

        /** Writes all of {@code b} at {@code at}; returns the position after it. */
        private long writeFully(ByteBuffer b, long at) throws IOException {
            while (b.hasRemaining()) at += out.write(b, at);
            return at;
        }
    }
}
