/**
 * Windows of a token file and shuffled batches of them.
 *
 * <p>Thread-safety of its types: {@code Batch} and {@code DataPosition} are values; {@code PackedSequences} is a read-
 * only view (thread-safe); {@code BatchLoader} is one thread at a time (its position advances).
 */
package dev.eetune.data.batch;
