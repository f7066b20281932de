#!/usr/bin/env bash
# CI: a user's Maven project (.ci/consumer: imports ee-bom, depends on ee-api + ee-native) compiles and runs against
# the reactor's artifacts on every JDK given, on the class path and on the module path; and `javadoc:jar source:jar`
# builds. The reactor's artifacts are installed into a private local repository (target/consumer-repo), never into
# ~/.m2; everything else is read from ~/.m2 (maven.repo.local.tail, read-only), offline.
# usage: .ci/consumer-check.sh JAVA_HOME...   (run after a build of the reactor; the first JDK installs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
repo=$root/target/consumer-repo
work=$root/target/consumer
m2=${EE_M2:-$HOME/.m2/repository}
[ $# -ge 1 ] || { echo "usage: $0 JAVA_HOME..." >&2; exit 2; }
mvn_private() { ./mvnw -B -q -Dmaven.repo.local="$repo" -Dmaven.repo.local.tail="$m2" "$@"; }

rm -rf "$repo" "$work"
mkdir -p "$work"
cp -r .ci/consumer/. "$work/"
# the parent, the BOM and the CPU artifacts (tests ran in the main build); then sources and javadoc jars of all
echo "consumer-check: installing the reactor's CPU artifacts into $repo"
JAVA_HOME=$1 mvn_private -DskipTests -pl .,ee-bom,ee-api,ee-native install
# the bare goals, as a user runs them after a build: javadoc reads the generated bindings from target/ (the
# javadoc plugin's sourcepath) and the modules below from the repository or the reactor's classes
echo "consumer-check: javadoc:jar source:jar"
rm -f ee-*/target/ee-*-javadoc.jar ee-*/target/ee-*-sources.jar
JAVA_HOME=$1 mvn_private -pl ee-api,ee-native,ee-cuda,ee-cli javadoc:jar source:jar
for m in ee-api ee-native ee-cuda ee-cli; do
  ls "$m"/target/"$m"-*-javadoc.jar "$m"/target/"$m"-*-sources.jar >/dev/null
done

fail=0
check() { # check WHAT OUTPUT PATTERN...
  local what=$1 out=$2
  shift 2
  for p in "$@"; do
    if ! grep -qE -- "$p" <<<"$out"; then
      echo "consumer-check: FAIL: $what: expected /$p/ in:"
      echo "$out"
      fail=1
      return
    fi
  done
  echo "consumer-check: ok: $what"
}

for jdk in "$@"; do
  v=$("$jdk/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  echo "consumer-check: JDK $v ($jdk)"
  (cd "$work" && rm -rf target && JAVA_HOME=$jdk "$root/mvnw" -B -q -o -Dmaven.repo.local="$repo" -Dmaven.repo.local.tail="$m2" \
     package dependency:build-classpath -Dmdep.outputFile=target/cp.txt)
  cp=$(cat "$work/target/cp.txt")
  app=$work/target/classes
  access=()
  [ "$v" -ge 22 ] && access=(--enable-native-access=ALL-UNNAMED)
  out=$("$jdk/bin/java" "${access[@]}" -cp "$app:$cp" consumer.Main 2>&1) || { echo "$out"; fail=1; }
  check "JDK $v, class path" "$out" "^backend: cpu" "api module: unnamed" "generated 8 tokens"
  # On the module path the jars are automatic modules; the explicit modules they use (Jackson, JNA, SLF4J) are not
  # required by anyone, so they are added with ALL-MODULE-PATH. Native access is granted per module there: the
  # loader (dev.eetune.api) calls System.load, the FFM provider (dev.eetune.nativelib) links, JNA (com.sun.jna) on 17.
  maccess=()
  [ "$v" -ge 22 ] && maccess=(--enable-native-access=dev.eetune.api,dev.eetune.nativelib,com.sun.jna)
  out=$("$jdk/bin/java" "${maccess[@]}" -p "$app:$cp" --add-modules ALL-MODULE-PATH -m consumer/consumer.Main 2>&1) || { echo "$out"; fail=1; }
  check "JDK $v, module path" "$out" "^backend: cpu" "api module: dev.eetune.api, backend module: dev.eetune.nativelib" "generated 8 tokens"
  if [ "$v" -ge 22 ]; then
    # without --enable-native-access: what the README says happens (a warning, and the program still runs)
    out=$("$jdk/bin/java" -cp "$app:$cp" consumer.Main 2>&1) || { echo "$out"; fail=1; }
    check "JDK $v, class path, no --enable-native-access (warns, runs)" "$out" "WARNING: A restricted method in java.lang.System has been called" "enable-native-access" "generated 8 tokens"
    if grep -q WARNING <<<"$("$jdk/bin/java" "${access[@]}" -cp "$app:$cp" consumer.Main 2>&1)"; then
      echo "consumer-check: FAIL: JDK $v: a warning despite --enable-native-access=ALL-UNNAMED"; fail=1
    fi
  fi
done
[ $fail = 0 ] && echo "consumer-check: PASS" || { echo "consumer-check: FAIL"; exit 1; }
