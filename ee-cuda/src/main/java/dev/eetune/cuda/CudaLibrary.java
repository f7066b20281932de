package dev.eetune.cuda;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;
import dev.eetune.backend.spi.Binding;
import dev.eetune.backend.spi.NativeBackendLoader;

import java.nio.file.Path;

/**
 * libeecuda, loaded once on first use through the selected {@link Binding}; usable only where it sees a CUDA device
 * ({@link CudaBackendProvider#unavailableReason()} says why not: library not found, no driver, no device).
 */
public final class CudaLibrary {
    static final NativeBackendLoader<CudaBackend> LOADER = new NativeBackendLoader<>(CudaLibrary.class, "eecuda",
        "build it on a machine with nvcc: native/cuda/build.sh", FfmCuda.unavailableReason(), CudaLibrary::create);

    private CudaLibrary() {}

    private static CudaBackend create(Path lib, Binding binding) {
        Kernels k = binding == Binding.FFM ? FfmCuda.bind(lib) : JnaCuda.bind(lib);
        HostMemory host = binding == Binding.FFM ? FfmCuda.hostMemory() : JnaCuda.hostMemory();
        if (k.ee_device_count() <= 0) throw new IllegalStateException("no CUDA device: " + host.string(k.ee_last_error()));
        return new CudaBackend(k, host, binding, lib);
    }
}
