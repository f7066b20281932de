/**
 * Text corpora to packed token batches: {@code data.corpus} reads corpora, {@code data.tokens} the token files, {@code
 * data.batch} windows and batches.
 *
 * <p>Thread-safety of its types: {@code Sha256} and {@code FileTrees} are stateless (thread-safe).
 */
package dev.eetune.data;
