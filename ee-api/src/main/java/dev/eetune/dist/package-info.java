/**
 * Distributed tuning: the {@link dev.eetune.dist.ProcessGroup} of the processes of one run (a {@link
 * dev.eetune.dist.LocalGroup} of one without a launcher; MPI under {@code mpirun} / {@code srun}; for a backend with
 * device tensors, its {@link dev.eetune.dist.DeviceGroupProvider}'s group: NCCL for CUDA), and {@link
 * dev.eetune.dist.Parallelism}, how a tuning step is shared among ranks (data replicas x pipeline stages) and the heads' gradients summed.
 * Launching on a cluster: docs/distributed.md.
 */
package dev.eetune.dist;
