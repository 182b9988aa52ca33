#!/usr/bin/env bash
# tests/gpu/run.sh: checks rgpu's CUDA path on a machine with an NVIDIA GPU,
# unattended, in one go. It is how a machine with a GPU checks the real
# CUDA backend (server/cuda/backend_cuda.c), which nothing else can run.
#
#   tests/gpu/run.sh [--emulated] [BUILD_DIR]
#
#   1. builds rgpu-server, the rgpu CUDA runtime (client/cuda), the CUDA
#      examples and the test programs into BUILD_DIR (default build-gpu),
#      unless BUILD_DIR already has them (a build carried to the machine);
#   2. starts rgpu-server on loopback with --backends cuda (the driver);
#   3. runs every example of examples/cuda directly (the toolkit's
#      libcudart.so.13) and through rgpu (ours), and compares: both PASS,
#      the same result lines, the same device;
#   4. runs a PTX-only build of vector_add through rgpu (the parameter
#      layout then comes from the server's cuFuncGetParamInfo);
#   5. runs the server-side checks of tests/e2e/cuda_hostile.c that hold on
#      a real device (copies, out-of-range refusals, huge mallocs, teardown);
#   6. prints bandwidth (host to device, device to host, device to device)
#      and launch figures (examples/cuda/launch_rate) through rgpu beside
#      local CUDA, as ratios;
#   7. stops the server and expects a clean exit.
#
# --emulated runs the same against cuda-emulated, without the local runs
# and figures: a dry run of this script on a machine without a GPU.
#
# Exit status: 0 everything passed, 1 something failed (each failure is
# printed as "FAIL: ..."), 2 the machine cannot run it (no driver, no nvcc).
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc),
# CUDA_LIB (the toolkit's lib64, for the local runs; default
# /usr/local/cuda/lib64), JOBS (build parallelism; default nproc).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODE=driver
if [ "${1:-}" = "--emulated" ]; then
    MODE=emulated
    shift
