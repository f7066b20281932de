package dev.eetune.nativelib;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/** The JNA binding (direct mapping; JDK 17+). */
final class Jna {
    private Jna() {}

    static Kernels bindCpu(Path library) { return CpuJna.bind(NativeLibrary.getInstance(library.toString())); }

    static OpenBlas bindOpenBlas(Path library) { return OpenBlasJna.bind(NativeLibrary.getInstance(library.toString())); }

    static DistAbi bindDist(Path library) { return DistJna.bind(NativeLibrary.getInstance(library.toString())); }

    static HostMemory hostMemory() {
        return new HostMemory() {
            @Override
            public ByteBuffer view(long address, long bytes) { return new Pointer(address).getByteBuffer(0, bytes).order(ByteOrder.nativeOrder()); }

            @Override
            public long address(ByteBuffer direct) { return Pointer.nativeValue(Native.getDirectBufferPointer(direct)) + direct.position(); }
        };
    }
}
