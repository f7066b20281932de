/**
 * Tokenizers: llama2.c {@code tokenizer.bin}, Hugging Face {@code tokenizer.json}, bytes.
 *
 * <p>Thread-safety of its types: every {@code Tokenizer} ({@code Llama2cTokenizer}, {@code ByteTokenizer}, {@code
 * HfTokenizer}) is read-only after loading, so {@code encode} and {@code decode} may run on many threads at once;
 * close an {@code HfTokenizer} only when no thread uses it.
 */
package dev.eetune.tokenizer;
