/**
 * Trainable blocks with forward and backward, their parameters, and named tensor files.
 *
 * <p>Thread-safety of its types: {@code Parameter} and {@code SwiGluMlp} refer to tensors that many threads may read
 * while nobody trains; {@code ParameterSet}: creating parameters is one thread at a time, and closing waits for the
 * leases of calls using them ({@link dev.eetune.tensor.Scope#use()}); {@code TransformerBlock} writes only the buffers
 * its caller passes; {@code TensorFiles} is stateless (the tensors it writes into are the caller's).
 */
package dev.eetune.nn;
