package dev.eetune.dist;

import dev.eetune.backend.Backend;

import java.time.Duration;

/**
 * Makes the process group of a backend whose tensors live in device memory (service: NCCL for the CUDA backend, in
 * ee-cuda). The group it returns sends device tensors itself and leaves everything else (host values, barriers,
 * aborting) to the launcher's group it is given, which also bootstraps it.
 */
public interface DeviceGroupProvider {
    /** The {@link Backend#name()} whose tensors this provider's groups carry, e.g. "cuda". */
    String backend();

    /** Joins the device group of every rank of {@code host} (all ranks call it at the same point); throws with the reason. */
    ProcessGroup join(ProcessGroup host, Backend backend, Duration timeout);
}
