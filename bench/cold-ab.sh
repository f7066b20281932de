#!/usr/bin/env bash
# Cold `ee generate` of two builds side by side: stories260K, 256 tokens, 1 thread (THREADS=N for more), the full model and with exit heads,
# each a fresh `ee` process (AOT cache as the launcher makes it), the two builds alternated (order swapped every round).
# Prints each run, then medians (min..max) per build and mode and the per-round ratios new/old.
# Usage: bench/cold-ab.sh OLD_ROOT NEW_ROOT HEADS_DIR [ROUNDS] [BATCH]   (ROOTs: checkouts with a built ee-cli/target/ee.jar;
# HEADS_DIR: tuned stories260K heads, e.g. bench/gates.sh's distill stage; thresholds.json beside them is used; BATCH:
# prompts decoded together, default 1, up to 8)
set -euo pipefail
old=${1:?usage: bench/cold-ab.sh OLD_ROOT NEW_ROOT HEADS_DIR [ROUNDS]}
new=${2:?usage}
heads=${3:?usage}
rounds=${4:-8}
batch=${5:-1}
prompts=()
IFS='|' read -ra all <<<"Once upon a time|The little dog|Tom and Lily went|One day, a girl|The sun was|Sam had a red ball|In the park|Mom said"
for p in "${all[@]:0:$batch}"; do prompts+=(--prompt "$p"); done
data=${EE_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$rounds"); do
  order="old new"; [ $((i % 2)) = 0 ] && order="new old"
  for w in $order; do
    root=$old; [ "$w" = new ] && root=$new
    for mode in full ee; do
      args=(); [ "$mode" = ee ] && args=(--heads "$heads")
      run=$("$root/ee" generate --model "$data/stories260K/stories260K.bin" --tokenizer "$data/stories260K/tok512.bin" "${prompts[@]}" \
        --max-tokens 256 --threads "${THREADS:-1}" --timing "${args[@]}" 2>&1 >/dev/null)
      decode=$(grep -o 'decode [0-9.]* tok/s' <<<"$run" | awk '{print $2}')
      first32=$(grep -o 'after it: [0-9.]*' <<<"$run" | awk '{print $3}')
      ttft=$(grep -o '[0-9.]* ms after the call' <<<"$run" | awk '{print $1}')
      echo "$i $w $mode decode $decode first32 $first32 ttft $ttft" | tee -a "$out"
    done
  done
done
python3 - "$out" <<'EOF'
import collections, statistics as st, sys
runs = [l.split() for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in runs: by[(r[1], r[2])].append(r)
fmt = lambda v: f"{st.median(v):.0f} ({min(v):.0f}..{max(v):.0f})"
for (w, m), rs in sorted(by.items()):
    print(f"{w} {m}: decode {fmt([float(r[4]) for r in rs])} tok/s, first 32 {fmt([float(r[6]) for r in rs])} tok/s, first token {fmt([float(r[8]) for r in rs])} ms after the call")
val = {(r[0], r[1], r[2]): r for r in runs}
rounds = sorted({r[0] for r in runs}, key=int)
def ratio(name, f):
    v = [f(i) for i in rounds]
    print(f"per round {name}: {st.median(v):.2f} ({min(v):.2f}..{max(v):.2f})")
g = lambda i, w, m, k: float(val[(i, w, m)][k])
ratio("new/old early-exit decode", lambda i: g(i, "new", "ee", 4) / g(i, "old", "ee", 4))
ratio("new/old early-exit first 32", lambda i: g(i, "new", "ee", 6) / g(i, "old", "ee", 6))
ratio("new/old full decode", lambda i: g(i, "new", "full", 4) / g(i, "old", "full", 4))
ratio("early exit / full, new", lambda i: g(i, "new", "ee", 4) / g(i, "new", "full", 4))
ratio("early exit / full, old", lambda i: g(i, "old", "ee", 4) / g(i, "old", "full", 4))
EOF
