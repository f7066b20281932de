/**
 * Distributed tuning: the {@link dev.eetune.dist.ProcessGroup} of the processes of one run (a {@link
 * dev.eetune.dist.LocalGroup} of one without a launcher; MPI under {@code mpirun} / {@code srun}), and {@link
 * dev.eetune.dist.DataParallel}, how a tuning step's micro-batches are shared among ranks and their gradients summed.
 * Launching on a cluster: docs/distributed.md.
 */
package dev.eetune.dist;
