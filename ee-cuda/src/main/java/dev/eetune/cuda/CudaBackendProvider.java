package dev.eetune.cuda;

import dev.eetune.backend.Backend;
import dev.eetune.backend.BackendProvider;

/**
 * Registers the CUDA backend with {@link dev.eetune.backend.Backends}. It is available only when libeecuda loads and
 * sees at least one CUDA device; otherwise {@link #unavailableReason()} says why (library not found, with the places
 * tried; no driver; no device). Nothing here throws for a missing GPU.
 */
public final class CudaBackendProvider implements BackendProvider {
    @Override
    public String name() { return "cuda"; }

    @Override
    public int priority() { return 20; }

    @Override
    public String unavailableReason() { return CudaLibrary.unavailableReason(); }

    @Override
    public Backend create() { return CudaLibrary.backend(); }
}
