#!/bin/sh
# bf16 vs f32 decode at the 110M shape (issue 10's target: bf16 >= 1.8x our own f32), an older build against this one.
# Builds libeecpu at OLD (default: the commit before the cache-line-aligned bf16 pair blocks) and at the working
# tree, then alternates, REPEATS times:
#   - `eecpu_gemmbench THREADS step110m` (this tree's benchmark against each library): one decode step's GEMVs with
#     the weights where the checkpoint files put them (llama2.c f32 28 bytes past a cache line, the safetensors bf16
#     copy 8 bytes past one);
#   - `ee generate --timing`, 256 greedy tokens after "Once upon a time", on MODELS/m110.bin (llama2.c, f32) and
#     MODELS/m110-bf16/ (its Hugging Face bf16 copy), the library swapped with EETUNE_NATIVE_PATH;
# and prints the medians (min..max) and the bf16 / f32 decode ratio per build. The checkpoints are written by
# `PeerReport write MODELS` (docs/benchmarks.md); TOKENIZER is llama2.c's tokenizer.bin.
# Usage: bench/bf16.sh [OLD_REV] [REPEATS] [THREADS]   (env MODELS=/tmp/peer TOKENIZER=/tmp/tokenizer.bin; quiet machine)
set -eu
OLD=${1:-16c3f1d}
REPEATS=${2:-5}
THREADS=${3:-2}
MODELS=${MODELS:-/tmp/peer}
TOKENIZER=${TOKENIZER:-/tmp/tokenizer.bin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TMPDIR:-/tmp}/eetune-bf16-bench
rm -rf "$WORK" && mkdir -p "$WORK/old-src" "$WORK/out"
git -C "$ROOT" archive "$OLD" native | tar -x -C "$WORK/old-src"
# this tree's jar loads only a library of its own ABI number: the old build claims it (the calls decode uses are the
# ones the f32 and bf16 decodes make; a layout, such as bf16 panels', is the library's own, packing and GEMM alike)
abi=$(sed -n 's/^#define EE_ABI_VERSION \([0-9]*\)$/\1/p' "$ROOT/native/include/eetune/eetune.h")
sed -i "s/^#define EE_ABI_VERSION [0-9]*$/#define EE_ABI_VERSION $abi/" "$WORK/old-src/native/include/eetune/eetune.h"
build() { cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$2" -j2 --target eecpu eecpu_gemmbench >/dev/null; }
build "$WORK/old-src/native" "$WORK/old"
build "$ROOT/native" "$WORK/new"
# the old library under this tree's benchmark (the old tree's gemmbench has no step110m section)
cc -O2 -I"$ROOT/native/include" "$ROOT/native/cpu/test/gemmbench.c" -o "$WORK/old/gemmbench-step" \
    -L"$WORK/old" -leecpu -ldl -lpthread -Wl,-rpath,"$WORK/old"
cp "$WORK/new/eecpu_gemmbench" "$WORK/new/gemmbench-step"
(cd "$ROOT" && ./ee --version >/dev/null) # builds the jar if the sources are newer
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
for r in $(seq 1 "$REPEATS"); do
    for v in old new; do
        "$WORK/$v/gemmbench-step" "$THREADS" step110m > "$WORK/out/step-$v-$r.txt"
        for m in m110.bin m110-bf16; do
            EETUNE_NATIVE_PATH="$WORK/$v" "$ROOT/ee" generate --model "$MODELS/$m" --tokenizer "$TOKENIZER" \
                --prompt "Once upon a time" --threads "$THREADS" --max-tokens 256 --timing 2>&1 >/dev/null \
                | grep -o 'decode [0-9.]* tok/s' > "$WORK/out/gen-$v-$m-$r.txt"
        done
    done
done
python3 - "$WORK/out" "$REPEATS" <<'PY'
import re, statistics, sys
out, repeats = sys.argv[1], int(sys.argv[2])
def cell(xs): return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"
def step(v, r):
    fig = {}
    for line in open(f"{out}/step-{v}-{r}.txt"):
        m = re.match(r"(f32, 28 bytes past a line|bf16, 8 bytes past a line|bf16, on a line)\s+([\d.]+)", line)
        if m: fig[m.group(1)] = float(m.group(2))
    return fig
def gen(v, m, r): return float(open(f"{out}/gen-{v}-{m}-{r}.txt").read().split()[1])
print(f"median (min..max) of {repeats} alternated runs per build")
print(f"{'figure':44} {'old':24} {'new':24}")
rows = {}
for v in ("old", "new"):
    steps = [step(v, r) for r in range(1, repeats + 1)]
    for k in steps[0]: rows.setdefault(f"GEMV step min ms, {k}", {})[v] = [s[k] for s in steps]
    rows.setdefault("GEMV step f32 / bf16 (+8)", {})[v] = [s["f32, 28 bytes past a line"] / s["bf16, 8 bytes past a line"] for s in steps]
    f32 = [gen(v, "m110.bin", r) for r in range(1, repeats + 1)]
    bf16 = [gen(v, "m110-bf16", r) for r in range(1, repeats + 1)]
    rows.setdefault("ee generate 110M f32 tok/s", {})[v] = f32
    rows.setdefault("ee generate 110M bf16 tok/s", {})[v] = bf16
    rows.setdefault("ee generate bf16 / f32 (per round)", {})[v] = [b / f for b, f in zip(bf16, f32)]
for k, by in rows.items():
    print(f"{k:44} {cell(by['old']):24} {cell(by['new']):24}")
PY
