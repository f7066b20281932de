package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;
import dev.eetune.backend.spi.Binding;
import dev.eetune.tensor.Device;

/** The native CPU backend (libeecpu). */
public final class CpuBackend extends Backend {
    /** Freed blocks kept for reuse by default ({@link #setMemoryCacheLimit}): a training step's activations. */
    private static final long DEFAULT_MEMORY_CACHE = 1L << 30;

    private final Binding binding;

    CpuBackend(Kernels kernels, HostMemory host, Binding binding) {
        super(kernels, host);
        this.binding = binding;
        setMemoryCacheLimit(DEFAULT_MEMORY_CACHE);
    }

    @Override
    public String name() { return "cpu"; }

    @Override
    public Device device() { return Device.CPU; }

    @Override
    public String binding() { return binding.label(); }
}
