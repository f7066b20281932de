package dev.eetune.dist;

import java.time.Duration;

/** Makes the process group of a launched run (service: the MPI group in ee-native). */
public interface ProcessGroupProvider {
    /** Joins the run's group (once per process); throws with the reason when it cannot. */
    ProcessGroup join(Duration timeout);
}
