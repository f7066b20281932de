package dev.eetune.cuda;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;
import dev.eetune.nativelib.Binding;
import dev.eetune.nativelib.NativeLibraryLoader;

import java.nio.file.Path;

/**
 * libeecuda, loaded once on first use through the selected {@link Binding} (FFM on JDK 22+, else JNA; FFM falls back
 * to JNA when this jar has no FFM provider). Failures are remembered and reported, never thrown from a static
 * initializer: a machine without a GPU gets a reason, not an exception.
 */
public final class CudaLibrary {
    /** The ABI version this Java code was generated for (EE_ABI_VERSION in eetune.h). */
    static final int ABI_VERSION = 1;

    private static CudaBackend backend;
    private static String failure;
    private static boolean tried;

    private CudaLibrary() {}

    /** Null when the CUDA backend can run here; else why not. */
    public static synchronized String unavailableReason() {
        load();
        return failure;
    }

    /** The CUDA backend (throws with the reason when unavailable). */
    public static synchronized CudaBackend backend() {
        load();
        if (backend == null) throw new IllegalStateException("the CUDA backend is unavailable: " + failure);
        return backend;
    }

    private static void load() {
        if (tried) return;
        tried = true;
        Path lib;
        try {
            lib = NativeLibraryLoader.load("eecuda");
        } catch (Throwable t) { // a missing library is a reason here, not an error
            failure = "libeecuda not found (build it on a machine with nvcc: native/cuda/build.sh): " + t.getMessage();
            return;
        }
        try {
            Binding binding = Binding.selected();
            if (binding == Binding.FFM && FfmCuda.unavailableReason() != null) binding = Binding.JNA;
            Kernels k = binding == Binding.FFM ? FfmCuda.bind(lib) : JnaCuda.bind(lib);
            HostMemory host = binding == Binding.FFM ? FfmCuda.hostMemory() : JnaCuda.hostMemory();
            int abi = k.ee_abi_version();
            if (abi != ABI_VERSION) {
                failure = lib + " has ABI version " + abi + " but this eetune needs " + ABI_VERSION + " (a stale -Deetune.native.path?)";
                return;
            }
            int devices = k.ee_device_count();
            if (devices <= 0) {
                failure = "no CUDA device: " + host.string(k.ee_last_error()) + " (libeecuda loaded from " + lib + ")";
                return;
            }
            backend = new CudaBackend(k, host, binding, lib);
        } catch (Throwable t) {
            failure = "libeecuda (" + lib + ") cannot be used: " + t.getClass().getSimpleName() + ": " + t.getMessage();
        }
    }
}
