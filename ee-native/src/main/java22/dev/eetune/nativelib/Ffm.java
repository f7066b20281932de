package dev.eetune.nativelib;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/** The Panama FFM binding (JDK 22+; this class replaces the JDK 17 stub in the multi-release jar). */
final class Ffm {
    private Ffm() {}

    static String unavailableReason() { return null; }

    static Kernels bindCpu(Path library) { return CpuFfm.bind(SymbolLookup.libraryLookup(library, Arena.global())); }

    static OpenBlas bindOpenBlas(Path library) { return OpenBlasFfm.bind(SymbolLookup.libraryLookup(library, Arena.global())); }

    static DistAbi bindDist(Path library) { return DistFfm.bind(SymbolLookup.libraryLookup(library, Arena.global())); }

    static HostMemory hostMemory() {
        return new HostMemory() {
            @Override
            public ByteBuffer view(long address, long bytes) { return MemorySegment.ofAddress(address).reinterpret(bytes).asByteBuffer().order(ByteOrder.nativeOrder()); }

            @Override
            public long address(ByteBuffer direct) { return MemorySegment.ofBuffer(direct).address(); } // the segment starts at the position
        };
    }
}
