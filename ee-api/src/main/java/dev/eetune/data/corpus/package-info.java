/**
 * Corpora: files, directories, zip files and JSONL, read as documents.
 *
 * <p>Thread-safety of its types: {@code Corpus} and {@code Segment} are read-only descriptions (thread-safe); each
 * reader they open is used by one thread at a time.
 */
package dev.eetune.data.corpus;
