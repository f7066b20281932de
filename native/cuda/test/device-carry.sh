#!/usr/bin/env bash
# What a GPU machine without Java needs for device-check.sh's Java steps, in one folder to copy there (under 64 MiB
# with either part): a slim JDK (jlink: the modules ee.jar uses, stripped, no CDS archive; ~37 MB) and
#   tests: the Java GPU tests without Maven (java-gpu-bundle.sh; ~22 MB)          -> EE_GPU_TESTS=DIR/gpu-tests
#   tune:  ee.jar without the other platforms' native libraries (~17 MB; step 6)  -> EE_JAR=DIR/ee.jar
#   usage: native/cuda/test/device-carry.sh DIR tests|tune   (after ./mvnw install -DskipTests; JAVA_HOME a JDK 22+)
#   there: EE_JAVA_HOME=DIR/jdk EE_GPU_TESTS=DIR/gpu-tests native/cuda/device-check.sh   (or EE_JAR=DIR/ee.jar)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
dir=$(mkdir -p "$1" && cd "$1" && pwd)
what=${2:?usage: device-carry.sh DIR tests|tune}
jdk=${JAVA_HOME:?set JAVA_HOME to a JDK 22+}
rm -rf "$dir/jdk" "$dir/gpu-tests" "$dir/ee.jar"
"$jdk/bin/jlink" --add-modules java.base,java.compiler,java.management,java.sql,java.logging,jdk.unsupported \
  --strip-debug --no-header-files --no-man-pages --compress=zip-9 --output "$dir/jdk"
rm -f "$dir"/jdk/lib/server/classes*.jsa
if command -v strip >/dev/null; then strip --strip-unneeded "$dir"/jdk/lib/server/libjvm.so "$dir"/jdk/lib/*.so; fi
case "$what" in
  tests) "$here/java-gpu-bundle.sh" "$dir/gpu-tests" >/dev/null ;;
  tune)
    cp "$repo/ee-cli/target/ee.jar" "$dir/ee.jar"
    zip -q -d "$dir/ee.jar" 'native/lib/linux-aarch64/*' 'native/lib/osx-*' 'native/lib/win-*' 'native/linux-aarch64/*' \
      'native/lib/linux-x86_64/cpu/libtokenizers.so' >/dev/null
    ;;
  *) echo "device-carry.sh: say tests or tune, not '$what'" >&2; exit 2 ;;
esac
du -sh "$dir"
