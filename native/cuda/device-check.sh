#!/usr/bin/env bash
# The GPU check of libeecuda, in one go on a machine with an NVIDIA GPU (sized for ~8 minutes on one H200):
#   1. builds libeecuda, libeecpu (the reference) and the native driver eecuda_check (CMake, all cores)
#   2. eecuda_check check     : every kernel vs libeecpu on fresh random inputs, outputs poisoned first
#   2b. eenccl_selftest        : libeenccl (NCCL loaded at run time): rank-order all-reduce bit for bit, broadcast,
#                                send/recv; under mpirun with one rank per GPU (2 where there are 2+), else one rank
#   3. eecuda_check bench     : one table of timings (GEMM TFLOP/s, decode GEMM GB/s, attention, fused CE, copy, launch)
#   4. compute-sanitizer memcheck, racecheck and synccheck on eecuda_check sanitize (every kernel once, small shapes)
#   5. the Java GPU tests (ee-cuda, @Tag("gpu")) when a JDK 22+ and an offline Maven repository are there, or a JDK 22+
#      and the folder native/cuda/test/java-gpu-bundle.sh makes (EE_GPU_TESTS)
#   6. distributed tuning on the CUDA backend: `ee tune --backend cuda` under mpirun, one rank per GPU, NCCL summing the
#      heads' gradients (2 ranks where there are 2+ GPUs; with one GPU a single CUDA process), against one CPU process
#      on a small byte-level model made here; with 2+ GPUs also 2 pipeline stages, each holding only the tensors it
#      uses on its GPU (printed); needs a JDK 17+ and ee-cli/target/ee.jar (or EE_JAR); then `ee generate --backend cuda`
#      on that model: the native decode chunks (plain and early-exit) against the step-by-step passes (-Deetune.chunks=false), the same text
#      greedy and sampled (plain chunks also replayed from CUDA graphs, EETUNE_CUDA_GRAPHS=1)
# and prints one PASS/FAIL line per step, then the timing table. Exit status 0 only if every step that ran passed.
#
#   usage: native/cuda/device-check.sh [BUILD_DIR]
#   env:   OUT (logs are copied there), EE_SEED (repeat a check), EE_SKIP_JAVA=1, EE_SKIP_SANITIZER=1, EE_JAR, EETUNE_NCCL,
#          JAVA_HOME / EE_JAVA_HOME (a JDK 22+), EE_M2 (an offline Maven repository), EETUNE_CUBLAS (a libcublas path),
#          EE_CUDA_ARCHS (e.g. 90: build only the GPU's architecture, minutes less on a lease), EE_GPU_TESTS (a folder
#          from java-gpu-bundle.sh: the Java GPU tests without Maven)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-/tmp/eecuda-device}
logs=$build/logs
mkdir -p "$logs"
start=$(date +%s)
results=()
status=0
note() { printf '%s\n' "$*"; }
record() { # record PASS|FAIL|SKIP "what" "detail"
  results+=("$(printf '%-4s %-34s %s' "$1" "$2" "$3")")
  [ "$1" = FAIL ] && status=1
  printf '%-4s %-34s %s\n' "$1" "$2" "$3"
}
elapsed() { echo "$(( $(date +%s) - start ))s"; }

note "== eetune device check: $(date -u +%FT%TZ) on $(hostname)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | sed 's/^/   gpu: /'
else
  note "   (no nvidia-smi)"
fi

# ---- cuBLAS: the system toolkit or the Python wheels (nvidia-cublas) ----------------------------------------------
if [ -z "${EETUNE_CUBLAS:-}" ]; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
           $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()))' 2>/dev/null | tr ' ' '\n' | sed 's|$|/nvidia/cu13/lib|;p;s|cu13/lib|cublas/lib|'); do
    for f in "$d"/libcublas.so.13 "$d"/libcublas.so.12; do
      if [ -f "$f" ]; then export EETUNE_CUBLAS=$f; break 2; fi
    done
  done
