#!/usr/bin/env bash
# CI, native part (called from .ci/run before the Maven runs; also runs alone):
#   1. libeecpu built with AddressSanitizer + UBSan (-DEE_SANITIZE=ON): the C self-test (SIMD and portable paths), then
#      ee-native's KernelTest and BackwardKernelTest against it (FFM and JNA on JDK 22+, JNA on 17);
#   2. libeecpu cross-compiled for linux-aarch64 (native/cmake/aarch64.cmake), its self-test under qemu-user;
#   3. libeedist's self-test under mpirun with 3 ranks (rank-order sums, broadcast, send/recv, a late rank named);
#   4. the CUDA kernels in their CPU emulation (native/cuda/test/emulate.sh: its three passes on small shapes, then
#      its first pass on many odd sizes, the full check);
#   5. libeenccl's self-test on the CUDA emulation with a fake NCCL over MPI, 3 ranks (native/dist/test/emulated-nccl.sh:
#      the rank-order all-reduce bit for bit, broadcast, send/recv, refused arguments);
#   6. libeecuda (emulated; and the nvcc build where there is one) binds its own ee_* calls inside itself
#      (native/test/self_binding.sh; ctest's eecpu_self_binding does it for libeecpu in 1).
# Fails on any sanitizer report or emulation FAIL. usage: .ci/native-checks.sh [JAVA_HOME] (default: the javac on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$PWD/target/native-checks
java_home=${1:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}

need=()
command -v g++ >/dev/null || need+=(g++)
command -v python3 >/dev/null || need+=(python3)
# the sanitizer runtimes of Debian 12's gcc 12 (normally pulled in with gcc)
[ -e "$(gcc -print-file-name=libasan.so)" ] || need+=(libasan8)
[ -e "$(gcc -print-file-name=libubsan.so)" ] || need+=(libubsan1)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  echo "native-checks: installing ${need[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

step() {
  local name=$1 t0=$SECONDS
  shift
  echo "native-checks: $name"
  "$@"
  echo "native-checks: $name: $((SECONDS - t0)) s"
}

