package dev.eetune.backend.spi;

import dev.eetune.backend.Backend;
import dev.eetune.backend.BackendProvider;

/** A {@link BackendProvider} whose backend lives in a native library: available exactly when its loader says so. */
public abstract class NativeBackendProvider implements BackendProvider {
    private final String name;
    private final int priority;
    private final NativeBackendLoader<?> loader;

    protected NativeBackendProvider(String name, int priority, NativeBackendLoader<?> loader) {
        this.name = name;
        this.priority = priority;
        this.loader = loader;
    }

    @Override
    public final String name() { return name; }

    @Override
    public final int priority() { return priority; }

    @Override
    public final String unavailableReason() { return loader.unavailableReason(); }

    @Override
    public final Backend create() { return loader.backend(); }
}
