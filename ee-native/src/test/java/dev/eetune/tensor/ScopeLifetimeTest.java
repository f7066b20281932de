package dev.eetune.tensor;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.LlamaWeights;
import dev.eetune.testing.TestData;
import dev.eetune.testing.Threads;
import org.assertj.core.api.ThrowableAssert.ThrowingCallable;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Closed tensors (allocated and mapped) refuse use before native code; closing a scope waits for its leases. */
class ScopeLifetimeTest {
    static final Backend CPU = Backends.cpu();

    @Test
    void everyPathIntoNativeCodeRefusesATensorOfAClosedScopeNamingTheScope() {
        Scope s = Scope.of(CPU, "the test scope");
        Tensor a = s.of(new float[] {1, 2, 3}, 3), view = a.slice(1, 3);
        try (Scope live = Scope.of(CPU)) {
            Tensor out = live.allocate(DType.F32, 3), ids = live.of(new int[] {0}, 1), row = live.allocate(DType.F32, 1, 3);
            s.close();
            List<ThrowingCallable> uses = List.of(a::toFloatArray, view::toFloatArray, () -> a.copyFrom(new float[3]), () -> out.copyFrom(a),
                () -> CPU.ops().add(out, a, out), () -> CPU.ops().embedding(row, a.reshape(1, 3), ids), () -> CPU.ops().zero(view));
            for (ThrowingCallable use : uses) {
                assertThatThrownBy(use).isInstanceOf(IllegalStateException.class).hasMessageContaining("F32").hasMessageContaining("the test scope");
            }
            assertThat(a.toString()).endsWith("(closed)");
            assertThat(out.toFloatArray()).hasSize(3); // the other scope's tensors are untouched
        }
    }

    @Test
    void mappedWeightsRefuseUseOnceTheirModelIsClosed() {
        LlamaModel m = LlamaModel.load(TestData.stories260K(), CPU);
        LlamaWeights w = m.weights();
        float first = w.tokenEmbedding().toFloatArray()[0];
        assertThat(first).isFinite();
        m.close(); // unmaps the file: before, the views below read unmapped memory (SIGSEGV)
        try (Scope s = Scope.of(CPU)) {
            Tensor x = s.allocate(DType.F32, 1, m.config().dim()), ids = s.of(new int[] {1}, 1);
            for (ThrowingCallable use : List.<ThrowingCallable>of(() -> w.tokenEmbedding().toFloatArray(), () -> w.layers().get(0).wq().toFloatArray(),
                () -> CPU.ops().embedding(x, w.tokenEmbedding(), ids), () -> CPU.ops().rmsnorm(x, null, x, w.finalNorm(), 1e-5f))) {
                assertThatThrownBy(use).isInstanceOf(IllegalStateException.class).hasMessageContaining("stories260K.bin").hasMessageContaining("closed");
            }
        }
    }

    @Test
    void closeWaitsForTheLeasesOfOtherThreadsAndLaterLeasesFail() throws Exception {
        Scope s = Scope.of(CPU, "shared weights");
        Tensor t = s.of(new float[] {7}, 1);
        Scope.Lease lease = s.use();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread closer = new Thread(s::close);
        closer.setUncaughtExceptionHandler((th, e) -> failure.set(e));
        closer.start();
        Threads.awaitBlocked(closer);
        assertThat(closer.getState()).as("close must wait for the lease").isEqualTo(Thread.State.WAITING);
        assertThat(t.toFloatArray()).containsExactly(7f); // still valid under the lease
        lease.close();
        closer.join();
        assertThat(failure.get()).isNull();
        assertThat(t.isClosed()).isTrue();
        assertThatThrownBy(s::use).isInstanceOf(IllegalStateException.class).hasMessage("shared weights is closed");
    }

    @Test
    void closingFromInsideOwnLeaseThrowsInsteadOfWaitingForItself() {
        Scope s = Scope.of(CPU, "in use");
        try (Scope.Lease lease = s.use()) {
            assertThatThrownBy(s::close).isInstanceOf(IllegalStateException.class).hasMessageContaining("in use").hasMessageContaining("this thread");
            assertThat(s.isClosed()).isFalse();
        }
        s.close();
        assertThat(s.isClosed()).isTrue();
    }

    @Test
    void aResourceGivenToAClosedScopeIsClosedRatherThanLeaked() {
        Scope s = Scope.of(CPU, "gone");
        s.close();
        long live = CPU.liveBytes();
        assertThatThrownBy(() -> s.allocate(DType.F32, 1000)).isInstanceOf(IllegalStateException.class).hasMessage("gone is closed");
        assertThat(CPU.liveBytes()).isEqualTo(live);
        Scope other = Scope.of(CPU);
        assertThatThrownBy(() -> s.track(other)).isInstanceOf(IllegalStateException.class);
        assertThat(other.isClosed()).isTrue();
    }
}
