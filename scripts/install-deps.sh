#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages rgpu needs to build, demo and test.
# Does nothing (no apt at all) when they are all installed already, so a
# second demo or test run starts at once.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config            # toolchain
    protobuf-c-compiler libprotobuf-c-dev       # the wire protocol (proto/)
    libuv1-dev                                  # rgpu-server's event loop
    ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-headers  # the OpenCL ICD loader
    pocl-opencl-icd                             # the OpenCL platform the server runs on here
    clinfo clpeak                               # unmodified OpenCL programs for the tests
    python3-pyopencl python3-numpy python3-gpyfft clblast-tests clfft-client  # real OpenCL applications (e2e.pyopencl, e2e.app_*, docs/applications.md)
    libcriterion-dev                            # unit tests
    clang libclang-rt-dev                       # fuzz harnesses (scripts/fuzz.sh): clang and its libFuzzer/ASan runtimes
    libsqlite3-dev libsodium-dev                # rgpu-scheduler's state store, lease tokens
    libjemalloc-dev                             # rgpu-server's allocator
    python3 iproute2 procps                     # test scripts
    slurmctld slurmd slurm-client libslurm-dev munge  # the Slurm plugin (slurm/) and e2e.slurm
    libmunge-dev                                # users authenticated by MUNGE (scheduler/, e2e.sched_munge)
    libibverbs-dev librdmacm-dev ibverbs-providers rdma-core perftest ibverbs-utils  # the verbs transport (transport/verbs/) and scripts/test-verbs.sh's Soft-RoCE VM
    libinih-dev                                 # configuration files under /etc/rgpu (common/src/options.c)
    libsystemd-dev                              # journald logging and sd_notify readiness of the daemons (common/, optional)
    libzstd-dev liblz4-dev                      # the CUDA runtime (client/cuda/) reads nvcc's compressed fatbinaries
)

native=$(dpkg --print-architecture)

# A package counts as installed only for this machine's architecture (or
# "all"): a foreign-architecture copy (e.g. arm64 for cross builds) does not
# build native tests.
installed() {
    dpkg-query -W -f='${Architecture} ${Status}\n' "$1" 2>/dev/null |
        grep -qE "^($native|all) install ok installed$"
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages are installed"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 update -qq
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${missing[@]}"
