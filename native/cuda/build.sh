#!/usr/bin/env bash
# Builds libeecuda with CMake (called from ee-cuda's Maven build) and copies it to the jar's resource folder.
# Without nvcc it says so and succeeds: the jar then has no libeecuda and the backend reports it as unavailable.
# usage: native/cuda/build.sh BUILD_DIR OUT_DIR      (EETUNE_NO_CUDA=1 skips the build; EETUNE_CMAKE_ARGS adds options)
set -euo pipefail
build=$1 out=$2
native=$(cd "$(dirname "$0")/.." && pwd)
if [ "${EETUNE_NO_CUDA:-0}" = 1 ]; then
  echo "EETUNE_NO_CUDA=1: skipping libeecuda"
  exit 0
fi
nvcc=$(command -v nvcc || true)
if [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc; fi
if [ -z "$nvcc" ]; then
  echo "nvcc not found: skipping libeecuda (the CUDA backend will report it as unavailable)"
  exit 0
fi
command -v cmake >/dev/null || { echo "eetune: cmake is needed to build native/cuda" >&2; exit 1; }
cmake -S "$native" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEE_BUILD_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" ${EETUNE_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" --target eecuda eenccl -j "$(nproc)" >/dev/null
mkdir -p "$out"
cp "$build/libeecuda.so" "$out/libeecuda.so"
cp "$build/libeenccl.so" "$out/libeenccl.so" # the NCCL process group (eetune_nccl.h)
echo "built libeecuda with $nvcc"
