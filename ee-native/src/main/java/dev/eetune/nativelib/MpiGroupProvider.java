package dev.eetune.nativelib;

import dev.eetune.dist.ProcessGroup;
import dev.eetune.dist.ProcessGroupProvider;

import java.time.Duration;

/** Registers the MPI process group with {@link dev.eetune.dist.ProcessGroups}. */
public final class MpiGroupProvider implements ProcessGroupProvider {
    @Override
    public ProcessGroup join(Duration timeout) { return MpiGroup.join(timeout); }
}
