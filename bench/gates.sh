#!/usr/bin/env bash
# Reproduces every figure of docs/exit-gates.md ("Measurements"): exit heads tuned on stories260K and on the byte-level
# JDK model, gates trained on held-out text, thresholds calibrated for 95% teacher-forced agreement, and each confidence
# method's held-out agreement, cost-model speed-up, wall-clock speed-up and cost projections (`ee calibrate --compare`).
# Usage: bench/gates.sh OUT [stage...]; stages: s260 (mlp 1-4, 300 steps: linear vs MLP gate), s260long (mlp and norm
# 1-4, 1000 steps, tune --gates), cpu (CPU time per token of each decision; after s260), sweep (ee sweep of the MLP-gated
# 300-step heads), features (offline gate-feature comparison, numpy), jdk (pretrain 8 layers, tune, gates, calibrate),
# recalibrate (only `ee calibrate --compare` again on the gated heads the s260/s260long stages left in OUT: every method,
# cascade included, with the cost-aware calibration; writes calibrate-now.txt beside them; also mlp300-cascade and
# mlp300-saturation, calibrated copies the cpu and sweep stages then time), steps (agreement per exit against tuning
# steps: plain CE and --distill, 3000 steps each, every checkpoint evaluated on held-out text), distill (this session's
# recipe for the 95% target: mlp 1-4, --distill, 3000 steps at lr 3e-3 (and 1e-2), MLP-16 gates on 512 windows of the tuning file,
# `ee calibrate --compare`; also the lr-1e-3, plain-CE and norm variants; then `ee sweep --calibrated` of its gate and
# cascade thresholds), overhead (bench/GateOverhead.java on the distill stage's gate-calibrated heads, or on
# HEADS=DIR: per-token wall and CPU time of the full model, the gate scored but never exiting and the calibrated gate in
# one warm JVM, their native calls, and one layer's cost over 1-3 rows), oracle (what a gate's input could add: MLP-16 gates
# on rmsnorm(h) with more inputs, some no gate can see, fitted offline on the distill stage's heads or HEADS=DIR). Default: all; recalibrate runs after s260long,
# so `bench/gates.sh OUT` alone reproduces everything.
# Wall-clock figures need a quiet machine; layers/token, agreement and exit shares do not depend on load.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ee=${EE:-$root/ee} # EE=/path/to/wrapper runs a fixed build
out=${1:?usage: bench/gates.sh OUT [stage...]}
shift || true
stages=${*:-s260 s260long recalibrate cpu features sweep jdk steps distill overhead oracle}
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
  cpu)
    jar="$root/ee-cli/target/ee.jar"
    soft=$(grep '^softmax ' "$out/mlp300-mlp16/calibrate.txt" | sed 's/.*{\(.*\)}.*/\1/; s/ //g')
    more="" # the cascade's and saturation's calibrated thresholds, when the recalibrate stage made them
    for m in cascade saturation; do [ -f "$out/mlp300-$m/thresholds.json" ] && more="$more${more:+,}$m=$out/mlp300-$m/thresholds.json"; done
    "${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/jshell" --class-path "$jar" -R--enable-native-access=ALL-UNNAMED -R-Dmodel="$model" \
      -R-Dheads="$out/mlp300-mlp16" -R-Dtokenizer="$data/stories260K/tok512.bin" -R-Dsoftmax="$soft" -R-Dcalibrated="$more" -R-Drepeats=5 \
      "$root/bench/gate-cpu-time.jsh" 2>&1 | grep -v INFO | tee "$out/cpu-time.txt" ;;
  features) # needs python3 with numpy; the token file is the one `ee gates` cached for $valid
    tokens=$(ls ~/.cache/eetune/*tinystories_valid_head.txt.tokens | head -1)
    mkdir -p "$out/dump"
    "${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/jshell" --class-path "$root/ee-cli/target/ee.jar" -R--enable-native-access=ALL-UNNAMED -R-Dmodel="$model" \
      -R-Dheads="$out/mlp300/heads.safetensors" -R-Dtokens="$tokens" -R-Dout="$out/dump" "$root/bench/gate-dump.jsh" 2>&1 | grep -v INFO
    python3 "$root/bench/gate-features.py" "$out/dump" 1,2,3,4 5 64 1.452 0.0014 | tee "$out/features.txt" ;;
  oracle) # what a gate's input could add (needs python3 with numpy): MLP-16 gates on rmsnorm(h) plus inputs a gate has,
    # and inputs none could have (the final layer's confidence here), on HEADS=DIR's heads (default: the distill stage's)
    tokens=$(ls ~/.cache/eetune/*tinystories_valid_head.txt.tokens | head -1)
    heads=${HEADS:-$out/dmlp-lr3}
    mkdir -p "$out/oracle-dump"
    "${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/jshell" --class-path "$root/ee-cli/target/ee.jar" -R--enable-native-access=ALL-UNNAMED -R-Dmodel="$model" \
      -R-Dheads="$heads/heads.safetensors" -R-Dtokens="$tokens" -R-Dout="$out/oracle-dump" "$root/bench/gate-dump.jsh" 2>&1 | grep -v INFO
    python3 "$root/bench/gate-features.py" "$out/oracle-dump" 1,2,3,4 5 64 1.452 0.0014 \
      mlp16-rms,mlp16-rms+pos,mlp16-rms+prevfmp,mlp16-rms+prevlab,mlp16-rms+prevh,mlp16-rms+curfmp,mlp16-rms+prevlab+prevfmp+curfmp | tee "$out/oracle.txt" ;;
  sweep)
    # the cascade-calibrated copy when the recalibrate stage made it: its thresholds are timed as the row "calibrated"
    heads="$out/mlp300-mlp16"; [ -f "$out/mlp300-cascade/thresholds.json" ] && heads="$out/mlp300-cascade"
    t "$ee" sweep --model "$model" --heads "$heads" --data "$valid" --prompt-count 8 --max-tokens 64 --repeats "$repeats" \
      --thresholds 1.0,0.99,0.95,0.9,0.8,0.6,0.4 --confidence softmax,gate,saturation,cascade --calibrated --csv "$out/sweep.csv" | tee "$out/sweep.txt" ;;
  recalibrate)
    for name in mlp300-mlp16 mlp300-linear mlp1000 norm1000; do # mlp1000, norm1000: the gates `tune --gates` trained
      [ -f "$out/$name/heads.safetensors" ] || { echo "skipping $name: run the s260/s260long stages first" >&2; continue; }
      t "$ee" calibrate --model "$model" --data "$valid" --heads "$out/$name" --agreement 0.95 --compare --repeats "$repeats" | tee "$out/$name/calibrate-now.txt"
    done
    # the 300-step MLP-gated heads calibrated for cascade and saturation too, each beside its own copy (for the cpu stage and the sweep)
    for m in cascade saturation; do
      mkdir -p "$out/mlp300-$m" && cp "$out/mlp300-mlp16/heads.safetensors" "$out/mlp300-$m/"
      t "$ee" calibrate --model "$model" --data "$valid" --heads "$out/mlp300-$m" --agreement 0.95 --confidence $m --repeats "$repeats" | tee "$out/mlp300-$m/calibrate-now.txt"
    done ;;
  jdk)
    src=${JDK_SRC:-/usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip}
    # the demo's backbone (DemoCommand.backbone: dim 128, 8 layers, norm exits 2 and 4 trained jointly), a fixed step count
    t "$ee" pretrain --byte-level --corpus "$src" --glob 'java.base/java/util/*.java' --layers 8 --dim 128 --exits 2,4 --steps 150 --seed 1 --quiet --out "$out/jdk" | tee "$out/jdk.txt"
    # the demo's head architecture (norm); gates trained by tune --gates on the tuning data's validation split
    t "$ee" tune --model "$out/jdk" --data "$src" --glob 'java.base/java/util/*.java' --exits 2,4,6 --arch norm --steps 200 --gates --quiet --out "$out/jdk-norm" | tee "$out/jdk-norm.txt"
    # calibration on java.util.concurrent, which neither pretraining, tuning nor the gates read
    t "$ee" calibrate --model "$out/jdk" --data "$src" --glob 'java.base/java/util/concurrent/*.java' --heads "$out/jdk-norm" --skip-windows 0 \
      --agreement 0.95 --compare --repeats "$repeats" | tee "$out/jdk-norm/calibrate.txt"
    soft=$(grep '^softmax ' "$out/jdk-norm/calibrate.txt" | sed 's/.*{\(.*\)}.*/\1/; s/ //g')
    "${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/jshell" --class-path "$root/ee-cli/target/ee.jar" -R--enable-native-access=ALL-UNNAMED -R-Dmodel="$out/jdk" \
      -R-Dheads="$out/jdk-norm" -R-Dtokenizer="$out/jdk/tokenizer.bytes" -R-Dsoftmax="$soft" -R-Drepeats=5 \
      "-R-Dprompts=public static <T> List<T> |    /**\n     * Returns the |        if (index < 0 || |import java.util.function.|    private final Map<K, V> |        for (int i = 0; i < |    @Override\n    public boolean |        throw new IllegalArgumentException(" \
      "$root/bench/gate-cpu-time.jsh" 2>&1 | grep -v INFO | tee "$out/cpu-time-jdk.txt" ;;
  steps) # checkpoints every 500 (CE) / 1000 (distill) steps of one 3000-step cosine schedule, evaluated on held-out text
    for v in ce distill; do
      flag=""; [ $v = distill ] && flag=--distill
      t "$ee" tune --model "$model" --data "$train" --exits 1,2,3,4 --arch mlp --steps 3000 $flag --checkpoint-every 500 --keep-last 0 --quiet --out "$out/steps-$v" > "$out/steps-$v.txt"
      for c in "$out/steps-$v"/checkpoints/step-*; do
        echo "== $v $(basename "$c")"
        "$ee" eval --model "$model" --data "$valid" --heads "$c/heads.safetensors" --batches 16 --quiet 2>&1 | grep -E '^[1-5] '
      done
    done | tee "$out/steps.txt" ;;
  distill)
    # NAME "tune options": heads tuned for 3000 steps, MLP-16 gates trained on the tuning file's first 512 windows
    # (131,072 positions; the calibration splits of $valid stay unseen), thresholds calibrated at 95% with every method
    for v in "dmlp-lr3 --arch mlp --distill --lr 3e-3" "dmlp-lr10 --arch mlp --distill --lr 1e-2" "dmlp --arch mlp --distill" "mlp --arch mlp" "dnorm --arch norm --distill"; do
      set -- $v; name=$1; shift
      t "$ee" tune --model "$model" --data "$train" --exits 1,2,3,4 "$@" --steps 3000 --checkpoint-every 0 --quiet --out "$out/$name" | tee "$out/$name.txt"
      t "$ee" gates --model "$model" --data "$train" --windows 512 --heads "$out/$name" --gate-hidden 16 | tee "$out/$name/gates.txt"
      t "$ee" calibrate --model "$model" --data "$valid" --heads "$out/$name" --agreement 0.95 --compare --repeats "$repeats" | tee "$out/$name/calibrate.txt"
    done
    # the recipe's gate and cascade thresholds timed by the sweep (rows "calibrated"), each from its own copy
    for m in gate cascade; do
      mkdir -p "$out/dmlp-lr3-$m" && cp "$out/dmlp-lr3/heads.safetensors" "$out/dmlp-lr3-$m/"
      t "$ee" calibrate --model "$model" --data "$valid" --heads "$out/dmlp-lr3-$m" --agreement 0.95 --confidence $m --repeats "$repeats" | tee "$out/dmlp-lr3-$m/calibrate.txt"
      t "$ee" sweep --model "$model" --heads "$out/dmlp-lr3-$m" --data "$valid" --prompt-count 8 --max-tokens 64 --repeats "$repeats" \
        --thresholds 1.0,0.9,0.8,0.6 --confidence $m --calibrated --csv "$out/dmlp-lr3-$m/sweep.csv" | tee "$out/dmlp-lr3-$m/sweep.txt"
    done ;;
  overhead)
    heads=${HEADS:-$out/dmlp-lr3-gate}
    [ -f "$heads/thresholds.json" ] || { echo "overhead: no $heads/thresholds.json: run the distill stage first, or set HEADS=DIR" >&2; exit 2; }
    "${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/java" --enable-native-access=ALL-UNNAMED -cp "$root/ee-cli/target/ee.jar" -Dmodel="$model" -Dheads="$heads" \
      -Dtokenizer="$data/stories260K/tok512.bin" -Drepeats="$repeats" "$root/bench/GateOverhead.java" 2>&1 | grep -v INFO | tee "$out/overhead.txt" ;;
  *) echo "unknown stage $s" >&2; exit 2 ;;
esac; done