fi
if [ -n "${EETUNE_CUBLAS:-}" ]; then
  export LD_LIBRARY_PATH="$(dirname "$EETUNE_CUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" # libcublasLt beside it
  note "   cuBLAS: $EETUNE_CUBLAS"
else
  note "   cuBLAS: not found (GEMMs use the fallback kernel; the cuBLAS checks below will say so)"
fi

# ---- 1. build --------------------------------------------------------------------------------------------------------
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -z "$nvcc" ]; then
  record FAIL "build" "nvcc not found"
  exit 1
fi
if cmake -S "$repo/native" -B "$build/cmake" -DCMAKE_BUILD_TYPE=Release -DEE_BUILD_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
     ${EE_CUDA_ARCHS:+-DCMAKE_CUDA_ARCHITECTURES=$EE_CUDA_ARCHS} >"$logs/build.log" 2>&1 &&
   cmake --build "$build/cmake" --target eecuda eecuda_check -j "$(nproc)" >>"$logs/build.log" 2>&1; then
  record PASS "build libeecuda + eecuda_check" "$(elapsed)"
else
  tail -30 "$logs/build.log"
  record FAIL "build libeecuda + eecuda_check" "see $logs/build.log"
  exit 1
fi
cuda_lib=$build/cmake/libeecuda.so
# which code the GPU runs: its own SASS when libeecuda has it (sm_80/86/89/90 by default), else the compute_90 PTX
# JIT-compiled by the driver (slower first load)
gpu_cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
cuobjdump=$(command -v cuobjdump || ls "$(dirname "$nvcc")/cuobjdump" 2>/dev/null || true)
if [ -n "$gpu_cc" ] && [ -n "$cuobjdump" ]; then
  sass=$("$cuobjdump" --list-elf "$cuda_lib" 2>/dev/null | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
  ptx=$("$cuobjdump" --list-ptx "$cuda_lib" 2>/dev/null | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
  case " $sass" in
    *" sm_$gpu_cc "*) note "   kernels: the GPU (sm_$gpu_cc) runs libeecuda's sm_$gpu_cc SASS (SASS: $sass; PTX: $ptx)" ;;
    *) note "   kernels: no SASS for the GPU (sm_$gpu_cc) in libeecuda (SASS: $sass): the driver JIT-compiles the PTX ($ptx)" ;;
  esac
else
  note "   kernels: GPU compute capability ${gpu_cc:-unknown}; cuobjdump ${cuobjdump:-not found} (cannot list libeecuda's architectures)"
fi
check=$build/cmake/eecuda_check
cpu_lib=""
if cmake --build "$build/cmake" --target eecpu -j "$(nproc)" >"$logs/build-cpu.log" 2>&1; then
  cpu_lib=$build/cmake/libeecpu.so
  record PASS "build libeecpu (reference)" "$(elapsed)"
else
  record FAIL "build libeecpu (reference)" "kernels will run without a reference; see $logs/build-cpu.log"
fi

# ---- 2. correctness against the CPU library ---------------------------------------------------------------------------
run_step() { # run_step NAME TIMEOUT LOG command...
  local name=$1 limit=$2 log=$3
  shift 3
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local summary
  summary=$(grep -E '^(PASS|FAIL) eecuda_check|ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    record PASS "$name" "${summary:-ok} ($(elapsed))"
  elif [ $rc -eq 124 ]; then
    record FAIL "$name" "timed out after ${limit}s ($log)"
  else
    grep -E '^FAIL|=========' "$log" | head -25
    record FAIL "$name" "rc $rc: ${summary:-see $log}"
  fi
}
run_step "kernels vs libeecpu (check)" 180 "$logs/check.log" "$check" check "$cuda_lib" $cpu_lib
grep -E "^NOTE" "$logs/check.log" | head -5
grep -E 'gemm bf16 NT 37x53x129 beta 0.0 path 0|linear_ce loss bf16 40x256' "$logs/check.log" | sed 's/^/   /'

# ---- 2b. NCCL (libeenccl): a one-rank communicator on this GPU; NCCL from EETUNE_NCCL, the system or the wheel -------
if [ -z "${EETUNE_NCCL:-}" ]; then
  for d in /usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64 \
           $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null | tr ' ' '\n' | sed 's|$|/nvidia/nccl/lib|'); do
    if [ -f "$d/libnccl.so.2" ]; then export EETUNE_NCCL=$d/libnccl.so.2; break; fi
  done
