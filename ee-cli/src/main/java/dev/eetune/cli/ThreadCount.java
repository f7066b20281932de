package dev.eetune.cli;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code --threads}: 0 (all cores) up to {@value #PER_PROCESSOR} per processor; more only oversubscribes the cores, and
 * a huge count would make the native thread pool try to start that many threads.
 */
final class ThreadCount implements ITypeConverter<Integer> {
    static final int PER_PROCESSOR = 16;

    @Override
    public Integer convert(String value) {
        int n;
        try {
            n = Integer.parseInt(value.trim());
        } catch (NumberFormatException e) {
            throw new TypeConversionException("'" + value + "' is not a whole number");
        }
        int cores = Runtime.getRuntime().availableProcessors(), max = PER_PROCESSOR * cores;
        if (n < 0 || n > max) throw new TypeConversionException(n + " is out of range: 0 (all cores) to " + max + " (" + PER_PROCESSOR + " per processor, " + cores + " here)");
        return n;
    }
}