rm -rf "$work"
mkdir -p "$work/reports"
# Every report ends its process with exit code 1 (ASan always; UBSan through -fno-sanitize-recover=all, see
# native/CMakeLists.txt). ASan reports also go to files (pid-suffixed): inside a test JVM one is otherwise buried in
# failsafe's stream dumps, and any file here fails the step even if some runner swallowed the exit code. UBSan ignores
# log_path in this combined build; failsafe shows its reports (stderr of the crashed JVM).
export ASAN_OPTIONS="log_path=$work/reports/asan"
export UBSAN_OPTIONS=print_stacktrace=1
no_reports() {
  if compgen -G "$work/reports/*" >/dev/null; then
    cat "$work"/reports/*
    echo "native-checks: FAIL: sanitizer report(s) above" >&2
    return 1
  fi
}

sanitized_build() {
  cmake -S native -B "$work/asan" -DEE_SANITIZE=ON >/dev/null
  cmake --build "$work/asan" -j "$(nproc)" --target eecpu eecpu_selftest eecpu_pooltest eecpu_blascore >/dev/null
}

selftest() {
  ctest --test-dir "$work/asan" --output-on-failure
  no_reports
}

# The forked test JVM runs through a java wrapper (failsafe's -Djvm wants a path ending in bin/java; the release file
# tells it the JDK version) that preloads the ASan runtime, which must come before the JVM's own libraries.
java_tests() {
  local jdk=$work/asan-jdk
  mkdir -p "$jdk/bin"
  ln -s "$java_home/release" "$jdk/release"
  # detect_leaks=0: the JVM never frees much of what it allocates, and LeakSanitizer crashes on its memory layout.
  # handle_segv/sigbus/sigfpe=0: the JVM raises these on purpose (implicit null checks, safepoint polls, division by
  # zero, truncated mapped files) and handles them itself; ASan must leave them to it.
  cat >"$jdk/bin/java" <<EOF
#!/bin/sh
export LD_PRELOAD=$(gcc -print-file-name=libasan.so)
export ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigfpe=0
export EETUNE_NATIVE_PATH=$work/asan
echo >>$work/jvm-started
exec $java_home/bin/java "\$@"
EOF
  chmod +x "$jdk/bin/java"
  # -Dtest=NONE: ee-api is built (ee-native needs it) but its tests are left to the main runs
  local rc=0
  JAVA_HOME=$java_home ./mvnw -B -q -pl ee-native -am verify -Djvm="$jdk/bin/java" \
    -Dtest=NONE -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=KernelTest,BackwardKernelTest || rc=$?
  no_reports # a report kills the test JVM: Maven only says "The forked VM terminated", the report says why
  # a passing run that never went through the wrapper tested the unsanitized library
  [ -f "$work/jvm-started" ] || { echo "native-checks: FAIL: the tests did not run through $jdk/bin/java" >&2; return 1; }
  return $rc
}

# The portable kernels on aarch64 (the x86 ones are compiled out there): built with Debian's cross compiler, the
# self-test run under qemu-user with the aarch64 sysroot (CMAKE_CROSSCOMPILING_EMULATOR in the toolchain file).
aarch64_selftest() {
  cmake -S native -B "$work/aarch64" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$PWD/native/cmake/aarch64.cmake" >/dev/null
  cmake --build "$work/aarch64" -j "$(nproc)" --target eecpu eecpu_selftest >/dev/null
  readelf -h "$work/aarch64/libeecpu.so" | grep -q "Machine: *AArch64" || { echo "native-checks: FAIL: libeecpu.so is not an aarch64 library" >&2; return 1; }
  # one run: the "portable" variant of the self-test is the same code on aarch64
  ctest --test-dir "$work/aarch64" --output-on-failure -R '^eecpu_selftest$'
}

dist_selftest() {
  cmake -S native -B "$work/dist" >/dev/null
  cmake --build "$work/dist" --target eedist_selftest >/dev/null
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np 3 "$work/dist/dist/eedist_selftest"
}

nccl_selftest() {
  native/dist/test/emulated-nccl.sh "$work/nccl-emu" >/dev/null
  EETUNE_NCCL="$work/nccl-emu/lib/libnccl_fake.so" timeout 120 mpirun --allow-run-as-root --oversubscribe -np 3 "$work/nccl-emu/eenccl_selftest"
}

step "libeedist self-test, 3 ranks under mpirun" dist_selftest
step "build libeecpu with ASan + UBSan" sanitized_build
step "self-test under ASan + UBSan" selftest
step "KernelTest, BackwardKernelTest under ASan + UBSan ($java_home)" java_tests
step "libeecpu for linux-aarch64: self-test under qemu-user" aarch64_selftest
unset ASAN_OPTIONS UBSAN_OPTIONS
# the reference libeecpu is the Release build Maven just made (saves building it again)
mkdir -p "$work/emu/cpu"
cp ee-native/target/cmake/libeecpu.so "$work/emu/cpu/"
step "CUDA kernels in the CPU emulation, small shapes (3 passes)" native/cuda/test/emulate.sh "$work/emu" sanitize
step "CUDA kernels in the CPU emulation, many odd sizes (first pass)" native/cuda/test/emulate.sh "$work/emu" check 1
step "libeenccl self-test on the CUDA emulation with a fake NCCL, 3 ranks under mpirun" nccl_selftest
# libeecuda (emulated, and the nvcc build Maven made where nvcc exists) calls its own ee_* functions inside itself, as
# ctest's eecpu_self_binding checks for libeecpu: both export the same names and JNA opens them RTLD_GLOBAL
cuda_self_binding() {
  native/test/self_binding.sh "$work/emu/libeecuda_emu.so"
  if [ -f ee-cuda/target/cmake/libeecuda.so ]; then native/test/self_binding.sh ee-cuda/target/cmake/libeecuda.so; fi
}
step "libeecuda binds its own symbols inside itself" cuda_self_binding
