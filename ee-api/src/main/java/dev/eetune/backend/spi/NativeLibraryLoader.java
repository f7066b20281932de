package dev.eetune.backend.spi;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;

/**
 * Finds and loads a native library of ours (libeecpu, libeecuda): {@code -Deetune.native.path}, then
 * {@code EETUNE_NATIVE_PATH} (a directory holding the library, or the library file), then the copy packaged in the
 * backend's jar under {@code native/<os>-<arch>/}. A failure lists every place tried with the OS loader's error text; an explicitly
 * configured path that fails is an error (the packaged copy is not used behind the user's back).
 */
public final class NativeLibraryLoader {
    private NativeLibraryLoader() {}

    /**
     * The platform folders native/build.sh and native/cuda/build.sh can fill (a jar holds those its build had
     * compilers for); listed to tell a user on another platform what the jar supports.
     */
    static final List<String> BUILT_PLATFORMS = List.of("linux-x86_64", "linux-aarch64");

    /** The platform folder name used in jars, e.g. {@code linux-x86_64}. */
    public static String platform() {
        return platform(System.getProperty("os.name", ""), System.getProperty("os.arch", ""));
    }

    /** The platform folder name for an {@code os.name} and {@code os.arch}. */
    static String platform(String osName, String osArch) {
        String os = osName.toLowerCase(Locale.ROOT);
        String arch = osArch.toLowerCase(Locale.ROOT);
        String o = os.contains("linux") ? "linux" : os.contains("mac") ? "macos" : os.contains("win") ? "windows" : os;
        String a = arch.equals("amd64") || arch.equals("x86_64") ? "x86_64" : arch.equals("aarch64") || arch.equals("arm64") ? "aarch64" : arch;
        return o + "-" + a;
    }

    /**
     * Loads lib{@code name} into the JVM (so its symbols resolve) and returns the file it came from.
     *
     * @param owner a class of the backend module whose jar packages the library
     */
    public static Path load(Class<?> owner, String name) {
        String file = System.mapLibraryName(name);
        List<String> tried = new ArrayList<>();
        for (String[] source : new String[][] {
            {"system property eetune.native.path", System.getProperty("eetune.native.path")},
            {"environment EETUNE_NATIVE_PATH", System.getenv("EETUNE_NATIVE_PATH")}}) {
            if (source[1] == null || source[1].isBlank()) continue;
            Path p = Path.of(source[1]);
            if (Files.isDirectory(p)) p = p.resolve(file);
            Path loaded = tryLoad(p, source[0], tried);
            if (loaded != null) return loaded;
            // an explicit choice that fails is an error, not a reason to silently load another build
            throw new UnsatisfiedLinkError("cannot load native library " + file + " from " + source[0] + "; tried:\n  - " + String.join("\n  - ", tried));
        }
        return loadPackaged(owner, file, platform(), tried);
    }

    /** Loads the copy of {@code file} packaged for {@code platform}; the error lists the platforms the jar has. */
    static Path loadPackaged(Class<?> owner, String file, String platform, List<String> tried) {
        String resource = "native/" + platform + "/" + file;
        try (InputStream in = owner.getClassLoader().getResourceAsStream(resource)) {
            if (in == null) {
                List<String> packaged = packagedPlatforms(owner, file);
                tried.add("jar resource " + resource + ": not packaged (this jar has no native library for " + platform + "; it supports "
                    + (packaged.isEmpty() ? "no platform: it was built without the library" : String.join(", ", packaged)) + ")");
            } else {
                Path loaded = tryLoad(extract(in.readAllBytes(), file), "jar resource " + resource, tried);
                if (loaded != null) return loaded;
            }
        } catch (IOException e) {
            tried.add("jar resource " + resource + ": cannot extract: " + e);
        }
        throw new UnsatisfiedLinkError("cannot load native library " + file + "; tried:\n  - " + String.join("\n  - ", tried));
    }

    /** The platforms whose copy of {@code file} the owner's jar holds, out of those the build can produce. */
    static List<String> packagedPlatforms(Class<?> owner, String file) {
        List<String> found = new ArrayList<>();
        for (String p : BUILT_PLATFORMS) if (owner.getClassLoader().getResource("native/" + p + "/" + file) != null) found.add(p);
        return found;
    }

    private static Path tryLoad(Path p, String source, List<String> tried) {
        if (!Files.isRegularFile(p)) {
            tried.add(source + " (" + p + "): no such file");
            return null;
        }
        try {
            System.load(p.toAbsolutePath().toString());
            return p.toAbsolutePath();
        } catch (UnsatisfiedLinkError e) {
            tried.add(source + " (" + p + "): " + e.getMessage());
            return null;
        }
    }

    /** Writes the library to a content-addressed temp file (written once, atomically, reused by later JVMs). */
    private static Path extract(byte[] bytes, String file) throws IOException {
        String hash;
        try {
            hash = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)).substring(0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "eetune-native-" + System.getProperty("user.name", "user"), hash);
        Path target = dir.resolve(file);
        if (Files.isRegularFile(target) && Files.size(target) == bytes.length) return target;
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, file, ".part");
        Files.write(tmp, bytes);
        Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        return target;
    }
}
