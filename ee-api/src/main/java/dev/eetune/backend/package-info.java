/**
 * The backend SPI: memory and the validated kernels of the one native ABI.
 *
 * <p>Thread-safety of its types: {@code Backend}, {@code Backends} and {@code Ops} are thread-safe (kernels run on the
 * native library's one thread pool, or on the calling thread alone while another thread's kernel holds it; allocation
 * counters are atomic); what a kernel may touch is governed by the tensors it is given (see
 * {@link dev.eetune.tensor.Tensor}). {@code BackendProvider} and {@code HostMemory} are stateless. {@code MappedFile}: read from any thread; close once no thread uses it (its owning scope sees to that).
 * {@code KernelProfile}: counts from any thread; one thread opens and closes it.
 */
package dev.eetune.backend;
