#!/usr/bin/env bash
# Batch-8 vs batch-1 decode at the 15M config (issue 10's target: batch 8 >= 5x batch 1, tokens of all sequences per
# second, f32, 2 threads), an older build against this one, alternating, REPEATS rounds:
#   1. bench/batch.jsh in one JVM per build and thread count: the same 8 prompts one at a time and all together, wall
#      tok/s and CPU time per token (threads=1: the load-independent figure for a shared machine);
#   2. PeerReport's warm works 15M-f32-warm and 15M-f32-warm-b8;
#   3. `ee generate` (the CLI, cold) with 8 prompts and with 1, 200 new tokens each: its decode tok/s.
# Usage: bench/batch.sh OLD_ROOT [REPEATS]   OLD_ROOT: a checkout built with `./mvnw -DskipTests package` (ee,
# ee-cli/target/ee.jar, ee-bench/target/ee-bench.jar). Needs the 15M checkpoint of `PeerReport write DIR` (PEER_DIR,
# default /tmp/peer) and llama2.c's tokenizer.bin (TOKENIZER, default /tmp/tokenizer.bin). Wall figures need a quiet
# machine.
set -euo pipefail
new=$(cd "$(dirname "$0")/.." && pwd)
old=$(cd "${1:?usage: bench/batch.sh OLD_ROOT [REPEATS]}" && pwd)
repeats=${2:-3}
peer=${PEER_DIR:-/tmp/peer}
tokenizer=${TOKENIZER:-/tmp/tokenizer.bin}
JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
export JAVA_HOME
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
prompts=("Once upon a time" "The little dog" "Tom and Lily went" "One day, a girl" "The sun was" "Sam had a red ball" "In the park" "Mom said")
for r in $(seq 1 "$repeats"); do
    for side in old new; do
        root=${!side}
        for t in 1 2; do
            echo "== round $r, $side, bench/batch.jsh threads=$t"
            "$JAVA_HOME/bin/jshell" --class-path "$root/ee-cli/target/ee.jar" -R--enable-native-access=ALL-UNNAMED \
                -R-Dmodel="$peer/m15.bin" -R-Dthreads=$t -R-Drepeats=1 "$new/bench/batch.jsh" 2>&1 | grep '^repeat'
        done
        echo "== round $r, $side, PeerReport"
        "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -cp "$root/ee-bench/target/ee-bench.jar" dev.eetune.bench.PeerReport \
            measure "$peer" --ee "$root/ee" --tokenizer "$tokenizer" --threads 2 --repeats 1 --works 15M-f32-warm,15M-f32-warm-b8 2>&1 | grep '^# 15M'
        echo "== round $r, $side, ee generate"
        args=()
        for p in "${prompts[@]}"; do args+=(--prompt "$p"); done
        for b in 1 8; do
            "$root/ee" generate --model "$peer/m15.bin" --tokenizer "$tokenizer" --threads 2 --max-tokens 200 --quiet "${args[@]:0:$((2 * b))}" 2>&1 >/dev/null \
                | grep -o 'decode [0-9.]* tok/s' | sed "s/^/batch $b: /"
        done
    done
done
