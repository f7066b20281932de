#!/usr/bin/env bash
# Builds libeecpu (and libeedist where MPI headers exist) with CMake (called from ee-native's Maven build) and copies it to the jar's resource folder.
# usage: native/build.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=$1 out=$2
src=$(cd "$(dirname "$0")" && pwd)
command -v cmake >/dev/null || { echo "eetune: cmake is needed to build native/ (apt-get install cmake gcc)" >&2; exit 1; }
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release ${EETUNE_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" --target eecpu >/dev/null
mkdir -p "$out"
cp "$build/libeecpu.so" "$out/libeecpu.so"
# libeedist exists where CMake found mpi.h (native/dist); without it distributed runs say that MPI support is missing
if [ -d "$build/dist" ]; then
  cmake --build "$build" --target eedist >/dev/null
  cp "$build/dist/libeedist.so" "$out/libeedist.so"
fi
