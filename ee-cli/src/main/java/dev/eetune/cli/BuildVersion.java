package dev.eetune.cli;

import picocli.CommandLine.IVersionProvider;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/**
 * {@code ee --version}: the project version Maven wrote into {@code build.properties} at build time, and the Java
 * runtime (which decides the binding: FFM on 22+, JNA before). Loads no native code, so it works where the backend
 * cannot.
 */
final class BuildVersion implements IVersionProvider {
    static final String RESOURCE = "build.properties";

    @Override
    public String[] getVersion() {
        return new String[] {
            "eetune " + version(),
            "Java " + Runtime.version() + " (" + System.getProperty("java.vendor") + ", " + System.getProperty("java.home") + ")",
            "OS " + System.getProperty("os.name") + " " + System.getProperty("os.arch")};
    }

    /** The version of this build, e.g. {@code 0.1.0-SNAPSHOT}. */
    static String version() {
        Properties p = new Properties();
        try (InputStream in = BuildVersion.class.getResourceAsStream(RESOURCE)) {
            if (in == null) throw new IllegalStateException(RESOURCE + " is missing from the ee-cli jar (a broken build)");
            p.load(in);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + RESOURCE, e);
        }
        String v = p.getProperty("version");
        // an unfiltered resource (a build that skipped Maven's resource filtering) must not pass for a version
        if (v == null || v.contains("${")) throw new IllegalStateException(RESOURCE + " was not filled in by the build: " + v);
        return v;
    }
}
