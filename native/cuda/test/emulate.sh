#!/usr/bin/env bash
# Runs libeecuda's kernels on the CPU, in an emulation of the CUDA execution model (test/emu), against libeecpu:
# a check of the kernels' logic (indexing, tiling, reductions, barriers) on a machine without a GPU. It cannot see
# GPU-only problems (speed, real races, the memory model, cuBLAS), which native/cuda/device-check.sh covers.
#   usage: native/cuda/test/emulate.sh [BUILD_DIR] [sanitize|check|build] [PASSES]   (needs g++, python3, cmake for libeecpu)
# sanitize: every kernel once on small shapes; check: every kernel on many odd sizes (slow). PASSES (1-3, default 3)
# runs the first 1, 2 or 3 of the passes below. build: only builds the emulated libeecuda_emu.so, libeenccl_emu.so
# (../../dist/nccl.cu) and libcublas_fake.so (for native/dist/test/emulated-nccl.sh).
# A libeecpu.so already in BUILD_DIR/cpu that this script did not build is used as the reference (CI:
# .ci/native-checks.sh); one it built is rebuilt from the sources first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
native=$(cd "$here/../.." && pwd)
build=${1:-/tmp/eecuda-emu}
mode=${2:-sanitize}
passes=${3:-3}
mkdir -p "$build/src"
for f in "$native"/cuda/*.cu; do
  python3 "$here/emu/transform.py" "$f" "$build/src/$(basename "${f%.cu}").cpp"
done
cp "$native"/cuda/*.cuh "$native"/cuda/*.h "$build/src/"
mkdir -p "$build/common"
for f in "$native"/common/*.c; do # shared with libeecpu, plain C as in the real build
  gcc -std=gnu11 -O1 -g -fPIC -c -I"$native/include" -o "$build/common/$(basename "${f%.c}").o" "$f"
done
# -Bsymbolic as in the real build (cuda/CMakeLists.txt): its own ee_* calls stay inside it next to a global libeecpu
g++ -std=c++17 -O1 -g -fPIC -shared -Wno-unknown-pragmas -Wl,-Bsymbolic -I"$here/emu" -I"$native/include" -I"$native/common" -I"$build/src" \
  -o "$build/libeecuda_emu.so" "$build"/src/*.cpp "$build"/common/*.o "$here/emu/emu.cpp" -ldl -lpthread
# libeenccl on the emulation (its own copy of the runtime, as the real one links its own static cudart)
mkdir -p "$build/nccl"
python3 "$here/emu/transform.py" "$native/dist/nccl.cu" "$build/nccl/nccl.cpp"
g++ -std=c++17 -O1 -g -fPIC -shared -Wno-unknown-pragmas -I"$here/emu" -I"$native/include" \
  -Wl,-Bsymbolic -o "$build/libeenccl_emu.so" "$build/nccl/nccl.cpp" "$here/emu/emu.cpp" -ldl -lpthread
g++ -std=c++17 -O2 -fPIC -shared -o "$build/libcublas_fake.so" "$here/emu/fake_cublas.cpp"
[ "$mode" = build ] && exit 0
g++ -std=c++17 -O1 -g -x c++ -I"$native/include" -o "$build/eecuda_check" "$here/sanitize_driver.cu" -ldl
# the reference is built here unless given (CI), and built again (incrementally) whenever this script built it before,
# so that it never lags the sources: a stale one makes the driver fail ("another build")
if [ ! -f "$build/cpu/libeecpu.so" ] || [ -f "$build/cpu/CMakeCache.txt" ]; then
  cmake -S "$native" -B "$build/cpu" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build/cpu" --target eecpu -j "$(nproc)" >/dev/null
fi
echo "== emulated kernels, fallback GEMM kernel (EETUNE_CUBLAS=none)"
EETUNE_CUBLAS=none "$build/eecuda_check" "$mode" "$build/libeecuda_emu.so" "$build/cpu/libeecpu.so"
if [ "$mode" = sanitize ]; then
  # device-check.sh runs racecheck and synccheck without the reference: only "ran, no NaN where it writes" is checked
  echo "== emulated kernels without the reference (as device-check.sh's racecheck and synccheck run them)"
  EETUNE_CUBLAS=none "$build/eecuda_check" "$mode" "$build/libeecuda_emu.so"
fi
[ "$passes" -ge 2 ] || exit 0
echo "== emulated kernels, GEMMs through a reference cuBLAS (checks the row-major mapping and the 16-bit casts)"
EETUNE_CUBLAS="$build/libcublas_fake.so" "$build/eecuda_check" "$mode" "$build/libeecuda_emu.so" "$build/cpu/libeecpu.so"
[ "$passes" -ge 3 ] || exit 0
echo "== emulated kernels on 100 'multiprocessors' (small grids take the split-K attention path)"
EE_EMU_SMS=100 EETUNE_CUBLAS=none "$build/eecuda_check" "$mode" "$build/libeecuda_emu.so" "$build/cpu/libeecpu.so"
