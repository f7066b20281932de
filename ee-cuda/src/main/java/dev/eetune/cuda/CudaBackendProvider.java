package dev.eetune.cuda;

import dev.eetune.backend.spi.NativeBackendProvider;

/**
 * Registers the CUDA backend with {@link dev.eetune.backend.Backends}. It is available only when libeecuda loads and
 * sees at least one CUDA device; otherwise {@link #unavailableReason()} says why (library not found, with the places
 * tried; no driver; no device). Nothing here throws for a missing GPU.
 */
public final class CudaBackendProvider extends NativeBackendProvider {
    public CudaBackendProvider() { super("cuda", 20, CudaLibrary.LOADER); }
}
