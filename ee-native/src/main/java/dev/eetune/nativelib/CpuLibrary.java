package dev.eetune.nativelib;

import dev.eetune.backend.spi.Binding;
import dev.eetune.backend.spi.NativeBackendLoader;

import java.nio.file.Path;

/** libeecpu, loaded once on first use through the selected {@link Binding}; and OpenBLAS bound directly (benchmarks). */
public final class CpuLibrary {
    static final NativeBackendLoader<CpuBackend> LOADER = new NativeBackendLoader<>(CpuLibrary.class, "eecpu",
        "build it with native/build.sh, or ./mvnw package", Ffm.unavailableReason(), CpuLibrary::create);

    private CpuLibrary() {}

    /** Null when the CPU backend can run; else why not. */
    public static String unavailableReason() { return LOADER.unavailableReason(); }

    /** The CPU backend with the selected binding (throws with the reason when unavailable). */
    public static CpuBackend backend() { return LOADER.backend(); }

    /** The CPU backend through a specific binding (to compare FFM and JNA in one JVM). */
    public static CpuBackend backend(Binding binding) { return LOADER.backend(binding); }

    private static CpuBackend create(Path lib, Binding binding) {
        return binding == Binding.FFM ? new CpuBackend(Ffm.bindCpu(lib), Ffm.hostMemory(), binding)
            : new CpuBackend(Jna.bindCpu(lib), Jna.hostMemory(), binding);
    }

    /** OpenBLAS bound directly (the benchmark's baseline); throws when OpenBLAS cannot be found. */
    public static synchronized OpenBlas openBlas(Binding binding) {
        Path lib = null;
        String env = System.getenv("EETUNE_BLAS");
        for (String candidate : new String[] {env, "/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib64/libopenblas.so.0", "/usr/lib/libopenblas.so.0"}) {
            if (candidate != null && java.nio.file.Files.isRegularFile(Path.of(candidate))) {
                lib = Path.of(candidate);
                break;
            }
        }
        if (lib == null) throw new IllegalStateException("OpenBLAS not found (set EETUNE_BLAS to libopenblas.so, or apt-get install libopenblas0)");
        return binding == Binding.FFM ? Ffm.bindOpenBlas(lib) : Jna.bindOpenBlas(lib);
    }
}
