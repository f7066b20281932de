#!/usr/bin/env bash
# Builds libeecpu (and libeedist where MPI headers exist) with CMake (called from ee-native's Maven build) and copies it into the jar's resource folder,
# under the platform folder NativeLibraryLoader looks in (native/<os>-<arch>/):
#   - for this machine (linux-x86_64 or linux-aarch64);
#   - on x86_64, also for linux-aarch64 when Debian's cross compiler is installed (apt-get install gcc-aarch64-linux-gnu;
#     .ci/run installs it), with native/cmake/aarch64.cmake. Without it the jar holds linux-x86_64 only (said below).
# usage: native/build.sh BUILD_DIR NATIVE_RESOURCE_DIR
#   env: EETUNE_CMAKE_ARGS (extra CMake options, host build only), EETUNE_NO_AARCH64=1 (skip the cross build)
set -euo pipefail
build=$1 out=$2
src=$(cd "$(dirname "$0")" && pwd)
command -v cmake >/dev/null || { echo "eetune: cmake is needed to build native/ (apt-get install cmake gcc)" >&2; exit 1; }
case "$(uname -m)" in
  x86_64 | amd64) host=linux-x86_64 ;;
  aarch64 | arm64) host=linux-aarch64 ;;
  *) echo "eetune: building on $(uname -m): the library goes to native/linux-$(uname -m), which the loader may not name the same" >&2
     host=linux-$(uname -m) ;;
esac
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release ${EETUNE_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" --target eecpu >/dev/null
mkdir -p "$out/$host"
cp "$build/libeecpu.so" "$out/$host/libeecpu.so"
# libeedist exists where CMake found mpi.h (native/dist); without it distributed runs say that MPI support is missing
if [ -d "$build/dist" ]; then
  cmake --build "$build" --target eedist >/dev/null
  cp "$build/dist/libeedist.so" "$out/$host/libeedist.so"
fi

if [ "$host" = linux-x86_64 ] && [ "${EETUNE_NO_AARCH64:-0}" != 1 ]; then
  if command -v aarch64-linux-gnu-gcc >/dev/null; then
    cmake -S "$src" -B "$build-aarch64" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64.cmake" >/dev/null
    cmake --build "$build-aarch64" -j "$(nproc)" --target eecpu >/dev/null
    mkdir -p "$out/linux-aarch64"
    cp "$build-aarch64/libeecpu.so" "$out/linux-aarch64/libeecpu.so"
    echo "built libeecpu for $host and linux-aarch64 (cross)"
  else
    echo "aarch64-linux-gnu-gcc not found: the jar holds libeecpu for $host only (apt-get install gcc-aarch64-linux-gnu adds linux-aarch64)"
  fi
fi
