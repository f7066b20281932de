package dev.eetune.cuda;

import dev.eetune.backend.Backend;
import dev.eetune.dist.DeviceGroupProvider;
import dev.eetune.dist.ProcessGroup;

import java.time.Duration;

/** Registers the NCCL group for the CUDA backend's tensors with {@link dev.eetune.dist.ProcessGroups#forBackend}. */
public final class NcclGroupProvider implements DeviceGroupProvider {
    @Override public String backend() { return "cuda"; }

    @Override public ProcessGroup join(ProcessGroup host, Backend backend, Duration timeout) { return NcclGroup.join(host, timeout); }
}
