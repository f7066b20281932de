package dev.eetune.backend.spi;

import dev.eetune.backend.Backend;

import java.nio.file.Path;

/**
 * The native library of one backend (libeecpu, libeecuda), found by {@link NativeLibraryLoader} and bound once, on
 * first use, through the selected {@link Binding}. A failure is remembered and reported as the provider's reason,
 * never thrown from a static initializer: a machine without the library or its device gets a reason, not an error.
 */
public final class NativeBackendLoader<B extends Backend> {
    /** Makes the backend from the library file through one binding; throws, with the reason, when it cannot. */
    @FunctionalInterface
    public interface Factory<B> {
        B create(Path library, Binding binding);
    }

    private final Class<?> owner;
    private final String name;
    private final String buildHint;
    private final String ffmUnavailableReason;
    private final Factory<B> factory;
    private Path library;
    private Binding binding;
    private B backend;
    private String failure;
    private boolean tried;

    /**
     * @param owner                a class of the backend module whose jar packages the library
     * @param name                 the library name without prefix and suffix, e.g. {@code eecpu}
     * @param buildHint            how to get the library when it is missing, e.g. "build it with native/build.sh"
     * @param ffmUnavailableReason null when the module's FFM provider runs in this JVM; else why not
     */
    public NativeBackendLoader(Class<?> owner, String name, String buildHint, String ffmUnavailableReason, Factory<B> factory) {
        this.owner = owner;
        this.name = name;
        this.buildHint = buildHint;
        this.ffmUnavailableReason = ffmUnavailableReason;
        this.factory = factory;
    }

    /** Null when the backend can run here; else why not. */
    public synchronized String unavailableReason() {
        load();
        return failure;
    }

    /** The backend through the selected binding (throws with the reason when it is unavailable). */
    public synchronized B backend() {
        load();
        if (backend == null) throw new IllegalStateException("lib" + name + " is unavailable: " + failure);
        return backend;
    }

    /** The backend through a given binding (to compare FFM and JNA in one JVM). */
    public synchronized B backend(Binding binding) {
        B selected = backend();
        return binding == this.binding ? selected : factory.create(library, binding);
    }

    private void load() {
        if (tried) return;
        tried = true;
        try {
            library = NativeLibraryLoader.load(owner, name);
        } catch (Throwable t) { // a missing library is a reason here, not an error
            failure = "lib" + name + " not found (" + buildHint + "): " + t.getMessage();
            return;
        }
        try {
            binding = Binding.selected(ffmUnavailableReason);
            backend = factory.create(library, binding);
        } catch (Throwable t) {
            failure = "lib" + name + " (" + library + ") cannot be used: "
                + (t instanceof IllegalStateException ? "" : t.getClass().getSimpleName() + ": ") + t.getMessage();
        }
    }
}
