package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.BackendProvider;

/** Registers the CPU backend with {@link dev.eetune.backend.Backends}. */
public final class CpuBackendProvider implements BackendProvider {
    @Override
    public String name() { return "cpu"; }

    @Override
    public int priority() { return 10; }

    @Override
    public String unavailableReason() { return CpuLibrary.unavailableReason(); }

    @Override
    public Backend create() { return CpuLibrary.backend(); }
}
