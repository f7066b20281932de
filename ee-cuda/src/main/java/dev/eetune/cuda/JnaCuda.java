package dev.eetune.cuda;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import dev.eetune.backend.HostMemory;
import dev.eetune.backend.Kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/** The JNA binding of libeecuda (generated {@link CudaJna}; JDK 17+). */
final class JnaCuda {
    private JnaCuda() {}

    static Kernels bind(Path library) { return CudaJna.bind(NativeLibrary.getInstance(library.toString())); }

    static NcclAbi bindNccl(Path library) { return NcclJna.bind(NativeLibrary.getInstance(library.toString())); }

    static HostMemory hostMemory() {
        return new HostMemory() {
            @Override
            public ByteBuffer view(long address, long bytes) { return new Pointer(address).getByteBuffer(0, bytes).order(ByteOrder.nativeOrder()); }

            @Override
            public long address(ByteBuffer direct) { return Pointer.nativeValue(Native.getDirectBufferPointer(direct)) + direct.position(); }
        };
    }
}