fi
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
nccl_ranks=$(( gpus >= 2 ? 2 : 1 ))
mpirun_cmd=(mpirun --allow-run-as-root --oversubscribe -np "$nccl_ranks")
command -v mpirun >/dev/null || { nccl_ranks=1; mpirun_cmd=(); }
# one GPU per rank: a rank uses the first GPU it sees (libeecuda's and libeenccl's device 0)
per_gpu=(bash -c 'export CUDA_VISIBLE_DEVICES=${OMPI_COMM_WORLD_LOCAL_RANK:-0}; exec "$@"' rank)
if [ -z "${EETUNE_NCCL:-}" ]; then
  record SKIP "nccl self-test" "libnccl.so.2 not found (apt-get install libnccl2, or pip install nvidia-nccl-cu12; or set EETUNE_NCCL)"
elif cmake --build "$build/cmake" --target eenccl eenccl_selftest -j "$(nproc)" >"$logs/build-nccl.log" 2>&1; then
  run_step "nccl self-test ($nccl_ranks rank(s), 1 per GPU)" 90 "$logs/nccl.log" "${mpirun_cmd[@]}" "${per_gpu[@]}" "$build/cmake/eenccl_selftest"
  grep -E '^(PASS|FAIL) nccl' "$logs/nccl.log" | sed 's/^/   /'
else
  record FAIL "build libeenccl + self-test" "see $logs/build-nccl.log"
fi

# ---- 3. timings ------------------------------------------------------------------------------------------------------
run_step "benchmarks" 150 "$logs/bench.log" "$check" bench "$cuda_lib"

# ---- 4. compute-sanitizer ------------------------------------------------------------------------------------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ "${EE_SKIP_SANITIZER:-0}" = 1 ]; then
  record SKIP "compute-sanitizer" "EE_SKIP_SANITIZER=1"
elif [ -z "$sanitizer" ]; then
  record SKIP "compute-sanitizer" "not installed"
else
  run_step "sanitizer memcheck" 120 "$logs/memcheck.log" "$sanitizer" --tool memcheck --error-exitcode 3 "$check" sanitize "$cuda_lib" $cpu_lib
  run_step "sanitizer racecheck" 120 "$logs/racecheck.log" "$sanitizer" --tool racecheck --racecheck-report analysis --error-exitcode 3 "$check" sanitize "$cuda_lib"
  run_step "sanitizer synccheck" 90 "$logs/synccheck.log" "$sanitizer" --tool synccheck --error-exitcode 3 "$check" sanitize "$cuda_lib"
fi

# ---- 5. the Java GPU tests --------------------------------------------------------------------------------------------
java_home=""
for j in "${EE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/*25* /usr/lib/jvm/*-2[2-9]* /opt/*jdk*25* ; do
  if [ -n "$j" ] && [ -x "$j/bin/java" ]; then java_home=$j; break; fi
done
m2=${EE_M2:-$HOME/.m2/repository}
if [ "${EE_SKIP_JAVA:-0}" = 1 ]; then
  record SKIP "java gpu tests" "EE_SKIP_JAVA=1"
elif [ -z "$java_home" ]; then
  record SKIP "java gpu tests" "no JDK 22+ here (set EE_JAVA_HOME); the native check above covers the kernels"
elif [ -n "${EE_GPU_TESTS:-}" ]; then # the tests without Maven: native/cuda/test/java-gpu-bundle.sh made the folder
  EETUNE_NATIVE_PATH="$build/cmake" timeout 300 "$EE_GPU_TESTS/run.sh" "$java_home/bin/java" >"$logs/java.log" 2>&1
  rc=$?
  summary=$(grep -oE '[0-9]+ tests (successful|failed|aborted)' "$logs/java.log" | sed 's/ tests//' | paste -sd, -)
  if [ $rc -eq 0 ] && grep -qE '^\[ +0 tests aborted' "$logs/java.log"; then
    record PASS "java gpu tests (bundle)" "$summary ($(elapsed))"
  else
    grep -E 'FAIL|Exception|tests ' "$logs/java.log" | head -20
    record FAIL "java gpu tests (bundle)" "rc $rc: $summary"
  fi
