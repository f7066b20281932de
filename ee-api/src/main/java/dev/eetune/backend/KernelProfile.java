package dev.eetune.backend;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/**
 * Wall time spent in each native kernel while a profile is open (see {@link Ops#profile()}): answers "what share of a
 * tuning step is GEMM". Calls go through a timing proxy only while profiling, so normal runs pay nothing.
 */
public final class KernelProfile implements AutoCloseable {
    private final Ops ops;
    private final Map<String, LongAdder[]> byKernel = new ConcurrentHashMap<>();
    private final long start = System.nanoTime();
    private long end;

    KernelProfile(Ops ops) { this.ops = ops; }

    Kernels wrap(Kernels k) {
        return (Kernels) Proxy.newProxyInstance(Kernels.class.getClassLoader(), new Class<?>[] {Kernels.class}, (proxy, m, args) -> {
            long t0 = System.nanoTime();
            try {
                return m.invoke(k, args);
            } catch (InvocationTargetException e) {
                throw e.getCause();
            } finally {
                LongAdder[] a = byKernel.computeIfAbsent(m.getName(), n -> new LongAdder[] {new LongAdder(), new LongAdder()});
                a[0].add(System.nanoTime() - t0);
                a[1].increment();
            }
        });
    }

    /** Seconds spent in {@code kernel} (e.g. "ee_gemm"). */
    public double seconds(String kernel) {
        LongAdder[] a = byKernel.get(kernel);
        return a == null ? 0 : a[0].sum() / 1e9;
    }

    /** Calls of {@code kernel} so far. */
    public long calls(String kernel) {
        LongAdder[] a = byKernel.get(kernel);
        return a == null ? 0 : a[1].sum();
    }

    /** Wall seconds since the profile opened (until closed). */
    public double wallSeconds() { return ((end == 0 ? System.nanoTime() : end) - start) / 1e9; }

    /** One line per kernel: seconds, calls and share of the wall time, largest first. */
    public String summary() {
        double wall = wallSeconds();
        return byKernel.entrySet().stream()
            .sorted((x, y) -> Long.compare(y.getValue()[0].sum(), x.getValue()[0].sum()))
            .map(e -> String.format(Locale.ROOT, "%-26s %9.3f s %8d calls %6.1f%%", e.getKey(), e.getValue()[0].sum() / 1e9, e.getValue()[1].sum(),
                100 * e.getValue()[0].sum() / 1e9 / wall))
            .collect(java.util.stream.Collectors.joining("\n"));
    }

    @Override
    public void close() {
        if (end == 0) end = System.nanoTime();
        ops.stopProfiling(this);
    }
}
