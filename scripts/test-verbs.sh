#!/usr/bin/env bash
# test-verbs.sh -- the verbs transport on real RDMA verbs, in CI: builds the
# verbs tests on this host (build dir $RGPU_VERBS_BUILD, default build-verbs),
# then boots ONE throw-away Soft-RoCE VM (../shared/scripts/run-in-rxe-vm.sh)
# and runs in it:
#   1. the transport conformance suite over verbs plus the verbs-only cases
#      (test_transport_verbs: refusals by the HCA, a QP in error, a refused
#      registration, a peer killed mid-transfer, QPs/CQs/MRs/PDs freed as
#      `rdma resource show` counts them);
#   2. test_verbs_accept and test_verbs_rx (tests/verbs/): accept returns
#      at once, so a peer that never finishes connecting holds up no other
#      accept, and its link fails at the deadline with a reason and frees
#      what it held; a peer's broken frame ends receiving only, in words,
#      and the link still sends;
#   3. with RGPU_VERBS_E2E=1 (see e2e= below), tests/verbs/e2e_opencl.sh:
#      vector_add through the ICD over verbs to rgpu-server on PoCL, by a
#      lease from rgpu-scheduler, everything the session held freed after;
#      if it fails, the same over TCP as the control; then
#      tests/verbs/e2e_client_killed.sh (a client SIGKILLed while it writes
#      16 MiB buffers: the session's end logged, its QPs/CQs/MRs and device
#      memory freed, the server still serving) and tests/verbs/e2e_cuda.sh
#      (the nvcc-built CUDA examples on the cuda-emulated backend over
#      verbs; SKIPPED, and said so, where the build has no CUDA toolkit);
#   4. unless RGPU_VERBS_BENCH=0, scripts/bench-verbs.sh: the transport's
#      figures beside ib_write_bw / ib_read_bw / ib_send_lat, as ratios.
# Exits non-zero when anything fails; prints its duration.
#
# Knobs: RGPU_VERBS_SANITIZE=1 (build with ASan/UBSan, in build-verbs-asan,
# as CI's unit tests are; the suite takes ~3 minutes then),
# RGPU_CONF_RMA_MAX_MB (largest get/put of the suite, default 24, past rxe's
# 8 MiB max_msg_sz: Soft-RoCE under TCG moves 10-45 MB/s, 256 MiB each way
# would take minutes),
# RXE_VM_* (see run-in-rxe-vm.sh), RXE_VM_KVM=1 to let the VM use /dev/kvm
# (off by default: on this CI host nested KVM aborts qemu at the first vCPU
# MSR write, so the VM runs under TCG, as it does where there is no KVM).
set -euo pipefail

# The OpenCL program end to end over verbs (tests/verbs/e2e_opencl.sh); on
# by default since sessions run on messages (RGPU_VERBS_E2E=0 skips it).
e2e=${RGPU_VERBS_E2E:-1}

if [ "${1:-}" = "--in-vm" ]; then
    # Inside the VM (root, the host's tree read-only with a tmpfs overlay).
    build=$2
    fail=0 skipped=""
    echo "== verbs conformance suite (RGPU_CONF_RMA_MAX_MB=$RGPU_CONF_RMA_MAX_MB, device $RXE_DEV at $RXE_IP)"
    "$build/tests/test_transport_verbs" --verbose=0 --jobs 1 || fail=1
    echo "== verbs accept and receive-side failures"
    "$build/tests/test_verbs_accept" --verbose=0 --jobs 1 || fail=1
    "$build/tests/test_verbs_rx" --verbose=0 --jobs 1 || fail=1
    if [ "$e2e" = 1 ]; then
        echo "== OpenCL end to end over verbs"
        if ! bash tests/verbs/e2e_opencl.sh "$build" verbs; then
            fail=1
            echo "== the same over TCP, the control (does the harness work in this VM?)"
            bash tests/verbs/e2e_opencl.sh "$build" tcp || true
        fi
        echo "== a client SIGKILLed in the middle of large transfers over verbs"
        bash tests/verbs/e2e_client_killed.sh "$build" || fail=1
        echo "== CUDA end to end over verbs (cuda-emulated backend)"
        rc=0
        bash tests/verbs/e2e_cuda.sh "$build" || rc=$?
        # 77: this build has no CUDA examples (no toolkit): said, not passed.
        if [ "$rc" = 77 ]; then
            skipped="$skipped CUDA-end-to-end"
        elif [ "$rc" != 0 ]; then
            fail=1
        fi
    else
        echo "== end to end over verbs (OpenCL, a killed client, CUDA): not run (RGPU_VERBS_E2E=0)"
    fi
    if [ "${RGPU_VERBS_BENCH:-1}" != 0 ]; then
        echo "== bench: the verbs transport beside perftest"
        bash scripts/bench-verbs.sh "$build" || fail=1
    fi
    [ -z "$skipped" ] || echo "== SKIPPED:$skipped (see above why)"
    exit $fail
fi

start=$(date +%s)
cd "$(dirname "$0")/.."
sanitize=OFF build=${RGPU_VERBS_BUILD:-build-verbs}
if [ "${RGPU_VERBS_SANITIZE:-0}" = 1 ]; then
    sanitize=ON build=${RGPU_VERBS_BUILD:-build-verbs-asan}
fi
vm=../shared/scripts/run-in-rxe-vm.sh
[ -x "$vm" ] || [ -f "$vm" ] || { echo "test-verbs: $vm not found" >&2; exit 1; }

echo "== building the verbs tests in $build/"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRGPU_BUILD_VERBS=ON -DRGPU_SANITIZE=$sanitize > "${TMPDIR:-/tmp}/test-verbs-cmake.log" 2>&1 ||
    { cat "${TMPDIR:-/tmp}/test-verbs-cmake.log" >&2; exit 1; }
targets=(test_transport_verbs test_verbs_accept test_verbs_rx bench_verbs)
[ "$e2e" = 1 ] && targets+=(rgpu-server rgpu-opencl rgpu-scheduler rgpu vector_add hold_memory)
# The CUDA runtime and its nvcc-built examples, where the toolkit is here.
if [ "$e2e" = 1 ] && grep -q '^RGPU_BUILD_CUDA:BOOL=ON' "$build/CMakeCache.txt" &&
    grep -q '^RGPU_NVCC:FILEPATH=/' "$build/CMakeCache.txt"; then
    targets+=(rgpu-cudart cuda_examples)
fi
cmake --build "$build" --target "${targets[@]}" -j "${RGPU_JOBS:-2}" > /dev/null

export RGPU_CONF_RMA_MAX_MB=${RGPU_CONF_RMA_MAX_MB:-24}
export RXE_VM_MEM=${RXE_VM_MEM:-1024}
# The end-to-end tests take 3-5 minutes under TCG (PoCL compiles its kernels).
export RXE_VM_TIMEOUT=${RXE_VM_TIMEOUT:-$((e2e == 1 ? 330 + 600 : 330))}
export RGPU_VERBS_E2E=$e2e
cmd=(bash "$vm" bash scripts/test-verbs.sh --in-vm "$build")
if [ "${RXE_VM_KVM:-0}" != 1 ] && [ -e /dev/kvm ] && [ "$(id -u)" = 0 ] && command -v unshare > /dev/null; then
    # Hide /dev/kvm from qemu in a private mount namespace: it falls back to TCG.
    status=0
    unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh "${cmd[@]}" || status=$?
else
    status=0
    "${cmd[@]}" || status=$?
fi
echo "== test-verbs: $([ $status = 0 ] && echo PASS || echo "FAIL ($status)") in $(($(date +%s) - start)) s"
exit $status