elif [ ! -d "$m2" ] || [ ! -d "$HOME/.m2/wrapper" -a -z "$(command -v mvn || true)" ]; then
  record SKIP "java gpu tests" "no offline Maven repository ($m2) or Maven; carry one with EE_M2"
else
  mvn_cmd="$repo/mvnw"
  [ -d "$HOME/.m2/wrapper" ] || mvn_cmd=mvn
  (cd "$repo" && JAVA_HOME=$java_home EETUNE_NATIVE_PATH="$build/cmake" timeout 300 "$mvn_cmd" -o -B -Dmaven.repo.local="$m2" \
     -pl ee-cuda -am verify -Dit.test='Cuda*Test' -Dtest='Cuda*Test' -Dfailsafe.failIfNoSpecifiedTests=false -Dsurefire.failIfNoSpecifiedTests=false \
     -DskipTests=false >"$logs/java.log" 2>&1)
  rc=$?
  summary=$(grep -E 'Tests run:.*Skipped' "$logs/java.log" | tail -1 | sed 's/^\[[A-Z]*\] //')
  if [ $rc -eq 0 ] && ! grep -q "CudaKernelsTest.*Skipped: [1-9]" "$logs/java.log"; then
    record PASS "java gpu tests" "$summary ($(elapsed))"
  else
    grep -E 'FAIL|ERROR|Tests run' "$logs/java.log" | head -20
    record FAIL "java gpu tests" "rc $rc: $summary"
  fi
fi

# ---- 6. distributed tuning on the CUDA backend ---------------------------------------------------------------------
# A byte-level model made here (no data set needed), tuned for 6 steps of 2 micro-batches: one CPU process (the
# reference), one CUDA process, and (2+ GPUs) 2 CUDA ranks whose head gradients NCCL sums in rank order.
jar=${EE_JAR:-$repo/ee-cli/target/ee.jar}
tune_java=""
for j in "${EE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/*; do
  if [ -n "$j" ] && [ -x "$j/bin/java" ]; then tune_java=$j/bin/java; break; fi
done
if [ ! -f "$jar" ] || [ -z "$tune_java" ]; then
  record SKIP "distributed tune on cuda" "needs ee-cli/target/ee.jar (or EE_JAR) and a JDK 17+ (found: jar ${jar}, java ${tune_java:-none})"
elif ! cmake --build "$build/cmake" --target eenccl eecpu -j "$(nproc)" >"$logs/build-tune.log" 2>&1; then
  record FAIL "distributed tune on cuda" "build of libeenccl/libeecpu failed: $logs/build-tune.log"
