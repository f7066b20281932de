#!/bin/sh
# libeecpu must load where no OpenMP runtime is installed (ctest eecpu_no_openmp): no libgomp/libomp among the
# libraries it needs, and no OpenMP parallel construct or runtime call in its sources (only `#pragma omp simd`,
# which -fopenmp-simd compiles without a runtime; any other construct would silently run serially).
# usage: no_openmp.sh LIBEECPU CPU_SOURCE_DIR
set -eu
lib=$1 src=$2
needed=$(readelf -d "$lib" | grep NEEDED) || { echo "no_openmp: cannot read $lib" >&2; exit 1; }
if echo "$needed" | grep -Ei 'libgomp|libomp|libiomp'; then
  echo "no_openmp: FAIL: $lib needs an OpenMP runtime (above)" >&2
  exit 1
fi
if grep -nE '#[[:space:]]*pragma[[:space:]]+omp[[:space:]]+[a-z]|omp_[a-z_]+[[:space:]]*\(|<omp\.h>|_Pragma\(.*omp' "$src"/*.c "$src"/*.h | grep -v -E 'pragma[[:space:]]+omp[[:space:]]+simd'; then
  echo "no_openmp: FAIL: OpenMP beyond 'omp simd' in the sources above (parallel work goes through cpu/pool.c)" >&2
  exit 1
fi
echo "no_openmp: $lib needs no OpenMP runtime"
