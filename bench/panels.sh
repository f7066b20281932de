#!/usr/bin/env bash
# Panel-packed weights for batch decode (issue 10: batch 8 >= 5x batch 1 at 15M, f32, 2 threads), one build, the
# packing switched off and on (-Deetune.panels=false|true) alternating, REPEATS rounds:
#   1. eecpu_gemmbench THREADS gemv15m: the 15M step's GEMVs at m = 1..16, plain f32 rows against the packed f32p form
#      (wall time; `eecpu_gemmbench 1 cpu gemv15m` gives the CPU-time figure for a shared machine);
#   2. PeerReport's warm works 15M-f32-warm and 15M-f32-warm-b8 (b8 / b1 is the target's ratio);
#   3. bench/batch.jsh with threads=1: CPU time per decoded token at batch 1 and 8 (the load-independent figure).
# Usage: bench/panels.sh [REPEATS] [THREADS]   after `./mvnw -q -B -DskipTests package`. Needs /tmp/peer/m15.bin
# (PeerReport write /tmp/peer; PEER_DIR) and llama2.c's tokenizer.bin (TOKENIZER). bench/batch.sh OLD_ROOT compares
# against an older build instead (its batch-8 rows then use the packing too). Wall figures need a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repeats=${1:-3}
threads=${2:-2}
peer=${PEER_DIR:-/tmp/peer}
tokenizer=${TOKENIZER:-/tmp/tokenizer.bin}
JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
build=${BUILD_DIR:-/tmp/eetune-panels-bench}
cmake -S "$root/native" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target eecpu_gemmbench -j "$(nproc)" >/dev/null
for r in $(seq 1 "$repeats"); do
    echo "== round $r, eecpu_gemmbench $threads gemv15m"
    "$build/eecpu_gemmbench" "$threads" gemv15m | grep -E '^(f32|f32p) |f32p /|m = 8'
    for panels in false true; do
        echo "== round $r, panels=$panels, PeerReport"
        "$JAVA_HOME/bin/java" -Deetune.panels=$panels --enable-native-access=ALL-UNNAMED -cp "$root/ee-bench/target/ee-bench.jar" dev.eetune.bench.PeerReport \
            measure "$peer" --ee "$root/ee" --tokenizer "$tokenizer" --threads "$threads" --repeats 1 --works 15M-f32-warm,15M-f32-warm-b8 2>&1 | grep '^# 15M'
        echo "== round $r, panels=$panels, bench/batch.jsh threads=1"
        "$JAVA_HOME/bin/jshell" --class-path "$root/ee-cli/target/ee.jar" -R--enable-native-access=ALL-UNNAMED -R-Deetune.panels=$panels \
            -R-Dmodel="$peer/m15.bin" -R-Dthreads=1 -R-Drepeats=1 "$root/bench/batch.jsh" 2>&1 | grep '^repeat'
    done
done
