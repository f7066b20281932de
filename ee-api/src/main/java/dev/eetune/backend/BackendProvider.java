package dev.eetune.backend;

/**
 * Service-provider interface for backends (found with {@link java.util.ServiceLoader}). A provider never throws from
 * a static initializer: {@link #unavailableReason()} says why it cannot run here, and {@link #create()} is called
 * only when that is null.
 */
public interface BackendProvider {
    /** Short name, e.g. {@code cpu}. */
    String name();

    /** Higher is preferred by {@link Backends#best()}. */
    int priority();

    /** Null when this backend can run here; otherwise a human-readable reason (missing library, no device, ...). */
    String unavailableReason();

    Backend create();
}
