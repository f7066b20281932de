#!/usr/bin/env bash
# Reproduces every figure of docs/exit-gates.md ("Measurements"): exit heads tuned on stories260K and on the byte-level
# JDK model, gates trained on held-out text, thresholds calibrated for 95% teacher-forced agreement, and each confidence
# method's held-out agreement, cost-model speed-up, wall-clock speed-up and cost projections (`ee calibrate --compare`).
# Usage: bench/gates.sh OUT [stage...]; stages: s260 (mlp 1-4, 300 steps: linear vs MLP gate), s260long (mlp and norm
# 1-4, 1000 steps, tune --gates), s260exits (mlp 1-2), jdk (pretrain 8 layers, tune, gates, calibrate). Default: all.
# Wall-clock figures need a quiet machine; layers/token, agreement and exit shares do not depend on load.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ee=${EE:-$root/ee} # EE=/path/to/wrapper runs a fixed build
out=${1:?usage: bench/gates.sh OUT [s260|s260long|s260exits|jdk ...]}
shift || true
stages=${*:-s260 s260long s260exits jdk}
data=${EE_DATA:-$root/../shared/data}
model=$data/stories260K/stories260K.bin
train=$data/tinystories/tinystories_train_first2MiB.txt
valid=$data/tinystories/tinystories_valid_head.txt
repeats=${REPEATS:-5}
mkdir -p "$out"
t() { echo "+ $*" >&2; /usr/bin/time -f "(%e s wall, %U+%S s cpu)" "$@"; }

# gates of one kind into a copy of DIR's heads, then calibration at 95% with every method compared
gated() { # DIR NAME HIDDEN [model args...]
  local dir=$1 name=$2 hidden=$3; shift 3
  mkdir -p "$out/$name" && cp "$dir/heads.safetensors" "$out/$name/"
  t "$ee" gates "$@" --heads "$out/$name" --gate-hidden "$hidden" | tee "$out/$name/gates.txt"
  t "$ee" calibrate "$@" --heads "$out/$name" --agreement 0.95 --compare --repeats "$repeats" | tee "$out/$name/calibrate.txt"
}

for s in $stages; do case $s in
  s260)
    t "$ee" tune --model "$model" --data "$train" --exits 1,2,3,4 --arch mlp --steps 300 --quiet --out "$out/mlp300" | tee "$out/mlp300.txt"
    gated "$out/mlp300" mlp300-linear 0 --model "$model" --data "$valid"
    gated "$out/mlp300" mlp300-mlp16 16 --model "$model" --data "$valid" ;;
  s260long)
    for arch in mlp norm; do
      t "$ee" tune --model "$model" --data "$train" --exits 1,2,3,4 --arch $arch --steps 1000 --gates --quiet --out "$out/${arch}1000" | tee "$out/${arch}1000.txt"
      gated "$out/${arch}1000" ${arch}1000-mlp16 16 --model "$model" --data "$valid"
    done ;;
  s260exits)
    t "$ee" tune --model "$model" --data "$train" --exits 1,2 --arch mlp --steps 1000 --quiet --out "$out/mlp12" | tee "$out/mlp12.txt"
    gated "$out/mlp12" mlp12-mlp16 16 --model "$model" --data "$valid" ;;
  jdk)
    src=${JDK_SRC:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")/lib/src.zip}
    [ -f "$src" ] || src=/usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip
    # the demo's backbone (DemoCommand.backbone), trained for a fixed number of steps instead of minutes
    t "$ee" pretrain --byte-level --corpus "$src" --glob 'java.base/java/util/*.java' --layers 8 --dim 128 --exits 2,4 --steps 400 --seed 1 --quiet --out "$out/jdk" | tee "$out/jdk.txt"
    for arch in mlp norm; do
      t "$ee" tune --model "$out/jdk" --data "$src" --glob 'java.base/java/util/*.java' --exits 2,4,6 --arch $arch --steps 300 --quiet --out "$out/jdk-$arch" | tee "$out/jdk-$arch.txt"
      # held-out text for gates and calibration: java.util.concurrent, which neither pretraining nor tuning read
      gated "$out/jdk-$arch" jdk-$arch-mlp16 16 --model "$out/jdk" --data "$src" --glob 'java.base/java/util/concurrent/*.java'
    done ;;
  *) echo "unknown stage $s" >&2; exit 2 ;;
esac; done
