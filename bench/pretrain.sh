#!/usr/bin/env bash
# `ee pretrain` against the eager PyTorch peer (bench/torch-peer.py) on issue 10's configuration: byte-level JDK
# sources (java.base/java/util/*.java), dim 128, 8 layers, 4 heads, MLP 352, seq 256 x batch 16, AdamW, clip 1.0,
# 2 threads. The runs alternate (ours, then the peer; OLD's build too when given) for ROUNDS rounds; each prints its
# tok/s over its training steps after 3 warm-up ones, as the peer times 10 steps after 3 warm-up ones (`ee pretrain`
# prints it beside its whole-run rate, which also counts validation and the JIT's warm-up; an OLD build that does not
# print it gives its whole-run rate), and the end gives the median (min..max) per contender. Both
# eetune builds run as `java -jar ee-cli/target/ee.jar` (the same JVM options, no AOT cache; OLD's jar is used as it
# is, never rebuilt). OpenBLAS picks its own kernel (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset, as in
# docs/benchmarks.md). Wall-clock figures need a quiet machine.
# Usage: bench/pretrain.sh [OUT]; env: ROUNDS (3), STEPS (60), THREADS (2), PYTHON (the first of /usr/bin/python3 and
#        python3 that imports torch: Debian's `apt-get install python3-torch`, 1.13.1 on bookworm, or a venv's),
#        OLD (another checkout whose ./ee is run in the same rounds, e.g. /work/main), EE_PRETRAIN_ARGS (extra options)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
rounds=${ROUNDS:-3} steps=${STEPS:-60} threads=${THREADS:-2} python=${PYTHON:-}
if [ -z "$python" ]; then
  for p in /usr/bin/python3 "$(command -v python3 || true)"; do
    if [ -x "$p" ] && "$p" -c 'import torch' 2>/dev/null; then python=$p; break; fi
  done
fi
jdk=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
"$root/ee" --version > /dev/null # builds this checkout's jar when the sources changed
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
mkdir -p "$out"
contenders=(new)
[ -n "${OLD:-}" ] && contenders+=(old)
if [ -n "$python" ]; then contenders+=(torch); else echo "# no python3 with torch: the PyTorch peer is left out" >&2; fi

rate() { # CONTENDER ROUND: runs it once, prints its tok/s
  local who=$1 r=$2 jar=$root/ee-cli/target/ee.jar
  case $who in
    torch) "$python" "$root/bench/torch-peer.py" pretrain --threads "$threads" --steps 10 --repeats 1 > "$out/torch-$r.txt" 2>&1
           sed -n 's/.*median \([0-9,.]*\) .*/\1/p' "$out/torch-$r.txt" | tr -d , ;;
    old|new) [ "$who" = old ] && jar=$OLD/ee-cli/target/ee.jar
           rm -rf "$out/model-$who"
           "$jdk/bin/java" --enable-native-access=ALL-UNNAMED -jar "$jar" pretrain --byte-level --corpus "$jdk/lib/src.zip" --glob 'java.base/java/util/*.java' --layers 8 --dim 128 \
             --seq-len 256 --batch 16 --steps "$steps" --threads "$threads" --out "$out/model-$who" --quiet ${EE_PRETRAIN_ARGS:-} > "$out/$who-$r.txt" 2>&1
           local steady
           steady=$(sed -n 's/.*training steps after the first 3: \([0-9]*\) tokens\/s.*/\1/p' "$out/$who-$r.txt" | tail -1)
           [ -n "$steady" ] && echo "$steady" || grep -o '[0-9,.]* tokens/s' "$out/$who-$r.txt" | tail -1 | tr -d ', tokens/' ;;
  esac
}

declare -A rates
for r in $(seq 1 "$rounds"); do
  for who in "${contenders[@]}"; do
    x=$(rate "$who" "$r")
    echo "round $r $who: $x tok/s"
    rates[$who]="${rates[$who]:-} $x"
  done
done
for who in "${contenders[@]}"; do
  echo "$who: $(echo ${rates[$who]} | tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {printf "median %.0f (%.0f..%.0f) tok/s of %d runs", v[int((NR+1)/2)], v[1], v[NR], NR}')"
done
