package dev.eetune.cuda;

import dev.eetune.backend.Backend;
import dev.eetune.backend.BackendProvider;
import dev.eetune.nativelib.NativeLibraryLoader;

/**
 * The CUDA backend's provider. It looks for libeecuda (built from native/cuda on a machine with the CUDA toolkit,
 * see native/cuda/device-check.sh) and reports why it cannot run instead of failing.
 */
public final class CudaBackendProvider implements BackendProvider {
    private static String reason;

    @Override
    public String name() { return "cuda"; }

    @Override
    public int priority() { return 20; }

    @Override
    public synchronized String unavailableReason() {
        if (reason == null) {
            try {
                NativeLibraryLoader.load("eecuda");
                reason = "libeecuda loads, but the Java CUDA backend is not implemented yet in this version";
            } catch (UnsatisfiedLinkError e) {
                reason = e.getMessage();
            }
        }
        return reason;
    }

    @Override
    public Backend create() { throw new IllegalStateException("backend 'cuda' is unavailable: " + unavailableReason()); }
}
