#!/bin/sh
# A backend library's calls to its own exported functions must bind inside it (ctest eecpu_self_binding; the CUDA
# libraries in .ci/native-checks.sh): libeecpu and libeecuda export the same ee_* names, JNA opens libraries
# RTLD_GLOBAL, and an interposable call would then reach the library opened first. That happened: libeecuda's fused
# decoder layer ran libeecpu's ee_gemm, ee_rope, ... in every JNA process that had loaded the CPU library first (the
# MPI group does), which on a GPU means CPU kernels on device pointers. Fails on any dynamic relocation that names a
# symbol the library defines itself (linking with -Wl,-Bsymbolic leaves none).
# usage: self_binding.sh LIBRARY...
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for lib in "$@"; do
  nm -D --defined-only "$lib" | awk '{print $3}' | sort -u >"$tmp/defined" || { echo "self_binding: cannot read $lib" >&2; exit 1; }
  readelf -rW "$lib" | awk 'NF >= 5 && $5 !~ /^[0-9a-f]+$/ {print $5}' | sed 's/@.*//' | sort -u >"$tmp/relocated"
  own=$(comm -12 "$tmp/defined" "$tmp/relocated")
  if [ -n "$own" ]; then
    echo "self_binding: FAIL: $lib reaches these of its own exported symbols through the dynamic linker (link it with -Wl,-Bsymbolic):" >&2
    printf '  %s\n' $own >&2
    exit 1
  fi
  echo "self_binding: $lib binds its own symbols inside itself"
done
