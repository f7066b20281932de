package dev.eetune.dist;

import dev.eetune.backend.Backend;

import java.time.Duration;
import java.util.Map;
import java.util.ServiceLoader;

/**
 * The group this process belongs to. A process started by a launcher (mpirun sets {@code OMPI_COMM_WORLD_SIZE},
 * MPICH's Hydra and Slurm's PMI {@code PMI_SIZE}, Slurm's PMIx {@code PMIX_RANK}) joins the launcher's group through the
 * {@link ProcessGroupProvider} on the class path; any other process is a {@link LocalGroup} and loads nothing. A run
 * whose backend keeps tensors in device memory adds that backend's group ({@link #forBackend}: NCCL for CUDA).
 */
public final class ProcessGroups {
    private static final String[] LAUNCHER_VARIABLES = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};

    private ProcessGroups() {}

    /** The launcher variable that says this process was started as a rank, e.g. "OMPI_COMM_WORLD_SIZE=2"; null if none. */
    public static String launcher(Map<String, String> env) {
        for (String v : LAUNCHER_VARIABLES) if (env.get(v) != null) return v + "=" + env.get(v);
        return null;
    }

    /** The rank the launcher gave this process (OMPI_COMM_WORLD_RANK, PMI_RANK, PMIX_RANK), or 0 without a launcher. */
    public static int launcherRank(Map<String, String> env) {
        for (String v : new String[] {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"}) {
            String r = env.get(v);
            if (r != null && r.matches("\\d+")) return Integer.parseInt(r);
        }
        return 0;
    }

    /** This process's group: the launcher's (joined with {@code timeout} for every later call), else a group of one. */
    public static ProcessGroup join(Duration timeout) {
        String launcher = launcher(System.getenv());
        if (launcher == null) return LocalGroup.INSTANCE;
        for (ProcessGroupProvider p : ServiceLoader.load(ProcessGroupProvider.class, ProcessGroups.class.getClassLoader())) return p.join(timeout);
        throw new IllegalStateException("started by a launcher (" + launcher + ") but no process group implementation is on the class path (add ee-native)");
    }

    /**
     * The group for {@code backend}'s tensors: {@code host} itself for a group of one or a host backend, else the
     * backend's device group ({@link DeviceGroupProvider}, e.g. NCCL for "cuda") joined by every rank of {@code host}.
     */
    public static ProcessGroup forBackend(ProcessGroup host, Backend backend, Duration timeout) {
        if (host.size() == 1 || backend.device().isHost()) return host;
        for (DeviceGroupProvider p : ServiceLoader.load(DeviceGroupProvider.class, ProcessGroups.class.getClassLoader())) {
            if (p.backend().equals(backend.name())) return p.join(host, backend, timeout);
        }
        throw new IllegalStateException("the " + backend.name() + " backend keeps tensors in device memory, and no process group for them is on the class path: "
            + "distributed runs on it are not supported (use --backend cpu)");
    }
}
