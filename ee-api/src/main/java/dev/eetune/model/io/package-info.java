/**
 * Checkpoint file formats: safetensors headers, indexes and writers, JSON config files.
 *
 * <p>Thread-safety of its types: {@code SafetensorsHeader}, {@code SafetensorsIndex} and {@code TensorEntry} are
 * immutable (thread-safe); {@code JsonFiles} is stateless; a {@code SafetensorsWriter} is one thread at a time.
 */
package dev.eetune.model.io;
