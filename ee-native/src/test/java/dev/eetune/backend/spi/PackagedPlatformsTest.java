package dev.eetune.backend.spi;

import dev.eetune.nativelib.CpuLibrary;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The platform folders of the ee-native jar, and what a user on a platform the jar lacks is told. */
class PackagedPlatformsTest {
    private static final String LIB = System.mapLibraryName("eecpu");

    @Test
    void platformNamesFollowTheJarFolders() {
        assertThat(NativeLibraryLoader.platform("Linux", "amd64")).isEqualTo("linux-x86_64");
        assertThat(NativeLibraryLoader.platform("Linux", "aarch64")).isEqualTo("linux-aarch64");
        assertThat(NativeLibraryLoader.platform("Mac OS X", "aarch64")).isEqualTo("macos-aarch64");
        assertThat(NativeLibraryLoader.platform("Windows 11", "amd64")).isEqualTo("windows-x86_64");
    }

    @Test
    void theJarHoldsTheBuildPlatformAndAarch64WhenCrossCompiled() {
        List<String> packaged = NativeLibraryLoader.packagedPlatforms(CpuLibrary.class, LIB);
        assertThat(packaged).contains("linux-x86_64");
        // .ci/run installs the cross compiler, so CI checks the aarch64 library is packaged; a local build without it
        // packages x86_64 only (native/build.sh says so)
        if (System.getenv("EETUNE_REQUIRE_AARCH64") != null) assertThat(packaged).contains("linux-aarch64");
    }

    @Test
    void anotherPlatformIsToldWhichPlatformsTheJarSupports() {
        List<String> tried = new ArrayList<>();
        assertThatThrownBy(() -> NativeLibraryLoader.loadPackaged(CpuLibrary.class, LIB, "linux-riscv64", tried))
            .isInstanceOf(UnsatisfiedLinkError.class)
            .hasMessageContaining("native/linux-riscv64/" + LIB)
            .hasMessageContaining("no native library for linux-riscv64")
            .hasMessageContaining("it supports " + String.join(", ", NativeLibraryLoader.packagedPlatforms(CpuLibrary.class, LIB)));
    }
}
