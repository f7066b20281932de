package dev.eetune.nativelib;

import dev.eetune.backend.spi.NativeBackendProvider;

/** Registers the CPU backend with {@link dev.eetune.backend.Backends}. */
public final class CpuBackendProvider extends NativeBackendProvider {
    public CpuBackendProvider() { super("cpu", 10, CpuLibrary.LOADER); }
}
