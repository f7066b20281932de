package dev.eetune.tensor;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The CPU backend keeps freed large blocks for allocations of the same size, within its limit, outside liveBytes. */
class MemoryCacheTest {
    static final Backend CPU = Backends.cpu();
    static final int FLOATS = 1 << 20; // 4 MiB: above the 256 KiB a block needs to be cached

    @Test
    void aFreedLargeBlockIsReusedForTheSameSizeAndReleasedOnRequest() {
        long limit = CPU.memoryCacheLimit();
        try {
            CPU.releaseCachedMemory();
            long live = CPU.liveBytes();
            long first;
            try (Scope s = Scope.of(CPU)) {
                first = s.allocate(DType.F32, FLOATS).address();
            }
            assertThat(CPU.cachedBytes()).isEqualTo(4L * FLOATS);
            assertThat(CPU.liveBytes()).isEqualTo(live);
            try (Scope s = Scope.of(CPU)) {
                Tensor other = s.allocate(DType.F32, FLOATS + 16); // another size: not served from the cache
                Tensor again = s.allocate(DType.F32, FLOATS);
                assertThat(again.address()).isEqualTo(first);
                assertThat(other.address()).isNotEqualTo(first);
                assertThat(CPU.cachedBytes()).isZero();
                again.copyFrom(new float[FLOATS]); // the reused block is ordinary memory
            }
            CPU.releaseCachedMemory();
            assertThat(CPU.cachedBytes()).isZero();
            assertThat(CPU.liveBytes()).isEqualTo(live);
        } finally {
            CPU.setMemoryCacheLimit(limit);
        }
    }

    @Test
    void theLimitBoundsWhatIsKeptAndZeroTurnsTheCacheOff() {
        long limit = CPU.memoryCacheLimit();
        try {
            CPU.releaseCachedMemory();
            CPU.setMemoryCacheLimit(6L * FLOATS); // room for one 4 MiB block, not two
            try (Scope s = Scope.of(CPU)) {
                s.allocate(DType.F32, FLOATS);
                s.allocate(DType.F32, FLOATS);
            }
            assertThat(CPU.cachedBytes()).isEqualTo(4L * FLOATS);
            CPU.setMemoryCacheLimit(0);
            assertThat(CPU.cachedBytes()).as("a limit below what is cached releases the cache").isZero();
            try (Scope s = Scope.of(CPU)) {
                s.allocate(DType.F32, FLOATS);
            }
            assertThat(CPU.cachedBytes()).isZero();
            assertThatThrownBy(() -> CPU.setMemoryCacheLimit(-1)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("-1");
        } finally {
            CPU.setMemoryCacheLimit(limit);
        }
    }
}