else
  tune=$build/tune
  rm -rf "$tune" && mkdir -p "$tune/lib"
  ln -sf "$build/cmake/libeecuda.so" "$build/cmake/libeenccl.so" "$build/cmake/libeecpu.so" "$tune/lib/"
  if [ -d "$build/cmake/dist" ] && cmake --build "$build/cmake" --target eedist >>"$logs/build-tune.log" 2>&1; then
    ln -sf "$build/cmake/dist/libeedist.so" "$tune/lib/"
  fi
  ee_run() { EETUNE_NATIVE_PATH=$tune/lib "$@"; }
  common=(--data "$repo/docs" --tokenizer byte --cache-dir "$tune/cache" --exits 2,4 --arch mlp --steps 6 --batch 2 --seq-len 64
          --micro-batches 2 --eval-batches 1 --threads 4 --checkpoint-every 0 --quiet)
  {
    timeout 120 "$tune_java" -jar "$jar" pretrain --corpus "$repo/docs" --byte-level --dim 128 --layers 6 --attention-heads 4 --steps 2 \
      --batch 2 --seq-len 64 --threads 4 --out "$tune/model" &&
    timeout 120 "$tune_java" -jar "$jar" tune --model "$tune/model" "${common[@]}" --backend cpu --loss-csv "$tune/cpu/losses.csv" --out "$tune/cpu" &&
    ee_run timeout 120 "$tune_java" -jar "$jar" tune --model "$tune/model" "${common[@]}" --backend cuda --loss-csv "$tune/cuda1/losses.csv" --out "$tune/cuda1"
  } >"$logs/tune.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    tail -20 "$logs/tune.log"
    record FAIL "tune: cpu and cuda, one process" "rc $rc: see $logs/tune.log"
  else
    # CUDA kernels round differently from the CPU ones (other summation orders): close, not equal
    python3 "$here/../dist/test/compare_runs.py" "$tune/cpu" "$tune/cuda1" 1e-3 | tee -a "$logs/tune.log" | sed 's/^/   /'
    if [ "${PIPESTATUS[0]}" -eq 0 ]; then record PASS "tune: one cuda process vs cpu" "$(elapsed)"; else record FAIL "tune: one cuda process vs cpu" "see $logs/tune.log"; fi
    # plain decoding on the GPU runs in native chunks (ee_decode_steps), early-exit decoding too, one sequence and a
    # batch of two (ee_exit_steps: the cuda1 heads at a low softmax threshold, so that exits fire; gate and saturation decisions),
    # with -Deetune.chunks=false step by step: both must write the same text, greedy and sampled. The gates are trained
    # on the GPU (ee gates --backend cuda) into a copy of the cuda1 heads.
    gen_ok=1
    rm -rf "$tune/gated" && cp -r "$tune/cuda1" "$tune/gated"
    ee_run timeout 120 "$tune_java" -jar "$jar" gates --backend cuda --model "$tune/model" --heads "$tune/gated" --data "$repo/docs" --tokenizer byte \
      --cache-dir "$tune/cache" --seq-len 64 --windows 16 --threads 4 >>"$logs/generate.log" 2>&1 || gen_ok=0
    for mode in "" "--temperature 0.8 --seed 3" "--heads $tune/cuda1 --threshold 0.05" "--heads $tune/cuda1 --threshold 0.05 --temperature 0.8 --seed 3" \
        "--heads $tune/gated --confidence gate --threshold 0.3" "--heads $tune/gated --confidence gate --threshold 0.3 --temperature 0.8 --seed 3" \
        "--heads $tune/gated --confidence saturation --threshold 0.95" "--heads $tune/gated --confidence gate --threshold 0.3 --prompt class" \
        "--heads $tune/cuda1 --threshold 0.05 --temperature 0.8 --seed 3 --prompt import"; do
      for chunks in true false; do
        ee_run timeout 60 "$tune_java" -Deetune.chunks=$chunks -jar "$jar" generate --backend cuda --model "$tune/model" --prompt "public static" --max-tokens 96 \
          $mode >"$tune/gen-$chunks.txt" 2>>"$logs/generate.log" || gen_ok=0
      done
      cmp -s "$tune/gen-true.txt" "$tune/gen-false.txt" || gen_ok=0
      case "$mode" in --heads*) ;; *) # plain decoding: its chunks replayed from a CUDA graph write the same text too
        EETUNE_CUDA_GRAPHS=1 ee_run timeout 60 "$tune_java" -jar "$jar" generate --backend cuda --model "$tune/model" --prompt "public static" --max-tokens 96 \
          $mode >"$tune/gen-graphs.txt" 2>>"$logs/generate.log" || gen_ok=0
        cmp -s "$tune/gen-graphs.txt" "$tune/gen-false.txt" || gen_ok=0 ;;
      esac
    done
    grep -E 'confidence, thresholds' "$logs/generate.log" | sed 's/.*confidence, /   /; s/: 1 sequences.*mean/: mean/' | sort | uniq -c # exits fired?
    if [ $gen_ok = 1 ]; then record PASS "generate on cuda: chunks = steps" "$(elapsed)"; else record FAIL "generate on cuda: chunks = steps" "see $logs/generate.log and $tune/gen-*.txt"; fi
    if [ "$nccl_ranks" -lt 2 ] || [ -z "${EETUNE_NCCL:-}" ] || [ ! -e "$tune/lib/libeedist.so" ]; then
      record SKIP "distributed tune on cuda (NCCL)" "needs 2 GPUs (found $gpus), mpirun, MPI headers at build time and NCCL; ran one CUDA process only"
    else
      # 2 CUDA ranks under mpirun, one per GPU: tune_ranks OUT LOG [OPTION...]
      tune_ranks() {
        local out=$1 log=$2
        shift 2
        ee_run timeout 180 "${mpirun_cmd[@]}" -x EETUNE_NATIVE_PATH -x EETUNE_NCCL "${per_gpu[@]}" "$tune_java" -jar "$jar" tune --model "$tune/model" "${common[@]}" \
          --backend cuda --loss-csv "$out/losses.csv" --out "$out" "$@" >>"$log" 2>&1
      }
      # same kernels, rank-order sums: as close as DistributedTuneTest's CPU runs (1e-6; observed identical there)
      tune_ranks "$tune/cuda2" "$logs/tune.log"
      rc=$?
      grep -E 'sent .* bytes' "$logs/tune.log" | sed 's/^/   /'
      if [ $rc -ne 0 ]; then
        tail -20 "$logs/tune.log"
        record FAIL "distributed tune on cuda (NCCL)" "rc $rc: see $logs/tune.log"
      else
        python3 "$here/../dist/test/compare_runs.py" "$tune/cuda1" "$tune/cuda2" 1e-6 | tee -a "$logs/tune.log" | sed 's/^/   /'
        python3 "$here/../dist/test/compare_runs.py" "$tune/cpu" "$tune/cuda2" 1e-3 | tee -a "$logs/tune.log" | sed 's/^/   /'
        if grep -q '^FAIL' "$logs/tune.log"; then record FAIL "distributed tune on cuda (NCCL)" "see $logs/tune.log"; else record PASS "distributed tune on cuda (NCCL, 2 ranks)" "$(elapsed)"; fi
      fi
      # 2 pipeline stages, hidden states GPU to GPU: each stage copies to its GPU only the model tensors it uses (layers
      # 1-2 or 3-4 of 6, and the MLP its other head was initialised from), which the "cuda memory allocated after
      # tuning" lines show next to the one-process run's; each head's gradient comes from one stage
      tune_ranks "$tune/cuda2p" "$logs/tune-pipeline.log" --pipeline-stages 2
      rc=$?
      grep -E 'memory allocated after tuning' "$logs/tune.log" "$logs/tune-pipeline.log" | sed 's/^/   /'
      if [ $rc -ne 0 ]; then
        tail -20 "$logs/tune-pipeline.log"
        record FAIL "pipeline tune on cuda (NCCL, 2 stages)" "rc $rc: see $logs/tune-pipeline.log"
      else
        python3 "$here/../dist/test/compare_runs.py" "$tune/cuda1" "$tune/cuda2p" 1e-6 | tee -a "$logs/tune-pipeline.log" | sed 's/^/   /'
        if [ "${PIPESTATUS[0]}" -eq 0 ]; then record PASS "pipeline tune on cuda (NCCL, 2 stages)" "$(elapsed)"; else record FAIL "pipeline tune on cuda (NCCL, 2 stages)" "see $logs/tune-pipeline.log"; fi
      fi
    fi
  fi
fi

# ---- summary ---------------------------------------------------------------------------------------------------------
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  tar -czf "$OUT/device-check-logs.tar.gz" -C "$build" logs 2>/dev/null
fi
note ""
note "== results ($(elapsed) in all)"
for r in "${results[@]}"; do note "$r"; done
sed -n '/^benchmark/,$p' "$logs/bench.log" | grep -v '^PASS eecuda_check'
if [ $status -eq 0 ]; then note "PASS device-check"; else note "FAIL device-check"; fi
exit $status