fi
BUILD=${1:-$ROOT/build-gpu}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_LIB=${CUDA_LIB:-/usr/local/cuda/lib64}
JOBS=${JOBS:-$(nproc)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rgpu-gpu.XXXXXX")
SERVER_PID=""
FAILURES=0

say() { printf '[gpu %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
ok() { printf '  ok: %s\n' "$*"; }
bad() {
    printf '  FAIL: %s\n' "$*"
    FAILURES=$((FAILURES + 1))
}
die() {
    printf 'cannot run: %s\n' "$*" >&2
    exit 2
}

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$FAILURES" -ne 0 ] && [ -f "$WORK/server.log" ]; then
        echo "---- rgpu-server log (last 60 lines) ----"
        tail -n 60 "$WORK/server.log"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- 0. the machine ----------------------------------------------------------
say "mode: $MODE; build: $BUILD"
[ -x "$NVCC" ] || die "no nvcc ($NVCC): the CUDA toolkit is needed to build the examples"
if [ "$MODE" = driver ]; then
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
        die "no libcuda.so.1: this needs the NVIDIA driver (tests/gpu/run.sh --emulated for a dry run)"
    fi
    [ -e "$CUDA_LIB/libcudart.so.13" ] || die "no $CUDA_LIB/libcudart.so.13 for the local runs (CUDA_LIB)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi -L || true
        nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1 | sed 's/^/driver: /' || true
    fi
fi
"$NVCC" --version | tail -n1

# ---- 1. build ----------------------------------------------------------------
if [ -x "$BUILD/server/rgpu-server" ] && [ -e "$BUILD/client/cuda/libcudart.so.13" ] &&
   [ -x "$BUILD/examples/cuda/vector_add" ] && [ -x "$BUILD/tests/e2e/cuda_hostile" ]; then
    say "using the build in $BUILD"
else
    say "building into $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRGPU_NVCC="$NVCC" >"$WORK/cmake.log" 2>&1 ||
        { cat "$WORK/cmake.log"; die "cmake failed"; }
    cmake --build "$BUILD" -j "$JOBS" --target rgpu-server rgpu-cudart cuda_examples cuda_hostile \
        >"$WORK/build.log" 2>&1 || { tail -n 80 "$WORK/build.log"; die "the build failed"; }
fi
SERVER_BIN=$BUILD/server/rgpu-server
CUDART_DIR=$BUILD/client/cuda
EX=$BUILD/examples/cuda
HOSTILE=$BUILD/tests/e2e/cuda_hostile

# vector_add as PTX only: the driver JIT-compiles it, and no cubin carries
# its parameter layout (the server's cuFuncGetParamInfo does).
"$NVCC" -cudart shared -O2 -gencode=arch=compute_75,code=compute_75 \
    -o "$WORK/vector_add_ptx" "$ROOT/examples/cuda/vector_add.cu"

# ---- 2. the server -----------------------------------------------------------
backend=cuda
[ "$MODE" = emulated ] && backend=cuda-emulated
say "starting rgpu-server --backends $backend on loopback"
: >"$WORK/server.out"
"$SERVER_BIN" --insecure --listen 127.0.0.1:0 --backends "$backend" >"$WORK/server.out" \
    2>"$WORK/server.log" &
SERVER_PID=$!
ADDR=""
for _ in $(seq 600); do
    ADDR=$(sed -n 's/^rgpu-server listening on \([^ ]*\)$/\1/p' "$WORK/server.out" | head -n1)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ADDR" ]; then
    cat "$WORK/server.log"
    FAILURES=1
    die "rgpu-server did not start"
fi
if grep -q "serving CUDA with backend $backend" "$WORK/server.log"; then
    ok "$(grep "serving CUDA with backend" "$WORK/server.log" | sed 's/.*server: //')"
else
    bad "the server does not serve CUDA with backend $backend:"
    cat "$WORK/server.log"
    exit 1
fi

local_run() {   # the toolkit's runtime and the local GPU
    LD_LIBRARY_PATH=$CUDA_LIB timeout 600 "$@"
}
rgpu_run() {    # rgpu's runtime and the server
    RGPU_SERVERS=$ADDR LD_LIBRARY_PATH=$CUDART_DIR timeout 600 "$@"
}

# Runs one program both ways; both must PASS with the same result lines
# (those saying what was computed, not how fast). $1: a label.
compare() {
    local label=$1 rc_l=0 rc_r=0
    shift
    rgpu_run "$@" >"$WORK/$label.rgpu" 2>&1 || rc_r=$?
    if [ "$rc_r" -ne 0 ] || [ "$(tail -n1 "$WORK/$label.rgpu")" != PASS ]; then
        bad "$label through rgpu: status $rc_r"
        sed 's/^/    /' "$WORK/$label.rgpu" | tail -n 20
        return
    fi
    if [ "$MODE" = emulated ]; then
        ok "$label through rgpu: PASS"
        return
    fi
    local_run "$@" >"$WORK/$label.local" 2>&1 || rc_l=$?
    if [ "$rc_l" -ne 0 ] || [ "$(tail -n1 "$WORK/$label.local")" != PASS ]; then
        bad "$label locally (without rgpu): status $rc_l"
        sed 's/^/    /' "$WORK/$label.local" | tail -n 20
        return
    fi
    # Result lines: counts of wrong elements, and device_query's facts
    # (not free memory, which another process changes).
    local filter='wrong|Device [0-9]|Compute capability|Multiprocessors|Warp size|Max threads|Max block|Max grid|Shared memory per block|Registers per block|L2 cache|Memory bus'
    if diff <(grep -E "$filter" "$WORK/$label.local" | sed 's/ in [0-9.]* ms//') \
            <(grep -E "$filter" "$WORK/$label.rgpu" | sed 's/ in [0-9.]* ms//') >"$WORK/$label.diff"; then
        ok "$label: PASS locally and through rgpu, same results"
    else
        bad "$label: results differ between local CUDA and rgpu:"
        sed 's/^/    /' "$WORK/$label.diff"
    fi
}

# ---- 3, 4. the examples --------------------------------------------------------
say "examples, locally and through rgpu"
compare vector_add "$EX/vector_add"
compare vector_add_odd "$EX/vector_add" 1000003
compare matmul "$EX/matmul"
compare matmul_1024 "$EX/matmul" 1024
compare streams_events "$EX/streams_events"
compare bandwidth_pageable "$EX/bandwidth" --memory=pageable --size=16777216 --iters=4
compare device_query "$EX/device_query"
compare launch_rate_small "$EX/launch_rate" 1000
compare vector_add_ptx "$WORK/vector_add_ptx" 1000003
sessions=$(grep -c "client arch" "$WORK/server.log" || true)
[ "$sessions" -ge 9 ] && ok "the server saw $sessions sessions" ||
    bad "the server saw $sessions sessions for 9 programs through rgpu"

# ---- 5. the server's own guarantees on this device -----------------------------------
say "server-side checks (tests/e2e/cuda_hostile.c)"
for check in memory copy-outside huge teardown; do
    rc=0
    timeout 300 "$HOSTILE" "$ADDR" "$check" >"$WORK/hostile.$check" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        ok "cuda_hostile $check: $(grep -c '^PASS' "$WORK/hostile.$check") checks passed"
    else
        bad "cuda_hostile $check (status $rc):"
        sed 's/^/    /' "$WORK/hostile.$check"
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { bad "rgpu-server died during $check"; exit 1; }
done

# ---- 6. figures ----------------------------------------------------------------
figure() {      # $1 file, $2 pattern: the number before the unit
    awk -v pat="$2" '$0 ~ pat { print $(NF-1); exit }' "$1"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}
say "figures (through rgpu beside local CUDA, same run)"
rc=0
rgpu_run "$EX/bandwidth" --memory=pinned --size=67108864 --iters=20 >"$WORK/bw.rgpu" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || bad "bandwidth through rgpu: status $rc"
rc=0
rgpu_run "$EX/launch_rate" >"$WORK/launch.rgpu" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || bad "launch_rate through rgpu: status $rc"
if [ "$MODE" = driver ]; then
    local_run "$EX/bandwidth" --memory=pinned --size=67108864 --iters=20 >"$WORK/bw.local" 2>&1 ||
        bad "bandwidth locally failed"
    local_run "$EX/launch_rate" >"$WORK/launch.local" 2>&1 || bad "launch_rate locally failed"
else
    : >"$WORK/bw.local"
    : >"$WORK/launch.local"
fi
printf '  %-34s %14s %14s %8s\n' "figure (64 MiB pinned, 20 iters)" "rgpu" "local CUDA" "ratio"
for dir in "Host to Device" "Device to Host" "Device to Device"; do
    r=$(figure "$WORK/bw.rgpu" "$dir")
    l=$(figure "$WORK/bw.local" "$dir")
    printf '  %-34s %9s MB/s %9s MB/s %8s\n' "$dir" "${r:--}" "${l:--}" "$(ratio "${r:-0}" "${l:-0}")"
done
# examples/cuda/launch_rate's lines: "...: N launches/s" and "...: N calls/s".
rate() {
    awk -v pat="$2" '$0 ~ pat { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^(launches|calls)\/s$/) { print $i; exit } }' "$1"
}
for row in "asynchronous launches:async launches" "synchronous calls:sync calls (cudaStreamQuery)" \
           "each synchronized:launch + synchronize"; do
    pat=${row%%:*}
    label=${row#*:}
    r=$(rate "$WORK/launch.rgpu" "$pat")
    l=$(rate "$WORK/launch.local" "$pat")
    printf '  %-34s %9s /s   %9s /s   %8s\n' "$label" "${r:--}" "${l:--}" "$(ratio "${r:-0}" "${l:-0}")"
done

# ---- 7. a clean stop -----------------------------------------------------------
say "stopping rgpu-server"
kill -TERM "$SERVER_PID"
rc=0
for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    bad "rgpu-server did not exit within 30 s of SIGTERM"
else
    wait "$SERVER_PID" || rc=$?
    [ "$rc" -eq 0 ] && ok "rgpu-server exited cleanly" || bad "rgpu-server exited with status $rc"
fi
SERVER_PID=""

if [ "$FAILURES" -eq 0 ]; then
    say "PASS: every check passed ($MODE)"
    exit 0
fi
say "FAIL: $FAILURES check(s) failed ($MODE)"
exit 1
