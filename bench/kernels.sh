#!/bin/sh
# Decode GEMV before/after: builds libeecpu + eecpu_gemmbench at OLD (default: the commit before the kernels branch's
# GEMV work) and at the working tree, then runs `eecpu_gemmbench THREADS roofline gemv` alternately, REPEATS times
# each, and prints the medians (min..max) over the repeats of the figures the issue's targets are about.
# Usage: bench/kernels.sh [OLD_REV] [REPEATS] [THREADS]   (quiet machine; about 1 minute per run)
set -eu
OLD=${1:-10b61db}
REPEATS=${2:-5}
THREADS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TMPDIR:-/tmp}/eetune-kernels-bench
rm -rf "$WORK" && mkdir -p "$WORK/old-src" "$WORK/out"
git -C "$ROOT" archive "$OLD" native | tar -x -C "$WORK/old-src"
build() { cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$2" -j2 --target eecpu_gemmbench >/dev/null; }
build "$WORK/old-src/native" "$WORK/old"
build "$ROOT/native" "$WORK/new"
for r in $(seq 1 "$REPEATS"); do
    for v in old new; do
        "$WORK/$v/eecpu_gemmbench" "$THREADS" roofline gemv > "$WORK/out/$v-$r.txt"
    done
done
python3 - "$WORK/out" "$REPEATS" <<'PY'
import re, statistics, sys
out, repeats = sys.argv[1], int(sys.argv[2])
def parse(path):
    fig, model = {}, None
    for line in open(path):
        if line.startswith("roofline"):
            fig["roofline GB/s"] = float(line.split()[3])
        elif line.startswith("decode GEMV"):
            model = "15M" if "15M" in line else "110M"
        m = re.match(r"(f32|bf16|f16)\s+(\d+)\s+([\d.]+) \S+\s+(\d+) \S+\s+([\d.]+)x\s+([\d.]+)x", line)
        if m and model:
            d, b = m.group(1), int(m.group(2))
            fig[f"{model} {d} m={b} GB/s"] = float(m.group(3))
            fig[f"{model} {d} m={b} tok/s"] = float(m.group(4))
            if b > 1: fig[f"{model} {d} m={b} / m=1"] = float(m.group(5))
    for model in ("15M", "110M"):
        for d in ("bf16", "f16"):
            if f"{model} {d} m=1 tok/s" in fig:
                fig[f"{model} m=1 {d} / f32"] = fig[f"{model} {d} m=1 tok/s"] / fig[f"{model} f32 m=1 tok/s"]
    return fig
runs = {v: [parse(f"{out}/{v}-{r}.txt") for r in range(1, repeats + 1)] for v in ("old", "new")}
def cell(v, key):
    xs = [f[key] for f in runs[v] if key in f]
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})" if xs else "-"
keys = ["roofline GB/s"]
for model in ("15M", "110M"):
    for d in ("f32", "bf16", "f16"):
        keys += [f"{model} {d} m=1 GB/s", f"{model} {d} m=1 tok/s"]
    keys += [f"{model} f32 m={b} / m=1" for b in (2, 4, 8, 16)] + [f"{model} m=1 bf16 / f32", f"{model} m=1 f16 / f32"]
print(f"median (min..max) of {repeats} alternated runs per build")
print(f"{'figure':28} {'old':24} {'new':24}")
for k in keys:
    print(f"{k:28} {cell('old', k):24} {cell('new', k):24}")
PY
