package dev.eetune.nativelib;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.nio.file.Path;

/**
 * The FFM binding as seen by a JDK older than 22: unavailable, with the reason. The multi-release jar replaces this
 * class on JDK 22+ with the real one (src/main/java22).
 */
final class Ffm {
    private Ffm() {}

    static String unavailableReason() {
        return "the FFM binding needs JDK 22+ and a jar built on JDK 22+ (this JVM is " + Runtime.version() + ")";
    }

    static Kernels bindCpu(Path library) { throw new UnsupportedOperationException(unavailableReason()); }

    static OpenBlas bindOpenBlas(Path library) { throw new UnsupportedOperationException(unavailableReason()); }

    static DistAbi bindDist(Path library) { throw new UnsupportedOperationException(unavailableReason()); }

    static HostMemory hostMemory() { throw new UnsupportedOperationException(unavailableReason()); }
}
