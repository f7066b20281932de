package dev.eetune.nativelib;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.backend.spi.Binding;
import dev.eetune.backend.spi.NativeLibraryLoader;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The same native calls through FFM and JNA give bit-identical results; loading and discovery report clearly. */
class BindingParityTest {
    @Test
    void ffmAndJnaAgreeBitForBit() {
        List<Binding> bindings = Bindings.available();
        assertThat(bindings).contains(Binding.JNA);
        if (Runtime.version().feature() >= 22) assertThat(bindings).as("FFM must be packaged on JDK 22+").contains(Binding.FFM);
        Random r = Bindings.random("parity");
        float[] a = Bindings.randn(r, 37 * 53), b = Bindings.randn(r, 29 * 53), w = Bindings.randn(r, 53);
        float[][] results = new float[bindings.size()][];
        for (int i = 0; i < bindings.size(); i++) {
            Backend be = CpuLibrary.backend(bindings.get(i));
            assertThat(be.binding()).isEqualTo(bindings.get(i).label());
            assertThat(be.noopCall().applyAsInt(41)).isEqualTo(42);
            try (Scope sc = Scope.of(be)) {
                Tensor c = sc.allocate(DType.F32, 37, 29), n = sc.allocate(DType.F32, 37, 53);
                be.ops().gemm(false, true, 1f, sc.of(a, 37, 53), sc.of(b, 29, 53), 0f, c);
                be.ops().rmsnorm(n, null, sc.of(a, 37, 53), sc.of(w, 53), 1e-6f);
                float[] cv = c.toFloatArray(), nv = n.toFloatArray();
                float[] all = new float[cv.length + nv.length + 1];
                System.arraycopy(cv, 0, all, 0, cv.length);
                System.arraycopy(nv, 0, all, cv.length, nv.length);
                all[all.length - 1] = (float) be.ops().sumSquares(sc.of(a, a.length));
                results[i] = all;
            }
        }
        for (int i = 1; i < results.length; i++) assertThat(results[i]).containsExactly(results[0]);
    }

    @Test
    void cpuBackendIsDiscoveredAndExplained() {
        assertThat(Backends.available()).contains("cpu");
        assertThat(Backends.explain()).contains("cpu: available");
        assertThat(Backends.cpu().describe()).startsWith("cpu (cpu, ");
        assertThat(Backends.cpu().toString()).contains("cpu");
    }

    @Test
    void aMissingLibraryListsEveryPlaceTriedWithTheOsError() {
        String old = System.getProperty("eetune.native.path");
        try {
            System.setProperty("eetune.native.path", Path.of("target/no-such-dir").toAbsolutePath().toString());
            assertThatThrownBy(() -> NativeLibraryLoader.load(CpuLibrary.class, "eenosuchlib")).isInstanceOf(UnsatisfiedLinkError.class)
                .hasMessageContaining("libeenosuchlib.so").hasMessageContaining("eetune.native.path").hasMessageContaining("no such file");
            System.clearProperty("eetune.native.path");
            assertThatThrownBy(() -> NativeLibraryLoader.load(CpuLibrary.class, "eenosuchlib")).isInstanceOf(UnsatisfiedLinkError.class)
                .hasMessageContaining("jar resource native/linux-x86_64/libeenosuchlib.so: not packaged");
            Path notElf = Path.of("pom.xml").toAbsolutePath();
            System.setProperty("eetune.native.path", notElf.toString());
            assertThatThrownBy(() -> NativeLibraryLoader.load(CpuLibrary.class, "eecpu")).isInstanceOf(UnsatisfiedLinkError.class)
                .hasMessageContaining(notElf.toString()).hasMessageContaining("ELF"); // the OS loader's own words
        } finally {
            if (old == null) System.clearProperty("eetune.native.path");
            else System.setProperty("eetune.native.path", old);
        }
    }

    @Test
    void tensorsToStringAndScopes() {
        Backend be = Backends.cpu();
        Tensor outlived;
        try (Scope sc = Scope.of(be)) {
            Tensor t = sc.of(new float[] {1, 2, 3.5f, 4, 5, 6, 7, 8, 9, 10}, 2, 5);
            assertThat(t.toString()).isEqualTo("Tensor[F32 [2, 5] cpu] [1.000, 2.000, 3.500, 4.000, 5.000, 6.000, 7.000, 8.000, ...]");
            assertThat(t.slice(1, 2).toFloatArray()).containsExactly(6, 7, 8, 9, 10);
            assertThat(t.get(0).shape().dims()).containsExactly(5);
            outlived = t;
        }
        assertThat(outlived.toString()).endsWith("(closed)");
        try (Scope root = Scope.of(be)) { // closed children leave their parent: long-lived scopes do not grow
            for (int i = 0; i < 1000; i++) {
                try (Scope c = root.child()) {
                    c.allocate(DType.F32, 4);
                }
            }
            assertThat(root.toString()).contains("0 resources");
        }
        assertThatThrownBy(outlived::toFloatArray).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
    }
}
