package dev.eetune.backend;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.ConcurrentHashMap;

/** Finds backends through {@link BackendProvider}s and explains those that cannot run. */
public final class Backends {
    private static final Map<String, Backend> CREATED = new ConcurrentHashMap<>();

    private Backends() {}

    /** Every provider on the class path, highest priority first. */
    public static List<BackendProvider> providers() {
        List<BackendProvider> list = new ArrayList<>();
        for (BackendProvider p : ServiceLoader.load(BackendProvider.class, Backends.class.getClassLoader())) list.add(p);
        list.sort(Comparator.comparingInt(BackendProvider::priority).reversed());
        return list;
    }

    /** Names of the backends that can run here. */
    public static List<String> available() {
        List<String> names = new ArrayList<>();
        for (BackendProvider p : providers()) if (p.unavailableReason() == null) names.add(p.name());
        return names;
    }

    /** One line per provider: available, or why not. */
    public static String explain() {
        StringBuilder sb = new StringBuilder();
        List<BackendProvider> ps = providers();
        if (ps.isEmpty()) return "no backend providers on the class path (add ee-native for the CPU backend)";
        for (BackendProvider p : ps) {
            String why = p.unavailableReason();
            sb.append(p.name()).append(": ").append(why == null ? "available" : "unavailable: " + why).append('\n');
        }
        return sb.toString().strip();
    }

    /** The named backend (created once per JVM). */
    public static Backend get(String name) {
        return CREATED.computeIfAbsent(name, n -> {
            for (BackendProvider p : providers()) {
                if (p.name().equals(n)) {
                    String why = p.unavailableReason();
                    if (why != null) throw new IllegalStateException("backend '" + n + "' is unavailable: " + why);
                    return p.create();
                }
            }
            throw new IllegalArgumentException("no backend named '" + n + "'; known: " + explain());
        });
    }

    /** The CPU backend. */
    public static Backend cpu() { return get("cpu"); }

    /** The highest-priority backend that can run here. */
    public static Backend best() {
        for (BackendProvider p : providers()) if (p.unavailableReason() == null) return get(p.name());
        throw new IllegalStateException("no backend can run here:\n" + explain());
    }
}
