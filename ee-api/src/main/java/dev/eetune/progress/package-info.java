/** Progress callbacks of long work; how to show them (a bar, log lines) is up to the caller, e.g. the {@code ee} command. */
package dev.eetune.progress;
