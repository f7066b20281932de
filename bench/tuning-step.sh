#!/usr/bin/env bash
# The EE-Tuning step against OpenBLAS's sgemm rate (issue 10's target: >= 0.8x, useful FLOPs only), an older build's
# native library against this checkout's, alternating, REPEATS rounds:
#   1. bench/ce-ab.c: the fused linear + cross-entropy alone (2048 rows x dim 288 x vocab 32000, forward and backward)
#      of both libraries loaded side by side in one process, ABBA order, useful GFLOP/s per wall and per CPU second and
#      the per-round ratios (CPU time is the figure that a shared machine disturbs least);
#   2. eecpu_gemmbench THREADS ce: this checkout's fused cross-entropy next to three cblas_sgemm calls of its shapes;
#   3. TuningStepReport (ee-bench) with each library in turn (EETUNE_NATIVE_PATH): the whole step vs cblas_sgemm at
#      the LM-head shape in the same run.
# Usage: bench/tuning-step.sh [OLD_COMMIT] [REPEATS] [THREADS]   (default: the commit before the fused cross-entropy
# changes of this branch, 3 rounds, 2 threads). Needs ee-bench/target/ee-bench.jar (./mvnw -DskipTests package).
# Wall figures need a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old=${1:-16c3f1d}
repeats=${2:-3}
threads=${3:-2}
JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE # OpenBLAS picks its own kernel and cache sizes for this CPU
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/old-src"
git -C "$root" archive "$old" native | tar -x -C "$work/old-src"
cmake -S "$work/old-src/native" -B "$work/old" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake -S "$root/native" -B "$work/new" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/old" -j "$(nproc)" --target eecpu >/dev/null
cmake --build "$work/new" -j "$(nproc)" --target eecpu eecpu_gemmbench >/dev/null
gcc -O2 -Wall -o "$work/ce-ab" "$root/bench/ce-ab.c" -ldl

echo "== fused cross-entropy, old ($old) = A, new (this checkout) = B"
"$work/ce-ab" "$work/old/libeecpu.so" "$work/new/libeecpu.so" "$threads" $((3 * repeats))
echo "== eecpu_gemmbench $threads ce"
"$work/new/eecpu_gemmbench" "$threads" ce
for i in $(seq "$repeats"); do
  for lib in old new; do
    echo "== TuningStepReport, $lib library, round $i"
    EETUNE_NATIVE_PATH=$work/$lib "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Deetune.bench.threads="$threads" \
      -cp "$root/ee-bench/target/ee-bench.jar" dev.eetune.bench.TuningStepReport --rounds 3 | grep -E "linear_cross_entropy|step|sgemm"
  done
done
