/**
 * Token files: a corpus tokenized once, cached on disk and mapped.
 *
 * <p>Thread-safety of its types: {@code TokenFile} is immutable and thread-safe; building one is one thread at a time.
 */
package dev.eetune.data.tokens;
