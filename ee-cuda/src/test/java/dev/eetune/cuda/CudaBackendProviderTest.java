package dev.eetune.cuda;

import dev.eetune.backend.Backend;
import dev.eetune.backend.BackendProvider;
import dev.eetune.backend.Backends;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Runs everywhere: without a GPU the provider explains itself and nothing throws. */
class CudaBackendProviderTest {
    private static BackendProvider provider() {
        return Backends.providers().stream().filter(p -> p.name().equals("cuda")).findFirst()
            .orElseThrow(() -> new AssertionError("no 'cuda' provider on the class path: " + Backends.explain()));
    }

    @Test
    void providerIsRegisteredAndExplainsItself() {
        BackendProvider p = provider();
        assertThat(p).isInstanceOf(CudaBackendProvider.class);
        assertThat(p.priority()).isGreaterThan(10); // preferred over the CPU backend when it can run
        String reason = p.unavailableReason();
        assertThat(p.unavailableReason()).isEqualTo(reason); // stable
        if (reason != null) {
            assertThat(reason).isNotBlank();
            assertThat(reason).containsAnyOf("libeecuda", "CUDA", "driver");
            assertThat(Backends.explain()).contains("cuda: unavailable: " + reason);
            assertThat(Backends.available()).doesNotContain("cuda");
            assertThatThrownBy(p::create).isInstanceOf(IllegalStateException.class).hasMessageContaining(reason);
            assertThatThrownBy(() -> Backends.get("cuda")).isInstanceOf(IllegalStateException.class).hasMessageContaining("unavailable");
        } else {
            Backend b = p.create();
            assertThat(b.name()).isEqualTo("cuda");
            assertThat(b.device().toString()).isEqualTo("cuda:0");
            assertThat(b.features()).contains(Backend.Feature.CUDA);
            assertThat(b.noopCall().applyAsInt(41)).isEqualTo(42);
            assertThat(Backends.best().name()).isEqualTo("cuda");
        }
    }

    @Test
    void libraryReasonNamesTheProblem() {
        String reason = CudaLibrary.LOADER.unavailableReason();
        if (reason == null) return; // a GPU machine: covered by CudaKernelsTest
        boolean libraryMissing = reason.startsWith("libeecuda not found");
        boolean noDevice = reason.startsWith("no CUDA device: ");
        assertThat(libraryMissing || noDevice || reason.contains("cannot be used") || reason.contains("ABI version"))
            .as("reason: %s", reason).isTrue();
        if (libraryMissing) assertThat(reason).contains("tried");
    }
}
