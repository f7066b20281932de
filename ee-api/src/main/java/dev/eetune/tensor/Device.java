package dev.eetune.tensor;

/**
 * Where a tensor's memory lives: {@code cpu} (host) or e.g. {@code cuda:0}.
 * Immutable: thread-safe.
 */
public record Device(String type, int index) {
    public static final Device CPU = new Device("cpu", 0);

    public boolean isHost() { return type.equals("cpu"); }

    @Override
    public String toString() { return isHost() ? type : type + ":" + index; }
}
