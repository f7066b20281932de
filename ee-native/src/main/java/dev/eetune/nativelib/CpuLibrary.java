package dev.eetune.nativelib;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.nio.file.Path;

/**
 * libeecpu, loaded once on first use through the selected {@link Binding}. Failures are remembered and reported,
 * never thrown from a static initializer.
 */
public final class CpuLibrary {
    /** The ABI version this Java code was generated for (EE_ABI_VERSION in eetune.h). */
    static final int ABI_VERSION = 1;

    private static CpuBackend backend;
    private static String failure;
    private static boolean tried;

    private CpuLibrary() {}

    /** Null when the CPU backend can run; else why not. */
    public static synchronized String unavailableReason() {
        load();
        return failure;
    }

    /** The CPU backend with the selected binding (throws with the reason when unavailable). */
    public static synchronized CpuBackend backend() {
        load();
        if (backend == null) throw new IllegalStateException("the CPU backend is unavailable: " + failure);
        return backend;
    }

    /** Binds the library through a specific binding (to compare FFM and JNA in one JVM). */
    public static synchronized CpuBackend backend(Binding binding) {
        CpuBackend selected = backend();
        if (binding.label().equals(selected.binding())) return selected;
        Path lib = NativeLibraryLoader.load("eecpu");
        return create(lib, binding);
    }

    private static void load() {
        if (tried) return;
        tried = true;
        try {
            Binding binding = Binding.selected();
            backend = create(NativeLibraryLoader.load("eecpu"), binding);
        } catch (Throwable t) { // report, never crash: a missing library is a reason, not an error here
            failure = t.getClass().getSimpleName() + ": " + t.getMessage();
        }
    }

    private static CpuBackend create(Path lib, Binding binding) {
        Kernels k = binding == Binding.FFM ? Ffm.bindCpu(lib) : Jna.bindCpu(lib);
        HostMemory host = binding == Binding.FFM ? Ffm.hostMemory() : Jna.hostMemory();
        int abi = k.ee_abi_version();
        if (abi != ABI_VERSION) {
            throw new IllegalStateException(lib + " has ABI version " + abi + " but this eetune needs " + ABI_VERSION + " (a stale -Deetune.native.path?)");
        }
        return new CpuBackend(k, host, binding);
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
