#!/usr/bin/env bash
# Issue 10's side-by-side table with the peer measured in the same rounds: each round runs llama2.c's run.c on the
# 15M and 110M checkpoints (2 threads) and on stories260K (1 thread), then PeerReport (--repeats 1) with that round's
# peer figures, so that both sides meet the same phase of a shared machine; the last lines are each work's ratio per
# round and their median. Builds nothing of the peer's: RUNC is a run.c binary you built
# (`gcc -Ofast -fopenmp -march=native run.c -lm -o RUNC`, docs/benchmarks.md), TOKENIZER llama2.c's tokenizer.bin.
# Usage: bench/peer-rounds.sh RUNC TOKENIZER [ROUNDS] [WORKS]   (env PEER_DIR=/tmp/peer: `PeerReport write` output;
# STORIES_DIR: the folder of stories260K.bin and tok512.bin, default ../shared/data/stories260K beside the checkout)
set -euo pipefail
runc=${1:?usage: bench/peer-rounds.sh RUNC TOKENIZER [ROUNDS] [WORKS]}
tokenizer=${2:?usage: bench/peer-rounds.sh RUNC TOKENIZER [ROUNDS] [WORKS]}
rounds=${3:-3}
works=${4:-stories260K-cold,15M-f32-cold,15M-f32-warm,15M-f32-warm-b8,110M-f32-cold,110M-bf16-cold}
root=$(cd "$(dirname "$0")/.." && pwd)
peer=${PEER_DIR:-/tmp/peer}
data=${STORIES_DIR:-$root/../shared/data/stories260K} # stories260K.bin and tok512.bin
JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
achieved() { "$@" 2>&1 | grep -o 'achieved tok/s: [0-9.]*' | awk '{print $3}'; }
for r in $(seq 1 "$rounds"); do
    m15=$(OMP_NUM_THREADS=2 achieved "$runc" "$peer/m15.bin" -z "$tokenizer" -t 0 -n 256 -i "Once upon a time")
    m110=$(OMP_NUM_THREADS=2 achieved "$runc" "$peer/m110.bin" -z "$tokenizer" -t 0 -n 256 -i "Once upon a time")
    s260=$(OMP_NUM_THREADS=1 achieved "$runc" "$data/stories260K.bin" -z "$data/tok512.bin" -t 0 -n 256 -i "Once upon a time")
    printf '15M-f32-cold %s\n15M-f32-warm %s\n110M-f32-cold %s\nstories260K-cold %s\nstories260K-warm %s\n' "$m15" "$m15" "$m110" "$s260" "$s260" > "$out/peer$r.txt"
    echo "== round $r: run.c 15M $m15, 110M $m110, stories260K $s260 tok/s"
    "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -cp "$root/ee-bench/target/ee-bench.jar" dev.eetune.bench.PeerReport \
        measure "$peer" --ee "$root/ee" --tokenizer "$tokenizer" --threads 2 --repeats 1 --peer-file "$out/peer$r.txt" --works "$works" 2>&1 \
        | grep '^|' | tee "$out/table$r.txt"
done
echo "== per work: ratio (or eetune tok/s where no peer) per round, median"
cat "$out"/table*.txt | awk -F'|' '$2 !~ /work|---/ {
    w = $2; gsub(/ /, "", w); r = $5; gsub(/[ ×]/, "", r); if (r == "—") { r = $4; sub(/ *\(.*/, "", r); gsub(/ /, "", r) }
    print w, r }' > "$out/values.txt"
for w in $(awk '{print $1}' "$out/values.txt" | sort -u); do
    vals=$(awk -v w="$w" '$1 == w {print $2}' "$out/values.txt")
    printf '%-18s %s  median %s\n' "$w" "$(echo $vals)" "$(echo "$vals" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')"
done
