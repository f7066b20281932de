package dev.eetune.backend.spi;

import java.util.Locale;

/** How Java calls native code: Panama FFM (JDK 22+) or JNA (JDK 17+). Chosen with {@code -Deetune.binding}. */
public enum Binding {
    FFM,
    JNA;

    /**
     * {@code -Deetune.binding=ffm|jna|auto} (default auto: FFM when the backend's jar can use it in this JVM, else JNA).
     *
     * @param ffmUnavailableReason null when the calling backend's FFM provider runs in this JVM; else why not
     */
    public static Binding selected(String ffmUnavailableReason) {
        String s = System.getProperty("eetune.binding", "auto").trim().toLowerCase(Locale.ROOT);
        switch (s) {
            case "ffm":
                if (ffmUnavailableReason != null) throw new IllegalStateException("-Deetune.binding=ffm, but " + ffmUnavailableReason);
                return FFM;
            case "jna": return JNA;
            case "auto": case "": return ffmUnavailableReason == null ? FFM : JNA;
            default: throw new IllegalArgumentException("-Deetune.binding=" + s + ": expected ffm, jna or auto");
        }
    }

    public String label() { return name().toLowerCase(Locale.ROOT); }
}
