# Cross-compiling libeecpu for linux-aarch64 with Debian's gcc-aarch64-linux-gnu (apt-get install gcc-aarch64-linux-gnu):
#   cmake -S native -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=native/cmake/aarch64.cmake && cmake --build build-aarch64
# The self-test then runs under qemu-user: qemu-aarch64 -L /usr/aarch64-linux-gnu build-aarch64/eecpu_selftest
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# ctest runs the cross-built self-test through qemu-user
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
