#!/usr/bin/env bash
# ee-cuda's Java GPU tests (CudaKernelsTest, CudaBackendProviderTest) as a folder that runs without Maven: the test
# classes, ee-cuda's jar, its test-scope dependencies and JUnit's console launcher, plus run.sh. For a GPU
# machine with a JDK but no Maven repository (a lent one: the folder travels, ~/.m2 does not); device-check.sh runs
# it when EE_GPU_TESTS names it. Left out: DJL's tokenizers (the kernel tests load no tokenizer), Byte Buddy (AssertJ's
# proxies for soft assertions and assumptions, which these tests do not use) and libeecuda/libeecpu from the jars (the
# tests use the libraries EETUNE_NATIVE_PATH names).
#   usage: native/cuda/test/java-gpu-bundle.sh OUT_DIR        (after ./mvnw install -DskipTests; JAVA_HOME a JDK 22+)
#   then:  EETUNE_NATIVE_PATH=DIR_WITH_LIBS OUT_DIR/run.sh [JAVA]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
out=$(mkdir -p "${1:?usage: java-gpu-bundle.sh OUT_DIR}" && cd "$1" && pwd)
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/run.sh" ]; then # only an earlier bundle is replaced
  echo "java-gpu-bundle.sh: $out holds files that are not a bundle of this script; give an empty or new folder" >&2
  exit 2
fi
rm -rf "$out/lib" "$out/test-classes" "$out/run.sh" "$out"/junit-platform-console-standalone-*.jar
mkdir -p "$out/lib"
cd "$repo"
junit=$(sed -n 's|.*<junit.version>\([^<]*\)</junit.version>.*|\1|p' pom.xml)
./mvnw -B -q -pl ee-cuda test-compile
./mvnw -B -q -pl ee-cuda dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$out/classpath.txt"
./mvnw -B -q -N dependency:copy -Dartifact="org.junit.platform:junit-platform-console-standalone:$junit" -DoutputDirectory="$out"
tr ':' '\n' <"$out/classpath.txt" | grep -v -e '/ai/djl/huggingface/' -e '/net/bytebuddy/' -e '/org/junit/' | while read -r jar; do
  cp "$jar" "$out/lib/"
done
rm "$out/classpath.txt"
./mvnw -B -q -pl ee-cuda jar:jar # ee-cuda as a jar: its FFM binding is in the multi-release part, which a folder hides
cp ee-cuda/target/ee-cuda-*.jar "$out/lib/"
for jar in "$out"/lib/ee-*.jar; do # the native libraries inside our own jars: the device's build replaces them
  zip -q -d "$jar" 'native/*' >/dev/null 2>&1 || true
done
cp -r ee-cuda/target/test-classes "$out/test-classes"
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs ee-cuda's tests from this folder: run.sh [JAVA] (default: java on PATH); EETUNE_NATIVE_PATH names the libraries.
here=$(cd "$(dirname "$0")" && pwd)
java=${1:-java}
cp="$here/test-classes$(printf ':%s' "$here"/lib/*.jar)"
exec "$java" --enable-native-access=ALL-UNNAMED -jar "$here"/junit-platform-console-standalone-*.jar execute \
  --class-path "$cp" --select-package dev.eetune.cuda --details summary --disable-banner
RUN
chmod +x "$out/run.sh"
du -sh "$out"
