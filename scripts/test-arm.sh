#!/usr/bin/env bash
# The ARM compute-node tests: cross-builds the client (library, examples,
# client-side unit tests) for aarch64, runs the unit tests under qemu-aarch64,
# then runs an aarch64 OpenCL example in one network namespace against the
# x86-64 rgpu-server (from build/) in another.
#
#   bash scripts/test-arm.sh          # after scripts/build.sh
#
# Needs root for apt and ip netns. No timing is taken under qemu.
# Debian's libcriterion-dev cannot be installed for two architectures at
# once: installing the arm64 one removes the amd64 one. So this runs after
# the x86-64 tests, and scripts/install-deps.sh puts the amd64 one back.
set -euo pipefail
cd "$(dirname "$0")/.."

cross_packages=(gcc-aarch64-linux-gnu qemu-user qemu-user-binfmt)
arm_packages=(libc6-dev:arm64 libprotobuf-c-dev:arm64 libsodium-dev:arm64 libinih-dev:arm64 libzstd-dev:arm64 liblz4-dev:arm64 ocl-icd-opencl-dev:arm64 ocl-icd-libopencl1:arm64 libcriterion-dev:arm64)
missing=()
for p in "${cross_packages[@]}" "${arm_packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-arm: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get -o DPkg::Lock::Timeout=120 update -qq
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${missing[@]}"
fi

# Criterion runs each test in a child it starts by exec'ing the test binary
# again; under qemu-user that exec only works when the kernel knows to hand
# aarch64 ELF files to qemu (binfmt_misc, as qemu-user-binfmt sets up on a
# normal system). Register it if this machine has not.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -e "$conf" ] || { echo "test-arm: $conf missing (package qemu-user-binfmt)" >&2; exit 1; }
    cat "$conf" > /proc/sys/fs/binfmt_misc/register
fi

cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRGPU_BUILD_SERVER=OFF -DRGPU_BUILD_SCHEDULER=OFF -DRGPU_BUILD_TESTS=ON > /dev/null
cmake --build build-arm64 -j "$(nproc)"

echo "== build-arm64/: client-side unit tests under qemu-aarch64"
(cd build-arm64 && ctest --output-on-failure -L unit --timeout 600)

echo "== aarch64 client against the x86-64 server, across network namespaces"
bash tests/arm/netns_e2e.sh build build-arm64

# The CUDA runtime cross-builds from the toolkit's headers (nvcc makes only
# x86-64 host code, so no nvcc-built program here): a CUDA program written in
# C around an nvcc fatbinary, aarch64 program and runtime under qemu against
# the x86-64 server's cuda-emulated backend.
if [ -x build-arm64/tests/unit/cuda/hand_launch ]; then
    echo "== aarch64 CUDA program against the x86-64 server (cuda-emulated)"
    bash tests/unit/cuda/hand_launch.sh build build-arm64
elif [ -e /usr/local/cuda/include/cuda_runtime_api.h ]; then
    echo "test-arm: the CUDA toolkit is here but build-arm64 has no hand_launch" >&2
    exit 1
else
    echo "== aarch64 CUDA runtime: not built, no CUDA toolkit here (not tested)"
fi
