#!/usr/bin/env bash
# Runs rgpu-bench on one machine: starts rgpu-server and the raw TCP peer on
# 127.0.0.1 (ephemeral ports), points the OpenCL loader at both the rgpu ICD
# and the local one, pins the processes, runs the benchmark, and stops what
# it started.
#
#   bench/run.sh [--build-dir DIR] [rgpu-bench arguments]
#   bench/run.sh --quick                 # what CI runs: every test, tiny sizes
#   bench/run.sh bw --max-size 64M --plot bw.png
#
# Without a command, runs `all`. Environment:
#   RGPU_BUILD_DIR           build directory (default: <repo>/build)
#   RGPU_BENCH_LOCAL_ICD     the local platform's .icd (default: the PoCL one,
#                            else every .icd in /etc/OpenCL/vendors)
#   RGPU_BENCH_SERVER_CPUS   CPUs of rgpu-server and tcp-peer (default 1)
#   RGPU_BENCH_CLIENT_CPUS   CPUs of rgpu-bench (default 0)
#   RGPU_BENCH_PIN=0         no taskset pinning
#   RGPU_BENCH_LOCAL_AS_SERVER=1
#                            give the local baseline what rgpu-server gives its
#                            platform: the same malloc (jemalloc, preloaded into
#                            rgpu-bench) and its platform threads under
#                            SCHED_BATCH; by default it runs as a program does
# The server and the peer share CPUs on purpose: they stand for the GPU node,
# rgpu-bench for the compute node. On 2 cores, busy processes fight: pinning
# keeps the two sides from taking each other's core.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RGPU_BUILD_DIR:-$REPO/build}
if [ "${1:-}" = "--build-dir" ]; then
    [ $# -ge 2 ] || { echo "run.sh: --build-dir needs a directory" >&2; exit 2; }
    BUILD=$2
    shift 2
fi
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run.sh: no build directory $BUILD" >&2; exit 2; }
SERVER_BIN=$BUILD/server/rgpu-server
BENCH_BIN=$BUILD/bench/rgpu-bench
RGPU_ICD=$BUILD/icd/rgpu.icd
for f in "$SERVER_BIN" "$BENCH_BIN" "$RGPU_ICD"; do
    [ -e "$f" ] || { echo "run.sh: $f is missing: build first (cmake --build $BUILD)" >&2; exit 2; }
done

# Figures of an unoptimized build say little: say so (CMake builds -O0 when
# no build type is given).
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
case $BUILD_TYPE in
    Release|RelWithDebInfo|MinSizeRel) ;;
    *) echo "run.sh: warning: $BUILD is a ${BUILD_TYPE:-no-build-type (-O0)} build; for figures, configure with -DCMAKE_BUILD_TYPE=RelWithDebInfo" >&2 ;;
esac

if [ -n "${RGPU_BENCH_LOCAL_ICD:-}" ]; then
    LOCAL_ICDS=("$RGPU_BENCH_LOCAL_ICD")
elif [ -e /etc/OpenCL/vendors/pocl.icd ]; then
    LOCAL_ICDS=(/etc/OpenCL/vendors/pocl.icd)
else
    shopt -s nullglob
    LOCAL_ICDS=(/etc/OpenCL/vendors/*.icd)
    shopt -u nullglob
fi
[ ${#LOCAL_ICDS[@]} -gt 0 ] || { echo "run.sh: no local OpenCL .icd found (set RGPU_BENCH_LOCAL_ICD)" >&2; exit 2; }

SERVER_PIN=()
CLIENT_PIN=()
if [ "${RGPU_BENCH_PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c "${RGPU_BENCH_SERVER_CPUS:-1}")
    CLIENT_PIN=(taskset -c "${RGPU_BENCH_CLIENT_CPUS:-0}")
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rgpu-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] && [ -s "$TMP/server.log" ]; then
        echo "----- last lines of the rgpu-server log -----" >&2
        tail -n 30 "$TMP/server.log" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until the process wrote its "... listening on HOST:PORT" line; prints HOST:PORT.
wait_listening() {
    local pid=$1 out=$2 what=$3 i addr
    for i in $(seq 150); do
        addr=$(sed -n 's/^.* listening on \([^ ]*\)$/\1/p' "$out" | head -n 1)
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $what exited before listening" >&2; return 1; }
        sleep 0.1
    done
    echo "run.sh: $what did not say where it listens within 15 s" >&2
    return 1
}

# The local platform alone for the server (never rgpu itself), both for the bench.
mkdir -p "$TMP/vendors-local" "$TMP/vendors-all"
for icd in "${LOCAL_ICDS[@]}"; do
    ln -s "$icd" "$TMP/vendors-local/$(basename "$icd")"
    ln -s "$icd" "$TMP/vendors-all/$(basename "$icd")"
done
ln -s "$RGPU_ICD" "$TMP/vendors-all/rgpu.icd"

env -u RGPU_SERVERS OCL_ICD_VENDORS="$TMP/vendors-local" \
    "${SERVER_PIN[@]}" "$SERVER_BIN" --listen 127.0.0.1:0 --insecure --log-level warn \
    >"$TMP/server.out" 2>"$TMP/server.log" &
PIDS+=($!)
SERVER_ADDR=$(wait_listening "${PIDS[-1]}" "$TMP/server.out" rgpu-server)

"${SERVER_PIN[@]}" "$BENCH_BIN" tcp-peer --listen 127.0.0.1:0 >"$TMP/peer.out" 2>"$TMP/peer.log" &
PIDS+=($!)
PEER_ADDR=$(wait_listening "${PIDS[-1]}" "$TMP/peer.out" "rgpu-bench tcp-peer")

ARGS=("$@")
HAVE_CMD=0
for a in "$@"; do
    case $a in lat|bw|launch|app|all) HAVE_CMD=1 ;; esac
done
[ "$HAVE_CMD" = 1 ] || ARGS=(all "${ARGS[@]}")

BENCH_ENV=()
if [ "${RGPU_BENCH_LOCAL_AS_SERVER:-0}" = 1 ]; then
    ARGS+=(--local-platform-threads batch)
    JEMALLOC=$(ldd "$SERVER_BIN" | awk '/libjemalloc/ {print $3}')
    [ -n "$JEMALLOC" ] && BENCH_ENV=(LD_PRELOAD="$JEMALLOC${LD_PRELOAD:+:$LD_PRELOAD}")
fi

echo "run.sh: rgpu-server at $SERVER_ADDR, tcp-peer at $PEER_ADDR${SERVER_PIN:+, server side on CPU ${RGPU_BENCH_SERVER_CPUS:-1}, bench on CPU ${RGPU_BENCH_CLIENT_CPUS:-0}}" >&2
set +e
env "${BENCH_ENV[@]}" OCL_ICD_VENDORS="$TMP/vendors-all" RGPU_SERVERS="$SERVER_ADDR" \
    "${CLIENT_PIN[@]}" "$BENCH_BIN" "${ARGS[@]}" --tcp-peer "$PEER_ADDR"
rc=$?
set -e
exit $rc
