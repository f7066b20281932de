package dev.eetune.cuda;

import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/** The Panama FFM binding of libeecuda (generated {@link CudaFfm}; JDK 22+, replaces the JDK 17 stub). */
final class FfmCuda {
    private FfmCuda() {}

    static String unavailableReason() { return null; }

    static Kernels bind(Path library) { return CudaFfm.bind(SymbolLookup.libraryLookup(library, Arena.global())); }

    static NcclAbi bindNccl(Path library) { return NcclFfm.bind(SymbolLookup.libraryLookup(library, Arena.global())); }

    static HostMemory hostMemory() {
        return new HostMemory() {
            @Override
            public ByteBuffer view(long address, long bytes) { return MemorySegment.ofAddress(address).reinterpret(bytes).asByteBuffer().order(ByteOrder.nativeOrder()); }

            @Override
            public long address(ByteBuffer direct) { return MemorySegment.ofBuffer(direct).address(); } // the segment starts at the position
        };
    }
}
