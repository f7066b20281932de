#!/usr/bin/env bash
# Builds the CUDA backend's distributed path for a machine without a GPU: libeecuda and libeenccl on the CUDA
# emulation (native/cuda/test/emulate.sh build: "device" memory is host memory), libnccl_fake.so (fake_nccl.c: NCCL's
# calls done with MPI on host memory), and eenccl_selftest (nccltest.cu) against them.
#   usage: native/dist/test/emulated-nccl.sh OUT_DIR [LIBEECPU LIBEEDIST]      (needs g++, python3, mpicc, mpicxx)
#   self-test (.ci/native-checks.sh): EETUNE_NCCL=OUT_DIR/lib/libnccl_fake.so mpirun -np 3 OUT_DIR/eenccl_selftest
# With LIBEECPU and LIBEEDIST (ee-native's build) it also lays out OUT_DIR/lib as a native-library folder for Java
# (ee-cli's EmulatedNcclTuneTest; or by hand):
#   EETUNE_NATIVE_PATH=OUT_DIR/lib EETUNE_NCCL=OUT_DIR/lib/libnccl_fake.so EETUNE_CUBLAS=OUT_DIR/lib/libcublas_fake.so \
#     mpirun -np 2 ./ee tune --backend cuda ...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
native=$(cd "$here/../.." && pwd)
out=$1
for tool in mpicc mpicxx; do
  command -v $tool >/dev/null || { echo "emulated-nccl.sh: $tool not found (apt-get install libopenmpi-dev)" >&2; exit 1; }
done
"$native/cuda/test/emulate.sh" "$out/emu" build
mkdir -p "$out/lib"
mpicc -O1 -g -fPIC -shared -Wall -o "$out/lib/libnccl_fake.so" "$here/fake_nccl.c"
cp "$out/emu/libeecuda_emu.so" "$out/lib/libeecuda.so"
cp "$out/emu/libeenccl_emu.so" "$out/lib/libeenccl.so"
cp "$out/emu/libcublas_fake.so" "$out/lib/"
mpicxx -std=c++17 -O1 -g -DEE_WITH_MPI -I"$native/cuda/test/emu" -I"$native/include" -o "$out/eenccl_selftest" \
  -x c++ "$here/nccltest.cu" -x none "$native/cuda/test/emu/emu.cpp" "$out/lib/libeenccl.so" -Wl,-rpath,"$out/lib"
if [ $# -ge 3 ]; then
  cp "$2" "$3" "$out/lib/"
fi
echo "emulated CUDA + fake NCCL libraries in $out/lib"
