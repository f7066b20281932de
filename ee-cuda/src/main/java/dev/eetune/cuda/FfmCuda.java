package dev.eetune.cuda;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.nio.file.Path;

/**
 * The FFM binding as seen by a JDK older than 22, or in a jar built on one: unavailable. The multi-release jar
 * replaces this class on JDK 22+ with the real one (src/main/java22).
 */
final class FfmCuda {
    private FfmCuda() {}

    static String unavailableReason() {
        return "the FFM binding needs JDK 22+ and a jar built on JDK 22+ (this JVM is " + Runtime.version() + ")";
    }

    static Kernels bind(Path library) { throw new UnsupportedOperationException(unavailableReason()); }

    static NcclAbi bindNccl(Path library) { throw new UnsupportedOperationException(unavailableReason()); }

    static HostMemory hostMemory() { throw new UnsupportedOperationException(unavailableReason()); }
}
