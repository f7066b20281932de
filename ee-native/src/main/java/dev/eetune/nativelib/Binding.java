package dev.eetune.nativelib;

import java.util.Locale;

/** How Java calls native code: Panama FFM (JDK 22+) or JNA (JDK 17+). Chosen with {@code -Deetune.binding}. */
public enum Binding {
    FFM,
    JNA;

    /** {@code -Deetune.binding=ffm|jna|auto} (default auto: FFM when this JVM has it, else JNA). */
    public static Binding selected() {
        String s = System.getProperty("eetune.binding", "auto").trim().toLowerCase(Locale.ROOT);
        switch (s) {
            case "ffm":
                if (Ffm.unavailableReason() != null) throw new IllegalStateException("-Deetune.binding=ffm, but " + Ffm.unavailableReason());
                return FFM;
            case "jna": return JNA;
            case "auto": case "": return Ffm.unavailableReason() == null ? FFM : JNA;
            default: throw new IllegalArgumentException("-Deetune.binding=" + s + ": expected ffm, jna or auto");
        }
    }

    public String label() { return name().toLowerCase(Locale.ROOT); }
}
